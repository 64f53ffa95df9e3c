"""Wing, adaptive Wing and MSE + soft-argmax peak losses: hand-computed values."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from common.codecs import GaussianHeatmapCodec
from common.losses import AdaptiveWingLoss, HeatmapPeakLoss, WingLoss
from tests.harness import run_loss_test


def _value(loss, y_true, y_pred):
    return float(ops.convert_to_numpy(loss(y_true, y_pred)))


def test_wing_hand_values_and_invisible_ignored():
    # width 10, epsilon 2: d = 2 -> 10 ln 2; d = 12 -> 12 - C, C = 10 - 10 ln 6.
    y_true = np.array([[[0.0, 0.0, 1.0], [5.0, 5.0, 0.0]]], np.float32)
    y_pred = np.array([[[2.0, 12.0], [100.0, -100.0]]], np.float32)
    expected = (10 * math.log(2) + 12 - (10 - 10 * math.log(6))) / 2
    assert run_loss_test(WingLoss(10.0, 2.0, scale=1.0), y_true, y_pred) == pytest.approx(expected, rel=1e-5)
    # scale converts normalised coordinates: 2/64 * 64 = 2 px.
    y_pred_norm = np.array([[[2 / 64, 12 / 64], [0.0, 0.0]]], np.float32)
    assert _value(WingLoss(scale=64.0), y_true, y_pred_norm) == pytest.approx(expected, rel=1e-5)


def test_wing_is_continuous_at_width_and_accepts_xy_only():
    loss = WingLoss(width=4.0, epsilon=1.0, scale=1.0)
    below = _value(loss, np.zeros((1, 1, 2), np.float32), np.full((1, 1, 2), 4.0 - 1e-4, np.float32))
    above = _value(loss, np.zeros((1, 1, 2), np.float32), np.full((1, 1, 2), 4.0 + 1e-4, np.float32))
    assert below == pytest.approx(4 * math.log(5), abs=1e-3) and above == pytest.approx(below, abs=1e-3)
    with pytest.raises(ValueError, match="width=0"):
        WingLoss(width=0)


def _awing(d, y, omega=14.0, theta=0.5, eps=1.0, alpha=2.1):
    a = alpha - y
    if d < theta:
        return omega * math.log(1 + (d / eps) ** a)
    big_a = omega * a * (theta / eps) ** (a - 1) / (eps * (1 + (theta / eps) ** a))
    return big_a * d - (theta * big_a - omega * math.log(1 + (theta / eps) ** a))


@pytest.mark.parametrize("target, pred", [(0.0, 0.25), (0.0, 1.0), (1.0, 0.8), (1.0, -0.5), (0.5, 0.5)])
def test_adaptive_wing_one_pixel_hand_values(target, pred):
    y_true = np.full((1, 1, 1, 1), target, np.float32)
    y_pred = np.full((1, 1, 1, 1), pred, np.float32)
    loss = AdaptiveWingLoss(heatmap_size=(1, 1))
    assert _value(loss, y_true, y_pred) == pytest.approx(_awing(abs(pred - target), target), rel=1e-5, abs=1e-7)


def test_adaptive_wing_continuous_at_theta_and_keypoint_targets():
    loss = AdaptiveWingLoss(heatmap_size=(1, 1))
    zeros = np.zeros((1, 1, 1, 1), np.float32)
    below, above = (_value(loss, zeros, np.full((1, 1, 1, 1), 0.5 + s, np.float32)) for s in (-1e-4, 1e-4))
    assert above == pytest.approx(below, abs=3e-3)  # slope about 11 over 2e-4
    codec = GaussianHeatmapCodec((8, 8), 1.0)
    keypoints = np.array([[[0.3, 0.6, 1.0], [0.5, 0.5, 0.0]]], np.float32)
    targets = ops.convert_to_numpy(codec.encode(keypoints[..., :2], keypoints[..., 2])[0])
    pred = np.random.default_rng(0).normal(0, 0.3, targets.shape).astype(np.float32)
    loss = AdaptiveWingLoss(heatmap_size=(8, 8), sigma=1.0)
    assert run_loss_test(loss, keypoints, pred) == pytest.approx(_value(loss, targets, pred), rel=1e-6)
    assert _value(loss, keypoints, targets) == pytest.approx(0.0, abs=1e-6)


def test_heatmap_peak_loss_terms():
    codec = GaussianHeatmapCodec((8, 8), 1.0)
    # Keypoint 0 at pixel centre (1.5, 3.5) px; the prediction peaks at (5.5, 3.5): 4 px away.
    keypoints = np.array([[[1.5 / 8, 3.5 / 8, 1.0], [0.9, 0.9, 0.0]]], np.float32)
    pred = np.zeros((1, 8, 8, 2), np.float32)
    pred[0, 3, 5, 0] = 100.0
    pred[0, 1, 1, 1] = 100.0  # invisible keypoint: its peak does not count
    peak_only = HeatmapPeakLoss(alpha=0.0, beta=1.0, heatmap_size=(8, 8), sigma=1.0)
    assert run_loss_test(peak_only, keypoints, pred) == pytest.approx(4.0, rel=1e-4)
    mse_only = HeatmapPeakLoss(alpha=1.0, beta=0.0, heatmap_size=(8, 8), sigma=1.0)
    targets = ops.convert_to_numpy(codec.encode(keypoints[..., :2], keypoints[..., 2])[0])
    assert _value(mse_only, keypoints, pred) == pytest.approx(float(np.mean((pred - targets) ** 2)), rel=1e-5)
    weighted = HeatmapPeakLoss(alpha=1.0, beta=0.0, heatmap_size=(8, 8), sigma=1.0, foreground_weight=10.0)
    expected = np.mean((1 + 10 * targets) * (pred - targets) ** 2)
    assert run_loss_test(weighted, keypoints, pred) == pytest.approx(float(expected), rel=1e-5)
    both = HeatmapPeakLoss(alpha=2.0, beta=0.5, heatmap_size=(8, 8), sigma=1.0)
    assert _value(both, keypoints, pred) == pytest.approx(2 * np.mean((pred - targets) ** 2) + 2.0, rel=1e-4)


def test_heatmap_peak_loss_trains_with_finite_gradients():
    """A fit step through the soft-argmax term (peak exactly on target included)."""
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same")(inputs))
    model.compile(optimizer="adam", loss=HeatmapPeakLoss(beta=1.0, heatmap_size=(8, 8), sigma=1.0))
    keypoints = np.array([[[0.5 / 8, 0.5 / 8, 1.0], [0.5, 0.5, 0.0]]] * 2, np.float32)
    history = model.fit(np.ones((2, 8, 8, 1), np.float32), keypoints, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.isfinite(ops.convert_to_numpy(w)).all() for w in model.weights)
