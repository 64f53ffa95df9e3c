"""The stage-2 model: outputs, dtypes under mixed precision, safe-mode save/load."""

import dataclasses

import keras
import numpy as np
import pytest

from stage2_visible_keypoints.config import ModelConfig, Stage2Config
from stage2_visible_keypoints.model import build_model, compile_model

DATA = dataclasses.replace(Stage2Config().data, input_size=(64, 64), heatmap_size=(32, 32))
IMAGES = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)


def _soft_argmax_of_sigmoid(logits, beta):
    """(N, H, W, K) logits -> (N, K, 2): the expected pixel centre under softmax(beta * sigmoid),
    written out in numpy, x over the width and y over the height."""
    weights = np.exp(beta * (1 / (1 + np.exp(-logits.astype(np.float64)))))
    weights /= weights.sum(axis=(1, 2), keepdims=True)
    height, width = logits.shape[1:3]
    x = ((np.arange(width) + 0.5) / width)[None, None, :, None]
    y = ((np.arange(height) + 0.5) / height)[None, :, None, None]
    return np.stack([(weights * x).sum(axis=(1, 2)), (weights * y).sum(axis=(1, 2))], axis=-1)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_outputs_shapes_and_float32_dtypes(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(5, DATA, ModelConfig())
        out = model(IMAGES, training=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert tuple(out["heatmap_logits"].shape) == (2, 32, 32, 5)
    assert tuple(out["keypoints"].shape) == (2, 5, 2)
    assert tuple(out["confidence"].shape) == (2, 5)
    for name in ("heatmap_logits", "keypoints", "confidence"):  # what feeds losses stays float32
        assert keras.backend.standardize_dtype(out[name].dtype) == "float32", name
    # Keypoints are the soft-argmax of sigmoid(logits); confidence is its peak.
    logits = keras.ops.convert_to_numpy(out["heatmap_logits"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["keypoints"]),
                               _soft_argmax_of_sigmoid(logits, ModelConfig().beta), atol=1e-4)
    peak = 1 / (1 + np.exp(-logits.max(axis=(1, 2))))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["confidence"]), peak, rtol=1e-3)


def test_saved_model_loads_in_safe_mode_and_predicts_the_same(tmp_path):
    cfg = Stage2Config()
    model = compile_model(build_model(3, DATA, ModelConfig()), DATA, cfg.train, keras.optimizers.Adam(1e-3), jit_compile=False)
    before = model.predict(IMAGES, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    after = loaded.predict(IMAGES, verbose=0)
    for name in before:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-5)
    # The model takes raw uint8 images: preprocessing is inside, augmentation only in training.
    assert loaded.input.dtype == "uint8"
    assert {"augment", "resnet_preprocess", "backbone"} <= {layer.name for layer in loaded.layers}


def test_resnet18_backbone_gives_the_same_outputs_with_a_smaller_encoder():
    big, small = build_model(4, DATA, ModelConfig()), build_model(4, DATA, ModelConfig(backbone="resnet18"))
    assert small.name == "stage2_resnet18_unet" and big.name == "stage2_resnet50_unet"
    out = small(IMAGES, training=False)
    assert tuple(out["heatmap_logits"].shape) == (2, 32, 32, 4) and tuple(out["keypoints"].shape) == (2, 4, 2)
    # ResNet-18 has 11.2 M weights against ResNet-50's 23.6 M (both without the top).
    assert small.get_layer("backbone").count_params() < 0.5 * big.get_layer("backbone").count_params()
    with pytest.raises(ValueError, match="backbone='vgg'"):
        ModelConfig(backbone="vgg")


def test_num_keypoints_is_checked():
    with pytest.raises(ValueError, match="num_keypoints=0"):
        build_model(0, DATA, ModelConfig())


def test_focal_loss_is_summed_over_the_keypoint_maps_unless_configured():
    """lambda = 5 was set against a focal loss summed over the maps (tensorflow-addons')."""
    train = Stage2Config().train
    model = build_model(3, DATA, ModelConfig(backbone="resnet18"))
    compile_model(model, DATA, train, keras.optimizers.Adam(1e-3), jit_compile=False)
    assert model.loss["heatmap_logits"].keypoint_reduction == "sum"
    compile_model(model, DATA, dataclasses.replace(train, focal_keypoint_reduction="mean"), keras.optimizers.Adam(1e-3), jit_compile=False)
    assert model.loss["heatmap_logits"].keypoint_reduction == "mean"
    with pytest.raises(ValueError, match="focal_keypoint_reduction must be sum\\|mean"):
        dataclasses.replace(train, focal_keypoint_reduction="max")


WIDE = dataclasses.replace(Stage2Config().data, input_size=(96, 64), heatmap_size=(48, 32))  # (width, height)


def test_non_square_loss_and_evaluation_use_the_config_codec():
    """96x64 input, 48 wide x 32 high maps: the compiled loss and evaluate's argmax+refine
    decode with `data.codec()`; keypoints come back right along x and along y."""
    from stage2_visible_keypoints.pipeline import evaluate

    cfg = dataclasses.replace(Stage2Config(), data=WIDE)
    model = build_model(2, WIDE, ModelConfig(backbone="resnet18"))
    compile_model(model, WIDE, cfg.train, keras.optimizers.Adam(1e-3), jit_compile=False)
    loss = model.loss["heatmap_logits"]
    assert loss.heatmap_size == (48, 32) and tuple(model.output["heatmap_logits"].shape[1:3]) == (32, 48)
    assert loss.get_config()["heatmap_size"] == WIDE.codec().get_config()["heatmap_size"]

    xy_norm = np.array([[[0.8, 0.15], [0.1, 0.9]]])
    maps = np.asarray(keras.ops.convert_to_numpy(WIDE.codec().encode(xy_norm)[0]), np.float64)
    logits = np.log(np.clip(maps, 1e-6, 1 - 1e-6) / (1 - np.clip(maps, 1e-6, 1 - 1e-6)))
    y = {"xy_norm": xy_norm, "visible": np.ones((1, 2), bool), "transforms": np.array([[1.0, 1.0, 0.0, 0.0]]),
         "xy_original": xy_norm * (96, 64)}
    summary = evaluate(xy_norm, np.ones((1, 2)), logits, y, cfg, ["a", "b"])
    mae = summary["input_frame_argmax_refine"]["mae"]  # input px, per axis, on the 96x64 frame
    assert mae["dx"] < 0.01 and mae["dy"] < 0.01, mae
    with pytest.raises(ValueError, match=r"heatmap_size=\(48, 32\)"):  # maps of the swapped size
        evaluate(xy_norm, np.ones((1, 2)), logits.transpose(0, 2, 1, 3), y, cfg, ["a", "b"])


def test_non_square_input_keypoints_are_x_over_width_y_over_height():
    # 96 wide x 64 high (config sizes are (width, height)): heatmaps are 32 high x 48 wide,
    # and the keypoints are SoftArgMax of sigmoid(logits) with x normalised by the width.
    data = dataclasses.replace(Stage2Config().data, input_size=(96, 64), heatmap_size=(48, 32))
    model_cfg = ModelConfig(backbone="resnet18")
    images = np.random.default_rng(1).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    out = build_model(2, data, model_cfg)(images, training=False)
    logits = keras.ops.convert_to_numpy(out["heatmap_logits"])
    assert logits.shape == (1, 32, 48, 2)
    assert tuple(out["keypoints"].shape) == (1, 2, 2)
    assert not model_cfg.debias  # the default: the plain expectation
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["keypoints"]),
                               _soft_argmax_of_sigmoid(logits, model_cfg.beta), atol=1e-5)


def test_the_configs_focal_reductions_are_the_losses():
    from common.losses import KEYPOINT_REDUCTIONS
    from stage2_visible_keypoints.config import FOCAL_REDUCTIONS

    assert sorted(FOCAL_REDUCTIONS) == sorted(KEYPOINT_REDUCTIONS)
