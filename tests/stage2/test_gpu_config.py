"""configs/stage2_gpu.yaml trains what the GPU benchmark trains, and the benchmark trains
through the package's own trainer: the same losses as train_vis.py for the same settings."""

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from common.config import load_config, to_dict
from stage2_visible_keypoints.config import Stage2Config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))  # the bench scripts import their siblings by name

import stage2_accuracy  # noqa: E402


def _bench_args(argv):
    """The benchmark's parsed arguments, as its main() resolves them."""
    parser_args = []
    original = stage2_accuracy.run
    try:
        stage2_accuracy.run = lambda args: parser_args.append(args) or None
        assert stage2_accuracy.main(argv) == 0
    finally:
        stage2_accuracy.run = original
    return parser_args[0]


def test_the_gpu_config_is_the_gpu_benchmarks_settings():
    script = (ROOT / "bench" / "gpu_stage2.sh").read_text()
    flags = re.search(r"stage2_accuracy.py \$data (--eval-every .*?) \$\{TRAIN_ARGS", script, re.S).group(1)
    flags = flags.replace("\\\n", " ").replace('"$minutes"', "9").replace("${BUDGET_IMAGES:-", "").replace("}", "")
    args = _bench_args(flags.split() + ["--work-dir", "runs/bench"])
    bench = to_dict(stage2_accuracy.stage2_config(args))
    config = to_dict(load_config(Stage2Config, ROOT / "configs" / "stage2_gpu.yaml"))
    bench["train"].pop("budget_minutes"), config["train"].pop("budget_minutes")  # the script's deadline
    for section in ("data", "model", "train"):
        assert bench[section] == config[section], section


@pytest.mark.slow
def test_the_benchmark_trains_like_train_vis(tmp_path, monkeypatch):
    from stage2_visible_keypoints import train_vis

    work, out = tmp_path / "work", tmp_path / "out"
    argv = ["--work-dir", str(work), "--train-images", "8", "--test-images", "4", "--eval-every", "8",
            "--budget-images", "16", "--batch-size", "4", "--backbone", "resnet18", "--pose-images", "2",
            "--lr-schedule", "cosine", "--workers", "1", "--output-dir", str(out), "--quiet"]
    assert stage2_accuracy.main(argv) == 0
    rows = json.loads((out / "stage2_accuracy.json").read_text())["rows"]
    assert [row["images_seen"] for row in rows] == [8, 16]
    assert rows[0]["learning_rate"] > rows[1]["learning_rate"]  # the cosine follows the images seen

    # The benchmark's resolved config, given to train_vis.py as a file: the same run.
    cfg = stage2_accuracy.stage2_config(_bench_args(argv))
    values = to_dict(cfg)
    values["train"]["output_dir"] = str(tmp_path / "train_vis")
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert train_vis.main(["--config", str(tmp_path / "config.json"), "--quiet"]) is None

    def losses(folder):
        with open(folder / "history.csv") as f:
            return [(float(r["loss"]), float(r["eval_mean_px"])) for r in csv.DictReader(f)]

    bench, trainer = losses(work / "model"), losses(tmp_path / "train_vis")
    assert len(bench) == 2
    np.testing.assert_allclose(trainer, bench, rtol=1e-4)
