"""Training plumbing shared by every part: precision, input pipelines, callbacks.

The input pipeline only shuffles, slices and batches cached arrays: `tf.data` under
the TensorFlow backend, a `keras.utils.PyDataset` under JAX (where TensorFlow may be
absent). Targets and augmentation are `keras.ops` code inside the model and losses,
so both backends run the same maths on the device.
"""

import csv
import math
import os
import sys
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from common.data_io import atomic_path


def has_gpu():
    """Whether the active Keras backend sees a GPU."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if keras.backend.backend() == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    return False


def set_precision(policy="auto"):
    """Set the global dtype policy; "auto" = mixed on GPU (float16 under TF, bfloat16
    under JAX), float32 on CPU. Returns the policy name."""
    if policy == "auto":
        if has_gpu():
            policy = "mixed_float16" if keras.backend.backend() == "tensorflow" else "mixed_bfloat16"
        else:
            policy = "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def resolve_jit(setting):
    """Config string -> Keras' jit_compile argument ("auto" lets Keras choose: XLA is
    off on CPU-only TensorFlow, where compiling a ResNet-50 takes minutes)."""
    return {"auto": "auto", "true": True, "false": False}[setting]


def tensorflow_available():
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def make_batches(images, targets, indices, batch_size, shuffle, seed=0):
    """Batches of (images[idx], {name: array[idx]}) over `indices`.

    images: (N, H, W, 3) uint8, may be a memory map. targets: dict of (N, ...) arrays.
    Under TensorFlow a `tf.data.Dataset` (shuffle -> batch -> gather -> prefetch), else a
    `PyDataset`. Indices inside a batch are sorted, which makes memory-map reads sequential.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if keras.backend.backend() == "tensorflow":
        return _tf_dataset(images, targets, indices, batch_size, shuffle, seed)
    return ArrayBatches(images, targets, indices, batch_size, shuffle, seed)


def _tf_dataset(images, targets, indices, batch_size, shuffle, seed):
    import tensorflow as tf

    names = list(targets)
    arrays = [images] + [targets[name] for name in names]
    dtypes = [tf.as_dtype(a.dtype) for a in arrays]

    def gather(idx):
        idx = np.sort(idx)
        return [np.ascontiguousarray(a[idx]) for a in arrays]

    def fetch(idx):
        values = tf.numpy_function(gather, [idx], dtypes)
        for value, array in zip(values, arrays):
            value.set_shape((None,) + array.shape[1:])
        return values[0], dict(zip(names, values[1:]))

    ds = tf.data.Dataset.from_tensor_slices(indices)
    if shuffle:
        ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).map(fetch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class ArrayBatches(keras.utils.PyDataset):
    """The numpy batch iterator used where TensorFlow is absent (JAX backend)."""

    def __init__(self, images, targets, indices, batch_size, shuffle, seed=0):
        super().__init__()
        self.images, self.targets, self.indices = images, targets, indices
        self.batch_size, self.shuffle = batch_size, shuffle
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(indices) if shuffle else indices

    def __len__(self):
        return math.ceil(len(self.indices) / self.batch_size)

    def __getitem__(self, index):
        idx = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        return np.asarray(self.images[idx]), {name: np.asarray(a[idx]) for name, a in self.targets.items()}

    def on_epoch_end(self):
        if self.shuffle:
            self.order = self.rng.permutation(self.indices)


class BestModelCheckpoint(keras.callbacks.Callback):
    """Save the model whenever `monitor` improves, atomically (a kill never leaves a
    truncated `.keras` file). Keeps its best value across a BackupAndRestore resume
    by reading the CSV history if one is given."""

    def __init__(self, path, monitor="val_loss", history_csv=None):
        super().__init__()
        self.path, self.monitor = Path(path), monitor
        self.best = min(read_history(history_csv).get(monitor, [math.inf])) if history_csv else math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value < self.best:
            self.best = float(value)
            with atomic_path(self.path) as tmp:
                self.model.save(tmp)


class TqdmProgress(keras.callbacks.Callback):
    """One tqdm bar per epoch over its steps, with the running loss."""

    def __init__(self, epochs, steps, disable=False):
        super().__init__()
        self.epochs, self.steps, self.disable, self.bar = epochs, steps, disable, None

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step",
                        disable=self.disable, file=sys.stdout, leave=True)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4g}")

    def on_epoch_end(self, epoch, logs=None):
        shown = {k: f"{float(v):.4g}" for k, v in (logs or {}).items() if k.endswith(("loss", "error"))}
        self.bar.set_postfix(shown)
        self.bar.close()


class HistoryPlot(keras.callbacks.Callback):
    """Redraw the loss-curve PNG from the CSV history after every epoch."""

    def __init__(self, history_csv, path, title):
        super().__init__()
        self.history_csv, self.path, self.title = history_csv, path, title

    def on_epoch_end(self, epoch, logs=None):
        from common.plots import plot_history

        history = read_history(self.history_csv)
        history.pop("epoch", None)
        if history:
            plot_history(history, self.path, title=self.title)


class HeatmapImages(keras.callbacks.Callback):
    """TensorBoard images (TensorFlow only): each sample image beside the max over
    keypoints of its predicted heatmaps, every epoch."""

    def __init__(self, log_dir, images, output="heatmap_logits"):
        super().__init__()
        import tensorflow as tf

        self.tf, self.images, self.output = tf, np.asarray(images), output
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "images"))

    def on_epoch_end(self, epoch, logs=None):
        tf = self.tf
        logits = self.model(self.images, training=False)[self.output]
        peak = tf.reduce_max(tf.sigmoid(tf.cast(logits, tf.float32)), axis=-1, keepdims=True)
        size = self.images.shape[1:3]
        heat = tf.image.resize(tf.repeat(peak, 3, axis=-1), size, method="nearest")
        panel = tf.concat([tf.cast(self.images, tf.float32) / 255.0, heat], axis=2)
        with self.writer.as_default():
            tf.summary.image("image | max heatmap", panel, step=epoch, max_outputs=len(self.images))
        self.writer.flush()


def read_history(csv_path):
    """A CSV written by `keras.callbacks.CSVLogger` as {column: [floats]} ({} if absent)."""
    if csv_path is None or not Path(csv_path).is_file():
        return {}
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                pass
    return columns


def standard_callbacks(out_dir, monitor, epochs, steps, progress=True, title="Training",
                       backup_name="backup", tensorboard_images=None):
    """Checkpoint (best, atomic), resume (BackupAndRestore), CSV history + PNG curves,
    ReduceLROnPlateau, TerminateOnNaN, tqdm, and TensorBoard where TensorFlow is present.

    A run resumes when `out_dir/backup_name` exists (a run that did not finish); else it
    is a new run and starts a new history.
    """
    out_dir = Path(out_dir)
    history_csv = out_dir / "history.csv"
    backup_dir = out_dir / backup_name
    if not backup_dir.exists() and history_csv.exists():
        # A new run, not a resumed one: its best model and curves start afresh (the
        # earlier history is kept beside them).
        os.replace(history_csv, out_dir / "history_previous.csv")
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=3, min_lr=1e-7),
        BestModelCheckpoint(out_dir / "best.keras", monitor=monitor, history_csv=history_csv),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        HistoryPlot(history_csv, out_dir / "plots" / "loss_curves.png", title),
        TqdmProgress(epochs, steps, disable=not progress),
    ]
    if keras.backend.backend() == "tensorflow" and tensorflow_available():
        callbacks.append(keras.callbacks.TensorBoard(str(out_dir / "logs"), update_freq="epoch"))
        if tensorboard_images is not None and len(tensorboard_images):
            callbacks.append(HeatmapImages(out_dir / "logs", tensorboard_images))
    # Last, so an epoch counts as done only after its checkpoint and CSV row are written;
    # two alternating copies, so a kill while backing up leaves the previous one readable.
    callbacks.append(keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True))
    return callbacks


def split_indices(count, validation_split, seed):
    """Seeded shuffle of range(count); the last `validation_split` share (at least one
    image, and never all) is validation. Returns (train indices, validation indices)."""
    order = np.random.default_rng(seed).permutation(count)
    n_val = int(round(count * validation_split))
    if validation_split > 0 and count > 1:
        n_val = min(max(n_val, 1), count - 1)
    return order[:count - n_val], order[count - n_val:]
