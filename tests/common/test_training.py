"""Input pipeline and callbacks (TensorFlow backend here;
the JAX path runs in tests/stage2/test_scripts_e2e.py)."""

import math

import keras
import numpy as np
import pytest

from common.backbones import has_pretrained_weights, resnet50_pyramid
from common.errors import DataError
from common.training import ArrayBatches, BestModelCheckpoint, make_batches, read_history, set_precision


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
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras_home")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    if "DataError" not in out.stdout:
        pytest.skip("ImageNet weights could be downloaded here (network available)")
    assert "--weights PATH" in out.stdout and "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in out.stdout


def test_a_new_run_starts_a_new_history_and_a_resumed_one_keeps_it(tmp_path):
    from common.training import standard_callbacks

    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n0,3.0,1.5\n")
    (tmp_path / "backup").mkdir()  # an unfinished run: resume, keep the history and its best
    callbacks = standard_callbacks(tmp_path, "val_loss", epochs=2, steps=1, progress=False)
    assert (tmp_path / "history.csv").is_file()
    assert next(c for c in callbacks if isinstance(c, BestModelCheckpoint)).best == 1.5
    assert isinstance(callbacks[-1], keras.callbacks.BackupAndRestore)  # runs after checkpoint and CSV

    (tmp_path / "backup").rmdir()  # the run finished: the same command starts afresh
    callbacks = standard_callbacks(tmp_path, "val_loss", epochs=2, steps=1, progress=False)
    assert not (tmp_path / "history.csv").exists() and (tmp_path / "history_previous.csv").is_file()
    assert next(c for c in callbacks if isinstance(c, BestModelCheckpoint)).best == math.inf


def test_split_indices_share_and_seed():
    from common.training import split_indices

    train, val = split_indices(10, 0.25, seed=3)
    assert len(val) == 2 and len(train) == 8  # round(2.5) = 2
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(10))
    again = split_indices(10, 0.25, seed=3)
    assert again[1].tolist() == val.tolist()
    assert split_indices(1, 0.5, 0)[1].size == 0 and split_indices(3, 0.01, 0)[1].size == 1
