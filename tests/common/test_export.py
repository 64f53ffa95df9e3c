"""`common.export`: every part's model in SavedModel, ONNX and LiteRT (float32, INT8), each
file run in its own runtime and compared with the Keras model on the same images.

Float formats must agree within 0.05 px in the model's input frame; INT8's error is
measured and printed (`-s` shows it), and bounded only loosely: post-training INT8 of an
untrained net is not a claim about accuracy. Conversions are slow (tens of seconds for a
ResNet-18), so each model is exported once per module.
"""

import dataclasses
import json

import keras
import numpy as np
import pytest

from common.config import save_config
from common.errors import DataError
from common.export import FILE_NAMES, export_model, load_inference_model, parse_formats
from tests.scripts import ROOT, check, run_script

RNG = np.random.default_rng(0)


def _sharpen(model, layer):
    """An untrained head gives flat maps whose soft-argmax sits at the centre whatever the
    runtime does; a scaled-up head gives peaks that move with every numerical error."""
    kernel = model.get_layer(layer).kernel
    kernel.assign(kernel * 30.0)


def _stage2():
    from stage2_visible_keypoints.config import ModelConfig, Stage2Config
    from stage2_visible_keypoints.model import build_model

    cfg = Stage2Config()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, input_size=(96, 64), heatmap_size=(48, 32)),
                              model=ModelConfig(backbone="resnet18", decoder_filters=(16, 16, 16, 16)))
    model = build_model(3, cfg.data, cfg.model, seed=0)
    _sharpen(model, "heatmap_logits")
    return model, cfg


def _baseline():
    from baselines.config import BaselinesConfig, ModelConfig
    from baselines.models import build_model

    cfg = BaselinesConfig()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, input_size=32, heatmap_size=16),
                              model=ModelConfig(kind="integral", filters=(4, 8, 8, 8)))
    return build_model(2, cfg.data, cfg.model), cfg


def _ssd():
    from detection.ssd.ssd import build_detector
    from detection.ssd.ssd_config import DetConfig, ModelConfig

    cfg = DetConfig()
    model_cfg = dataclasses.replace(ModelConfig(), filters=(8, 8, 8, 8), head_filters=(8,) * len(ModelConfig().head_filters))
    return build_detector(2, dataclasses.replace(cfg.data, input_size=(64, 64)), model_cfg), cfg


def _centres():
    from detection.centres.centres import build_model
    from detection.centres.centres_config import CentresConfig, ModelConfig

    cfg = CentresConfig()
    data = dataclasses.replace(cfg.data, input_size=(64, 64)) if hasattr(cfg.data, "input_size") else cfg.data
    model = build_model(2, data, ModelConfig(decoder_filters=(8, 8, 8), head_filters=8))
    return model, cfg


@pytest.fixture(scope="module")
def stage2(tmp_path_factory):
    """A stage-2 run (best.keras, config.json, keypoint names) and its four exported files."""
    model, cfg = _stage2()
    run = tmp_path_factory.mktemp("stage2_run")
    model.save(run / "best.keras")
    save_config(cfg, run / "config.json")
    (run / "keypoint_names.json").write_text(json.dumps(["tip", "nose", "tail"]))
    images = RNG.integers(0, 256, (6, 64, 96, 3), dtype=np.uint8)
    out = run / "export"
    written = export_model(model, out, parse_formats("all"), representative=images)
    for name in ("config.json", "keypoint_names.json"):
        (out / name).write_bytes((run / name).read_bytes())
    return model, cfg, images, written


def _keypoint_error_px(model, path, images, size):
    expected = model.predict_on_batch(images)
    got = load_inference_model(path).predict_on_batch(images)
    assert set(got) == set(expected)
    for name in expected:
        assert got[name].shape == np.asarray(expected[name]).shape, name
    return np.abs(got["keypoints"] - expected["keypoints"]) * np.asarray(size), expected, got


@pytest.mark.parametrize("fmt", ["saved_model", "onnx", "litert"])
def test_stage2_float_formats_agree_within_005_px(stage2, fmt):
    model, cfg, images, written = stage2
    error, expected, got = _keypoint_error_px(model, written[fmt], images, cfg.data.input_size)
    assert error.max() < 0.05, f"{fmt}: {error.max():.4f} px"
    np.testing.assert_allclose(got["confidence"], expected["confidence"], atol=1e-3)
    # The keypoints do move between images: agreement is not a constant output agreeing.
    assert np.ptp(expected["keypoints"][:, 0] * cfg.data.input_size, axis=0).max() > 0.5


def test_stage2_int8_error_is_measured(stage2, capsys):
    model, cfg, images, written = stage2
    error, expected, got = _keypoint_error_px(model, written["litert_int8"], images, cfg.data.input_size)
    with capsys.disabled():
        print(f"\nINT8 stage-2 keypoints vs float32 Keras: mean {error.mean():.3f} px, max {error.max():.3f} px "
              f"(input frame {cfg.data.input_size[0]}x{cfg.data.input_size[1]}, untrained net)")
    # Bounded only by the frame: a x30-sharpened random head on noise images, calibrated on
    # the same noise, is a test of the INT8 path, not of INT8 accuracy (bench/inference.py).
    assert np.isfinite(error).all() and error.max() <= max(cfg.data.input_size)
    assert written["litert_int8"].stat().st_size < 0.5 * written["litert"].stat().st_size  # int8 weights


# Slow (30-100 s each on the shared 2 cores): each conversion traces the model again.
@pytest.mark.slow
@pytest.mark.parametrize("build,formats", [(_baseline, ("saved_model", "onnx", "litert")),
                                           (_ssd, ("saved_model", "onnx", "litert")),
                                           # With its flip/transpose augmentation layers in the graph.
                                           (_centres, ("saved_model", "onnx", "litert"))],
                         ids=["baselines", "ssd", "centres"])
def test_every_part_exports_to_every_format_and_agrees(build, formats, tmp_path):
    model, _ = build()
    shape = tuple(model.input.shape[1:])
    images = RNG.integers(0, 256, (3, *shape), dtype=np.uint8)
    written = export_model(model, tmp_path, formats, representative=images)
    expected = model.predict_on_batch(images)
    for fmt, path in written.items():
        got = load_inference_model(path).predict_on_batch(images)
        assert set(got) == set(expected), fmt
        for name, value in expected.items():
            np.testing.assert_allclose(got[name], np.asarray(value), atol=2e-3, rtol=1e-3, err_msg=f"{fmt} {name}")


def test_onnx_predictor_runs_without_keras_or_tensorflow(stage2):
    """A deployment machine with only onnxruntime: KeypointPredictor on the .onnx file, with
    `import keras` and `import tensorflow` failing, gives the Keras model's keypoints."""
    model, cfg, images, written = stage2
    np.save(written["onnx"].parent / "images.npy", images)
    code = f"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tensorflow"):
            raise ImportError(name + " is blocked by the test")
sys.meta_path.insert(0, Block())
import numpy as np
from stage2_visible_keypoints.predictor import KeypointPredictor
predictor = KeypointPredictor.from_run({str(written["onnx"])!r})
images = np.load({str(written["onnx"].parent / "images.npy")!r})
out = predictor.predict_input(images, np.tile([1.0, 1.0, 0.0, 0.0], (len(images), 1)))
print(json.dumps({{"xy": out["xy_input"].tolist(), "names": predictor.names_for(3),
                  "modules": sorted(m for m in ("keras", "tensorflow") if m in sys.modules)}}))
"""
    result = json.loads(check(run_script("-c", code)).stdout.strip().splitlines()[-1])
    assert result["modules"] == [] and result["names"] == ["tip", "nose", "tail"]
    expected = model.predict_on_batch(images)["keypoints"] * np.asarray(cfg.data.input_size)
    assert np.abs(np.asarray(result["xy"]) - expected).max() < 0.05


@pytest.mark.parametrize("fmt", ["saved_model", "litert"])
def test_predictor_takes_any_exported_file(stage2, fmt):
    from stage2_visible_keypoints.predictor import KeypointPredictor

    model, cfg, images, written = stage2
    predictor = KeypointPredictor.from_run(written[fmt])
    reference = KeypointPredictor.from_run(written[fmt].parent.parent / "best.keras")
    frame = RNG.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    got, want = predictor.predict(frame), reference.predict(frame)
    assert got.keypoint_names == want.keypoint_names == ("tip", "nose", "tail")
    # 400x300 -> 96x64 input: 0.05 input px is 0.2 original px.
    np.testing.assert_allclose(got.keypoints_original, want.keypoints_original, atol=0.05 * 400 / 96)


def test_bad_format_and_files_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="unknown format pt"):
        parse_formats("onnx,pt")
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(DataError, match="cannot load the ONNX model"):
        load_inference_model(tmp_path / "model.onnx")
    with pytest.raises(DataError, match="not a SavedModel"):
        load_inference_model(tmp_path)
    with pytest.raises(DataError, match="not a model file"):
        load_inference_model(tmp_path / "model.pt")
    assert set(FILE_NAMES) == {"saved_model", "onnx", "litert", "litert_int8"}


def test_export_script_help():
    out = check(run_script(ROOT / "stage2_visible_keypoints" / "export_vis.py", "--help")).stdout
    assert "--format" in out and "--output-dir" in out and "--model" in out
    assert keras.backend.backend() == "tensorflow"
