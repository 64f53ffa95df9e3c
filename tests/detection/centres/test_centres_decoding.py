import numpy as np
from keras import ops

from common.codecs import CentreHeatmapCodec
from detection.centres.centres_config import UseConfig
from detection.centres.centres_pipeline import merge_per_image, tile_peaks
from detection.centres.tiling import tile_grid, tile_transform


def test_objects_seen_by_two_overlapping_tiles_come_back_once_in_original_pixels():
    # A 192 x 120 image in 128 px tiles with 64 px overlap: tiles at x = 0 and 64 (and y = 0).
    # Tiles are resized 128 -> 64 px input, heatmaps are 16 x 16 (8 original px per heatmap px).
    truth = np.array([[100.3, 60.7], [20.0, 30.0], [170.2, 90.9]])  # the first lies in both tiles
    classes = np.array([0, 1, 0])
    origins = tile_grid(192, 120, 128, 64)
    np.testing.assert_array_equal(origins, [[0, 0], [64, 0]])
    transforms = np.stack([tile_transform(o, 128, 64) for o in origins])
    codec = CentreHeatmapCodec((16, 16), num_classes=2, sigma=1.5)
    objects = np.zeros((2, 3, 4), np.float32)
    for t, transform in enumerate(transforms):
        xy_norm = (truth * transform[:2] + transform[2:]) / 64
        inside = ((xy_norm >= 0) & (xy_norm < 1)).all(axis=1)
        objects[t, :, :2], objects[t, :, 2], objects[t, :, 3] = xy_norm, classes, inside
    heatmaps = ops.convert_to_numpy(codec.encode(objects))
    use = UseConfig(score_threshold=0.5, merge_distance=8.0)
    peaks = tile_peaks(heatmaps, np.arange(2), transforms, 64, use)
    assert len(peaks["tile"]) == 4  # the shared object once per tile
    found = merge_per_image(peaks, np.zeros(2, np.int64), use.merge_distance)
    order = np.argsort(found["xy"][:, 0])
    np.testing.assert_allclose(found["xy"][order], truth[[1, 0, 2]], atol=1e-3)
    np.testing.assert_array_equal(found["class"][order], classes[[1, 0, 2]])
    assert (found["image"] == 0).all()
    empty = merge_per_image(None, np.zeros(2, np.int64), 8.0)
    assert empty["xy"].shape == (0, 2)
