"""End to end on a DOTA-format folder the test writes: preprocess_centres -> train_centres
(1 step) -> use_centres, under TensorFlow (in-process) and under JAX with TensorFlow blocked
(subprocesses), without a change of code."""

import contextlib
import io
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from common import cli
from detection.centres import preprocess_centres, render_aerial, train_centres, use_centres
from tests.scripts import ROOT, check, run_script

pytestmark = pytest.mark.slow
DET = ROOT / "detection" / "centres"
# name: (width, height, [(cx, cy, w, h, category, difficult)])
IMAGES = {
    "P0001": (300, 260, [(40, 50, 20, 10, "small-vehicle", 0), (150, 130, 60, 30, "plane", 0),
                         (250, 200, 24, 24, "storage-tank", 1), (120, 125, 14, 8, "small-vehicle", 0)]),
    "P0002": (100, 90, [(30, 30, 12, 6, "ship", 0)]),
    "P0003": (128, 128, [(60, 70, 30, 20, "large-vehicle", 0), (100, 20, 10, 5, "small-vehicle", 0)]),
    "P0004": (140, 100, [(70, 50, 16, 16, "roundabout", 0)]),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("centres")
    rng = np.random.default_rng(0)
    for name, (width, height, objects) in IMAGES.items():
        (root / "dota" / "images").mkdir(parents=True, exist_ok=True)
        (root / "dota" / "labelTxt").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / "dota" / "images" / f"{name}.png")
        lines = ["imagesource:GoogleEarth", "gsd:0.5"]
        for cx, cy, w, h, category, difficult in objects:
            corners = [(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2), (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)]
            lines.append(" ".join(f"{v:g}" for xy in corners for v in xy) + f" {category} {difficult}")
        (root / "dota" / "labelTxt" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    config = {
        "data": {"data_dir": str(root / "dota"), "cache_dir": str(root / "cache"), "categories": ["dota-v1.0"],
                 "split": [0.5, 0.25, 0.25], "tile_size": 128, "tile_overlap": 32, "input_size": [32, 32]},
        "train": {"output_dir": str(root / "model"), "epochs": 1, "batch_size": 2, "max_steps": 1},
        "use": {"output_dir": str(root / "predictions"), "max_overlays": 2, "score_threshold": 0.05},
    }
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return root, config_path


@pytest.fixture(scope="module")
def cache(workspace):
    """The workspace's caches, built once here so that any test runs alone; what preprocess printed."""
    root, config_path = workspace
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert preprocess_centres.main(["--config", str(config_path), "--quiet"]) is None
    return printed.getvalue()


def test_dota_folder_preprocess_train_use_tensorflow(workspace, cache, capsys):
    root, config_path = workspace
    out = cache
    assert "train: 2 images" in out and "val: 1 images" in out and "test: 1 images" in out
    y = {split: np.load(root / "cache" / split / "Y_data.npz") for split in ("train", "val", "test")}
    assert sum(len(v["filenames"]) for v in y.values()) == 4
    assert len(y["train"]["class_names"]) == 15  # the DOTA v1.0 categories, one heatmap each
    # P0001 (300 x 260) in 128 px tiles with 32 px overlap: starts 0, 96, 172 and 0, 96, 132 -> 9 tiles.
    for split, v in y.items():
        if "P0001.png" in list(v["filenames"]):
            assert (v["tile_image"] == list(v["filenames"]).index("P0001.png")).sum() == 9
            assert v["gt_difficult"].sum() == 1
    assert preprocess_centres.main(["--config", str(config_path), "--quiet"]) is None
    assert capsys.readouterr().out.count("cache reused") == 3

    train_centres.main(["--config", str(config_path), "--quiet"])
    assert "tensorflow backend" in capsys.readouterr().out
    for name in ("best.keras", "model.keras", "config.json", "history.csv", "plots/loss_curves.png", "logs"):
        assert (root / "model" / name).exists(), name

    use_centres.main(["--config", str(config_path), "--split", "test", "--quiet"])
    summary = json.loads((root / "predictions" / "evaluation.json").read_text())
    test_names = list(y["test"]["filenames"])
    assert summary["images"] == 1 and summary["true"] == len(y["test"]["gt_image"])
    assert set(summary["pck"]) == {"5", "10", "20"} and {"small", "clustered"} <= set(summary["groups"])
    assert summary["frames"]["original_px_per_heatmap_px"] == 16.0
    record = json.loads((root / "predictions" / "detections" / f"{test_names[0]}.json").read_text())
    assert len(record["centres"]) == len(record["classes"]) == len(record["scores"])
    assert (root / "predictions" / "overlays" / f"{test_names[0]}.png").is_file()
    assert (root / "predictions" / "heatmaps" / f"{test_names[0]}.png").is_file()

    use_centres.main(["--config", str(config_path), "--images", str(root / "dota" / "images"),
                      "--output-dir", str(root / "folder"), "--quiet"])
    assert len(list((root / "folder" / "detections").glob("*.json"))) == 4
    assert not (root / "folder" / "evaluation.json").exists()


def test_train_and_use_on_jax_without_tensorflow(workspace, cache):
    root, config_path = workspace
    out = check(run_script(DET / "train_centres.py", "--config", config_path, "--output-dir", root / "model_jax",
                           "--quiet", backend="jax", block_tensorflow=True))
    assert "jax backend" in out.stdout
    assert not (root / "model_jax" / "logs").exists()  # TensorBoard needs TensorFlow
    check(run_script(DET / "use_centres.py", "--config", config_path, "--model", root / "model_jax" / "best.keras",
                     "--output-dir", root / "pred_jax", "--quiet", backend="jax", block_tensorflow=True))
    assert json.loads((root / "pred_jax" / "evaluation.json").read_text())["images"] == 1


def test_bad_input_is_one_line_naming_file_and_line(workspace, cache, tmp_path, capsys):
    root, config_path = workspace
    data = tmp_path / "dota"
    (data / "images").mkdir(parents=True)
    (data / "labelTxt").mkdir()
    Image.new("RGB", (40, 40)).save(data / "images" / "a.png")
    (data / "labelTxt" / "a.txt").write_text("imagesource:x\n1 2 3 4 5 6 7 plane 0\n")
    argv = ["--config", str(config_path), "--data-dir", str(data), "--cache-dir", str(tmp_path / "c"), "--quiet"]
    assert cli.run(preprocess_centres.main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.txt: line 2" in err
    # A flag that contradicts the cache's settings is refused, naming the flag to drop.
    assert cli.run(train_centres.main, ["--config", str(config_path), "--set", "data.sigma=3", "--quiet"]) == 2
    assert ("data.sigma=3.0 (--set data.sigma=3) contradicts the cache, built with data.sigma=1.5; drop --set "
            "data.sigma=3") in capsys.readouterr().err


@pytest.mark.parametrize("module", [render_aerial, preprocess_centres, train_centres, use_centres])
def test_help(module, capsys):
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0 and "usage" in capsys.readouterr().out
