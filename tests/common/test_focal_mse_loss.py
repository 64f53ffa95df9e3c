import math

import numpy as np
import pytest
from keras import ops

from common.codecs import CentreHeatmapCodec
from common.losses import FocalMSEHeatmapLoss
from tests.harness import run_loss_test


def _value(loss, y_true, y_pred):
    return float(ops.convert_to_numpy(loss(y_true, y_pred)))


def test_focal_mse_hand_values_on_a_3x3_map():
    # Target: a peak of 1 at the centre, 0.5 at the 4 edge pixels, 0 at the corners.
    t = np.array([[0, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 0]], np.float32)
    p = np.full((3, 3), 0.5, np.float32)
    p[1, 1] = 0.6
    # One positive (t = 1 > 0.5, local max): (1 - 0.6)^2 * (0.6 - 1)^2 = 0.0256.
    positive = 0.4**2 * 0.4**2
    # Edges: (1 - 0.5)^4 * 0.5^2 * (0.5 - 0.5)^2 = 0. Corners: (1 - 0)^4 * 0.5^2 * 0.5^2 = 0.0625 each.
    negative = 4 * 0.5**2 * 0.5**2
    loss = FocalMSEHeatmapLoss(alpha=2, beta=4)
    expected = (positive + negative) / 1  # one positive pixel
    assert _value(loss, t[None, :, :, None], p[None, :, :, None]) == pytest.approx(expected, rel=1e-6)
    # A perfect prediction costs nothing; no positives at all divides by 1, not 0.
    assert _value(loss, t[None, :, :, None], t[None, :, :, None]) == 0.0
    zero = np.zeros((1, 3, 3, 1), np.float32)
    assert _value(loss, zero, np.full_like(zero, 0.5)) == pytest.approx(9 * 0.5**2 * 0.5**2)


def test_focal_mse_averages_images_and_alpha_beta_change_the_weights():
    t = np.zeros((2, 4, 4, 1), np.float32)
    t[0, 1, 1, 0] = 1.0
    p = np.full_like(t, 0.2)
    loss = FocalMSEHeatmapLoss(alpha=1, beta=0)
    image0 = (0.8 * 0.8**2 + 15 * 0.2 * 0.2**2) / 1
    image1 = 16 * 0.2 * 0.2**2
    assert _value(loss, t, p) == pytest.approx((image0 + image1) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="alpha=-1"):
        FocalMSEHeatmapLoss(alpha=-1)


def test_focal_mse_objects_path_equals_heatmap_path_and_serialises():
    codec = CentreHeatmapCodec((16, 16), num_classes=2, sigma=1.5)
    objects = np.array([[[0.3, 0.6, 0, 1], [0.7, 0.2, 1, 1], [0, 0, 0, 0]],
                        [[0.5, 0.5, 1, 1], [0.1, 0.9, 0, 1], [0.9, 0.9, 1, 1]]], np.float32)
    targets = ops.convert_to_numpy(codec.encode(objects))
    loss = FocalMSEHeatmapLoss(heatmap_size=(16, 16), num_classes=2, sigma=1.5)
    probs = np.random.default_rng(0).uniform(0, 1, targets.shape).astype(np.float32)
    value = run_loss_test(loss, objects, probs)
    assert value == pytest.approx(_value(loss, targets, probs), rel=1e-6)
    good = np.clip(targets + 0.01, 0, 1)
    assert _value(loss, objects, good) < 0.01 * value
    with pytest.raises(ValueError, match="num_classes"):
        loss(objects, np.zeros((2, 16, 16, 3), np.float32))
    assert math.isfinite(_value(loss, objects, np.zeros_like(probs)))


def test_non_square_targets_peak_at_x_y():
    """48 wide x 32 high: the loss's targets from objects are the codec's maps, peak at (col x, row y)."""
    codec = CentreHeatmapCodec((48, 32), num_classes=1, sigma=1.5)
    loss = FocalMSEHeatmapLoss(**codec.get_config())
    objects = np.array([[[40.5 / 48, 5.5 / 32, 0, 1]]], np.float32)
    cols, rows = np.meshgrid(np.arange(48) + 0.5, np.arange(32) + 0.5)
    targets = np.exp(-((cols - 40.5) ** 2 + (rows - 5.5) ** 2) / (2 * 1.5**2))[None, :, :, None].astype(np.float32)
    probs = np.random.default_rng(2).uniform(0, 1, targets.shape).astype(np.float32)
    assert _value(loss, objects, probs) == pytest.approx(_value(loss, targets, probs), rel=1e-5)
    restored = FocalMSEHeatmapLoss.from_config(loss.get_config())
    assert restored.get_config()["heatmap_size"] == (48, 32)
    with pytest.raises(ValueError, match=r"heatmap_size=\(48, 32\)"):
        loss(objects, np.zeros((1, 48, 32, 1), np.float32))
