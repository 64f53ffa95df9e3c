import math

import keras
import numpy as np
import pytest
from keras import ops

from common.codecs import GaussianHeatmapCodec


def _px_to_norm(xy_px, size):
    """(batch, K, 2) heatmap pixels -> normalised, with size = (width, height)."""
    return (np.asarray(xy_px, np.float32) / np.array(size, np.float32)).astype(np.float32)


@pytest.mark.parametrize("size", [(64, 64), (80, 48)])
def test_encode_decode_round_trip_centre_between_pixels_border(size):
    width, height = size
    codec = GaussianHeatmapCodec(size, sigma=2.0)
    xy_px = [[
        [width / 2, height / 2],  # between the two middle pixel centres
        [10.3, 20.7],  # between pixel centres
        [0.7, height - 0.8],  # peak in the first column / last row
        [width - 0.5, 0.5],  # exactly on the last / first pixel centre
    ]]
    xy_norm = _px_to_norm(xy_px, size)
    heatmaps, weights = codec.encode(xy_norm)
    heatmaps = ops.convert_to_numpy(heatmaps)
    assert heatmaps.shape == (1, height, width, 4) and heatmaps.dtype == np.float32
    np.testing.assert_array_equal(ops.convert_to_numpy(weights), 1.0)

    decoded, scores = codec.decode(heatmaps)
    error_px = np.abs(decoded - xy_norm) * np.array([width, height])
    assert error_px.max() < 0.05, error_px
    # The peak pixel is the one nearest the keypoint; its value is exp(-d^2 / 8).
    d2 = (10.5 - 10.3) ** 2 + (20.5 - 20.7) ** 2
    np.testing.assert_allclose(scores[0, 1], math.exp(-d2 / 8.0), rtol=1e-5)
    np.testing.assert_allclose(scores[0, 3], 1.0, rtol=1e-6)


def test_encode_hand_values():
    codec = GaussianHeatmapCodec((8, 8), sigma=2.0)
    xy_norm = _px_to_norm([[[3.5, 4.5]]], (8, 8))  # exactly on pixel (row 4, col 3)
    heatmaps, _ = codec.encode(xy_norm)
    heatmaps = ops.convert_to_numpy(heatmaps)[0, :, :, 0]
    assert heatmaps[4, 3] == pytest.approx(1.0)
    assert heatmaps[4, 4] == pytest.approx(math.exp(-1 / 8))  # one pixel right
    assert heatmaps[5, 4] == pytest.approx(math.exp(-2 / 8))  # one diagonal step
    assert heatmaps[4, 7] == pytest.approx(math.exp(-16 / 8))  # four pixels right


def test_invisible_outside_and_nan_get_zero_maps_and_weights():
    codec = GaussianHeatmapCodec((16, 16), sigma=1.5)
    xy_norm = np.array([[[0.5, 0.5], [0.3, 0.3], [1.2, 0.5], [0.5, -0.01], [np.nan, np.nan]]], np.float32)
    visible = np.array([[1, 0, 1, 1, 0]], bool)
    heatmaps, weights = codec.encode(ops.convert_to_tensor(xy_norm), ops.convert_to_tensor(visible))
    heatmaps = ops.convert_to_numpy(heatmaps)
    np.testing.assert_array_equal(ops.convert_to_numpy(weights), [[1, 0, 0, 0, 0]])
    assert np.isfinite(heatmaps).all()
    # x = y = 8.0 px is a pixel corner: nearest centres at d^2 = 0.25 + 0.25, sigma^2 = 2.25.
    assert heatmaps[..., 0].max() == pytest.approx(math.exp(-0.5 / 4.5))
    np.testing.assert_array_equal(heatmaps[..., 1:], 0.0)


def test_decode_all_zero_map_is_finite_with_zero_score():
    codec = GaussianHeatmapCodec((8, 8))
    xy_norm, scores = codec.decode(np.zeros((2, 8, 8, 3), np.float32))
    assert np.isfinite(xy_norm).all()
    np.testing.assert_array_equal(scores, 0.0)
    np.testing.assert_allclose(xy_norm, 0.5 / 8)  # pixel (0, 0) centre, unrefined


def test_decode_soft_matches_argmax_decode_on_strong_peaks():
    codec = GaussianHeatmapCodec((32, 32), sigma=1.5)
    xy_norm = np.array([[[0.31, 0.62], [0.5, 0.5]]], np.float32)
    heatmaps, _ = codec.encode(xy_norm)
    soft = ops.convert_to_numpy(codec.decode_soft(heatmaps, beta=15.0, debias=True))
    assert soft.shape == (1, 2, 2)
    # exp(beta * h) is a Gaussian of sigma / sqrt(beta) = 0.39 px: the pixel grid
    # undersamples it, which pulls an off-centre expectation toward the nearest pixel
    # centre by a few hundredths of a pixel (measured 0.07 px here); a centred peak is exact.
    error_px = np.abs(soft - xy_norm) * 32
    assert error_px[0, 0].max() < 0.1, error_px
    assert error_px[0, 1].max() < 1e-3, error_px


def test_bad_arguments_echo_the_value():
    with pytest.raises(ValueError, match="sigma=0"):
        GaussianHeatmapCodec(sigma=0)
    with pytest.raises(ValueError, match=r"heatmap_size=\(64, 0\)"):
        GaussianHeatmapCodec((64, 0))
    with pytest.raises(ValueError, match="shape"):
        GaussianHeatmapCodec((8, 8)).decode(np.zeros((8, 8, 1)))


def test_config_round_trip():
    codec = GaussianHeatmapCodec([48, 32], sigma=1.5)  # a JSON list, (width, height)
    restored = GaussianHeatmapCodec.from_config(codec.get_config())
    assert restored.get_config() == {"heatmap_size": (48, 32), "sigma": 1.5}
    assert restored.map_shape == (32, 48)


# --- Non-square maps: 48 wide x 32 high. Each test fails if width and height are swapped. ---

WIDE = (48, 32)  # (width, height)


def test_non_square_encode_puts_the_peak_at_column_x_row_y():
    codec = GaussianHeatmapCodec(WIDE, sigma=1.0)
    xy_px = [[[40.5, 5.5], [3.5, 28.5]]]  # on pixel centres: (col 40, row 5) and (col 3, row 28)
    heatmaps = ops.convert_to_numpy(codec.encode(_px_to_norm(xy_px, WIDE))[0])
    assert heatmaps.shape == (1, 32, 48, 2)  # (batch, H, W, K)
    for k, (col, row) in enumerate([(40, 5), (3, 28)]):
        assert np.unravel_index(heatmaps[0, :, :, k].argmax(), (32, 48)) == (row, col)
        assert heatmaps[0, row, col, k] == pytest.approx(1.0)
    # One pixel right is 1 px away (exp(-1/2)); one pixel down, also; a swapped scale would not be.
    assert heatmaps[0, 5, 41, 0] == pytest.approx(math.exp(-0.5), rel=1e-5)
    assert heatmaps[0, 6, 40, 0] == pytest.approx(math.exp(-0.5), rel=1e-5)


def test_non_square_round_trip_checks_x_and_y_separately():
    codec = GaussianHeatmapCodec(WIDE, sigma=1.5)
    xy_px = np.array([[[43.2, 3.7], [7.9, 26.3], [24.0, 16.0], [0.6, 31.4]]], np.float32)
    decoded, _ = codec.decode(codec.encode(_px_to_norm(xy_px, WIDE))[0])
    decoded_px = decoded * np.array(WIDE, np.float32)
    np.testing.assert_allclose(decoded_px[..., 0], xy_px[..., 0], atol=0.02)  # x, in pixels of the 48 wide map
    np.testing.assert_allclose(decoded_px[..., 1], xy_px[..., 1], atol=0.02)  # y, in pixels of the 32 high map


def test_decode_refuses_maps_of_the_swapped_size():
    codec = GaussianHeatmapCodec(WIDE)
    with pytest.raises(ValueError, match=r"^`heatmaps` maps are \(H, W\) = \(48, 32\).*heatmap_size=\(48, 32\)"):
        codec.decode(np.zeros((1, 48, 32, 1), np.float32))


# --- The sub-pixel refinement where it is hardest: borders, the pixel beside a border, tiny maps. ---
# Profiles of powers of two make the log-parabola's vertex a hand fraction: through log2 values
# (-1, 0, -2) at pixels (0, 1, 2) the vertex is at index 1 + 0.5 * (-1 + 2) / (-1 - 0 - 2) = 5/6.
# These are not Gaussians on purpose: through a Gaussian any three pixels give the same vertex,
# so a refinement reading the wrong three pixels would go unseen.

_Q = 2.0 ** -2.5  # log2 -2.5: with (0, -1) beside it the vertex lies 1.5 px past the peak


@pytest.mark.parametrize("px, py, expected_xy", [
    # peak in the first column, vertex 1.5 px outside the map: clipped to the map's left edge x = 0;
    # peak in the second row: the parabola through rows 0, 1, 2, y = 1.5 - 1/6.
    ([1, 0.5, _Q, 2 ** -4, 2 ** -5, 2 ** -6], [0.5, 1, 0.25, 2 ** -4, 2 ** -5], (0.0, 4 / 3)),
    # the mirror image: peak in the last column, clipped to the right edge x = W = 6; peak in the
    # second-to-last row (through rows 2, 3, 4), y = 3.5 + 1/6.
    ([2 ** -6, 2 ** -5, 2 ** -4, _Q, 0.5, 1], [2 ** -5, 2 ** -4, 0.25, 1, 0.5], (6.0, 3.5 + 1 / 6)),
    # the second column and the second-to-last column (6 wide, 5 high)
    ([0.5, 1, 0.25, 2 ** -4, 2 ** -5, 2 ** -6], [2 ** -5, 2 ** -4, 0.25, 1, 0.5], (4 / 3, 3.5 + 1 / 6)),
    ([2 ** -6, 2 ** -5, 2 ** -4, 0.25, 1, 0.5], [0.5, 1, 0.25, 2 ** -4, 2 ** -5], (4.5 + 1 / 6, 4 / 3)),
    # a map 3 px wide is still refined; 2 px high and 1 px high cannot be: the argmax pixel's centre.
    ([0.5, 1, 0.25], [0.25, 1], (4 / 3, 1.5)),
    ([0.25, 1, 0.5], [1], (5 / 3, 0.5)),
])
def test_refinement_at_borders_and_on_tiny_maps_by_hand(px, py, expected_xy):
    size = (len(px), len(py))
    codec = GaussianHeatmapCodec(size, sigma=1.0)
    maps = np.outer(py, px).astype(np.float32)[None, :, :, None]  # separable: each axis its own profile
    xy_norm, _ = codec.decode(maps)
    np.testing.assert_allclose(xy_norm[0, 0] * size, expected_xy, atol=1e-5)
    assert 0.0 <= xy_norm.min() and xy_norm.max() <= 1.0  # never outside the frame


def test_float16_maps_of_a_mixed_precision_model_decode_to_finite_points():
    # In float16 the log's floor 1e-10 would round to 0 and log(0) = -inf make the refinement NaN.
    maps = np.zeros((1, 6, 8, 1), np.float16)
    maps[0, 2, 5, 0] = 1.0  # one hot pixel (col 5, row 2): no sub-pixel information, its centre
    xy_norm, scores = GaussianHeatmapCodec((8, 6)).decode(maps)
    assert xy_norm.dtype == np.float32 and scores.dtype == np.float32
    np.testing.assert_array_equal(xy_norm[0, 0], np.float32([5.5 / 8, 2.5 / 6]))
    np.testing.assert_array_equal(scores, [[1.0]])


def test_keypoints_on_the_frame_edges_are_inside_and_beyond_them_are_not():
    # [0, 1] is closed: a keypoint on an edge of the frame gets a target on the edge pixel.
    codec = GaussianHeatmapCodec((8, 6), sigma=1.0)
    xy_norm = np.array([[[0.0, 0.5], [1.0, 0.5], [0.5, 0.0], [0.5, 1.0], [0.5, 1.3], [2.0, 0.5]]], np.float32)
    heatmaps, weights = codec.encode(xy_norm)
    np.testing.assert_array_equal(ops.convert_to_numpy(weights), [[1, 1, 1, 1, 0, 0]])
    peaks = [np.unravel_index(m.argmax(), m.shape) for m in np.moveaxis(ops.convert_to_numpy(heatmaps)[0], -1, 0)[:4]]
    assert peaks == [(2, 0), (2, 7), (0, 3), (5, 3)]  # (row, col): first / last column, first / last row


def test_decode_soft_debias_removes_the_background_pull_on_a_half_height_peak():
    # A half-confident peak: exp(15 * 0.5) is only ~1800 times the background's exp(0), so the
    # 1536 background pixels pull the plain expectation ~4 px toward the map's centre (measured
    # 3.9 px along x); the debiased one is within 0.01 px.
    codec = GaussianHeatmapCodec(WIDE, sigma=1.5)
    xy_norm = np.array([[[0.2, 0.7]]], np.float32)
    heatmaps = 0.5 * ops.convert_to_numpy(codec.encode(xy_norm)[0])
    debiased = ops.convert_to_numpy(codec.decode_soft(heatmaps, debias=True))
    np.testing.assert_allclose(debiased[0, 0] * WIDE, xy_norm[0, 0] * WIDE, atol=0.05)
    plain = ops.convert_to_numpy(codec.decode_soft(heatmaps))
    assert plain[0, 0, 0] * 48 > 0.2 * 48 + 2.0  # pulled toward x = 24
    # The defaults are the SoftArgMax layer's: beta 15, no debias.
    np.testing.assert_array_equal(plain, ops.convert_to_numpy(codec.decode_soft(heatmaps, beta=15.0, debias=False)))


def test_size_arguments_and_symbolic_maps():
    with pytest.raises(ValueError, match=r"two positive integers \(width, height\)\. Received: heatmap_size=\(64, 64, 3\)"):
        GaussianHeatmapCodec((64, 64, 3))  # an image shape is not a map size
    assert GaussianHeatmapCodec().get_config() == {"heatmap_size": (64, 64), "sigma": 2.0}  # the defaults
    codec = GaussianHeatmapCodec(WIDE)
    codec.check_maps(keras.KerasTensor((None, None, 48, 2)))  # a height unknown until run time passes
    with pytest.raises(ValueError, match=r"\(H, W\) = \(48, 32\)"):  # unknown K, known and swapped H, W
        codec.check_maps(keras.KerasTensor((None, 48, 32, None)))
