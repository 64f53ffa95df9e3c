import numpy as np
from keras import ops

from common.codecs import CentreHeatmapCodec
from detection.centres.centres_config import DataConfig, UseConfig
from detection.centres.centres_pipeline import merge_distance, merge_per_image, predict_and_detect, tile_peaks
from detection.centres.tiling import merge_detections, tile_grid, tile_transform


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
    peaks = tile_peaks(heatmaps, np.arange(2), transforms, (64, 64), use, codec)
    assert len(peaks["tile"]) == 4  # the shared object once per tile
    found = merge_per_image(peaks, np.zeros(2, np.int64), use.merge_distance)
    order = np.argsort(found["xy"][:, 0])
    np.testing.assert_allclose(found["xy"][order], truth[[1, 0, 2]], atol=1e-3)
    np.testing.assert_array_equal(found["class"][order], classes[[1, 0, 2]])
    assert (found["image"] == 0).all()
    empty = merge_per_image(None, np.zeros(2, np.int64), 8.0)
    assert empty["xy"].shape == (0, 2)


def test_the_data_config_builds_the_codec_of_its_maps():
    from detection.centres.centres_config import DataConfig

    data = DataConfig(input_size=(64, 64), categories=("a", "b", "c"), sigma=2.0)
    codec = data.codec()
    assert codec.get_config() == {"heatmap_size": (16, 16), "num_classes": 3, "sigma": 2.0}
    assert data.codec(1).num_classes == 1  # a model's own channel count


def test_the_merge_distance_follows_the_stride_so_one_object_in_two_tiles_counts_once():
    # tile_size=1024 with a 256 px input has 16 original px per heatmap px; 256 px tiles with a
    # 64 px input (16 x 16 heatmaps) have that stride too, at a sixteenth of the cost. A 384 x 256
    # image: tiles at x = 0 and 128. The object at x = 200 is in both; each tile's peak is off by
    # 5 px (a third of a heatmap px), in opposite directions, as a trained model's may be. A
    # second object of that class lies 40 px (2.5 heatmap px) away, in the second tile only.
    data = DataConfig(input_size=(64, 64), tile_size=256, tile_overlap=128, categories=("car",))
    assert data.px_per_heatmap_px == 16
    origins = tile_grid(384, 256, 256, 128)
    np.testing.assert_array_equal(origins, [[0, 0], [128, 0]])
    transforms = np.stack([tile_transform(o, 256, 64) for o in origins])
    seen = [np.array([[205.0, 100.0]]), np.array([[195.0, 100.0], [235.0, 100.0]])]
    objects = np.zeros((2, 2, 4), np.float32)
    for t, xy in enumerate(seen):
        objects[t, :len(xy), :2] = (xy * transforms[t, :2] + transforms[t, 2:]) / 64
        objects[t, :len(xy), 3] = 1
    codec = data.codec()
    heatmaps = ops.convert_to_numpy(codec.encode(objects))
    use = UseConfig(score_threshold=0.5)
    peaks = tile_peaks(heatmaps, np.arange(2), transforms, (64, 64), use, codec)
    assert len(peaks["tile"]) == 3
    distance = merge_distance(use, data.px_per_heatmap_px)
    assert distance == 32.0
    found = merge_per_image(peaks, np.zeros(2, np.int64), distance)
    assert len(found["xy"]) == 2  # the shared object once, the other one kept
    np.testing.assert_allclose(np.sort(found["xy"][:, 0]), [200.0, 235.0], atol=6.0)
    # Through predict_and_detect, which takes the stride from the tiles' transforms.
    model = lambda: None  # noqa: E731
    model.input = type("T", (), {"shape": (None, 64, 64, 3)})()
    model.predict_on_batch = lambda tiles: {"heatmaps": heatmaps[:len(tiles)]}
    found, _ = predict_and_detect(model, np.zeros((2, 64, 64, 3), np.uint8), np.zeros(2, np.int64), transforms,
                                  use, codec, progress=False)
    assert len(found["xy"]) == 2
    # A fixed 8 px (the old default) counted the shared object twice.
    assert len(merge_per_image(peaks, np.zeros(2, np.int64), 8.0)["xy"]) == 3
    assert merge_distance(UseConfig(merge_distance=12.0), 16) == 12.0  # a distance given is kept


def test_peaks_of_one_tile_are_never_merged():
    # Two objects 1.2 heatmap px apart, both peaks found by one tile's NMS: not duplicates.
    xy, classes, scores = np.array([[10.0, 10.0], [29.0, 10.0], [12.0, 10.0]]), np.zeros(3), np.array([0.9, 0.8, 0.7])
    np.testing.assert_array_equal(merge_detections(xy, classes, scores, 32, groups=[0, 0, 1]), [0, 1])
    np.testing.assert_array_equal(merge_detections(xy, classes, scores, 32), [0])
