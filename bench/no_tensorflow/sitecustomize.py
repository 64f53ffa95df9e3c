"""Makes `import tensorflow` fail, as on the GPU machine (which has none), for the local
check of the bench/gpu_*.sh scripts: PYTHONPATH=bench/no_tensorflow:$PWD puts it first,
and Python imports it at start-up in every process, worker processes included."""

import importlib.abc
import sys


class BlockTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is blocked (bench/no_tensorflow: the GPU machine has no TensorFlow)")


sys.meta_path.insert(0, BlockTensorFlow())
