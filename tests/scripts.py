"""Run the package's scripts in subprocesses, optionally as on the GPU machine:
Keras on JAX with TensorFlow made unimportable."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs a script with `import tensorflow` failing, as it does where TensorFlow is absent.
BLOCK_TENSORFLOW = """
import importlib.abc, runpy, sys
class BlockTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is blocked by the test")
sys.meta_path.insert(0, BlockTensorFlow())
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def run_script(script, *args, backend="tensorflow", block_tensorflow=False, cwd=ROOT, timeout=600,
               pythonpath=True):
    """Run `python script args...`; returns the CompletedProcess (text, not checked).

    pythonpath: put the repo root on PYTHONPATH; False leaves imports to the installed
    package (`pip install -e .`), as a user's shell does.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    if pythonpath:
        env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable]
    if block_tensorflow:
        command += ["-c", BLOCK_TENSORFLOW]
    command += [str(script), *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def check(result):
    """Assert success, showing the script's output when it failed."""
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    return result
