"""Input pipeline and callbacks (TensorFlow backend here;
the JAX path runs in tests/stage2/test_scripts_e2e.py)."""

import math

import keras
import numpy as np
import pytest

from common.backbones import has_pretrained_weights, resnet50_pyramid
from common.errors import DataError
from common.training import ArrayBatches, BestModelCheckpoint, make_batches, read_history, set_precision
from tests.harness import StopAtEpoch


def _arrays(n=10):
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    targets = {"kp": np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)}
    return images, targets


@pytest.mark.parametrize("kind", ["backend", "pydataset"])
def test_batches_cover_the_indices_once_with_matching_targets(kind):
    images, targets = _arrays()
    indices = [7, 1, 3, 9, 0, 4, 2]
    if kind == "backend":
        batches = list(make_batches(images, targets, indices, batch_size=3, shuffle=True, seed=1))
    else:
        ds = ArrayBatches(images, targets, np.array(indices), batch_size=3, shuffle=True, seed=1)
        batches = [ds[i] for i in range(len(ds))]
    assert [len(np.asarray(x)) for x, _ in batches] == [3, 3, 1]
    seen = []
    for x, y in batches:
        x, kp = np.asarray(x), np.asarray(y["kp"])
        assert x.dtype == np.uint8
        np.testing.assert_array_equal(x[:, 0, 0, 0].astype(np.float32), kp[:, 0])  # image i goes with target i
        seen += x[:, 0, 0, 0].tolist()
    assert sorted(seen) == sorted(indices)


def test_array_batches_reshuffle_each_epoch():
    images, targets = _arrays(50)
    ds = ArrayBatches(images, targets, np.arange(50), batch_size=50, shuffle=True, seed=0)
    first = ds.order.copy()
    ds.on_epoch_end()
    assert sorted(ds.order) == list(range(50)) and not np.array_equal(first, ds.order)


def test_best_checkpoint_saves_only_improvements_atomically(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    callback = BestModelCheckpoint(tmp_path / "best.keras", monitor="val_loss")
    callback.set_model(model)
    callback.on_epoch_end(0, {"val_loss": 2.0})
    first = (tmp_path / "best.keras").stat().st_mtime_ns
    callback.on_epoch_end(1, {"val_loss": 3.0})
    assert (tmp_path / "best.keras").stat().st_mtime_ns == first and callback.best == 2.0
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]


def test_best_checkpoint_remembers_the_best_of_a_resumed_run(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n0,3.0,1.5\n1,2.0,1.25\n")
    assert read_history(tmp_path / "history.csv")["val_loss"] == [1.5, 1.25]
    assert BestModelCheckpoint(tmp_path / "b.keras", history_csv=tmp_path / "history.csv").best == 1.25


def test_precision_auto_is_float32_without_a_gpu():
    try:
        assert set_precision("auto") == "float32"
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_backbone_weights_errors_are_clear(tmp_path):
    assert not has_pretrained_weights("none") and has_pretrained_weights("imagenet")
    with pytest.raises(DataError, match="weights file not found"):
        resnet50_pyramid((64, 64, 3), weights=str(tmp_path / "missing.h5"))


def test_backbone_pyramid_strides():
    backbone = resnet50_pyramid((64, 64, 3), weights="none")
    shapes = [tuple(t.shape[1:]) for t in backbone.outputs]
    assert shapes == [(32, 32, 64), (16, 16, 256), (8, 8, 512), (4, 4, 1024), (2, 2, 2048)]
    assert math.prod(shapes[-1][:2]) == 4


def test_backbone_loads_a_local_weights_file(tmp_path):
    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    source.save_weights(tmp_path / "resnet50.weights.h5")
    backbone = resnet50_pyramid((64, 64, 3), weights=str(tmp_path / "resnet50.weights.h5"))
    np.testing.assert_array_equal(backbone.get_layer("conv1_conv").get_weights()[0],
                                  source.get_layer("conv1_conv").get_weights()[0])


def test_imagenet_offline_fails_with_a_clear_message(tmp_path):
    import os
    import subprocess
    import sys

    code = ("from common.backbones import resnet50_pyramid\n"
            "from common.errors import DataError\n"
            "try:\n    resnet50_pyramid((64, 64, 3), weights='imagenet')\n"
            "except DataError as err:\n    print('DataError', err)\n")
    # The download fails on purpose, network or not: an empty Keras cache, and every URL
    # sent through a proxy that refuses connections (port 9, discard).
    proxy = "http://127.0.0.1:9"
    env = {key: value for key, value in os.environ.items() if key.lower() != "no_proxy"}
    env.update(KERAS_HOME=str(tmp_path / "keras_home"), HTTP_PROXY=proxy, HTTPS_PROXY=proxy, ALL_PROXY=proxy,
               http_proxy=proxy, https_proxy=proxy, all_proxy=proxy)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "DataError" in out.stdout, out.stdout + out.stderr[-2000:]
    assert "--weights PATH" in out.stdout and "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in out.stdout


def _tiny_run(tmp_path, epochs=3, **settings):
    """A Dense model on 8 fixed samples, unshuffled: a run whose weights are a function of
    the epochs trained and the optimizer state alone."""
    from common.config import TrainingConfig
    from common.training import make_optimizer, plan_run, start_run

    tc = TrainingConfig(output_dir=str(tmp_path), epochs=epochs, batch_size=4, learning_rate=0.05,
                        lr_schedule="constant", validation_split=0.0, **settings)
    start_run(tc)
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(8, 2)
    y = {"out": (x @ np.array([[2.0], [-1.0]], np.float32)) + 0.5}
    plan = plan_run(tc, 8)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, {"out": keras.layers.Dense(1, name="out")(inputs)})
    model.compile(optimizer=make_optimizer(tc, plan), loss={"out": "mse"})
    data = ArrayBatches(x, y, np.arange(8), tc.batch_size, shuffle=False, repeat=plan.repeat,
                        steps=plan.steps_per_epoch)
    return model, data, tc, plan


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    from common.training import train

    model, data, tc, plan = _tiny_run(tmp_path / "whole")
    train(model, data, None, tc, tmp_path / "whole", plan, progress=False)
    expected = model.get_weights()

    model, data, tc, plan = _tiny_run(tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        train(model, data, None, tc, tmp_path / "killed", plan, progress=False, callbacks=[StopAtEpoch(2)])
    assert (tmp_path / "killed" / "backup" / "state.json").is_file()
    model, data, tc, plan = _tiny_run(tmp_path / "killed")  # a new process: fresh weights
    summary = train(model, data, None, tc, tmp_path / "killed", plan, progress=False)
    assert summary["epochs_run"] == 1 and summary["epochs_done"] == 3
    for got, want in zip(model.get_weights(), expected):  # Adam's moments came back too
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert read_history(tmp_path / "killed" / "history.csv")["epoch"] == [0.0, 1.0, 2.0]
    assert not (tmp_path / "killed" / "backup").exists()


class _KillBeforeTheFinalSave(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        raise KeyboardInterrupt


def test_a_run_killed_after_its_last_epoch_saves_the_backed_up_model(tmp_path):
    from common.training import train

    model, data, tc, plan = _tiny_run(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        train(model, data, None, tc, tmp_path, plan, progress=False, callbacks=[_KillBeforeTheFinalSave()])
    expected = model.get_weights()
    model, data, tc, plan = _tiny_run(tmp_path)  # a new process: fresh weights, nothing left to train
    summary = train(model, data, None, tc, tmp_path, plan, progress=False)
    assert summary["epochs_run"] == 0 and summary["epochs_done"] == 3
    saved = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    for got, want in zip(saved.get_weights(), expected):
        np.testing.assert_allclose(got, want)


def test_history_rows_after_the_backup_are_dropped_on_resume(tmp_path):
    from common.training import EpochBackup, train

    model, data, tc, plan = _tiny_run(tmp_path, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train(model, data, None, tc, tmp_path, plan, progress=False, callbacks=[StopAtEpoch(2)])
    # A kill between epoch 1's CSV row and its backup: the row is there, the backup says 1 epoch.
    with open(tmp_path / "history.csv", "a") as f:
        f.write("1,9.0\n")
    state = tmp_path / "backup" / EpochBackup.STATE
    state.write_text(state.read_text().replace('"epoch": 2', '"epoch": 1'))
    model, data, tc, plan = _tiny_run(tmp_path, epochs=3)
    train(model, data, None, tc, tmp_path, plan, progress=False)
    assert read_history(tmp_path / "history.csv")["epoch"] == [0.0, 1.0, 2.0]


def test_a_new_run_starts_a_new_history(tmp_path):
    from common.training import train

    (tmp_path / "history.csv").write_text("epoch,loss\n0,3.0\n")  # a finished earlier run
    model, data, tc, plan = _tiny_run(tmp_path, epochs=1)
    train(model, data, None, tc, tmp_path, plan, progress=False)
    assert (tmp_path / "history_previous.csv").read_text() == "epoch,loss\n0,3.0\n"
    assert read_history(tmp_path / "history.csv")["epoch"] == [0.0]
    assert BestModelCheckpoint(tmp_path / "b.keras", "loss", history_csv=tmp_path / "history.csv").best < 3.0


def test_an_image_budget_sets_the_epochs_and_epoch_images_the_steps():
    from common.config import TrainingConfig
    from common.training import plan_run

    plan = plan_run(TrainingConfig(batch_size=8, epochs=5), 100)
    assert (plan.steps_per_epoch, plan.epochs, plan.repeat) == (13, 5, False)  # 12 whole batches + 4
    plan = plan_run(TrainingConfig(batch_size=8, budget_images=250), 100)
    assert (plan.steps_per_epoch, plan.epochs) == (13, 3)  # 3 passes cover 250 images
    plan = plan_run(TrainingConfig(batch_size=8, epoch_images=30, budget_images=100), 1000)
    assert (plan.steps_per_epoch, plan.epochs, plan.repeat, plan.images_per_epoch) == (4, 4, True, 32)
    assert plan_run(TrainingConfig(batch_size=8, epochs=2), 100, max_steps=3).steps_per_epoch == 3


def test_schedules_follow_the_optimizer_steps():
    from common.config import TrainingConfig
    from common.training import learning_rate_schedule, plan_run

    plan = plan_run(TrainingConfig(batch_size=10, epochs=10), 100)  # 10 steps an epoch, 100 in all
    cosine = learning_rate_schedule(TrainingConfig(learning_rate=1.0, lr_schedule="cosine", warmup_steps=10), plan)
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(5)) == pytest.approx(0.55)  # warm-up
    assert float(cosine(10)) == pytest.approx(1.0) and float(cosine(100)) == pytest.approx(0.01)
    step = learning_rate_schedule(TrainingConfig(learning_rate=1.0, lr_schedule="step", lr_step_epochs=3,
                                                 lr_gamma=0.5), plan)
    assert [float(step(s)) for s in (0, 29, 30, 60)] == pytest.approx([1.0, 1.0, 0.5, 0.25])
    flat = learning_rate_schedule(TrainingConfig(learning_rate=1.0, lr_schedule="constant", warmup_steps=4), plan)
    assert [float(flat(s)) for s in (0, 2, 4, 90)] == pytest.approx([0.1, 0.55, 1.0, 1.0])
    with pytest.raises(ValueError, match="warmup_steps works with"):
        TrainingConfig(lr_schedule="plateau", warmup_steps=5)


def test_a_warm_up_longer_than_a_tenth_of_the_run_is_cut_to_it():
    # The detector's 100 warm-up steps filled the whole of an 8-epoch, 96-step run: its rate
    # rose to the end and never decayed (stage 1 on SPEED-like renders, bench/README.md).
    from common.config import TrainingConfig
    from common.training import learning_rate_schedule, plan_run

    plan = plan_run(TrainingConfig(batch_size=30, epochs=8), 360)  # 12 steps an epoch, 96 in all
    cosine = learning_rate_schedule(TrainingConfig(learning_rate=1.0, lr_schedule="cosine", warmup_steps=100), plan)
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(9)) == pytest.approx(1.0)  # 9 warm-up steps
    assert float(cosine(96)) == pytest.approx(0.01)  # and the decay to the floor after them


@pytest.mark.parametrize("kind", ["backend", "pydataset"])
def test_a_repeating_stream_gives_whole_batches_and_every_image_each_pass(kind):
    images, targets = _arrays(10)
    if kind == "backend":
        stream = make_batches(images, targets, np.arange(10), batch_size=4, shuffle=True, seed=2, repeat=True)
        batches = [b for _, b in zip(range(5), stream)]
    else:
        ds = ArrayBatches(images, targets, np.arange(10), batch_size=4, shuffle=True, seed=2, repeat=True, steps=5)
        batches = [ds[i] for i in range(len(ds))]
    seen = np.concatenate([np.asarray(x)[:, 0, 0, 0] for x, _ in batches])
    assert [len(np.asarray(x)) for x, _ in batches] == [4] * 5
    assert np.bincount(seen, minlength=10).tolist() == [2] * 10  # 20 images: two whole passes


def test_a_time_budget_stops_after_the_epoch_that_spends_it(tmp_path):
    from common.training import train

    model, data, tc, plan = _tiny_run(tmp_path, epochs=50, budget_minutes=1e-9)
    summary = train(model, data, None, tc, tmp_path, plan, progress=False)
    assert summary["epochs_run"] == 1 and summary["epochs_planned"] == 50


def test_split_indices_share_and_seed():
    from common.training import split_indices

    train, val = split_indices(10, 0.25, seed=3)
    assert len(val) == 2 and len(train) == 8  # round(2.5) = 2
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(10))
    again = split_indices(10, 0.25, seed=3)
    assert again[1].tolist() == val.tolist()
    assert split_indices(1, 0.5, 0)[1].size == 0 and split_indices(3, 0.01, 0)[1].size == 1


# One segment of a run killed by SIGKILL at `point` (or run to the end: "finish", which
# then trains the same run uninterrupted beside it and prints the comparison as JSON).
_KILLED_RUN = """
import json, os, signal, sys
sys.modules["tensorflow"] = None  # Keras would import it to seed it: seconds per process
from pathlib import Path
import keras, numpy as np
from common import cli, training
from common.data_io import is_temp_name
from tests.common.test_training import _tiny_run

out, point = Path(sys.argv[1]), sys.argv[2]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)

class MidEpoch(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if point == "mid-epoch" and self.epoch == 1:
            die()
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

backup_end = training.EpochBackup.on_epoch_end
def epoch_end(self, epoch, logs=None):
    if point == "between the CSV row and the backup" and epoch == 2:  # the row is written, the backup not
        die()
    backup_end(self, epoch, logs)
training.EpochBackup.on_epoch_end = epoch_end

model_save = keras.Model.save
def save(self, path, *args, **kwargs):
    if point == "while best.keras is written" and Path(path).name.startswith(".best."):
        Path(path).write_bytes(b"half a model")
        die()
    model_save(self, path, *args, **kwargs)
keras.Model.save = save

model, data, tc, plan = _tiny_run(out, epochs=4)
summary = training.train(model, data, None, tc, out, plan, progress=False, callbacks=[MidEpoch()])
cli.print_training(summary)
whole, data, tc, plan = _tiny_run(out.parent / "whole", epochs=4)
training.train(whole, data, None, tc, out.parent / "whole", plan, progress=False)
print(json.dumps({
    "max_difference": max(float(np.abs(a - b).max()) for a, b in zip(model.get_weights(), whole.get_weights())),
    "epochs": training.read_history(out / "history.csv")["epoch"],
    "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if is_temp_name(p.name) or "backup" in str(p))}))
"""


def test_a_run_killed_at_any_point_resumes_exactly(tmp_path):
    """SIGKILL mid-epoch, between an epoch's CSV row and its backup, and while best.keras
    is written: one history row per epoch, no temporary file left, the weights of an
    uninterrupted run. In JAX processes without TensorFlow, which takes seconds to start."""
    import json
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = tmp_path / "run"
    for point in ("mid-epoch", "between the CSV row and the backup", "while best.keras is written", "finish"):
        done = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(out), point], env=env, capture_output=True,
                              text=True, timeout=300)
        if point != "finish":
            assert done.returncode == -signal.SIGKILL, (point, done.stdout, done.stderr[-3000:])
        if point == "between the CSV row and the backup":  # epochs 0-2 have rows, the backup holds 2 epochs
            assert read_history(out / "history.csv")["epoch"] == [0.0, 1.0, 2.0]
            assert json.loads((out / "backup" / "state.json").read_text())["epoch"] == 2
        if point == "while best.keras is written":
            assert [p.name for p in out.glob(".best.*.tmp.keras")], "no half-written temporary to clean"
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("trained 4 of 4 epoch(s), ") and "of them after resuming from epoch " in lines[0]
    result = json.loads(lines[-1])
    assert result["epochs"] == [0.0, 1.0, 2.0, 3.0]  # one row per epoch
    assert result["files"] == []  # no backup, no temporary file
    assert result["max_difference"] <= 1e-6
