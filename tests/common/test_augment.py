"""Keypoint-aware affine augmentation: image and keypoints move together exactly."""

import math

import numpy as np
import pytest
from keras import ops

from common.augment import KeypointAffineAugment, affine_matrices, transform_keypoints, warp_images


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
