"""Every script's --help starts at once: it imports neither Keras nor TensorFlow before
parsing (so prints no TensorFlow start-up lines), and the flags every script shares are
spelled the same way. The same for `keypose --help` and each `keypose PART COMMAND --help`."""

import json
import re

from tests.scripts import ROOT, check, run_script

FOLDERS = ("stage2_visible_keypoints", "detection", "baselines", "bench", "keypose")
SCRIPTS = sorted(str(path.relative_to(ROOT)) for folder in FOLDERS for path in (ROOT / folder).rglob("*.py")
                 if "def main(" in path.read_text())


def _keypose_commands():
    from keypose.__main__ import COMMANDS

    return [f"keypose/__main__.py {part} {command}" for part, commands in COMMANDS.items() for command in commands]

# Scripts allowed to import Keras before parsing: none.
KERAS_AT_IMPORT = set()

# One process runs every script's --help with `import keras` and `import tensorflow`
# failing: a script that needs either before parsing fails here. Reports per script.
DRIVER = """
import contextlib, importlib.abc, io, json, runpy, sys, time
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tensorflow", "jax"):
            raise ImportError(f"{name} is blocked by the test")
sys.meta_path.insert(0, Block())
report = {}
for entry in sys.argv[1:]:
    script, *words = entry.split()  # "keypose/__main__.py ssd train": a command of keypose
    out, err, start = io.StringIO(), io.StringIO(), time.perf_counter()
    sys.argv, folder = [script, *words, "--help"], script.rsplit("/", 1)[0]
    sys.path.insert(0, folder)  # as `python bench/x.py` puts bench/ first
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(script, run_name="__main__")
        code = None
    except SystemExit as exit_:
        code = exit_.code
    except Exception as error:
        code, err = repr(error), io.StringIO(repr(error))
    finally:
        sys.path.remove(folder)
    report[entry] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
                      "seconds": time.perf_counter() - start}
print(json.dumps(report))
"""


def test_every_script_helps_without_keras_and_spells_shared_flags_alike():
    assert len(SCRIPTS) >= 25
    keypose = _keypose_commands()
    result = check(run_script("-c", DRIVER, *SCRIPTS, *keypose))
    assert result.stderr == ""  # no TensorFlow (or any other) start-up lines
    report = json.loads(result.stdout)
    failed = {script: r["stderr"][-300:] for script, r in report.items() if r["code"] != 0
              and script not in KERAS_AT_IMPORT}
    assert not failed, f"--help needs Keras or TensorFlow, or fails: {failed}"
    for script, r in report.items():
        if script in KERAS_AT_IMPORT:
            continue
        usage = r["stdout"]
        assert usage.startswith("usage:") and r["stderr"] == "", script
        assert not re.search(r"--out\b(?!put)", usage) or script.startswith("bench/"), \
            f"{script}: --out is spelled --output-dir"
        name = script.rsplit("/", 1)[-1]
        if name.startswith("use_"):
            for flag in ("--images", "--model", "--output-dir", "--quiet"):
                assert flag in usage, f"{script} has no {flag}"
        if "--seed" in usage and "train.seed" not in usage:
            assert re.search(r"--seed SEED\s+.*\(0\)", usage), f"{script}: --seed defaults to 0"
    # keypose lists every part and command, and each one's --help is its script's, under its keypose name.
    assert all(f"keypose {entry.split()[1]} {entry.split()[2]}" in report["keypose/__main__.py"]["stdout"]
               for entry in keypose)
    assert report["keypose/__main__.py ssd train"]["stdout"].startswith("usage: keypose ssd train [-h]")
    assert "--val-split NAME" in report["keypose/__main__.py baselines train"]["stdout"]
    # Without Keras, parsing is quick: the slowest --help (which pays for numpy, OpenCV
    # and the rest on first import) takes seconds at most even on a busy machine.
    assert max(r["seconds"] for r in report.values()) < 10, {s: round(r["seconds"], 2) for s, r in report.items()}
