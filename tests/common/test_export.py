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
    model = build_model(2, cfg.data, cfg.model)
    _sharpen(model, "heatmaps")
    return model, cfg


def _ssd():
    from detection.ssd.ssd import build_detector
    from detection.ssd.ssd_config import DetConfig, ModelConfig

    cfg = DetConfig()
    model_cfg = dataclasses.replace(ModelConfig(), filters=(8, 8, 8, 8), head_filters=(8,) * len(ModelConfig().head_filters))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, input_size=(64, 64)), model=model_cfg)
    model = build_detector(2, cfg.data, cfg.model)
    for scale in range(1, len(model_cfg.scale_blocks) + 1):
        # Scores spread around 0.5 instead of the training prior's 0.01 everywhere, so that
        # boxes pass use.score_threshold and their order depends on the numbers.
        _sharpen(model, f"scale{scale}_head_out")
        bias = model.get_layer(f"scale{scale}_head_out").bias
        bias.assign(np.zeros(bias.shape, np.float32))
    return model, cfg


def _centres():
    from detection.centres.centres import build_model
    from detection.centres.centres_config import CentresConfig, ModelConfig

    cfg = CentresConfig()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, input_size=(64, 64), tile_size=256),
                              model=ModelConfig(decoder_filters=(8, 8, 8), head_filters=8))
    model = build_model(2, cfg.data, cfg.model)
    # Untrained, the sigmoid saturates at 1 on plateaus where 3x3 NMS peaks are ties; a
    # damped head gives graded maps (0.01-0.7) whose peaks are single pixels.
    kernel = model.get_layer("head_logits").kernel
    kernel.assign(kernel * 0.03)
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


def _file_outputs(path):
    """The output names stored in an exported file (not the runner's, which adds the head's)."""
    if path.suffix == ".onnx":
        import onnxruntime

        return [o.name for o in onnxruntime.InferenceSession(str(path)).get_outputs()]
    from ai_edge_litert.interpreter import Interpreter

    (signature,) = Interpreter(model_path=str(path)).get_signature_list().values()
    return signature["outputs"]


@pytest.mark.parametrize("fmt", ["onnx_int8", "litert_int8"])
def test_stage2_int8_error_is_measured(stage2, capsys, fmt):
    model, cfg, images, written = stage2
    error, expected, got = _keypoint_error_px(model, written[fmt], images, cfg.data.input_size)
    # The head runs in float: the file holds the network up to the raw heatmaps only,
    # and the keypoints and peak heights are the float decoding of the INT8 heatmaps.
    runner = load_inference_model(written[fmt])
    assert runner.float_head["input"] == "heatmap_logits"
    assert _file_outputs(written[fmt]) == ["heatmap_logits"]
    assert runner.output_shapes == {"heatmap_logits": (32, 48, 3), "keypoints": (3, 2), "confidence": (3,)}
    logits = got["heatmap_logits"].astype(np.float64)
    probs = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(got["confidence"], probs.max(axis=(1, 2)), atol=1e-6)
    weights = np.exp(15.0 * probs.reshape(len(images), -1, 3))
    weights /= weights.sum(axis=1, keepdims=True)
    x_centres = (np.arange(48 * 32) % 48 + 0.5) / 48
    np.testing.assert_allclose(got["keypoints"][..., 0], (weights * x_centres[None, :, None]).sum(axis=1), atol=1e-5)
    with capsys.disabled():
        print(f"\n{fmt} stage-2 keypoints vs float32 Keras: mean {error.mean():.3f} px, max {error.max():.3f} px "
              f"(input frame {cfg.data.input_size[0]}x{cfg.data.input_size[1]}, untrained net)")
    # Bounded only by the frame: a x30-sharpened random head on noise images, calibrated on
    # the same noise, is a test of the INT8 path, not of INT8 accuracy (bench/inference.py).
    assert np.isfinite(error).all() and error.max() <= max(cfg.data.input_size)
    float_file = written[fmt.removesuffix("_int8")]
    assert written[fmt].stat().st_size < 0.5 * float_file.stat().st_size  # int8 weights


def test_float_head_decodes_as_the_keras_layers():
    """`float_head` finds the stage-2 and IntegralNet heads (and none in the detectors), and
    its numpy decoding gives the Keras layers' outputs."""
    from common.export import apply_float_head, float_head, soft_argmax_numpy
    from common.layers import soft_argmax

    model, _ = _stage2()
    head = float_head(model)
    assert head == {"input": "heatmap_logits", "outputs": {
        "keypoints": {"op": "soft_argmax", "activation": "sigmoid", "beta": 15.0, "debias": False},
        "confidence": {"op": "peak", "activation": "sigmoid"}}}
    images = RNG.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    expected = {k: np.asarray(v) for k, v in model.predict_on_batch(images).items()}
    got = apply_float_head(head, {"heatmap_logits": expected["heatmap_logits"]})
    np.testing.assert_allclose(got["keypoints"], expected["keypoints"], atol=1e-5)
    np.testing.assert_allclose(got["confidence"], expected["confidence"], atol=1e-6)
    assert float_head(_baseline()[0])["outputs"]["keypoints"]["activation"] is None
    maps = RNG.random((2, 8, 12, 3)) ** 4
    for debias in (False, True):
        np.testing.assert_allclose(soft_argmax_numpy(maps, 20.0, debias),
                                   np.asarray(soft_argmax(maps, 20.0, debias)), atol=1e-5, err_msg=f"{debias=}")


def test_detectors_have_no_float_head():
    from common.export import float_head

    assert float_head(_ssd()[0]) is None and float_head(_centres()[0]) is None


# The centre detector with its flip/transpose augmentation layers in the graph.
PARTS = {"baselines": _baseline, "ssd": _ssd, "centres": _centres}
# Beside the model, as train_* writes them and export_* copies them: what use_* --images reads.
RUN_FILES = {"baselines": ("keypoint_names.json", ["a", "b"]), "ssd": ("categories.json", {"names": ["x", "y"]}),
             "centres": None}


# Slow (30-100 s each on the shared 2 cores): each conversion traces the model again, so
# each part is exported once for the agreement test and the use_* test alike.
@pytest.fixture(scope="module", params=list(PARTS))
def part(request, tmp_path_factory):
    """(name, model, cfg, images, {format: path}): a part's run folder (best.keras,
    config.json, its names file) and its float formats and ONNX INT8 in export/ with those files."""
    keras.utils.set_random_seed(0)  # the same weights whichever tests ran before
    model, cfg = PARTS[request.param]()
    run = tmp_path_factory.mktemp(request.param)
    model.save(run / "best.keras")
    save_config(cfg, run / "config.json")
    images = RNG.integers(0, 256, (3, *model.input.shape[1:]), dtype=np.uint8)
    written = export_model(model, run / "export", ("saved_model", "onnx", "litert", "onnx_int8"), images)
    for folder in (run, run / "export"):
        save_config(cfg, folder / "config.json")
        if RUN_FILES[request.param]:
            name, value = RUN_FILES[request.param]
            (folder / name).write_text(json.dumps(value))
    return request.param, model, cfg, images, written


@pytest.mark.slow
def test_every_part_exports_to_every_format_and_agrees(part):
    _, model, _, images, written = part
    expected = model.predict_on_batch(images)
    for fmt, path in written.items():
        got = load_inference_model(path).predict_on_batch(images)
        assert set(got) == set(expected), fmt
        for name, value in expected.items():
            if fmt == "onnx_int8":  # an untrained net: a test of the path, not of INT8 accuracy (bench/)
                assert got[name].shape == np.shape(value), name
                error, scale = np.abs(got[name] - value), np.ptp(np.asarray(value))
                assert np.isfinite(error).all() and error.mean() < 0.25 * scale, f"{fmt} {name}"
                assert np.abs(got[name] - value).max() > 0, f"{fmt} {name}: no quantisation at all"
            else:
                np.testing.assert_allclose(got[name], np.asarray(value), atol=2e-3, rtol=1e-3,
                                           err_msg=f"{fmt} {name}")


# The first lines of a child process with `import keras` and `import tensorflow` failing.
BLOCK_KERAS = """import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tensorflow"):
            raise ImportError(name + " is blocked by the test")
sys.meta_path.insert(0, Block())
"""

@pytest.mark.parametrize("fmt", ["onnx", "onnx_int8"])
def test_onnx_predictor_runs_without_keras_or_tensorflow(stage2, fmt):
    """A deployment machine with only onnxruntime: KeypointPredictor on the .onnx file (and
    the INT8 one, its head decoded in numpy), with `import keras` and `import tensorflow`
    failing, gives the keypoints of the Keras model (of the file run beside Keras)."""
    model, cfg, images, written = stage2
    np.save(written[fmt].parent / "images.npy", images)
    code = BLOCK_KERAS + f"""
import numpy as np
from stage2_visible_keypoints.predictor import KeypointPredictor
predictor = KeypointPredictor.from_run({str(written[fmt])!r})
images = np.load({str(written[fmt].parent / "images.npy")!r})
out = predictor.predict_input(images, np.tile([1.0, 1.0, 0.0, 0.0], (len(images), 1)))
print(json.dumps({{"xy": out["xy_input"].tolist(), "names": predictor.names_for(3),
                  "modules": sorted(m for m in ("keras", "tensorflow") if m in sys.modules)}}))
"""
    result = json.loads(check(run_script("-c", code)).stdout.strip().splitlines()[-1])
    assert result["modules"] == [] and result["names"] == ["tip", "nose", "tail"]
    size = np.asarray(cfg.data.input_size)
    expected = model.predict_on_batch(images)["keypoints"] * size
    if fmt == "onnx_int8":
        expected = load_inference_model(written[fmt]).predict_on_batch(images)["keypoints"] * size
    assert np.abs(np.asarray(result["xy"]) - expected).max() < 0.05


def test_use_vis_on_exported_files_runs_without_keras_or_tensorflow(stage2, tmp_path):
    """use_vis.py --model on the .onnx and the .tflite file, with `import keras` and
    `import tensorflow` failing (a deployment machine; and no seconds spent importing
    them), writes the .keras run's per-image keypoints and draws its figures."""
    from PIL import Image

    from common import cli
    from stage2_visible_keypoints import use_vis

    model, cfg, images, written = stage2
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(RNG.integers(0, 256, (100, 150, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    args = ["--images", str(folder), "--quiet", "--set", "use.max_overlays=1"]
    runs = {fmt: tmp_path / fmt for fmt in ("onnx", "litert")}
    code = BLOCK_KERAS + f"""
from common import cli
from stage2_visible_keypoints import use_vis
for model, out in {[(str(written[fmt]), str(out)) for fmt, out in runs.items()]!r}:
    assert cli.run(use_vis.main, ["--model", model, "--output-dir", out] + {args!r}) == 0, model
print(json.dumps(sorted(m for m in ("keras", "tensorflow") if m in sys.modules)))
"""
    assert json.loads(check(run_script("-c", code)).stdout.strip().splitlines()[-1]) == []
    reference = tmp_path / "keras"
    assert cli.run(use_vis.main, ["--model", str(written["onnx"].parent.parent / "best.keras"),
                                  "--output-dir", str(reference)] + args) == 0

    def keypoints(out):
        return {p.name: np.asarray(json.loads(p.read_text())["keypoints_input"])
                for p in sorted((out / "per_image").glob("*.json"))}

    want = keypoints(reference)
    assert sorted(want) == ["im0.png.json", "im1.png.json"]
    assert np.ptp(want["im0.png.json"], axis=0).max() > 0.5  # keypoints apart: not two flat maps agreeing
    for fmt, out in runs.items():
        got = keypoints(out)
        assert sorted(got) == sorted(want), fmt
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=0.05, err_msg=f"{fmt} {name}")
        assert (out / "overlays" / "im0.png.png").is_file() and (out / "heatmaps" / "im0.png.png").is_file(), fmt


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


def test_onnx_alone_exports_a_model_loaded_from_keras(tmp_path):
    """`export_vis.py --format onnx` exports a model just loaded from its .keras file,
    which Keras' ONNX export refuses as "never called" unless something called it first."""
    inputs = keras.Input((8, 8, 3), dtype="uint8", name="images")
    outputs = keras.layers.Conv2D(2, 3, name="conv")(keras.ops.cast(inputs, "float32") / 255.0)
    keras.Model(inputs, outputs).save(tmp_path / "m.keras")
    model = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    written = export_model(model, tmp_path / "export", ("onnx",))
    images = RNG.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    got = load_inference_model(written["onnx"]).predict_on_batch(images)
    np.testing.assert_allclose(np.asarray(next(iter(got.values()))), model.predict_on_batch(images), atol=1e-5)


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
    assert set(FILE_NAMES) == {"saved_model", "onnx", "onnx_int8", "litert", "litert_int8"}


def test_export_script_help():
    out = check(run_script(ROOT / "stage2_visible_keypoints" / "export_vis.py", "--help")).stdout
    assert "--format" in out and "--output-dir" in out and "--model" in out
    assert keras.backend.backend() == "tensorflow"


# One exported format per part: the use_* scripts reach every format through the one
# loader (`load_inference_model`) that the agreement test above checks format by format.
USE_FORMAT = {"baselines": "saved_model", "ssd": "onnx", "centres": "litert"}


def _use_outputs(name, out):
    """A use_* run's predictions on --images: {image: (P, D) numbers}, the score last for
    the detectors, rows by falling score."""
    if name == "baselines":
        with np.load(out / "predictions.npz", allow_pickle=False) as npz:
            return {str(f): xy * 32 for f, xy in zip(npz["filenames"], npz["xy_norm"])}  # input px
    if name == "ssd":
        records = json.loads((out / "detections.json").read_text())["images"]
        found = {r["file_name"]: np.column_stack([np.reshape(r["boxes_xyxy_input"], (-1, 4)),
                                                        r["scores"]]) for r in records}
    else:
        found = {p.name: json.loads(p.read_text()) for p in sorted((out / "detections").glob("*.json"))}
        found = {name: np.column_stack([np.reshape(d["centres"], (-1, 2)), d["scores"]]) for name, d in found.items()}
    return {name: rows[np.argsort(-rows[:, -1], kind="stable")] for name, rows in found.items()}


def _assert_found_in(rows, others, threshold, image):
    """Each of the five best `rows` clear of the score threshold has a row in `others` at
    the same place (0.05 px) and score (1e-3); one at the threshold may fall either side.
    Returns how many rows it compared."""
    clear = rows[:5][rows[:5, -1] > threshold + 2e-3]
    for row in clear:
        near = np.abs(others[:, :-1] - row[:-1]).max(axis=1) < 0.05
        assert np.any(near & (np.abs(others[:, -1] - row[-1]) < 1e-3)), f"{image}: {row} not found in {others[:5]}"
    return len(clear)


def test_use_script_takes_an_exported_file(part, tmp_path):
    """use_base/use_det/use_centres --model on an exported file give the .keras run's
    keypoints, boxes or centres (within 0.05 px of the model input, scores within 1e-3)."""
    from PIL import Image

    from baselines import use_base
    from common import cli
    from detection.centres import use_centres
    from detection.ssd import use_det

    name, _, _, _, written = part
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)  # the same images whatever ran before
    for i in range(2):  # 300x200: two 256 px centre tiles; resized for the others
        Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    main = {"baselines": use_base.main, "ssd": use_det.main, "centres": use_centres.main}[name]
    # Low enough that the untrained detectors' maps give peaks and boxes to compare.
    threshold = {"baselines": 0.0, "ssd": 0.05, "centres": 0.1}[name]
    runs = {}
    for label, model in (("keras", written["onnx"].parent.parent / "best.keras"), ("exported", written[USE_FORMAT[name]])):
        argv = ["--model", str(model), "--images", str(folder), "--output-dir", str(tmp_path / label), "--quiet",
                "--set", "use.max_overlays=0"] + (["--set", f"use.score_threshold={threshold}"] if threshold else [])
        assert cli.run(main, argv) == 0, label
        runs[label] = _use_outputs(name, tmp_path / label)
    assert sorted(runs["keras"]) == sorted(runs["exported"]) and len(runs["keras"]) == 2
    compared = 0
    for image, want in runs["keras"].items():
        got = runs["exported"][image]
        if name == "baselines":
            assert np.ptp(want, axis=0).max() > 0.5  # the keypoints apart: not two flat maps agreeing
            np.testing.assert_allclose(got, want, atol=0.05, err_msg=image)
        else:
            compared += _assert_found_in(want, got, threshold, image)
            compared += _assert_found_in(got, want, threshold, image)
    assert compared or name == "baselines", "no detection clear of the threshold to compare"
