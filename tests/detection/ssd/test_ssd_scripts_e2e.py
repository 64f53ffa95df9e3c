"""End to end: render -> preprocess_det -> train_det (1 epoch, 2 steps) -> use_det on a few
tiny images, under TensorFlow and under JAX with TensorFlow blocked."""

import json

import numpy as np
import pytest
import yaml

from common import cli
from detection.ssd import preprocess_det, render_det, train_det, use_det
from tests.scripts import ROOT, check, run_script

pytestmark = pytest.mark.slow
DRIVER = ROOT / "tests" / "detection" / "ssd" / "det_train_then_use.py"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """8 train + 4 test shapes images, cached at 64x64, with a tiny model."""
    root = tmp_path_factory.mktemp("det")
    for split, count in (("train", 8), ("test", 4)):
        assert render_det.main(["--output-dir", str(root / "shapes"), "--split", split, "--num-images", str(count),
                                "--quiet"]) is None
    config = {
        "data": {"data_dir": str(root / "shapes"), "cache_dir": str(root / "cache"), "input_size": [64, 64]},
        "model": {"filters": [4, 8, 8, 8], "head_filters": [8, 8, 8],
                  "anchor_sizes": [[4, 6, 8], [12, 16, 24], [24, 32, 48]]},
        "train": {"epochs": 1, "batch_size": 4, "validation_split": 0.0, "warmup_steps": 1},
        "use": {"max_overlays": 2, "feature_map_images": 1, "batch_size": 4, "pre_nms_top_k": 20,
                "max_detections": 20},
    }
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    for split in ("train", "test"):
        assert cli.run(preprocess_det.main, ["--config", str(config_path), "--split", split, "--quiet"]) == 0
    return root, config_path


@pytest.mark.parametrize("backend, block", [("tensorflow", False), ("jax", True)], ids=["tensorflow", "jax-no-tf"])
def test_train_then_use(workspace, backend, block):
    root, config_path = workspace
    model_dir, pred_dir = root / f"model_{backend}", root / f"pred_{backend}"
    folder = root / "shapes" / "images" / "test" if backend == "tensorflow" else "-"  # one backend is enough
    check(run_script(DRIVER, config_path, model_dir, pred_dir, folder, backend=backend, block_tensorflow=block))
    for name in ("best.keras", "model.keras", "config.json", "categories.json", "history.csv",
                 "training_log.json", "plots/loss_curves.png"):
        assert (model_dir / name).is_file(), name
    assert (model_dir / "logs").is_dir() == (backend == "tensorflow")
    log = json.loads((model_dir / "training_log.json").read_text())
    assert log["backend"] == backend and log["train_images"] == 8 and log["epochs_run"] == 1

    summary = json.loads((pred_dir / "evaluation.json").read_text())
    truth = np.load(root / "cache" / "test" / "Y_data.npz")["counts"]
    assert summary["counts"]["images"] == 4 and summary["counts"]["ground_truth"] == int(truth.sum())
    # Every true box is counted once under its class, and each mAP is the mean of the AP of
    # the classes with ground truth.
    per_class = summary["per_class"].values()
    assert sum(entry["ground_truth"] for entry in per_class) == int(truth.sum())
    for key, per in (("map50", "ap50"), ("coco_map", "coco_ap"), ("coco_map50", "coco_ap50")):
        assert summary[key] == pytest.approx(np.mean([entry[per] for entry in per_class if entry["ground_truth"]]))
    assert set(summary["per_class"]) == {"circle", "square", "triangle"}
    assert len(summary["scale_statistics"]["size_bands"]) == 3
    for name in ("anchor_coverage", "scale_specialisation", "object_sizes", "feature_maps", "precision_recall"):
        assert (pred_dir / "plots" / f"{name}.png").is_file(), name
    assert len(list((pred_dir / "overlays").iterdir())) == 2
    if backend != "tensorflow":
        return
    folder = json.loads((root / f"pred_{backend}_folder" / "detections.json").read_text())
    assert [r["file_name"] for r in folder["images"]] == [f"{i:05d}.png" for i in range(4)]
    assert not (root / f"pred_{backend}_folder" / "evaluation.json").exists()


def test_preprocess_reuses_and_bad_input_is_one_line(workspace, tmp_path, capsys):
    root, config_path = workspace
    assert cli.run(preprocess_det.main, ["--config", str(config_path), "--split", "test", "--quiet"]) == 0
    assert "cache reused" in capsys.readouterr().out
    coco = json.loads((root / "shapes" / "test.json").read_text())
    coco["annotations"][2]["bbox"][2] = -4.0
    (tmp_path / "images").symlink_to(root / "shapes" / "images")
    (tmp_path / "test.json").write_text(json.dumps(coco))
    status = cli.run(preprocess_det.main, ["--config", str(config_path), "--data-dir", str(tmp_path), "--cache-dir",
                                           str(tmp_path / "cache"), "--split", "test", "--bbox-format", "xywh"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "test.json: annotations[2]" in err and "negative or zero size" in err
    # Training on a cache built with another config.
    status = cli.run(train_det.main, ["--config", str(config_path), "--set", "data.max_boxes=3", "--quiet"])
    assert status == 2 and ("data.max_boxes=3 (--set data.max_boxes=3) contradicts the cache, built with "
                            "data.max_boxes=16; drop --set data.max_boxes=3") in capsys.readouterr().err


@pytest.mark.parametrize("module", [render_det, preprocess_det, train_det, use_det])
def test_help(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0 and "usage" in capsys.readouterr().out
