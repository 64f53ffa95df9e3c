"""common.augment: flips/transposes/colour layers, and affine augmentation that moves
image and keypoints together exactly."""

import itertools
import math

import keras
import numpy as np
import pytest
from keras import ops

from common.augment import (ColourJitter, FlipTranspose, KeypointAffineAugment, RandomFlipFlags, affine_matrices,
                            transform_keypoints, warp_images)
from common.codecs import CentreHeatmapCodec
from tests.harness import run_layer_test


@pytest.fixture
def rng():
    """Seeded per test: a test's inputs do not depend on which tests ran before it."""
    return np.random.default_rng(0)


ALL_FLAGS = np.array(list(itertools.product((0, 1), repeat=3)), np.float32)  # the 8 symmetries


def test_random_flip_flags_harness_and_draws(rng):
    images = rng.uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    # No training check: the flags do not depend on any weight, so there is no gradient to apply.
    out = run_layer_test(RandomFlipFlags, {"seed": 3}, images, (4, 3), run_training_check=False,
                         mixed_precision_output_dtype="float32")
    np.testing.assert_array_equal(out, 0)  # inference: no augmentation
    layer = RandomFlipFlags(transpose=False, seed=1)
    drawn = ops.convert_to_numpy(layer(np.zeros((400, 1, 1, 1), np.float32), training=True))
    assert set(np.unique(drawn)) <= {0.0, 1.0} and not drawn[:, 2].any()
    assert 0.4 < drawn[:, 0].mean() < 0.6 and 0.4 < drawn[:, 1].mean() < 0.6


def test_colour_jitter_harness_identity_at_inference_and_range_in_training(rng):
    images = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    out = run_layer_test(ColourJitter, {"seed": 1}, images, (2, 8, 8, 3))
    np.testing.assert_array_equal(out, images)
    jittered = ops.convert_to_numpy(ColourJitter(seed=2)(images, training=True))
    assert jittered.min() >= 0 and jittered.max() <= 255 and not np.allclose(jittered, images)
    with pytest.raises(ValueError, match="noise_std=-1"):
        ColourJitter(noise_std=-1)


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_flip_transpose_matches_numpy_and_inverse_undoes_it(rng, dtype):
    # uint8: the select runs in float32 (for LiteRT) and must give back the exact bytes.
    maps = rng.normal(size=(8, 5, 5, 2)).astype(np.float32) if dtype == "float32" else \
        rng.integers(0, 256, (8, 5, 5, 2), dtype=np.uint8)
    out = ops.convert_to_numpy(FlipTranspose()([maps, ALL_FLAGS]))
    assert out.dtype == maps.dtype
    for i, (fx, fy, tr) in enumerate(ALL_FLAGS):
        expected = maps[i].transpose(1, 0, 2) if tr else maps[i]
        expected = expected[:, ::-1] if fx else expected
        expected = expected[::-1] if fy else expected
        np.testing.assert_array_equal(out[i], expected)
    back = ops.convert_to_numpy(FlipTranspose(inverse=True)([out, ALL_FLAGS]))
    np.testing.assert_array_equal(back, maps)


def test_flipping_the_targets_equals_the_targets_of_flipped_points():
    """Why un-flipping the output is exact: encode(flip(points)) == flip(encode(points))."""
    codec = CentreHeatmapCodec((16, 16), num_classes=2, sigma=1.5)
    objects = np.array([[[0.21, 0.33, 0, 1], [0.9, 0.55, 1, 1], [0.5, 0.97, 0, 1]]], np.float32)
    objects = np.repeat(objects, 8, axis=0)
    targets = ops.convert_to_numpy(codec.encode(objects))
    moved = objects.copy()
    for i, (fx, fy, tr) in enumerate(ALL_FLAGS):  # the forward order: transpose, flip x, flip y
        if tr:
            moved[i, :, [0, 1]] = moved[i, :, [1, 0]]
        if fx:
            moved[i, :, 0] = 1 - moved[i, :, 0]
        if fy:
            moved[i, :, 1] = 1 - moved[i, :, 1]
    flipped = ops.convert_to_numpy(FlipTranspose()([targets, ALL_FLAGS]))
    np.testing.assert_allclose(flipped, ops.convert_to_numpy(codec.encode(moved)), atol=1e-6)


def test_flip_transpose_in_a_saved_model(tmp_path, rng):
    images = keras.Input((6, 6, 3), dtype="uint8")
    flags = RandomFlipFlags(seed=0)(images)
    flipped = FlipTranspose()([images, flags])
    x = keras.layers.Conv2D(2, 3, padding="same")(keras.layers.Rescaling(1.0)(flipped))
    out = FlipTranspose(inverse=True)([x, flags])
    model = keras.Model(images, out)
    assert flipped.dtype == "uint8"
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    data = rng.integers(0, 255, (2, 6, 6, 3), dtype=np.uint8)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(data)), ops.convert_to_numpy(model(data)), atol=1e-6)
    assert loaded.layers[2].get_config()["inverse"] is False


def _centroid(image):
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    return np.array([(image * (xs + 0.5)).sum(), (image * (ys + 0.5)).sum()]) / image.sum()


@pytest.mark.parametrize("angle, shift", [(math.pi / 2, (0.0, 0.0)), (0.0, (2.0, -1.0)), (math.pi, (1.0, 1.0)),
                                          (-math.pi / 2, (-3.0, 2.0))])
def test_one_bright_pixel_lands_on_the_moved_keypoint(angle, shift):
    image = np.zeros((1, 16, 16, 1), np.float32)
    image[0, 3, 10, 0] = 1.0  # pixel (x 10, y 3): centre (10.5, 3.5)
    xy_norm = np.array([[[10.5 / 16, 3.5 / 16]]], np.float32)
    matrices = affine_matrices(np.array([angle]), np.array([1.0]), np.array([shift], np.float32), (16, 16))
    warped = ops.convert_to_numpy(warp_images(image, matrices, fill_mode="constant"))[0, ..., 0]
    moved = ops.convert_to_numpy(transform_keypoints(xy_norm, matrices, (16, 16)))[0, 0] * 16
    assert warped.max() == pytest.approx(1.0, abs=1e-5)  # exact pixel moves: no blur
    np.testing.assert_allclose(_centroid(warped), moved, atol=1e-4)


def test_quarter_turn_about_the_centre_by_hand():
    # 90 deg with y down: (x, y) -> (c + -(y - c), c + (x - c)), c = 8: (10.5, 3.5) -> (12.5, 10.5).
    m = affine_matrices(np.array([math.pi / 2]), np.array([1.0]), np.zeros((1, 2), np.float32), (16, 16))
    moved = ops.convert_to_numpy(transform_keypoints(np.array([[[10.5 / 16, 3.5 / 16]]]), m, (16, 16)))
    np.testing.assert_allclose(moved[0, 0] * 16, [12.5, 10.5], atol=1e-5)


def test_scale_about_the_centre_keeps_a_blob_on_its_keypoint():
    ys, xs = np.mgrid[:32, :32] + 0.5
    blob = np.exp(-((xs - 12.3) ** 2 + (ys - 19.7) ** 2) / (2 * 1.5**2)).astype(np.float32)
    matrices = affine_matrices(np.array([0.3]), np.array([1.2]), np.array([[1.5, -2.0]], np.float32), (32, 32))
    warped = ops.convert_to_numpy(warp_images(blob[None, ..., None], matrices, "constant"))[0, ..., 0]
    moved = ops.convert_to_numpy(transform_keypoints(np.array([[[12.3 / 32, 19.7 / 32]]]), matrices, (32, 32)))
    np.testing.assert_allclose(_centroid(warped), moved[0, 0] * 32, atol=0.05)


def test_non_square_image_keeps_a_blob_on_its_keypoint():
    """A 48 wide x 32 high image through KeypointAffineAugment (which reads (width, height)
    from the (batch, H, W, C) images): a quarter turn about the centre (24, 16) maps
    (x, y) -> (24 - (y - 16), 16 + (x - 24)), so (30.5, 12.5) lands on (27.5, 22.5)."""
    ys, xs = np.mgrid[:32, :48] + 0.5
    blob = np.exp(-((xs - 30.5) ** 2 + (ys - 12.5) ** 2) / (2 * 1.5**2)).astype(np.float32)
    augment = KeypointAffineAugment(rotation_degrees=90, scale_range=(1.0, 1.0), translation=0.0, fill_mode="constant")
    quarter_turn = np.array([[1.0, 0.5, 0.5, 0.5]], np.float32)  # angle +90 deg, scale 1, no shift
    xy_norm = np.array([[[30.5 / 48, 12.5 / 32]]], np.float32)
    warped, moved, visible = augment(blob[None, ..., None], xy_norm, np.ones((1, 1)), quarter_turn)
    moved_px = ops.convert_to_numpy(moved)[0, 0] * (48, 32)
    np.testing.assert_allclose(moved_px, [27.5, 22.5], atol=1e-4)
    np.testing.assert_allclose(_centroid(ops.convert_to_numpy(warped)[0, ..., 0]), moved_px, atol=0.05)
    assert ops.convert_to_numpy(visible)[0, 0] == 1.0


def test_augment_identity_uint8_and_outside_keypoints_become_invisible():
    augment = KeypointAffineAugment(rotation_degrees=10, scale_range=(0.5, 1.5), translation=0.5)
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1)).astype(np.uint8)
    xy = np.array([[[0.25, 0.5], [0.95, 0.5]]] * 2, np.float32)
    identity = np.array([[0.5, 0.5, 0.5, 0.5]] * 2, np.float32)  # angle 0, scale 1, shift 0
    out, moved, visible = augment(images, xy, np.ones((2, 2)), identity)
    assert ops.convert_to_numpy(out).dtype == np.uint8
    np.testing.assert_array_equal(ops.convert_to_numpy(out), images)
    np.testing.assert_allclose(ops.convert_to_numpy(moved), xy, atol=1e-6)
    # Largest shift to the right (+8 px): the keypoint at x = 0.95 leaves the image.
    right = np.array([[0.5, 0.5, 1.0, 0.5]] * 2, np.float32)
    _, moved, visible = augment(images, xy, np.ones((2, 2)), right)
    np.testing.assert_allclose(ops.convert_to_numpy(moved)[0, :, 0], [0.75, 1.45], atol=1e-5)
    np.testing.assert_array_equal(ops.convert_to_numpy(visible), [[1, 0], [1, 0]])
    with pytest.raises(ValueError, match="scale_range"):
        KeypointAffineAugment(scale_range=(0.0, 1.0))


def test_runs_inside_a_tf_data_map():
    """Under TensorFlow the augmentation runs in the input pipeline's graph."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.data is the TensorFlow backend's pipeline")
    import tensorflow as tf

    augment = KeypointAffineAugment()
    images = np.zeros((4, 16, 16, 1), np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((images, np.full((4, 2, 2), 0.5, np.float32))).batch(2)
    ds = ds.map(lambda x, k: augment(x, k, tf.ones(tf.shape(k)[:2]), tf.random.uniform((tf.shape(x)[0], 4))))
    for x, xy, visible in ds:
        assert x.dtype == tf.uint8 and tuple(xy.shape) == (2, 2, 2)
        # Rotation about the centre and at most 15 % zoom and 8 % shift keep the centre inside.
        np.testing.assert_array_equal(visible.numpy(), 1.0)
        assert np.abs(xy.numpy() - 0.5).max() <= 0.08 + 1e-6
