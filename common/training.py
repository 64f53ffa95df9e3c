"""The one training driver every part and every benchmark calls, and its plumbing:
precision, the learning-rate schedule, input pipelines, callbacks, resume.

    policy = start_run(tc)                        # seed + precision, before the model is built
    plan = plan_run(tc, len(train_indices))       # steps per epoch, epochs (or an image budget)
    model.compile(optimizer=make_optimizer(tc, plan), loss=...)
    summary = train(model, train_data, val_data, tc, out_dir, plan)

The input pipeline only shuffles, slices and batches cached arrays: `tf.data` under
the TensorFlow backend, a `keras.utils.PyDataset` under JAX (where TensorFlow may be
absent). Targets and augmentation are `keras.ops` code inside the model and losses,
so both backends run the same maths on the device.
"""

import contextlib
import csv
import dataclasses
import math
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from common import distribute
from common.data_io import atomic_path, exclusive_folder, load_json, remove_temps, save_json


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


def make_batches(images, targets, indices, batch_size, shuffle, seed=0, repeat=False, steps=None):
    """Batches of (images[idx], {name: array[idx]}) over `indices`.

    images: (N, H, W, 3) uint8, may be a memory map. targets: dict of (N, ...) arrays.
    Under TensorFlow a `tf.data.Dataset` (shuffle -> batch -> gather -> prefetch), else a
    `PyDataset`. Indices inside a batch are sorted, which makes memory-map reads sequential.
    repeat: an endless stream of whole batches, pass after pass (each pass reshuffled), for
    epochs that are not passes (`train.epoch_images`) of `steps` batches each.
    Inside `common.distribute.scope` batch_size is one replica's: the batches are global
    (MirroredStrategy splits them), or this process's rows of them (`ArrayBatches`).
    """
    indices = np.asarray(indices, dtype=np.int64)
    if keras.backend.backend() == "tensorflow":
        return _tf_dataset(images, targets, indices, batch_size * distribute.current().replicas, shuffle, seed,
                           repeat)
    return ArrayBatches(images, targets, indices, batch_size, shuffle, seed, repeat=repeat, steps=steps)


def _tf_dataset(images, targets, indices, batch_size, shuffle, seed, repeat=False):
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
    if shuffle:  # (MirroredStrategy rebuilds the pipeline it distributes: another order for the same seed)
        ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=repeat)  # a stream: whole batches, one compiled step shape
    return ds.map(fetch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class ArrayBatches(keras.utils.PyDataset):
    """The numpy batch iterator used where TensorFlow is absent (JAX backend).

    repeat=False: one pass over `indices` per epoch. repeat=True: `steps` whole batches per
    epoch from an endless stream of passes (a fresh permutation each pass when shuffling).
    Inside `common.distribute.scope` batch_size is one replica's; every process draws the
    same global batches (same seed) and reads only its own rows of each, and a pass keeps a
    multiple of the replica count of images (JAX splits every batch evenly).
    """

    def __init__(self, images, targets, indices, batch_size, shuffle, seed=0, repeat=False, steps=None):
        super().__init__()
        self.images, self.targets, self.indices = images, targets, np.asarray(indices, dtype=np.int64)
        self.replicas = distribute.current()
        batch_size *= self.replicas.replicas  # the global batch
        self.batch_size, self.shuffle, self.repeat = batch_size, shuffle, repeat
        self.steps = steps or max(1, len(self.indices) // batch_size)
        self.rng = np.random.default_rng(seed)
        self._pending = np.empty(0, dtype=np.int64)
        self.order = self._next_order()

    def _next_order(self):
        if not self.repeat:
            order = self.rng.permutation(self.indices) if self.shuffle else self.indices
            return order[:len(order) - len(order) % self.replicas.batch_multiple]
        wanted = self.steps * self.batch_size
        while len(self._pending) < wanted:
            one_pass = self.rng.permutation(self.indices) if self.shuffle else self.indices
            self._pending = np.concatenate([self._pending, one_pass])
        order, self._pending = self._pending[:wanted], self._pending[wanted:]
        return order

    def __len__(self):
        return self.steps if self.repeat else math.ceil(len(self.order) / self.batch_size)

    def global_rows(self, index):
        """(images in global batch `index`, this process's rows of it: a slice)."""
        count = len(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        return count, self.replicas.rows(count)

    def batch_indices(self, index):
        """The cache rows this process reads for batch `index`: its share of the global batch
        in sorted order (sorted first, so that one process reading the whole batch pairs images
        with per-image random draws as several processes do: `global_rows`)."""
        count, rows = self.global_rows(index)
        return np.sort(self.order[index * self.batch_size:index * self.batch_size + count])[rows]

    def __getitem__(self, index):
        idx = self.batch_indices(index)
        return np.asarray(self.images[idx]), {name: np.asarray(a[idx]) for name, a in self.targets.items()}

    def on_epoch_end(self):
        if self.shuffle or self.repeat:
            self.order = self._next_order()


class BestModelCheckpoint(keras.callbacks.Callback):
    """Save the model whenever `monitor` improves, atomically (a kill never leaves a
    truncated `.keras` file). Keeps its best value across a resumed run
    by reading the CSV history if one is given."""

    def __init__(self, path, monitor="val_loss", history_csv=None):
        super().__init__()
        self.path, self.monitor = Path(path), monitor
        self.best = min(read_history(history_csv).get(monitor) or [math.inf]) if history_csv else math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value < self.best:
            self.best = float(value)
            with atomic_path(self.path) as tmp, distribute.writing():
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
    keypoints of its predicted heatmaps, every epoch. output: the model output shown;
    logits: whether it holds logits (a sigmoid is applied) or probabilities."""

    def __init__(self, log_dir, images, output="heatmap_logits", logits=True):
        super().__init__()
        import tensorflow as tf

        self.tf, self.images, self.output, self.logits = tf, np.asarray(images), output, logits
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "images"))

    def on_epoch_end(self, epoch, logs=None):
        tf = self.tf
        maps = tf.cast(self.model(self.images, training=False)[self.output], tf.float32)
        peak = tf.reduce_max(tf.sigmoid(maps) if self.logits else maps, axis=-1, keepdims=True)
        size = self.images.shape[1:3]
        heat = tf.image.resize(tf.repeat(peak, 3, axis=-1), size, method="nearest")
        panel = tf.concat([tf.cast(self.images, tf.float32) / 255.0, heat], axis=2)
        with self.writer.as_default():
            tf.summary.image("image | max heatmap", panel, step=epoch, max_outputs=len(self.images))
        self.writer.flush()


class TimeBudget(keras.callbacks.Callback):
    """Stop after the first epoch that ends past `seconds` of training (`train.budget_minutes`)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.start = seconds, None

    def on_train_begin(self, logs=None):
        self.start = self.start or time.perf_counter()  # a later segment keeps the first one's clock

    def on_epoch_end(self, epoch, logs=None):
        if distribute.agree(time.perf_counter() - self.start >= self.seconds):  # process 0's clock decides for all
            self.model.stop_training = True


class EpochBackup(keras.callbacks.Callback):
    """The run's resume point: after every epoch, the weights with the optimizer's state
    (`save_weights` keeps both) and the number of epochs done, in `backup_dir`.

    Each epoch's weights go to a new file first; `state.json`, rewritten atomically after
    it, names the file to resume from, so a kill at any moment leaves a consistent pair.
    Uses only public Keras API: `restore` passes the epoch to `fit(initial_epoch=...)`.
    """

    STATE = "state.json"

    def __init__(self, backup_dir):
        super().__init__()
        self.backup_dir = Path(backup_dir)

    def on_epoch_end(self, epoch, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch_{epoch + 1}.weights.h5"
        tmp = self.backup_dir / f".{name}.tmp.weights.h5"  # Keras wants the .weights.h5 suffix
        with distribute.writing():
            self.model.save_weights(tmp)
        os.replace(tmp, self.backup_dir / name)
        save_json(self.backup_dir / self.STATE, {"epoch": epoch + 1, "weights": name})
        for old in self.backup_dir.glob("*.weights.h5"):
            if old.name != name:
                old.unlink()

    @classmethod
    def epochs_done(cls, backup_dir):
        """Epochs finished by the interrupted run in `backup_dir` (0: none to resume)."""
        state = Path(backup_dir) / cls.STATE
        return int(load_json(state)["epoch"]) if state.is_file() else 0

    @classmethod
    def restore(cls, model, backup_dir):
        """Load the backed-up weights and optimizer state into the compiled `model`;
        returns the epoch to resume from (0 when there is no backup)."""
        state = Path(backup_dir) / cls.STATE
        if not state.is_file():
            return 0
        state = load_json(state)
        if not model.optimizer.built:  # its slots must exist before their values load
            model.optimizer.build(model.trainable_variables)
        model.load_weights(Path(backup_dir) / state["weights"])
        return int(state["epoch"])


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


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long a run is: `epochs` of `steps_per_epoch` batches. repeat: the training data
    is a stream of whole batches (an epoch is not one pass; `make_batches(repeat=True)`).
    batch_size: the global batch of one optimizer step, over `replicas` devices."""

    steps_per_epoch: int
    epochs: int
    repeat: bool
    batch_size: int
    replicas: int = 1

    @property
    def total_steps(self):
        return self.steps_per_epoch * self.epochs

    @property
    def images_per_epoch(self):
        return self.steps_per_epoch * self.batch_size


def plan_run(tc, train_count, max_steps=0):
    """The `Plan` of a run over `train_count` training images under TrainingConfig `tc`.

    One pass per epoch by default; `tc.epoch_images` epochs of that many images (whole
    batches); `tc.budget_images` sets the number of epochs from images seen instead of
    `tc.epochs`. max_steps caps the batches of an epoch (smoke tests). Inside
    `common.distribute.scope` a batch is tc.batch_size per replica, and a pass under JAX
    keeps a multiple of the replica count of images (`ArrayBatches`).
    """
    if train_count < 1:
        raise ValueError("no training images")
    replicas = distribute.current()
    batch = tc.batch_size * replicas.replicas
    if train_count < replicas.batch_multiple:
        raise ValueError(f"{train_count} training images cannot give each of {replicas.replicas} replicas one")
    train_count -= train_count % replicas.batch_multiple
    repeat = bool(tc.epoch_images)
    steps = math.ceil((tc.epoch_images if repeat else train_count) / batch)
    if max_steps:
        steps = min(steps, max_steps)
    per_epoch = steps * batch if repeat or max_steps else train_count
    epochs = math.ceil(tc.budget_images / per_epoch) if tc.budget_images else tc.epochs
    return Plan(steps_per_epoch=max(steps, 1), epochs=max(epochs, 1), repeat=repeat, batch_size=batch,
                replicas=replicas.replicas)


def start_run(tc):
    """Seed everything and set the precision policy, before the model is built; the policy."""
    keras.utils.set_random_seed(tc.seed)
    return set_precision(tc.precision)


def learning_rate_schedule(tc, plan, learning_rate=None):
    """`tc.lr_schedule` over the run's optimizer steps (see `common.config.TrainingConfig`);
    the rate scales with the plan's replicas by `tc.lr_scaling` (`common.distribute`)."""
    rate = tc.learning_rate if learning_rate is None else learning_rate
    rate *= distribute.learning_rate_factor(tc.lr_scaling, plan.replicas)
    # At most a tenth of the run: a warm-up sized for long runs (the detector's 100 steps) would
    # otherwise fill a short one, which then ends at its peak rate with no decay at all.
    warmup = min(tc.warmup_steps, plan.total_steps // 10)
    schedules = keras.optimizers.schedules
    if tc.lr_schedule == "cosine":
        if not warmup:
            return schedules.CosineDecay(rate, decay_steps=plan.total_steps, alpha=tc.lr_floor)
        return schedules.CosineDecay(0.1 * rate, decay_steps=max(plan.total_steps - warmup, 1), alpha=tc.lr_floor,
                                     warmup_target=rate, warmup_steps=warmup)
    if tc.lr_schedule == "step":
        return schedules.ExponentialDecay(rate, decay_steps=max(1, tc.lr_step_epochs * plan.steps_per_epoch),
                                          decay_rate=tc.lr_gamma, staircase=True)
    if tc.lr_schedule == "constant" and warmup:  # a cosine with alpha = 1 is flat after its warm-up
        return schedules.CosineDecay(0.1 * rate, decay_steps=1, alpha=1.0, warmup_target=rate, warmup_steps=warmup)
    return float(rate)  # constant, or plateau (ReduceLROnPlateau sets a plain rate)


def make_optimizer(tc, plan, learning_rate=None):
    """`tc.optimizer` with the run's learning-rate schedule (and clipnorm, weight decay)."""
    rate = learning_rate_schedule(tc, plan, learning_rate)
    clip = {"clipnorm": tc.clipnorm} if tc.clipnorm else {}
    if tc.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=tc.momentum, weight_decay=tc.weight_decay or None, **clip)
    if tc.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=tc.weight_decay, **clip)
    return keras.optimizers.Adam(rate, weight_decay=tc.weight_decay or None, **clip)


def train(model, train_data, val_data, tc, out_dir, plan, *, progress=True, title="Training", callbacks=(),
          tensorboard_images=None, segments=None, train_count=None, val_count=0, tensorboard=True):
    """Fit a compiled `model` as TrainingConfig `tc` and `plan` say; the one driver of the package.

    train_data / val_data: from `make_batches` (val_data may be None: the training loss is
    then monitored). Writes into out_dir: best.keras (best monitored loss, atomic),
    model.keras (last), history.csv, plots/loss_curves.png, training_log.json, logs/
    (TensorBoard, TensorFlow backend) and backup/ while the run is unfinished: calling
    `train` again with the same config resumes after the last finished epoch.
    callbacks: extra Keras callbacks (evaluations, stopping rules), run before the checkpoint,
    history and backup, so metrics they add to the logs are monitored and recorded.
    tensorboard: write TensorBoard logs (TensorFlow backend); tensorboard_images: (images,
    output name, logits?) shown there each epoch.
    segments: [(first epoch, end epoch, compile(model))], e.g. one loss per segment of a
    sigma curriculum; the default is one segment with the model as compiled.
    Inside `common.distribute.scope` only process 0 writes files; every process resumes
    from the same backup (out_dir is a path all processes share).
    """
    out_dir = Path(out_dir)
    # Locked while it trains: a second run there is refused, and the temporary files of a
    # killed one (best.keras, model.keras, the loss plot) are removed.
    # Under a multi-process distribution process 0 holds it; the others write nothing there.
    chief = distribute.current().chief
    with exclusive_folder(out_dir, "a training run") if chief else contextlib.nullcontext():
        if chief:
            remove_temps(out_dir / "plots")  # (backup/ replaces its own: `EpochBackup`)
        return _train(model, train_data, val_data, tc, out_dir, plan, progress=progress, title=title,
                      callbacks=callbacks, tensorboard_images=tensorboard_images, segments=segments,
                      train_count=train_count, val_count=val_count, tensorboard=tensorboard)


def _train(model, train_data, val_data, tc, out_dir, plan, *, progress, title, callbacks, tensorboard_images,
           segments, train_count, val_count, tensorboard):
    history_csv, backup_dir = out_dir / "history.csv", out_dir / "backup"
    replicas = distribute.current()
    chief = replicas.chief
    resumed_from = EpochBackup.epochs_done(backup_dir)
    if chief and resumed_from:  # rows past the backup (a kill between the CSV row and the backup) go
        _truncate_history(history_csv, resumed_from)
    elif chief and history_csv.exists():  # a new run: its best model and curves start afresh, the old history kept
        os.replace(history_csv, out_dir / "history_previous.csv")
    monitor = "val_loss" if val_data is not None else "loss"
    standard = [keras.callbacks.TerminateOnNaN()]
    if tc.lr_schedule == "plateau":
        standard.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=3, min_lr=1e-7))
    if tc.budget_minutes:
        standard.append(TimeBudget(60 * tc.budget_minutes))
    standard += list(callbacks)  # before the checkpoint and history: what they add to the logs is saved
    if chief:  # the other processes hold the same (replicated) weights and logs: one writer
        standard += [
            BestModelCheckpoint(out_dir / "best.keras", monitor=monitor, history_csv=history_csv),
            keras.callbacks.CSVLogger(str(history_csv), append=True),
            HistoryPlot(history_csv, out_dir / "plots" / "loss_curves.png", title),
        ]
    standard.append(TqdmProgress(plan.epochs, plan.steps_per_epoch, disable=not (progress and chief)))
    if chief and tensorboard and keras.backend.backend() == "tensorflow" and tensorflow_available():
        standard.append(keras.callbacks.TensorBoard(str(out_dir / "logs"), update_freq="epoch"))
        if tensorboard_images is not None and len(tensorboard_images[0]):
            standard.append(HeatmapImages(out_dir / "logs", *tensorboard_images))
    # Last, so an epoch counts as done only after its checkpoint and CSV row are written.
    all_callbacks = standard + ([EpochBackup(backup_dir)] if chief else [])

    segments = segments or [(0, plan.epochs, None)]
    initial_epoch, history, start = None, {}, time.perf_counter()
    steps = plan.steps_per_epoch if plan.repeat or plan.steps_per_epoch != _length(train_data) else None
    for first, end, compile_segment in segments:
        if end <= resumed_from:
            continue
        if compile_segment is not None:
            compile_segment(model)
        if initial_epoch is None:  # the first segment run: the optimizer exists, the backup can load
            initial_epoch = EpochBackup.restore(model, backup_dir)
        result = model.fit(train_data, validation_data=val_data, initial_epoch=max(first, initial_epoch),
                           epochs=end, steps_per_epoch=steps, callbacks=all_callbacks, shuffle=False, verbose=0)
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        if model.stop_training:  # a time budget or NaN ends the whole run, not just the segment
            break
    if initial_epoch is None:  # killed after its last epoch, before the final save: the backup is the model
        if segments[-1][2] is not None:
            segments[-1][2](model)
        EpochBackup.restore(model, backup_dir)
    seconds = time.perf_counter() - start
    if chief:
        with atomic_path(out_dir / "model.keras") as tmp, distribute.writing():
            model.save(tmp)
        shutil.rmtree(backup_dir, ignore_errors=True)  # finished: the next call starts a new run
    epochs_run = len(history.get("loss", []))
    per_epoch = plan.images_per_epoch if plan.repeat else min(train_count or 0, plan.images_per_epoch)
    images = epochs_run * per_epoch
    summary = {"output_dir": str(out_dir), "policy": keras.mixed_precision.global_policy().name,
               "backend": keras.backend.backend(), "train_images": train_count, "val_images": val_count,
               "epochs_run": epochs_run, "epochs_done": resumed_from + epochs_run, "epochs_planned": plan.epochs,
               "steps_per_epoch": plan.steps_per_epoch, "images_seen": images, "seconds": round(seconds, 1),
               "images_per_second": round(images / seconds, 2) if seconds > 0 else None,
               "parameters": int(model.count_params()),
               "distribution": {"mode": replicas.mode, "replicas": replicas.replicas,
                                "processes": replicas.processes, "global_batch": plan.batch_size,
                                "learning_rate_factor": distribute.learning_rate_factor(tc.lr_scaling, plan.replicas)},
               "last": {k: v[-1] for k, v in history.items() if v}, "history": history}
    if chief:
        save_json(out_dir / "training_log.json", summary)
    return summary


def _length(data):
    try:
        return len(data)
    except TypeError:  # tf.data with unknown cardinality
        return None


def _truncate_history(history_csv, epochs):
    """Keep the rows of the first `epochs` epochs of a CSV history (rows after a backup are redone)."""
    if not history_csv.is_file():
        return
    with open(history_csv, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    column = header.index("epoch") if "epoch" in header else None
    kept = [r for r in body if column is None or (r and r[column].isdigit() and int(r[column]) < epochs)]
    if len(kept) != len(body):
        with atomic_path(history_csv) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header] + kept)


def split_indices(count, validation_split, seed):
    """Seeded shuffle of range(count); the last `validation_split` share (at least one
    image, and never all) is validation. Returns (train indices, validation indices)."""
    order = np.random.default_rng(seed).permutation(count)
    n_val = int(round(count * validation_split))
    if validation_split > 0 and count > 1:
        n_val = min(max(n_val, 1), count - 1)
    return order[:count - n_val], order[count - n_val:]


def train_val_indices(count, tc, val_count=None):
    """(train indices, validation indices) of a run: with a separate validation split
    (`train.val_split`, of `val_count` images) every one of the `count` training images
    and every validation image, else `split_indices` of the training split."""
    if val_count is not None:
        return np.arange(count), np.arange(val_count)
    return split_indices(count, tc.validation_split, tc.seed)
