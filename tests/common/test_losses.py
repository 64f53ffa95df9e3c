import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from common.codecs import GaussianHeatmapCodec
from common.losses import AdaptiveWingLoss, FocalHeatmapLoss, HeatmapPeakLoss, MaskedL1
from tests.harness import run_loss_test

REPO_ROOT = Path(__file__).resolve().parents[2]


def _value(loss, y_true, y_pred):
    return float(ops.convert_to_numpy(loss(y_true, y_pred)))


# --- FocalHeatmapLoss ---


@pytest.mark.parametrize(
    "target, expected",
    [
        # z = 0 -> p = 0.5; t = 1: alpha_t = 0.25, (1 - p_t)^2 = 0.25, bce = ln 2.
        (1.0, 0.25 * 0.25 * math.log(2)),
        # t = 0: alpha_t = 0.75, (1 - p_t)^2 = 0.25, bce = ln 2.
        (0.0, 0.75 * 0.25 * math.log(2)),
        # soft t = 0.5: alpha_t = 0.5, p_t = 0.5, bce = 0.5 ln 2 + 0.5 ln 2.
        (0.5, 0.5 * 0.25 * math.log(2)),
    ],
)
def test_focal_one_pixel_hand_values(target, expected):
    y_true = np.full((1, 1, 1, 1), target, np.float32)
    y_pred = np.zeros((1, 1, 1, 1), np.float32)
    assert _value(FocalHeatmapLoss(), y_true, y_pred) == pytest.approx(expected, rel=1e-6)


def test_focal_one_pixel_hand_value_nonzero_logit():
    # z = 2, t = 1: p = sigmoid(2), bce = softplus(-2) = ln(1 + e^-2).
    p = 1 / (1 + math.exp(-2))
    expected = 0.25 * (1 - p) ** 2 * math.log(1 + math.exp(-2))
    y_true = np.ones((1, 1, 1, 1), np.float32)
    y_pred = np.full((1, 1, 1, 1), 2.0, np.float32)
    assert _value(FocalHeatmapLoss(), y_true, y_pred) == pytest.approx(expected, rel=1e-5)
    probs = 1 / (1 + np.exp(-y_pred))
    assert _value(FocalHeatmapLoss(from_logits=False), y_true, probs) == pytest.approx(expected, rel=1e-4)


def test_focal_good_logits_beat_bad_and_keypoint_path_equals_heatmap_path():
    codec = GaussianHeatmapCodec((16, 16), sigma=1.5)
    xy_norm = np.array([[[0.3, 0.6], [0.7, 0.2]], [[0.5, 0.5], [0.1, 0.9]]], np.float32)
    visible = np.array([[1, 1], [1, 0]], np.float32)
    keypoints = np.concatenate([xy_norm, visible[..., None]], axis=-1)  # (2, 2, 3)
    targets = ops.convert_to_numpy(codec.encode(xy_norm, visible)[0])
    loss = FocalHeatmapLoss(heatmap_size=(16, 16), sigma=1.5)

    good = np.log(np.clip(targets, 1e-4, 1 - 1e-4) / (1 - np.clip(targets, 1e-4, 1 - 1e-4)))
    bad = -good
    assert _value(loss, targets, good) < 0.1 * _value(loss, targets, bad)
    assert _value(loss, targets, good) < _value(loss, targets, np.zeros_like(good))

    logits = np.random.default_rng(0).normal(size=targets.shape).astype(np.float32)
    from_keypoints = run_loss_test(loss, keypoints, logits)
    assert from_keypoints == pytest.approx(_value(loss, targets, logits), rel=1e-6)


def test_focal_keypoint_reduction_hand_values_and_config():
    # One row of two pixels, three maps, logits 0: a target-1 pixel costs a = 0.25 * 0.25 * ln 2,
    # a target-0 pixel b = 0.75 * 0.25 * ln 2. Map 0 = [1, 0] -> (a + b) / 2; maps 1, 2 = [0, 0] -> b.
    a, b = 0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)
    y_true = np.zeros((1, 1, 2, 3), np.float32)  # (batch, H=1, W=2, K=3)
    y_true[0, 0, 0, 0] = 1.0
    y_pred = np.zeros_like(y_true)
    assert _value(FocalHeatmapLoss(), y_true, y_pred) == pytest.approx(((a + b) / 2 + 2 * b) / 3, rel=1e-6)
    summed = FocalHeatmapLoss(keypoint_reduction="sum")
    assert _value(summed, y_true, y_pred) == pytest.approx((a + b) / 2 + 2 * b, rel=1e-6)
    restored = FocalHeatmapLoss.from_config(summed.get_config())
    assert restored.keypoint_reduction == "sum"
    assert _value(restored, y_true, y_pred) == pytest.approx((a + b) / 2 + 2 * b, rel=1e-6)
    # A loss saved before the option existed has no such key, and keeps its mean.
    old = {k: v for k, v in summed.get_config().items() if k != "keypoint_reduction"}
    assert FocalHeatmapLoss.from_config(old).keypoint_reduction == "mean"
    with pytest.raises(ValueError, match="keypoint_reduction"):
        FocalHeatmapLoss(keypoint_reduction="max")


def test_focal_rejects_wrong_heatmap_size_and_rank():
    loss = FocalHeatmapLoss(heatmap_size=(16, 16))
    with pytest.raises(ValueError, match="heatmap_size=\\(16, 16\\)"):
        loss(np.zeros((1, 2, 3), np.float32), np.zeros((1, 8, 8, 2), np.float32))
    with pytest.raises(ValueError, match="Received: shape"):
        loss(np.zeros((1, 2), np.float32), np.zeros((1, 8, 8, 2), np.float32))
    with pytest.raises(ValueError, match="alpha=2"):
        FocalHeatmapLoss(alpha=2)


def test_focal_fit_step_with_keypoint_targets():
    """Targets are built from keypoints inside the compiled train step."""
    inputs = keras.Input((8, 8, 1))
    logits = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    model = keras.Model(inputs, logits)
    model.compile(optimizer="sgd", loss=FocalHeatmapLoss(heatmap_size=(8, 8), sigma=1.0))
    keypoints = np.array([[[0.3, 0.6, 1.0], [0.5, 0.5, 0.0]]] * 2, np.float32)
    history = model.fit(np.ones((2, 8, 8, 1), np.float32), keypoints, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# --- Non-square maps: the losses' targets (built from keypoints) on a 48 wide x 32 high map ---

WIDE = (48, 32)  # (width, height)


def _gaussians(xy_px, visible, size, sigma):
    """Hand-built (1, H, W, K) targets, independent of the codec: column c is x, row r is y."""
    width, height = size
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)  # (H, W) each
    maps = [np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2)) * v for (x, y), v in zip(xy_px, visible)]
    return np.stack(maps, axis=-1)[None].astype(np.float32)


@pytest.mark.parametrize("make_loss, on_maps", [
    (lambda codec: FocalHeatmapLoss(**codec.get_config()), _value),
    (lambda codec: AdaptiveWingLoss(**codec.get_config()), _value),
    # HeatmapPeakLoss takes keypoints only: its MSE on the maps by hand.
    (lambda codec: HeatmapPeakLoss(alpha=1.0, beta=0.0, **codec.get_config()),
     lambda loss, targets, y_pred: float(np.mean((y_pred - targets) ** 2))),
], ids=["focal", "adaptive_wing", "mse"])
def test_non_square_targets_peak_at_x_y_and_config_round_trip(make_loss, on_maps):
    codec = GaussianHeatmapCodec(WIDE, sigma=1.5)
    loss = make_loss(codec)
    xy_px = np.array([[40.5, 5.5], [6.3, 27.2]])  # x near the right, y near the top; and the reverse
    keypoints = np.concatenate([xy_px / WIDE, [[1.0], [1.0]]], axis=-1)[None].astype(np.float32)
    targets = _gaussians(xy_px, [1, 1], WIDE, 1.5)
    assert targets.shape == (1, 32, 48, 2) and targets[0, 5, 40, 0] == pytest.approx(1.0)
    y_pred = np.random.default_rng(1).uniform(0, 1, targets.shape).astype(np.float32)
    # The loss on keypoints equals the loss on the hand-built targets: its targets are those maps.
    assert _value(loss, keypoints, y_pred) == pytest.approx(on_maps(loss, targets, y_pred), rel=1e-5)
    restored = type(loss).from_config(loss.get_config())
    assert restored.get_config()["heatmap_size"] == WIDE and restored.codec.map_shape == (32, 48)
    assert _value(restored, keypoints, y_pred) == pytest.approx(_value(loss, keypoints, y_pred), rel=1e-6)
    with pytest.raises(ValueError, match=r"heatmap_size=\(48, 32\)"):  # maps of the swapped size
        loss(keypoints, np.zeros((1, 48, 32, 2), np.float32))


def test_non_square_peak_distance_is_in_pixels_along_each_axis():
    """A 3 px shift is 3 px along x (of 48) and along y (of 32); swapped scales give 2 and 4.5."""
    codec = GaussianHeatmapCodec(WIDE, sigma=1.0)
    peak_term = HeatmapPeakLoss(alpha=0.0, beta=1.0, debias=True, **codec.get_config())
    keypoint = np.array([[[24.5 / 48, 16.5 / 32, 1.0]]], np.float32)
    for shift_px in ([3.0, 0.0], [0.0, 3.0]):
        moved = keypoint[..., :2] + np.array(shift_px, np.float32) / WIDE
        y_pred = ops.convert_to_numpy(codec.encode(moved)[0])
        assert _value(peak_term, keypoint, y_pred) == pytest.approx(3.0, abs=0.05), shift_px


# --- MaskedL1 ---


def test_masked_l1_hand_case_ignores_invisible():
    y_true = np.array([[[0.1, 0.2, 1.0], [0.5, 0.5, 1.0], [0.9, 0.9, 0.0]]], np.float32)
    y_pred = np.array([[[0.2, 0.2], [0.5, 0.8], [100.0, -100.0]]], np.float32)
    # Visible errors |dx| + |dy|: 0.1 + 0.0 and 0.0 + 0.3 -> 0.4 over 2 * 2 coordinates.
    assert run_loss_test(MaskedL1(), y_true, y_pred) == pytest.approx(0.1, rel=1e-5)
    y_pred_small = y_pred.copy()
    y_pred_small[0, 2] = [0.9, 0.9]
    assert _value(MaskedL1(), y_true, y_pred_small) == pytest.approx(0.1, rel=1e-5)


def test_masked_l1_all_invisible_is_zero():
    y_true = np.array([[[0.1, 0.2, 0.0], [np.nan, np.nan, 0.0]]], np.float32)
    y_pred = np.full((1, 2, 2), 0.7, np.float32)
    assert _value(MaskedL1(), y_true, y_pred) == 0.0


# --- TensorFlow and JAX agree ---

_BACKEND_SCRIPT = """
import json, sys
import numpy as np
import keras
from common.layers import SoftArgMax
from common.losses import FocalHeatmapLoss
rng = np.random.default_rng(0)
heatmaps = rng.uniform(0, 1, (2, 12, 12, 3)).astype(np.float32)
heatmaps[0, 3, 8, 0] = 3.0
keypoints = np.concatenate([rng.uniform(0, 1, (2, 3, 2)), [[[1], [1], [0]], [[0], [1], [1]]]], -1).astype(np.float32)
result = {
    "backend": keras.backend.backend(),
    "plain": keras.ops.convert_to_numpy(SoftArgMax(beta=15.0)(heatmaps)).tolist(),
    "debias": keras.ops.convert_to_numpy(SoftArgMax(beta=15.0, debias=True)(heatmaps)).tolist(),
    "focal": float(keras.ops.convert_to_numpy(FocalHeatmapLoss(heatmap_size=(12, 12))(keypoints, heatmaps * 4 - 2))),
}
print("RESULT" + json.dumps(result))
"""


def _run_backend(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", _BACKEND_SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_jax_backend_matches_current_backend():
    """One JAX subprocess; the reference runs in this process on the configured backend."""
    namespace = {}
    exec(compile(_BACKEND_SCRIPT.replace('print("RESULT" + json.dumps(result))', ""), "<script>", "exec"), namespace)
    reference = namespace["result"]
    jax_result = _run_backend("jax")
    assert jax_result["backend"] == "jax"
    for key in ("plain", "debias", "focal"):
        np.testing.assert_allclose(jax_result[key], reference[key], rtol=1e-5, atol=1e-6, err_msg=key)
