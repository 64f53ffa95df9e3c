import numpy as np
import pytest
from keras import ops

from common.codecs import CentreHeatmapCodec, peak_mask


def _objects(rows, slots=None):
    rows = np.asarray(rows, np.float32).reshape(-1, 4)
    out = np.zeros((1, slots or len(rows), 4), np.float32)
    out[0, :len(rows)] = rows
    return out


def test_encode_decode_round_trip_centre_border_and_between_pixels():
    codec = CentreHeatmapCodec((32, 32), num_classes=2, sigma=1.5)
    # heatmap px: (10.5, 7.5) a pixel centre; (20.0, 20.0) a pixel corner; (0.3, 31.8) at the border.
    xy_heatmap = np.array([[10.5, 7.5], [20.0, 20.0], [0.3, 31.8], [25.27, 4.61]])
    rows = np.concatenate([xy_heatmap / 32, [[0, 1], [1, 1], [0, 1], [1, 1]]], axis=1)
    targets = ops.convert_to_numpy(codec.encode(_objects(rows, slots=6)))  # 2 padding slots
    assert targets.shape == (1, 32, 32, 2)
    peaks = codec.decode(targets, threshold=0.5)
    assert len(peaks["score"]) == 4
    for xy, cls in zip(xy_heatmap, (0, 1, 0, 1)):
        hit = np.flatnonzero(np.hypot(*(peaks["xy_norm"] * 32 - xy).T) < 1e-3)
        assert len(hit) == 1 and peaks["class"][hit[0]] == cls, (xy, peaks)


def test_encode_takes_the_maximum_of_overlapping_objects_and_ignores_bad_rows():
    codec = CentreHeatmapCodec((8, 8), num_classes=1, sigma=1.0)
    two = _objects([[2.5 / 8, 4.5 / 8, 0, 1], [4.5 / 8, 4.5 / 8, 0, 1]])
    maps = ops.convert_to_numpy(codec.encode(two))[0, :, :, 0]
    # The pixel between them (3.5, 4.5) is 1 px from each: max = exp(-1/2), a sum would be 2 exp(-1/2).
    assert maps[4, 3] == pytest.approx(np.exp(-0.5), rel=1e-6)
    assert maps[4, 2] == pytest.approx(1.0) and maps[4, 4] == pytest.approx(1.0)
    bad = _objects([[0.5, 0.5, 0, 0], [1.2, 0.5, 0, 1], [np.nan, 0.5, 0, 1], [0.5, 0.5, 3, 1]])
    np.testing.assert_array_equal(ops.convert_to_numpy(codec.encode(bad)), 0)


def test_peak_mask_keeps_one_pixel_of_a_plateau_and_decode_options():
    maps = np.zeros((1, 5, 6, 1), np.float32)
    maps[0, 2, 2:4, 0] = 0.8  # a two-pixel plateau: one peak
    maps[0, 0, 5, 0] = 0.4    # a corner peak
    mask = peak_mask(maps)
    assert (mask & (maps > 0)).sum() == 2 and mask[0, 2, 2, 0] and mask[0, 0, 5, 0]  # the first of the plateau
    codec = CentreHeatmapCodec((6, 5))  # (width, height) of the (5, 6) maps
    assert len(codec.decode(maps, threshold=0.5)["score"]) == 1
    two = codec.decode(np.concatenate([maps, maps]), threshold=0.3, max_peaks=1)
    np.testing.assert_array_equal(two["image"], [0, 1])
    np.testing.assert_allclose(two["score"], [0.8, 0.8])
    # The parabola through the plateau's log values puts the centre midway between its two pixels.
    np.testing.assert_allclose(two["xy_norm"][0], [3.0 / 6, 2.5 / 5], atol=1e-6)


def test_non_square_round_trip_and_config():
    """48 wide x 32 high: peaks at (col x, row y), decoded x and y each right; swapped maps refused."""
    codec = CentreHeatmapCodec((48, 32), num_classes=2, sigma=1.5)
    xy_heatmap = np.array([[40.5, 5.5], [7.25, 26.8]])
    rows = np.concatenate([xy_heatmap / [48, 32], [[1, 1], [0, 1]]], axis=1)
    targets = ops.convert_to_numpy(codec.encode(_objects(rows)))
    assert targets.shape == (1, 32, 48, 2)
    assert targets[0, 5, 40, 1] == pytest.approx(1.0)  # row 5 = y, column 40 = x, class 1
    peaks = codec.decode(targets, threshold=0.5)
    order = np.argsort(peaks["class"])[::-1]  # class 1 first, as in xy_heatmap
    np.testing.assert_allclose(peaks["xy_norm"][order, 0] * 48, xy_heatmap[:, 0], atol=0.02)
    np.testing.assert_allclose(peaks["xy_norm"][order, 1] * 32, xy_heatmap[:, 1], atol=0.02)
    restored = CentreHeatmapCodec.from_config(codec.get_config())
    assert restored.get_config() == {"heatmap_size": (48, 32), "num_classes": 2, "sigma": 1.5}
    with pytest.raises(ValueError, match="heatmap_size=\\(48, 32\\)"):
        codec.decode(np.zeros((1, 48, 32, 2), np.float32))
    with pytest.raises(ValueError, match="num_classes=2"):
        codec.decode(np.zeros((1, 32, 48, 3), np.float32))


def test_peak_mask_on_logits_keeps_border_maxima_and_checks_diagonal_neighbours():
    # Negative logits: outside the map is -inf, not 0, so a maximum on the border is a peak.
    maps = np.full((1, 6, 7, 1), -4.0, np.float32)
    maps[0, 0, 6, 0] = -1.0  # top-right corner
    maps[0, 5, 0, 0] = -1.0  # bottom-left corner
    maps[0, 1, 1, 0], maps[0, 2, 2, 0] = -0.1, -0.5  # a blob along the diagonal: its upper-left pixel wins
    maps[0, 3, 4, 0], maps[0, 4, 5, 0] = -0.5, -0.1  # the other way round: its lower-right pixel wins
    peaks = np.argwhere((peak_mask(maps) & (maps > -4.0))[0, ..., 0])
    assert peaks.tolist() == [[0, 6], [1, 1], [4, 5], [5, 0]]


def test_decode_threshold_is_inclusive_and_outputs_are_typed():
    maps = np.zeros((1, 6, 8, 1), np.float32)
    maps[0, 1, 2, 0], maps[0, 4, 5, 0] = 0.3, 0.25  # one at the default threshold 0.3, one below
    codec = CentreHeatmapCodec((8, 6))
    peaks = codec.decode(maps)
    np.testing.assert_array_equal(peaks["xy_norm"], np.float32([[2.5 / 8, 1.5 / 6]]))  # isolated: its centre
    np.testing.assert_array_equal(peaks["score"], np.float32([0.3]))
    np.testing.assert_array_equal(codec.decode(maps * 2, threshold=0.5)["score"], np.float32([0.6, 0.5]))
    assert {key: value.dtype for key, value in peaks.items()} == {
        "image": np.int64, "class": np.int64, "xy_norm": np.float32, "score": np.float32}


def test_float16_maps_decode_to_finite_centres():
    # A mixed-precision model's maps: in float16 the log's floor 1e-10 would be 0 and the refinement NaN.
    maps = np.zeros((2, 6, 8, 2), np.float16)
    maps[1, 4, 1, 1] = 0.75
    peaks = CentreHeatmapCodec((8, 6), num_classes=2).decode(maps)
    np.testing.assert_array_equal(peaks["image"], [1])
    np.testing.assert_array_equal(peaks["class"], [1])
    np.testing.assert_array_equal(peaks["xy_norm"], np.float32([[1.5 / 8, 4.5 / 6]]))
    np.testing.assert_array_equal(peaks["score"], np.float32([0.75]))


def test_arguments_and_map_checks_name_what_is_wrong():
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match=f"num_classes={bad}"):
            CentreHeatmapCodec((8, 6), num_classes=bad)
    codec = CentreHeatmapCodec((48, 32), num_classes=2)
    assert codec.map_shape == (32, 48)  # (H, W) of the arrays, for a (width, height) size
    # The defaults a config may leave out: 64x64 maps, one class, sigma 1.5.
    assert CentreHeatmapCodec().get_config() == {"heatmap_size": (64, 64), "num_classes": 1, "sigma": 1.5}
    with pytest.raises(ValueError, match=r"^`heatmaps` maps are \(H, W\) = \(48, 32\)"):
        codec.decode(np.zeros((1, 48, 32, 2), np.float32))
    with pytest.raises(ValueError, match=r"^`y_pred` maps are"):  # the loss names its argument
        codec.check_maps(np.zeros((1, 48, 32, 2), np.float32), "y_pred")
