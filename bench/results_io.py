"""One writer for every benchmark's result JSON, so each file says what ran, where, and on which code.

    from results_io import write_result          # bench/ is on the path when a bench script runs
    write_result(Path(args.output_dir) / "det_accuracy.json", result, args=args, argv=argv)

The file gets the result's own keys plus `run` (`run_metadata()`: command line, backend,
device, precision, cores, package versions, git commit) and `settings` (the resolved
settings: `settings` if given, else `vars(args)`). It is written atomically, so a killed
run leaves the previous file, not half of a new one.
"""

import datetime
import inspect
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata, util
from pathlib import Path

from common.data_io import save_json

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("keras", "tensorflow", "jax", "jaxlib", "numpy")


def _keras():
    """Keras if this process imported it, else None: a script that never loaded a backend
    (pure numpy) has none to report, and importing TensorFlow to say so costs seconds."""
    return sys.modules.get("keras")


def cpu_model():
    """The processor's marketing name ("AMD EPYC 7B13"); platform.processor() is often empty on Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name():
    """The device the active backend computes on: "gpu: NVIDIA H100 80GB HBM3" or "cpu: <model>".

    Asks the backend, not the configuration, so a GPU run cannot call itself CPU. TensorFlow
    is imported only under its own backend: under JAX it may be absent.
    """
    keras = _keras()
    backend = keras.backend.backend() if keras else None
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return f"{device.platform}: {getattr(device, 'device_kind', device)}"
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return "gpu: " + tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    return f"cpu: {cpu_model()}"


def package_versions():
    """Installed versions of the packages a result depends on; None for one not importable here."""
    versions = {}
    for name in PACKAGES:
        try:
            importable = util.find_spec(name) is not None
        except (ImportError, ValueError):  # a blocked import (the JAX-only tests) raises here
            importable = False
        try:
            versions[name] = metadata.version(name) if importable else None
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(path=REPO):
    """{"commit": sha, "dirty": bool} of the checkout holding `path`; None outside one (or without git).

    Dirty means tracked files differ from the commit; untracked files (outputs, caches) do not count.
    """
    def git(*args):
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def command_line(argv=None, script=None):
    """The command as a user would type it: `python bench/x.py --flag value`.

    argv None: this process's own command line. Otherwise `script` (a path) run with `argv`,
    as when a test or another script calls a bench's `main(argv)` in-process.
    """
    if argv is None:
        script, argv = sys.argv[0], sys.argv[1:]
    script = Path(script).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return shlex.join(["python", str(shown), *map(str, argv)])


def run_metadata(argv=None, script=None):
    """What a reader needs to trust a number: what ran, on what, with which code.

    `argv`/`script` as in `command_line`. `backend` and `precision` are None when the
    script never imported Keras.
    """
    keras = _keras()
    try:
        cpus_usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cpus_usable = os.cpu_count()
    return {
        "command": command_line(argv, script),
        "written_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "backend": keras.backend.backend() if keras else None,
        "device": device_name(),
        "precision": keras.config.dtype_policy().name if keras else None,
        "cpu_count": os.cpu_count(),
        "cpus_usable": cpus_usable,
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "git": git_state(),
    }


def write_result(path, result, args=None, settings=None, argv=None):
    """Write `result` (a dict) to `path` as JSON, atomically, with `run` and `settings` added.

    Args:
        path: the JSON file.
        result: the benchmark's measurements; no `run` key (nor `settings` when args or settings are given).
        args: the parsed `argparse.Namespace`; `vars(args)` is the settings when `settings` is None.
        settings: the resolved settings (e.g. the full config as a dict), when they are more than args.
        argv: the argument list the script's `main` got; None for this process's command line.
    Returns:
        `path` as a `Path`.
    """
    clashes = {"run"} | ({"settings"} if settings is not None or args is not None else set())
    if clashes & set(result):
        raise ValueError(f"result must not have the keys {sorted(clashes & set(result))}: write_result adds them")
    script = None
    if argv is not None:  # called in-process: the caller's file is the script that ran
        script = inspect.currentframe().f_back.f_code.co_filename
    record = {"run": run_metadata(argv, script)}  # first, so a reader sees it before the numbers
    if settings is not None or args is not None:
        record["settings"] = settings if settings is not None else vars(args)
    record.update(result)
    path = Path(path)
    save_json(path, record)
    return path
