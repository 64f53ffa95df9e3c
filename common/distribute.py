"""Training on several devices or machines (`train.distribution`), with the engines Keras 3
supports, entered once around a part's `train_from_cache`:

    @distribute.distributed                      # the model, optimizer and metrics built in scope
    def train_from_cache(cfg, ...): ...

    none           one device (the default).
    data_parallel  every local device: `tf.distribute.MirroredStrategy` under TensorFlow (the
                   strategy splits each `tf.data` batch), `keras.distribution.DataParallel`
                   under JAX.
    multi_process  JAX only: `keras.distribution.initialize()` (coordinator address, process
                   count and id from --coordinator/--num-processes/--process-id or the
                   KERAS_DISTRIBUTION_* variables), then `DataParallel` over every process's
                   devices; each process reads its own rows of every batch. TensorFlow's
                   multi-worker strategy does not work with Keras 3 (keras-team/keras#20585).

The rules every mode keeps (`common.training` reads `current()`):
- `train.batch_size` is the batch of one replica (one device); an optimizer step sees the
  global batch, batch_size x replicas.
- The learning rate scales with the global batch (`train.lr_scaling`): linear (Goyal et al.
  2017, "Accurate, Large Minibatch SGD": learning_rate x replicas), sqrt (x sqrt(replicas),
  the rule for Adam-type optimizers of Malladi et al. 2022) or none. `learning_rate` is thus
  the rate for one replica's batch, and one device trains exactly as before.
- Under JAX each batch must split evenly over the replicas: a pass over the data uses a
  multiple of the replica count of images (at most replicas - 1 are left out of each pass,
  other ones each epoch when shuffling; of validation, the same ones every epoch).
- Process 0 alone writes checkpoints, history, plots and TensorBoard logs; every process
  resumes from its backup, so train.output_dir (and the cache) must be one shared path.
"""

import contextlib
import dataclasses
import functools
import math

import keras

from common.config import DISTRIBUTIONS as MODES, LR_SCALINGS  # noqa: F401  (checked by TrainingConfig)
from common.errors import DataError

UPSTREAM_ISSUE = "keras-team/keras#20585"
# What `keras.distribution.initialize` reads when its arguments are not given.
ENVIRONMENT = {"coordinator": "KERAS_DISTRIBUTION_JOB_ADDRESSES", "num_processes": "KERAS_DISTRIBUTION_NUM_PROCESSES",
               "process_id": "KERAS_DISTRIBUTION_PROCESS_ID"}


@dataclasses.dataclass(frozen=True)
class Replicas:
    """The active distribution. replicas: devices training on slices of every batch, in all
    processes; processes, process_index: this process among them; batch_multiple: every
    batch's size must be a multiple of it (JAX shards batches evenly; TensorFlow need not)."""

    mode: str = "none"
    replicas: int = 1
    processes: int = 1
    process_index: int = 0
    batch_multiple: int = 1

    @property
    def chief(self):
        """Whether this process writes the run's files (process 0)."""
        return self.process_index == 0

    def rows(self, batch_size):
        """This process's rows of a batch of `batch_size` (a multiple of `processes`)."""
        share = batch_size // self.processes
        return slice(self.process_index * share, (self.process_index + 1) * share)


_current = Replicas()
_initialized = False


def current():
    """The `Replicas` of the distribution entered by `scope` (one device outside it)."""
    return _current


def learning_rate_factor(rule, replicas):
    """How much the configured rate is multiplied by on `replicas` replicas (`train.lr_scaling`)."""
    return {"linear": float(replicas), "sqrt": math.sqrt(replicas), "none": 1.0}[rule]


_peers = {}


def set_peers(coordinator=None, num_processes=None, process_id=None):
    """Where a multi_process run finds its peers (the command-line flags); what is left None
    comes from the KERAS_DISTRIBUTION_* variables `keras.distribution.initialize` reads."""
    _peers.update(job_addresses=coordinator, num_processes=num_processes, process_id=process_id)


@contextlib.contextmanager
def scope(tc):
    """Enter `tc.distribution` (a TrainingConfig's) and yield its `Replicas`: build the model,
    optimizer and metrics, and fit, inside. A DataError when the mode cannot run here."""
    global _current
    mode = getattr(tc, "distribution", "none")
    if mode == "none" or _current.mode != "none":  # nested (a part's trainer calling another): the outer one holds
        yield _current
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        context, replicas = _tensorflow(mode)
    elif backend == "jax":
        context, replicas = _jax(mode)
    else:
        raise DataError(f"{mode} needs the tensorflow or jax backend, not {backend}", "train.distribution")
    with context:
        _current = replicas
        try:
            yield replicas
        finally:
            _current = Replicas()


def distributed(train_from_cache):
    """Run a part's `train_from_cache(cfg, ...)` inside `scope(cfg.train)`."""

    @functools.wraps(train_from_cache)
    def wrapper(cfg, *args, **kwargs):
        with scope(cfg.train):
            return train_from_cache(cfg, *args, **kwargs)

    return wrapper


def _tensorflow(mode):
    if mode == "multi_process":
        raise DataError(f"multi_process does not work with Keras 3 on TensorFlow ({UPSTREAM_ISSUE}: "
                        "MultiWorkerMirroredStrategy); run it with KERAS_BACKEND=jax", "train.distribution")
    import tensorflow as tf

    # Every GPU, else every (logical) CPU device: MirroredStrategy's own default takes one CPU.
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    return strategy.scope(), Replicas(mode, strategy.num_replicas_in_sync)


def _jax(mode):
    global _initialized
    import jax

    if mode == "multi_process" and not _initialized:
        # Collectives between processes on CPU go through gloo (XLA's default there is none);
        # GPUs use NCCL whatever this says.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            keras.distribution.initialize(**_peers)
        except (ValueError, RuntimeError) as err:
            raise DataError(f"multi_process could not start ({' '.join(str(err).split())[:300]}); give "
                            "--coordinator HOST:PORT --num-processes N --process-id I (or the "
                            f"{', '.join(ENVIRONMENT.values())} variables)", "train.distribution") from None
        _initialized = True
    devices = keras.distribution.list_devices()
    # Each process gives its own rows of every batch (common.training.ArrayBatches), so Keras
    # must not shard the data again.
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    replicas = Replicas(mode, len(devices), jax.process_count(), jax.process_index(), batch_multiple=len(devices))
    return distribution.scope(), replicas


@contextlib.contextmanager
def writing():
    """Around process 0's saves: saving creates Keras variables (a throwaway optimizer), and
    under a multi-process distribution creating one is a collective the other processes
    never join. The weights themselves are replicated, so any process can read them."""
    if _current.processes == 1:
        yield
        return
    held = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(held)


def agree(flag):
    """`flag` as process 0 has it, in every process (a wall-time stop must stop all of them)."""
    if _current.processes == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(bool(flag)))
