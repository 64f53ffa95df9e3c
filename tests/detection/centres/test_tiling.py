import numpy as np

from common.geometry import to_input, to_original
from detection.centres.tiling import cut_tiles, merge_detections, tile_grid, tile_starts, tile_transform


def test_tile_starts_cover_the_axis_and_end_at_the_edge():
    np.testing.assert_array_equal(tile_starts(1000, 512, 128), [0, 384, 488])
    np.testing.assert_array_equal(tile_starts(512, 512, 128), [0])
    np.testing.assert_array_equal(tile_starts(300, 512, 128), [0])  # smaller than a tile: one, padded
    np.testing.assert_array_equal(tile_starts(896, 512, 128), [0, 384])
    grid = tile_grid(1000, 300, 512, 128)
    np.testing.assert_array_equal(grid, [[0, 0], [384, 0], [488, 0]])


def test_tile_transform_round_trip_and_cut_tiles_pixels():
    transform = tile_transform((384, 100), 512, 256)
    xy = np.array([[[400.0, 150.0], [895.5, 611.0]]])
    np.testing.assert_allclose(to_input(xy, transform[None]), [[[8.0, 25.0], [255.75, 255.5]]])
    np.testing.assert_allclose(to_original(to_input(xy, transform[None]), transform[None]), xy)
    image = np.zeros((6, 10, 3), np.uint8)
    image[2, 7] = 200
    tiles = cut_tiles(image, [(4, 0), (6, 4)], 4, 4)
    assert tiles.shape == (2, 4, 4, 3)
    assert tiles[0, 2, 3, 0] == 200 and tiles[0].sum() == 600
    np.testing.assert_array_equal(tiles[1, 2:], 0)  # beyond the bottom edge: black padding


def test_merge_keeps_the_best_of_each_same_class_group():
    xy = np.array([[10, 10], [13, 10], [10, 30], [14, 10], [100, 100]])
    classes = np.array([0, 0, 0, 1, 0])
    scores = np.array([0.5, 0.9, 0.8, 0.7, 0.4])
    # 0 and 1 are 3 px apart (same class): keep 1 (0.9); 3 is another class; 2 and 4 are far.
    np.testing.assert_array_equal(merge_detections(xy, classes, scores, distance=5), [1, 2, 3, 4])
    np.testing.assert_array_equal(merge_detections(xy, classes, scores, distance=0), [0, 1, 2, 3, 4])
    assert len(merge_detections(np.zeros((0, 2)), [], [], 5)) == 0
