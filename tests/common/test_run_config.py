"""The run's config.json decides what a model was trained with; a contradiction is an error."""

import json

import numpy as np
import pytest

from baselines.config import BaselinesConfig
from common.config import load_config, save_config
from common.errors import DataError
from common.run_config import load_run_config
from stage2_visible_keypoints.config import Stage2Config

TRAINED = ("data.input_size", "data.heatmap_size", "model")


@pytest.fixture()
def run(tmp_path):
    """A run trained with a non-default backbone, input size and epochs."""
    cfg = load_config(Stage2Config, overrides=["model.backbone=resnet18", "data.input_size=[64,64]",
                                               "data.heatmap_size=[32,32]", "train.epochs=2", "train.batch_size=8"])
    save_config(cfg, tmp_path / "model" / "config.json")
    return tmp_path / "model" / "best.keras"


def test_trained_and_recorded_settings_come_from_the_run(run, tmp_path):
    user = tmp_path / "use.yaml"
    user.write_text("data:\n  cache_dir: elsewhere\nuse:\n  batch_size: 4\ntrain:\n  epochs: 30\n")
    cfg, path = load_run_config(Stage2Config, run, user, ["use.visibility_threshold=0.5"], TRAINED)
    assert path == run.parent / "config.json"
    assert cfg.model.backbone == "resnet18" and cfg.data.input_size == (64, 64)
    # What the run was trained with is recorded, whatever the use config says of it.
    assert (cfg.train.epochs, cfg.train.batch_size) == (2, 8)
    # Inference settings and data locations stay the user's.
    assert cfg.data.cache_dir == "elsewhere" and cfg.use.batch_size == 4 and cfg.use.visibility_threshold == 0.5


def test_a_given_setting_that_agrees_with_the_run_is_fine(run):
    cfg, _ = load_run_config(Stage2Config, run, overrides=["model.backbone=resnet18"], trained=TRAINED)
    assert cfg.model.backbone == "resnet18"


@pytest.mark.parametrize("where", ["file", "set", "flag"])
def test_a_contradiction_is_one_error_naming_setting_and_source(run, tmp_path, where):
    config, overrides, sources = None, ["model.backbone=resnet50"], None
    if where == "file":
        config, overrides = tmp_path / "c.yaml", []
        config.write_text("model:\n  backbone: resnet50\n")
    elif where == "flag":
        sources = ["--backbone resnet50"]
    with pytest.raises(DataError) as err:
        load_run_config(Stage2Config, run, config, overrides, TRAINED, override_sources=sources)
    source = {"file": str(config), "set": "--set model.backbone=resnet50", "flag": "--backbone resnet50"}[where]
    assert str(err.value) == (f"{run.parent / 'config.json'}: model.backbone=\"resnet50\" ({source}) contradicts "
                              "the run, trained with model.backbone=\"resnet18\"; leave it out: it is read from "
                              "the run")


def test_a_whole_section_given_is_checked_key_by_key(run):
    with pytest.raises(DataError, match=r"data.input_size=\[128, 128\]"):
        load_run_config(Stage2Config, run, overrides=["data={input_size: [128, 128], heatmap_size: [64, 64]}"],
                        trained=TRAINED)


def test_without_a_run_config_the_given_config_is_used(tmp_path):
    cfg, path = load_run_config(BaselinesConfig, tmp_path / "best.keras", overrides=["train.loss=focal"],
                                trained=("train.loss",))
    assert path is None and cfg.train.loss == "focal"


def test_an_old_run_config_with_a_training_setting_since_dropped_still_loads(run):
    saved = json.loads((run.parent / "config.json").read_text())
    saved["train"]["lr_warmup"] = 3  # a setting of another version
    (run.parent / "config.json").write_text(json.dumps(saved))
    cfg, _ = load_run_config(Stage2Config, run, trained=TRAINED)
    assert cfg.model.backbone == "resnet18" and cfg.train.epochs == 2


def test_a_bad_run_config_names_its_file(tmp_path):
    (tmp_path / "config.json").write_text('{"model": {"backbone": "vgg"}}')
    with pytest.raises(DataError, match="config.json: model.backbone must be one of"):
        load_run_config(Stage2Config, tmp_path / "best.keras", trained=TRAINED)


def test_a_use_script_finds_the_fine_tuned_run_and_names_the_flag(tmp_path):
    import argparse

    from common import cli

    run = load_config(Stage2Config, overrides=[f"train.output_dir={tmp_path}", "train.fine_tune=true",
                                               "model.backbone=resnet18"])
    save_config(run, tmp_path / "fine_tune" / "config.json")
    args = argparse.Namespace(config=None, set=[f"train.output_dir={tmp_path}", "train.fine_tune=true"], model=None,
                              backbone=None)
    cfg, model_path, config_path = cli.run_config_from_args(Stage2Config, args, (("backbone", "model.backbone"),),
                                                            TRAINED)
    assert model_path == tmp_path / "fine_tune" / "best.keras" and config_path == tmp_path / "fine_tune" / "config.json"
    assert cfg.model.backbone == "resnet18"
    args.backbone = "resnet50"
    with pytest.raises(DataError, match=r"model.backbone=\"resnet50\" \(--backbone resnet50\) contradicts"):
        cli.run_config_from_args(Stage2Config, args, (("backbone", "model.backbone"),), TRAINED)


def test_a_cache_gives_its_data_settings_and_a_contradiction_names_what_to_drop(tmp_path):
    from common import cache
    from common.run_config import apply_cache_settings
    from stage2_visible_keypoints.data import LAYOUT, preprocess_config

    built = load_config(Stage2Config, overrides=["data.sigma=3", "data.input_size=[64,64]",
                                                 "data.heatmap_size=[32,32]", "data.cache_heatmaps=true"])
    with cache.writing(tmp_path / "train", preprocess_config(built.data), "src") as writer:
        writer.images((1, 64, 64, 3), [np.zeros((1, 64, 64, 3), np.uint8)])
        writer.labels({})
    # Nothing given: the cache's settings, but an optional one (whether heatmaps were cached).
    cfg = apply_cache_settings(Stage2Config, Stage2Config(), tmp_path / "train", LAYOUT)
    assert (cfg.data.sigma, cfg.data.input_size, cfg.data.cache_heatmaps) == (3.0, (64, 64), False)
    # A setting the model fixes (a use_* script's run) is kept; agreeing ones are fine.
    given = ["data.input_size=[64,64]", "data.heatmap_size=[32,32]"]
    cfg = apply_cache_settings(Stage2Config, load_config(Stage2Config, None, given), tmp_path / "train", LAYOUT,
                               keep=("data.sigma",), overrides=given)
    assert (cfg.data.sigma, cfg.data.input_size) == (2.0, (64, 64))
    user = tmp_path / "mine.yaml"
    user.write_text("data:\n  sigma: 2.5\n")
    with pytest.raises(DataError) as err:
        apply_cache_settings(Stage2Config, load_config(Stage2Config, user), tmp_path / "train", LAYOUT, user)
    assert str(err.value) == (f"{tmp_path / 'train' / 'Y_data.npz'}: data.sigma=2.5 ({user}) contradicts the cache, "
                              f"built with data.sigma=3.0; drop data.sigma from {user}: the cache's setting is used "
                              "(or rebuild the cache with it: preprocess_vis.py --split train)")
    with pytest.raises(DataError, match=r"data.sigma=2.0 \(--sigma 2\) contradicts .*; drop --sigma 2: "):
        apply_cache_settings(Stage2Config, load_config(Stage2Config, None, ["data.sigma=2"]), tmp_path / "train",
                             LAYOUT, None, ["data.sigma=2"], ["--sigma 2"])
    # No cache there: the config as it was (loading the cache says what is missing).
    assert apply_cache_settings(Stage2Config, Stage2Config(), tmp_path / "val", LAYOUT) == Stage2Config()


def _tiny_model(path):
    """A valid Keras model of none of the package's parts (one 'heatmaps' output)."""
    import keras

    images = keras.Input((8, 8, 3), dtype="uint8", name="images")
    heatmaps = keras.layers.Conv2D(2, 1, name="conv")(keras.layers.Rescaling(1 / 255, name="rescale")(images))
    keras.Model(images, {"heatmaps": heatmaps}).save(path)
    return path


def _rewrite_config(src, dst, edit):
    """Copy the .keras archive `src` to `dst` with its config.json passed through `edit`."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                edit(config["config"]["layers"][2])  # the Conv2D layer
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    return dst


def _loaders():
    from baselines.pipeline import load_model as load_baseline
    from detection.centres.centres_pipeline import load_centres_model
    from detection.ssd.ssd_pipeline import load_detector
    from stage2_visible_keypoints.predictor import load_stage2_model

    return {"stage2": load_stage2_model, "centres": load_centres_model, "ssd": load_detector,
            "baselines": load_baseline}


@pytest.mark.parametrize("edit, problem", [
    # A class no one registered: Keras raises TypeError with the whole config in its text.
    (lambda layer: layer.update(module="mypackage.layers", class_name="Mystery", registered_name="mypackage>Mystery"),
     "TypeError: Could not locate class 'Mystery'"),
    # A function named where a layer is (safe mode refuses to look it up: nothing is run).
    (lambda layer: layer.update(module="os", class_name="function", config="system", registered_name=None),
     "TypeError: Could not locate function 'system'"),
])
def test_a_model_naming_an_unknown_class_or_function_is_one_line(tmp_path, edit, problem):
    path = _rewrite_config(_tiny_model(tmp_path / "valid.keras"), tmp_path / "bad.keras", edit)
    for part, load in _loaders().items():
        with pytest.raises(DataError) as info:
            load(path)
        message = str(info.value)
        assert message.startswith(f"{path}: cannot load the model ({problem}"), (part, message)
        assert "\n" not in message and len(message) < 200 + len(str(path)), (part, message)


def test_another_parts_model_is_one_line_naming_what_is_missing(tmp_path):
    path = _tiny_model(tmp_path / "other.keras")
    loaders = _loaders()
    with pytest.raises(DataError) as info:
        loaders["stage2"](path)
    assert str(info.value) == (f"{path}: not a model made by train_vis.py (its outputs are ['heatmaps']; "
                               "keypoints, confidence expected)")
    with pytest.raises(DataError, match=r"not a model made by train_det.py \(its outputs are \['heatmaps'\]; "
                                        r"predictions expected\)"):
        loaders["ssd"](path)
    assert loaders["centres"](path).output["heatmaps"].shape[-1] == 2  # a model with what it needs loads
