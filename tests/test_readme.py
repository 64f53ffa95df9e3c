"""Every command in the READMEs parses, and every repository path they name exists.

The READMEs are README.md, bench/README.md (the measured results) and docs/formats.md (stage 2's
files); their commands run from the repository root. Each `python SCRIPT ...` command (fenced blocks and inline
code of the READMEs, and the
usage lines in each script's docstring, which `--help` prints) is run through the
script's own `main` up to the point where its configuration is resolved: the real
argparse parser checks the flags and their values, and the real config loader checks
the `--config` file and every `--set section.key=value`. Nothing is trained or
written. `make` targets must exist in the Makefile and `bash` scripts on disk.
"""

import argparse
import ast
import importlib
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

import common.cli
import common.config

REPO = Path(__file__).resolve().parents[1]
README = "\n".join((REPO / name).read_text() for name in ("README.md", "bench/README.md", "docs/formats.md"))
TOP_LEVEL = ("stage2_visible_keypoints", "detection", "baselines", "common", "bench", "configs",
             "notebooks", "tests", "docs", "requirements.txt", "pyproject.toml", "Makefile", ".ci")


class Resolved(Exception):
    """Raised in place of running a script once its arguments (and config) are resolved."""


def _shell_lines():
    """(line, cwd) for each command line of the README, continuation lines joined."""
    lines = []
    for language, block in re.findall(r"```(\w*)\n(.*?)```", README, re.S):
        if language not in ("", "bash", "sh"):  # python or json blocks are not commands
            continue
        cwd = REPO
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("cd "):
                cwd = (cwd / line[3:].strip()).resolve()
            elif line:
                lines.append((line, cwd))
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    lines += [(code, REPO) for code in re.findall(r"`([^`\n]+)`", prose)]
    return lines + _docstring_lines()


def _docstring_lines():
    """The usage lines of every script's docstring (run from the repository root)."""
    lines = []
    for folder in ("stage2_visible_keypoints", "detection/ssd", "detection/centres", "baselines", "bench"):
        for script in sorted((REPO / folder).glob("*.py")):
            doc = ast.get_docstring(ast.parse(script.read_text())) or ""
            for line in doc.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                if re.match(r"(\w+=\S+ )*python ", line):
                    lines.append((line, REPO))
    return lines


def _python_commands():
    """(script path, argv, cwd) of every `python ...` command; `...` placeholders are skipped."""
    found = {}
    for line, cwd in _shell_lines():
        words = shlex.split(line)
        while words and re.fullmatch(r"\w+=\S*", words[0]):  # KERAS_BACKEND=jax python ...
            words = words[1:]
        if len(words) < 2 or words[0] != "python" or "..." in words:
            continue
        if words[1] == "-m":
            script = REPO / (words[2].replace(".", "/") + ".py")
            argv = words[3:]
        elif words[1].endswith(".py"):
            script = (cwd / words[1]).resolve()
            argv = words[2:]
        else:
            continue  # python code shown inline, not a command
        found[" ".join([str(script.relative_to(REPO))] + argv)] = (script, argv, cwd)
    return found


COMMANDS = _python_commands()


def _load_script(script, monkeypatch):
    """The script's module: package scripts by dotted name, bench scripts from their file."""
    relative = script.relative_to(REPO)
    if relative.parts[0] == "bench":
        monkeypatch.syspath_prepend(str(script.parent))
        spec = importlib.util.spec_from_file_location(f"readme_{script.stem}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(".".join(relative.with_suffix("").parts))


def test_readme_is_short():
    # The front page is for users: what, how, what it reaches. Measured tables live in
    # bench/README.md, stage 2's file formats in docs/formats.md, history in git.
    assert len((REPO / "README.md").read_text().splitlines()) < 330


def test_readme_has_the_commands_this_test_checks():
    scripts = {Path(key.split()[0]).name for key in COMMANDS}
    # The stage-2 scripts, a detector, the baselines and a bench script at least.
    assert {"render_vis.py", "preprocess_vis.py", "train_vis.py", "use_vis.py", "train_det.py",
            "run_study.py", "stage2_accuracy.py"} <= scripts
    assert len(COMMANDS) >= 30


@pytest.mark.parametrize("key", sorted(COMMANDS), ids=lambda key: re.sub(r"[^\w./-]+", "_", key)[:90])
def test_readme_command_parses(key, monkeypatch, capsys):
    script, argv, cwd = COMMANDS[key]
    assert script.is_file(), f"README runs {script.relative_to(REPO)}, which does not exist"
    module = _load_script(script, monkeypatch)
    source = script.read_text()
    resolves_config = "config_from_args(" in source or "load_config(" in source
    real_parse = argparse.ArgumentParser.parse_args

    def parse_args(parser, args=None, namespace=None):
        parsed = real_parse(parser, args, namespace)
        if not resolves_config:
            raise Resolved(parsed)
        return parsed

    def resolve(real):
        def wrapper(*args, **kwargs):
            raise Resolved(real(*args, **kwargs))
        return wrapper

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    monkeypatch.setattr(common.cli, "config_from_args", resolve(common.cli.config_from_args))
    if hasattr(module, "load_config"):
        monkeypatch.setattr(module, "load_config", resolve(module.load_config))
    monkeypatch.chdir(cwd)
    try:
        module.main(argv)
    except Resolved:
        pass
    except SystemExit as exit_:
        # --help exits 0 after printing; a bad flag exits 2 with argparse's message.
        assert exit_.code == 0 and "--help" in argv, f"README command fails to parse: {key}\n{capsys.readouterr().err}"
    else:
        pytest.fail(f"{key}: main returned without resolving its arguments")


def test_readme_make_targets_and_shell_scripts_exist():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w.-]+):", makefile, re.M))
    checked = 0
    for line, cwd in _shell_lines():
        words = shlex.split(line)
        words = [w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)]
        if words[:1] == ["make"]:
            for target in words[1:]:
                if target != "...":
                    assert target in targets, f"README runs `make {target}`, not a Makefile target"
                    checked += 1
        elif words[:1] == ["bash"]:
            assert (cwd / words[1]).is_file(), f"README runs `bash {words[1]}`, which does not exist"
            checked += 1
    assert checked >= 4


PATH_SUFFIXES = (".py", ".json", ".yaml", ".md", ".txt", ".toml", ".obj", ".sh", ".ipynb", ".npy", ".npz")


def _python_name_exists(dotted):
    """Import the longest importable prefix of `dotted`, then look the rest up as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_readme_paths_exist():
    """Paths and Python names the README gives in code spans exist (outputs under runs/ are not checked)."""
    missing, checked = [], 0
    for code in re.findall(r"`([^`\n]+)`", README):
        for token in code.split():
            token = token.strip("(),:;")
            if not token.startswith(TOP_LEVEL) or any(c in token for c in "{}*<>$"):
                continue
            if "=" in token:
                continue
            if "/" not in token and not token.endswith(PATH_SUFFIXES) and "." in token:
                if not _python_name_exists(token):  # a dotted name: stage2_visible_keypoints.mesh.visible_vertices
                    missing.append(token)
            elif not (REPO / token).exists():
                missing.append(token)
            checked += 1
    assert checked >= 40
    assert not missing, f"README names paths that do not exist: {sorted(set(missing))}"
