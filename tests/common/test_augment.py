import itertools

import keras
import numpy as np
import pytest
from keras import ops

from common.augment import ColourJitter, FlipTranspose, RandomFlipFlags
from common.codecs import CentreHeatmapCodec
from tests.harness import run_layer_test

RNG = np.random.default_rng(0)
ALL_FLAGS = np.array(list(itertools.product((0, 1), repeat=3)), np.float32)  # the 8 symmetries


def test_random_flip_flags_harness_and_draws():
    images = RNG.uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    # No training check: the flags do not depend on any weight, so there is no gradient to apply.
    out = run_layer_test(RandomFlipFlags, {"seed": 3}, images, (4, 3), run_training_check=False,
                         mixed_precision_output_dtype="float32")
    np.testing.assert_array_equal(out, 0)  # inference: no augmentation
    layer = RandomFlipFlags(transpose=False, seed=1)
    drawn = ops.convert_to_numpy(layer(np.zeros((400, 1, 1, 1), np.float32), training=True))
    assert set(np.unique(drawn)) <= {0.0, 1.0} and not drawn[:, 2].any()
    assert 0.4 < drawn[:, 0].mean() < 0.6 and 0.4 < drawn[:, 1].mean() < 0.6


def test_colour_jitter_harness_identity_at_inference_and_range_in_training():
    images = RNG.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    out = run_layer_test(ColourJitter, {"seed": 1}, images, (2, 8, 8, 3))
    np.testing.assert_array_equal(out, images)
    jittered = ops.convert_to_numpy(ColourJitter(seed=2)(images, training=True))
    assert jittered.min() >= 0 and jittered.max() <= 255 and not np.allclose(jittered, images)
    with pytest.raises(ValueError, match="noise_std=-1"):
        ColourJitter(noise_std=-1)


def test_flip_transpose_matches_numpy_and_inverse_undoes_it():
    maps = RNG.normal(size=(8, 5, 5, 2)).astype(np.float32)
    out = ops.convert_to_numpy(FlipTranspose()([maps, ALL_FLAGS]))
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


def test_flip_transpose_in_a_saved_model(tmp_path):
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
    data = RNG.integers(0, 255, (2, 6, 6, 3), dtype=np.uint8)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(data)), ops.convert_to_numpy(model(data)), atol=1e-6)
    assert loaded.layers[2].get_config()["inverse"] is False
