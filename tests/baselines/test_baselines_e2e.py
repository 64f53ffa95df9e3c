"""The scripts end to end: the study under TensorFlow, train/use under JAX without TensorFlow."""

import json

import numpy as np
import pytest

from baselines.config import DataConfig
from common import cli
from common.data_io import load_json
from tests.scripts import ROOT, check, run_script

TINY = ["--set", "study.train_images=40", "--set", "study.test_images=12", "--set", "data.input_size=64",
        "--set", "data.heatmap_size=32", "--set", "study.comparison_epochs=1", "--set", "study.ablation_epochs=1",
        "--set", "study.loss_epochs=1", "--set", "study.ablation_seeds=[0]", "--set", "study.loss_seeds=[0]",
        "--set", "study.heatmap_strides=[2]", "--set", "study.sigmas=[2]", "--set", "study.skips=[true]",
        "--set", "study.loss_arms=[mse]", "--set", "train.batch_size=12", "--set", "model.filters=[4,8,8,8]"]
# batch 12: the 36 training images (4 go to validation) make whole batches, so each arm traces once.


@pytest.mark.slow
def test_run_study_tiny_under_tensorflow(tmp_path):
    result = check(run_script(ROOT / "baselines" / "run_study.py", "--quick", "--output-dir", tmp_path, *TINY))
    assert "heatmap" in result.stdout and "study:" in result.stdout
    comparison = load_json(tmp_path / "comparison.json")
    assert set(comparison["models"]) == {"heatmap", "regression", "integral"}
    for record in comparison["models"].values():
        assert set(record["test"]["pck"]) == {"0.05", "0.1", "0.15", "0.2"} and record["test"]["images"] == 12
        assert record["training"]["optimizer"].startswith("Adam(learning_rate=0.001")
    assert "test_argmax_refine" in comparison["models"]["integral"]
    ablation = load_json(tmp_path / "ablation.json")["tables"]
    assert [row["label"] for row in ablation["skips"]] == ["skips on"]
    arms = load_json(tmp_path / "loss_study.json")["arms"]
    assert [row["label"] for row in arms] == ["mse"] and arms[0]["pck@0.05"]["std"] is None  # one seed
    # Same budget: the comparison's heatmap run, every ablation cell and the mse arm are one run.
    assert len(list((tmp_path / "runs").iterdir())) == 3
    for name in ("pck_curve.png", "failure_gallery.png", "heatmaps_epochs.png", "ablation.png", "loss_study.png"):
        assert (tmp_path / name).stat().st_size > 1000, name


# train_base then use_base in one process: one import, and use_base's model reuses the
# programs JAX compiled for train_base's (every initializer and step is compiled once).
JAX_DRIVER = """
import sys
from baselines.config import DataConfig
from common import cli
from baselines import train_base, use_base
train_args, use_args = sys.argv[1].split("|"), sys.argv[2].split("|")
sys.exit(cli.run(train_base.main, train_args) or cli.run(use_base.main, use_args))
"""


@pytest.mark.slow
def test_train_and_use_under_jax_without_tensorflow(tmp_path):
    from baselines import preprocess_base, render_base  # neither imports Keras: run in-process

    data, cache = tmp_path / "data", tmp_path / "cache"
    render_base.main(["--output-dir", str(data), "--num-images", "24", "--seed", "3"])
    render_base.main(["--output-dir", str(data), "--split", "test", "--num-images", "4"])
    common = ["--set", "data.input_size=64", "--set", "data.heatmap_size=32", "--cache-dir", str(cache), "--quiet"]
    for split in ("train", "test"):
        preprocess_base.main(["--data-dir", str(data), "--split", split, *common])
    # Augmentation and a sigma curriculum (two compiled segments) on the numpy batch iterator.
    train_args = [*common, "--output-dir", str(tmp_path / "m"), "--epochs", "2", "--set", "train.batch_size=8",
                  "--set", "train.augment=true", "--set", "train.sigma_curriculum=[3,2]",
                  "--set", "train.validation_split=0", "--set", "model.filters=[4,8,8,8]"]
    use_args = [*common, "--model", str(tmp_path / "m" / "best.keras"), "--output-dir", str(tmp_path / "p")]
    (tmp_path / "driver.py").write_text(JAX_DRIVER)
    out = check(run_script(tmp_path / "driver.py", "|".join(train_args), "|".join(use_args),
                           backend="jax", block_tensorflow=True))
    assert "jax backend" in out.stdout and "decoder argmax_refine" in out.stdout
    assert (tmp_path / "m" / "best.keras").is_file() and not (tmp_path / "m" / "backup").exists()
    assert load_json(tmp_path / "m" / "config.json")["train"]["sigma_curriculum"] == [3.0, 2.0]
    assert len((tmp_path / "m" / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs
    summary = load_json(tmp_path / "p" / "evaluation.json")
    assert summary["decoder"] == "argmax_refine" and summary["images"] == 4
    with np.load(tmp_path / "p" / "predictions.npz", allow_pickle=False) as p:
        assert p["xy_norm"].shape == (4, 5, 2)


@pytest.mark.slow
def test_use_reads_the_loss_and_sizes_the_model_was_trained_with(tmp_path, capsys):
    """A focal-loss model (logit heatmaps) at a 64 px input: use_base.py without --loss or
    sizes decodes it as focal, reports it, and refuses a --loss that says otherwise.
    Trained with the hands declared interchangeable: use_base.py reports matched beside raw
    figures, decodes the hands on distinct peaks (images without labels too, by the run's
    keypoint names), and a bad keypoint name is one line naming it, before anything is written."""
    from baselines import preprocess_base, render_base, train_base, use_base
    from baselines.data import load_cache
    from baselines.pipeline import decode, load_model, predict

    data, cache = tmp_path / "data", tmp_path / "cache"
    render_base.main(["--output-dir", str(data), "--num-images", "8", "--seed", "3"])
    render_base.main(["--output-dir", str(data), "--split", "test", "--num-images", "3"])
    # Whole images (a stick figure fills its frame), as --images reads them below.
    sizes = ["--set", "data.input_size=64", "--set", "data.heatmap_size=32", "--set", "data.crop=image"]
    for split in ("train", "test"):
        preprocess_base.main(["--data-dir", str(data), "--split", split, "--cache-dir", str(cache), "--quiet", *sizes])
    model = tmp_path / "m" / "best.keras"
    train = ["--cache-dir", str(cache), "--output-dir", str(model.parent), "--quiet", "--loss", "focal", "--epochs",
             "1", "--set", "train.batch_size=4", "--set", "train.validation_split=0", "--set",
             "model.filters=[4,8,8,8]", *sizes]
    assert cli.run(train_base.main, [*train, "--set", "data.interchangeable=[[hand_left, hand_rigt]]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "data.interchangeable: no keypoint named 'hand_rigt'" in err
    assert len(err.splitlines()) == 1 and not model.parent.exists()
    assert cli.run(train_base.main, [*train, "--set", "data.interchangeable=[[hand_left, hand_right]]"]) == 0
    capsys.readouterr()
    assert cli.run(use_base.main, ["--model", str(model), "--cache-dir", str(cache), "--output-dir",
                                   str(tmp_path / "p"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "trained with: model heatmap, loss focal, input 64 px" in out
    assert "matched within [['hand_left', 'hand_right']]: PCK" in out
    summary = load_json(tmp_path / "p" / "evaluation.json")
    assert summary["config"]["train"]["loss"] == "focal" and summary["config"]["data"]["input_size"] == 64
    assert summary["config"]["train"]["epochs"] == 1 and summary["decoder"] == "argmax_refine"
    assert summary["model"]["run_config"] == str(model.parent / "config.json")
    assert summary["config"]["data"]["interchangeable"] == [["hand_left", "hand_right"]]
    assert summary["matched"]["mean_error_px"] <= summary["mean_error_px"]
    # Decoded as logits: the sub-pixel refinement differs from decoding the raw maps.
    data_cfg = DataConfig(input_size=64, heatmap_size=32, crop="image")
    images, y = load_cache(cache, "test", data_cfg)
    outputs = predict(load_model(model), images)
    with np.load(tmp_path / "p" / "predictions.npz", allow_pickle=False) as p:
        hands = [(1, 2)]
        np.testing.assert_allclose(p["xy_norm"], decode(outputs, "argmax_refine", data_cfg.codec(), logits=True,
                                                        groups=hands), atol=1e-6)
        assert not np.allclose(p["xy_norm"], decode(outputs, "argmax_refine", data_cfg.codec(), logits=False,
                                                    groups=hands), atol=1e-6)
        # The hands' peaks lie 2 sigma apart at least; the sub-pixel refinement moves each by <= 0.5 px an axis.
        assert np.hypot(*(p["xy_norm"][:, 1] - p["xy_norm"][:, 2]).T).min() * 32 >= 2 * 2.0 - 2 ** 0.5
        xy_original = p["xy_original"]
    # The same images from their files (--images): the same keypoints, in the files' pixels.
    assert cli.run(use_base.main, ["--model", str(model), "--images", str(data / "images" / "test"),
                                   "--output-dir", str(tmp_path / "f"), "--quiet"]) == 0
    with np.load(tmp_path / "f" / "predictions.npz", allow_pickle=False) as p:
        np.testing.assert_allclose(p["xy_original"], xy_original, atol=1e-4)
    assert not (tmp_path / "f" / "evaluation.json").exists()
    # A loss that contradicts the run: one line naming it.
    assert cli.run(use_base.main, ["--model", str(model), "--cache-dir", str(cache), "--loss", "mse"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {model.parent / 'config.json'}: train.loss=\"mse\" (--loss mse) contradicts the run, trained "
        "with train.loss=\"focal\"; leave it out: it is read from the run")


def test_scripts_help_and_one_line_errors(tmp_path, capsys):
    from baselines import preprocess_base, render_base, run_study, train_base, use_base

    for module in (render_base, preprocess_base, train_base, use_base, run_study):
        with pytest.raises(SystemExit) as exit_info:
            module.main(["--help"])
        assert exit_info.value.code == 0
    assert cli.run(train_base.main, ["--set", "train.loss=l3"]) == 2
    assert "train.loss must be one of" in capsys.readouterr().err
    (tmp_path / "train.json").write_text(json.dumps({"images": [{"id": 1}]}))
    assert cli.run(preprocess_base.main, ["--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "train.json: images[0]: missing field 'file_name'" in err
    assert len(err.splitlines()) == 1

