"""Every part's own trainer under two JAX processes on 127.0.0.1 (`--distribution
multi_process`, gloo collectives): train_vis, train_det, train_centres and train_base each
train a tiny model on a tiny cache made by the part's own render and preprocess scripts.
The two processes end with the same weights, those of one process training on their global
batch, and each reads its own half of every batch of the cache."""

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from common import cli
from tests.common.test_distribute import _environment, _free_port
from tests.scripts import BLOCK_TENSORFLOW, ROOT

pytestmark = pytest.mark.slow
DRIVER = ROOT / "tests" / "common" / "parts_driver.py"
PARTS = ("stage2", "ssd", "centres", "baselines")
# Also trained by one process on the two processes' global batch: the parts whose augmentation
# draws in numpy, per batch (the others draw in the model, as one program over the global
# batch); the two ResNet-18 parts would add half of this module's time again.
ALONE = ("ssd", "baselines")
# Every tiny cache holds 8 training images: an epoch of 2 steps of 2 images per process
# (batch_size and learning_rate are per replica: one process alone takes twice both).
TRAIN = {"epochs": 1, "batch_size": 2, "learning_rate": 1e-3, "validation_split": 0.0}
# One process alone does the same float32 sums in another order, for two steps.
TOLERANCE = dict(rtol=1e-3, atol=1e-5)


def _quiet(main, argv):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli.run(main, argv) == 0


def _stage2(root):
    from stage2_visible_keypoints import preprocess_vis, render_vis
    from stage2_visible_keypoints.camera import Camera, save_camera_json

    camera = root / "camera.json"  # a small camera: small renders
    save_camera_json(camera, Camera(fx=500.6, fy=500.6, cx=160, cy=100, width=320, height=200))
    _quiet(render_vis.main, ["--output-dir", str(root / "renders"), "--num-images", "8", "--seed", "1",
                             "--camera", str(camera)])
    return {"data": {"data_dir": str(root / "renders"), "cache_dir": str(root / "cache"), "canvas_size": [320, 180],
                     "crop_size": [160, 160], "input_size": [32, 32], "heatmap_size": [16, 16]},
            "model": {"backbone": "resnet18", "decoder_filters": [8, 8, 8, 8]}}, preprocess_vis.main


def _ssd(root):
    from detection.ssd import preprocess_det, render_det

    _quiet(render_det.main, ["--output-dir", str(root / "shapes"), "--num-images", "8", "--size", "64", "--quiet"])
    return {"data": {"data_dir": str(root / "shapes"), "cache_dir": str(root / "cache"), "input_size": [64, 64]},
            "model": {"filters": [4, 8, 8, 8], "head_filters": [8, 8, 8],
                      "anchor_sizes": [[4, 6, 8], [12, 16, 24], [24, 32, 48]]}}, preprocess_det.main


def _centres(root):
    from detection.centres import preprocess_centres, render_aerial

    _quiet(render_aerial.main, ["--output-dir", str(root / "aerial"), "--num-images", "2", "--image-size", "64"])
    return {"data": {"data_dir": str(root / "aerial"), "cache_dir": str(root / "cache"), "split": [1.0, 0.0, 0.0],
                     "tile_size": 32, "tile_overlap": 0, "input_size": [32, 32]},
            "model": {"decoder_filters": [8, 8, 8], "head_filters": 8}}, preprocess_centres.main


def _baselines(root):
    from baselines import preprocess_base, render_base

    _quiet(render_base.main, ["--output-dir", str(root / "data"), "--num-images", "8", "--seed", "3"])
    return {"data": {"data_dir": str(root / "data"), "cache_dir": str(root / "cache"), "input_size": 32,
                     "heatmap_size": 16},
            "model": {"filters": [4, 8, 8, 8]}, "train": {"augment": True}}, preprocess_base.main


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """WORK/PART/config.yaml and its cache, made by each part's own scripts."""
    work = tmp_path_factory.mktemp("parts")
    for part, make in zip(PARTS, (_stage2, _ssd, _centres, _baselines)):
        config, preprocess = make(work / part)
        config["train"] = {**TRAIN, **config.get("train", {})}
        (work / part / "config.yaml").write_text(yaml.safe_dump(config))
        _quiet(preprocess, ["--config", str(work / part / "config.yaml"), "--quiet"])
    return work


@pytest.fixture(scope="session")
def runs(workspace):
    """Every part trained by the two processes of one multi_process run and, for ALONE, by
    one process on the same global batch at the same time: {(part, "multi"|"one", process): record}."""
    out = workspace / "runs"
    address = f"127.0.0.1:{_free_port()}"
    launches = [(f"multi_process:{address}:{i}", out / "multi", PARTS) for i in range(2)]
    launches.append(("one", out / "one", ALONE))
    # The same XLA flags in all three: compiling less hard halves the CPU time of the test
    # (the initializers and steps of four models, compiled in each process).
    env = _environment("jax", XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
    processes = [subprocess.Popen([sys.executable, "-c", BLOCK_TENSORFLOW, str(DRIVER), str(workspace), str(folder),
                                   mode, *parts], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for mode, folder, parts in launches]
    for process in processes:
        _, stderr = process.communicate(timeout=400)
        assert process.returncode == 0, stderr[-3000:]
    records = {}
    trained = [(part, "multi", p) for part in PARTS for p in (0, 1)] + [(part, "one", 0) for part in ALONE]
    for part, kind, process in trained:
        with np.load(out / kind / "records" / f"{part}_{process}.npz") as f:
            records[part, kind, process] = {key: f[key] for key in f.files}
    return out, records


def _weights(record, prefix="w"):
    """The final weights, or with prefix "i" those the model had before training."""
    return [record[f"{prefix}{i}"] for i in range(sum(key.startswith(prefix) for key in record))]


def _batches(record):
    return [record[f"b{i}"] for i in range(sum(key.startswith("b") for key in record))]


@pytest.mark.parametrize("part", PARTS)
def test_two_processes_train_and_end_with_the_same_weights(runs, part):
    out, records = runs
    first, second = records[part, "multi", 0], records[part, "multi", 1]
    assert len(_weights(first)) == len(_weights(second)) > 0
    for a, b in zip(_weights(first), _weights(second)):
        np.testing.assert_array_equal(a, b)
    moved = [np.abs(a - start).max() for a, start in zip(_weights(first), _weights(first, "i"))]
    assert max(moved) > 1e-3  # trained: not equal by staying put
    # Process 0 alone wrote the run's files, and they say two processes trained it.
    log = json.loads((out / "multi" / part / "training_log.json").read_text())
    assert log["distribution"]["processes"] == 2 and log["distribution"]["global_batch"] == 4
    assert log["epochs_run"] == 1 and log["steps_per_epoch"] == 2
    assert not (out / "multi" / part / "backup").exists() and (out / "multi" / part / "model.keras").is_file()


@pytest.mark.parametrize("part", ALONE)
def test_two_processes_end_as_one_on_their_global_batch(runs, part):
    _, records = runs
    for a, b in zip(_weights(records[part, "multi", 0]), _weights(records[part, "one", 0])):
        np.testing.assert_allclose(a, b, **TOLERANCE)


@pytest.mark.parametrize("part", PARTS)
def test_each_process_reads_its_own_half_of_every_batch(runs, part):
    _, records = runs
    first, second = _batches(records[part, "multi", 0]), _batches(records[part, "multi", 1])
    assert len(first) == len(second) == 2  # 8 images, 4 a step
    for a, b in zip(first, second):
        assert len(a) == len(b) == 2 and not set(a.tolist()) & set(b.tolist())
    assert sorted(np.concatenate(first + second).tolist()) == list(range(8))  # each image once in the epoch
    if part in ALONE:  # the halves of the batch one process reads alone
        for a, b, whole in zip(first, second, _batches(records[part, "one", 0])):
            assert sorted(a.tolist() + b.tolist()) == sorted(whole.tolist())


def test_eval_split_under_multi_process_is_one_line(tmp_path, capsys):
    from stage2_visible_keypoints import train_vis

    code = cli.run(train_vis.main, ["--output-dir", str(tmp_path), "--distribution", "multi_process",
                                    "--set", "train.eval_split=test"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eval_split works in one process" in err[0] and "use_vis.py" in err[0], err
    assert not os.listdir(tmp_path)
