import numpy as np
import pytest
import keras
from keras import ops

from common.codecs import GaussianHeatmapCodec
from common.layers import HeatmapPeak, PhotometricAugment, ResNetPreprocess, SoftArgMax
from tests.harness import run_layer_test


@pytest.fixture
def rng():
    """Seeded per test: a test's inputs do not depend on which tests ran before it."""
    return np.random.default_rng(0)


def _gaussian_maps(xy_px, size, sigma=2.0, peak=1.0):
    """(1, size, size, K) Gaussian maps of height `peak` at `xy_px` (K, 2) heatmap pixels."""
    codec = GaussianHeatmapCodec((size, size), sigma)
    heatmaps, _ = codec.encode(np.asarray(xy_px, np.float32)[None] / size)
    return ops.convert_to_numpy(heatmaps) * peak


# --- harness: config, eager/symbolic shapes, .keras round trip, fit, mixed precision ---


@pytest.mark.parametrize("debias", [False, True])
def test_soft_argmax_harness(debias, rng):
    heatmaps = rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    run_layer_test(
        SoftArgMax,
        {"beta": 10.0, "debias": debias},
        heatmaps,
        (2, 3, 2),
        mixed_precision_output_dtype="float32",
    )


def test_heatmap_peak_harness_and_values(rng):
    heatmaps = rng.uniform(0, 1, (2, 6, 5, 3)).astype(np.float32)
    out = run_layer_test(HeatmapPeak, {}, heatmaps, (2, 3), mixed_precision_output_dtype="float32")
    np.testing.assert_allclose(out, heatmaps.max(axis=(1, 2)))


def test_resnet_preprocess_harness_and_equals_keras(rng):
    images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    out = run_layer_test(ResNetPreprocess, {}, images, (2, 8, 8, 3))
    expected = keras.applications.resnet50.preprocess_input(images.astype(np.float32))
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4)
    # Hand check of one pixel: RGB (0, 0, 255) -> BGR (255, 0, 0) - mean.
    one = ops.convert_to_numpy(ResNetPreprocess()(np.array([[[[0, 0, 255]]]], np.uint8)))
    np.testing.assert_allclose(one[0, 0, 0], [255 - 103.939, -116.779, -123.68], rtol=1e-6)


def test_photometric_augment_harness(rng):
    images = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    out = run_layer_test(PhotometricAugment, {"seed": 1}, images, (2, 8, 8, 3))
    np.testing.assert_array_equal(out, images)  # inference: identity


# --- SoftArgMax numbers ---


@pytest.mark.parametrize("size", [64, 128])
def test_soft_argmax_centred_peak(size):
    xy_px = [[size / 2, size / 2], [size / 2 + 0.5, size / 2 - 0.5]]  # corner, pixel centre
    out = ops.convert_to_numpy(SoftArgMax(beta=15.0)(_gaussian_maps(xy_px, size)))
    error_px = np.abs(out[0] * size - np.array(xy_px))
    assert error_px.max() < 0.05, error_px


@pytest.mark.parametrize("size", [64, 128])
def test_soft_argmax_weak_off_centre_peak_is_biased_and_debias_fixes_it(size):
    # Peak 0.6 at beta 15: exp(9) ~ 8100 per peak pixel against N = size^2 background
    # pixels of weight 1, which pull the expectation toward the centre (0.5, 0.5).
    xy_px = np.array([[0.2 * size + 0.3, 0.3 * size + 0.6]], np.float32)
    heatmaps = _gaussian_maps(xy_px, size, peak=0.6)
    plain = ops.convert_to_numpy(SoftArgMax(beta=15.0)(heatmaps))[0] * size
    debiased = ops.convert_to_numpy(SoftArgMax(beta=15.0, debias=True)(heatmaps))[0] * size
    bias = plain - xy_px
    assert (bias > 1.0).all(), bias  # pulled toward the centre by more than a pixel
    if size == 128:
        assert (bias > 5.0).all(), bias  # larger maps, more background, larger pull
    debiased_error = np.abs(debiased - xy_px)
    assert debiased_error.max() < 0.05, debiased_error
    assert debiased_error.max() < 0.02 * np.abs(bias).min()


def _gaussian_map_hw(height, width, x_px, y_px, sigma=2.0, peak=1.0):
    """(1, height, width, 1) Gaussian of height `peak` at heatmap pixel (x_px, y_px).

    Built here rather than by the codec so the test states height and width itself;
    pixel j's centre is at j + 0.5.
    """
    xs = np.arange(width, dtype=np.float32) + 0.5
    ys = np.arange(height, dtype=np.float32) + 0.5
    d2 = (xs[None, :] - x_px) ** 2 + (ys[:, None] - y_px) ** 2
    return (peak * np.exp(-d2 / (2 * sigma**2)))[None, :, :, None].astype(np.float32)


@pytest.mark.parametrize("debias", [False, True])
def test_soft_argmax_non_square_map_x_by_width_y_by_height(debias):
    # 32 high x 48 wide: x is normalised by the width and y by the height. A swapped
    # axis (x / height) would put x at 10.3 * 48 / 32 = 15.45 px: 5 px off.
    height, width = 32, 48
    x_px, y_px = 10.3, 22.6
    out = ops.convert_to_numpy(SoftArgMax(beta=15.0, debias=debias)(_gaussian_map_hw(height, width, x_px, y_px)))
    assert out.shape == (1, 1, 2)
    assert abs(out[0, 0, 0] * width - x_px) < 0.05, out[0, 0, 0] * width
    assert abs(out[0, 0, 1] * height - y_px) < 0.05, out[0, 0, 1] * height
    # A flat map gives the centre of each axis; the weak-peak bias is toward (W/2, H/2).
    flat = ops.convert_to_numpy(SoftArgMax(debias=debias)(np.zeros((1, height, width, 1), np.float32)))
    np.testing.assert_allclose(flat[0, 0], [0.5, 0.5], atol=1e-6)


@pytest.mark.parametrize("debias", [False, True])
def test_soft_argmax_all_zero_map_gives_centre(debias):
    out = ops.convert_to_numpy(SoftArgMax(debias=debias)(np.zeros((2, 16, 16, 3), np.float32)))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


def test_soft_argmax_large_logits_do_not_overflow():
    heatmaps = np.full((1, 8, 8, 1), -50.0, np.float32)
    heatmaps[0, 2, 5, 0] = 80.0  # exp(15 * 80) overflows float32 without the max shift
    out = ops.convert_to_numpy(SoftArgMax(debias=True)(heatmaps))
    np.testing.assert_allclose(out[0, 0], [5.5 / 8, 2.5 / 8], atol=1e-6)


def test_soft_argmax_function_defaults_and_float16_input():
    """`soft_argmax`'s defaults are the SoftArgMax layer's (beta 15, no debias), and it
    computes in float32 whatever the input's dtype."""
    from common.layers import soft_argmax

    maps = _gaussian_map_hw(24, 40, 30.3, 5.6, peak=0.3)  # a weak peak: beta and debias both move it
    default = ops.convert_to_numpy(soft_argmax(maps))
    np.testing.assert_array_equal(default, ops.convert_to_numpy(soft_argmax(maps, 15.0, False)))
    assert np.abs(default - ops.convert_to_numpy(soft_argmax(maps, 16.0))).max() * 40 > 0.1
    assert np.abs(default - ops.convert_to_numpy(soft_argmax(maps, debias=True))).max() * 40 > 0.1
    half = soft_argmax(maps.astype(np.float16))
    assert keras.backend.standardize_dtype(half.dtype) == "float32"
    np.testing.assert_allclose(ops.convert_to_numpy(half), default, atol=2e-4)


@pytest.mark.parametrize("debias", [False, True])
def test_soft_argmax_stays_float32_under_a_bfloat16_floatx(debias):
    """With Keras' floatx at bfloat16, every step stays float32: a 257 x 301 map's pixel
    centres and sizes (301 rounds to 300 in bfloat16) would move the keypoints by pixels."""
    from common.layers import soft_argmax

    height, width = 257, 301
    maps = np.concatenate([_gaussian_map_hw(height, width, 250.3, 210.6),
                           _gaussian_map_hw(height, width, 40.2, 20.7)], axis=-1)
    expected = ops.convert_to_numpy(soft_argmax(maps, 15.0, debias))
    keras.config.set_floatx("bfloat16")
    try:
        got = soft_argmax(maps, 15.0, debias)
    finally:
        keras.config.set_floatx("float32")
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    np.testing.assert_allclose(ops.convert_to_numpy(got) * [width, height], expected * [width, height], atol=1e-3)


def test_soft_argmax_debias_one_keypoint_per_image_of_a_batch():
    """Batch 3, one keypoint: each image's own peak, weak enough that the plain soft-argmax
    is pulled toward the centre and the correction is needed, at its own place."""
    from common.layers import soft_argmax

    spots = [(5.3, 20.6), (28.2, 3.7), (17.5, 11.4)]
    maps = np.concatenate([_gaussian_map_hw(24, 32, x, y, peak=0.5) for x, y in spots])
    out = ops.convert_to_numpy(soft_argmax(maps, 15.0, debias=True))
    assert out.shape == (3, 1, 2)
    np.testing.assert_allclose(out[:, 0] * [32, 24], spots, atol=0.05)
    plain = ops.convert_to_numpy(soft_argmax(maps, 15.0))
    assert np.abs(plain[:, 0] * [32, 24] - spots).max() > 1.0


def test_soft_argmax_float16_input_gives_float32():
    heatmaps = _gaussian_maps([[20.3, 40.6]], 64).astype(np.float16)
    for layer in (SoftArgMax(), SoftArgMax(debias=True), HeatmapPeak()):
        out = layer(heatmaps)
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        assert np.isfinite(ops.convert_to_numpy(out)).all()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="uses tf.GradientTape")
@pytest.mark.parametrize("debias", [False, True])
def test_soft_argmax_gradients_finite_and_nonzero(debias):
    import tensorflow as tf

    heatmaps = tf.Variable(_gaussian_maps([[20.3, 40.6], [32.0, 32.0]], 64, peak=0.6))
    with tf.GradientTape() as tape:
        xy = SoftArgMax(beta=15.0, debias=debias)(heatmaps)
        objective = tf.reduce_sum(xy * tf.constant([1.0, 2.0]))
    grad = tape.gradient(objective, heatmaps).numpy()
    assert np.isfinite(grad).all()
    assert np.abs(grad[..., 0]).max() > 1e-4 and np.abs(grad[..., 1]).max() > 1e-4


def test_soft_argmax_keypoints_are_independent(rng):
    # Each keypoint's coordinates come from its own map only: changing map 1 leaves 0 exact.
    heatmaps = _gaussian_maps([[20.3, 40.6], [32.0, 32.0]], 64, peak=0.6)
    changed = heatmaps.copy()
    changed[..., 1] = rng.uniform(0, 1, (1, 64, 64))
    for debias in (False, True):
        a = ops.convert_to_numpy(SoftArgMax(debias=debias)(heatmaps))
        b = ops.convert_to_numpy(SoftArgMax(debias=debias)(changed))
        np.testing.assert_array_equal(a[:, 0], b[:, 0])
        assert np.abs(a[:, 1] - b[:, 1]).max() > 1e-3


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="uses tf.GradientTape")
@pytest.mark.parametrize("debias", [False, True])
def test_soft_argmax_masked_keypoint_gets_no_gradient(debias):
    # Through SoftArgMax and the visibility-masked L1, an invisible keypoint's map is not trained.
    import tensorflow as tf

    from common.losses import MaskedL1

    heatmaps = tf.Variable(_gaussian_maps([[20.3, 40.6], [32.0, 32.0], [10.0, 50.0]], 64, peak=0.6))
    y_true = tf.constant([[[0.1, 0.2, 1.0], [0.9, 0.9, 0.0], [0.5, 0.5, 1.0]]])  # keypoint 1 invisible
    with tf.GradientTape() as tape:
        loss = MaskedL1()(y_true, SoftArgMax(beta=15.0, debias=debias)(heatmaps))
    grad = tape.gradient(loss, heatmaps).numpy()
    assert np.isfinite(grad).all()
    assert np.abs(grad[..., 1]).max() == 0.0
    assert np.abs(grad[..., 0]).max() > 1e-5 and np.abs(grad[..., 2]).max() > 1e-5


# --- PhotometricAugment numbers ---


def test_photometric_augment_training_changes_images_keeps_shape_and_range(rng):
    images = rng.uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    out = ops.convert_to_numpy(PhotometricAugment(seed=3)(images, training=True))
    assert out.shape == images.shape
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert np.abs(out - images).mean() > 1.0
    assert out.mean() < images.mean()  # darkening only


def test_photometric_augment_is_the_identity_outside_training(rng):
    """Called without `training` (as in `predict`), and inside a model's `predict`, the
    layer returns its input unchanged."""
    images = rng.uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    layer = PhotometricAugment(blur_prob=1.0, brightness_range=(0.5, 0.6), seed=0)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(images)), images)
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, PhotometricAugment(blur_prob=1.0, brightness_range=(0.5, 0.6), seed=0)(inputs))
    np.testing.assert_array_equal(model.predict(images, verbose=0), images)


def test_photometric_augment_constant_image_hand_value():
    # Brightness fixed at 0.5: 100 -> 50; a normalised blur leaves a constant image constant.
    images = np.full((2, 12, 12, 3), 100.0, np.float32)
    layer = PhotometricAugment(blur_prob=1.0, brightness_range=(0.5, 0.5), seed=0)
    np.testing.assert_allclose(ops.convert_to_numpy(layer(images, training=True)), 50.0, rtol=1e-5)


def test_photometric_augment_blur_spreads_a_point_and_keeps_its_mass():
    images = np.zeros((3, 15, 15, 1), np.float32)
    images[:, 7, 7, 0] = 255.0
    layer = PhotometricAugment(blur_prob=1.0, max_blur_sigma=1.5, brightness_range=(1.0, 1.0), seed=0)
    out = ops.convert_to_numpy(layer(images, training=True))
    # sigma ~ U(0, 1.5): a sigma below ~0.15 px leaves the point as it is, so only
    # require that some image was blurred, and isotropy: same spread along x and y.
    assert (out[:, 7, 7, 0] < 200.0).any(), out[:, 7, 7, 0]
    np.testing.assert_allclose(out[:, 7, 8, 0], out[:, 8, 7, 0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 255.0, rtol=1e-4)  # kernel sums to 1
    # No blur at all when blur_prob = 0.
    layer = PhotometricAugment(blur_prob=0.0, brightness_range=(1.0, 1.0), seed=0)
    np.testing.assert_allclose(ops.convert_to_numpy(layer(images, training=True)), images)


def _point_images(count, size=21, channels=1):
    images = np.zeros((count, size, size, channels), np.float32)
    images[:, size // 2, size // 2] = 255.0
    return images


def test_photometric_augment_blur_sigmas_span_zero_to_max_and_keep_the_mass():
    """256 point images, each blurred with its own sigma ~ U(0, 1.5): the blurred point's
    profile gives sigma back (g(1) / g(0) = exp(-1 / 2 sigma^2)); the estimates fill
    [0, 1.5] and never leave it, every profile is the Gaussian's (g(2) / g(0) = (g(1) / g(0))^4),
    and every image keeps its mass (all 2 * radius + 1 taps, normalised)."""
    c = 10
    out = ops.convert_to_numpy(PhotometricAugment(blur_prob=1.0, max_blur_sigma=1.5, brightness_range=(1.0, 1.0),
                                                  seed=0)(_point_images(256), training=True))[..., 0]
    np.testing.assert_allclose(out.sum(axis=(1, 2)), 255.0, rtol=1e-4)
    np.testing.assert_allclose(out[:, c, c + 1], out[:, c, c - 1], rtol=1e-5, atol=1e-6)
    ratio = out[:, c, c + 1] / out[:, c, c]
    with np.errstate(divide="ignore"):
        sigma = np.sqrt(-0.5 / np.log(ratio))  # 0 where the point stayed a point
    assert sigma.max() <= 1.5 + 1e-3 and sigma.max() > 1.4, sigma.max()
    assert sigma.min() < 0.35, sigma.min()
    wide = sigma > 0.6
    np.testing.assert_allclose(out[wide, c, c + 2] / out[wide, c, c], ratio[wide] ** 4, rtol=1e-3)


def test_photometric_augment_blurs_with_a_radius_of_one():
    """max_blur_sigma 0.3: a radius of ceil(0.9) = 1 px still blurs (centre below 255)."""
    out = ops.convert_to_numpy(PhotometricAugment(blur_prob=1.0, max_blur_sigma=0.3, brightness_range=(1.0, 1.0),
                                                  seed=0)(_point_images(64, size=5), training=True))
    assert out[:, 2, 2, 0].min() < 253.0, out[:, 2, 2, 0].min()
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 255.0, rtol=1e-4)


def test_photometric_augment_leaves_unblurred_images_alone_and_follows_its_seed(rng):
    """blur_prob 0.5: about half the images come out exactly as they went in; the same seed
    gives the same draws in a new layer, another seed other draws."""
    images = rng.uniform(0, 255, (64, 9, 9, 1)).astype(np.float32)

    def augment(seed):
        layer = PhotometricAugment(blur_prob=0.5, max_blur_sigma=1.0, brightness_range=(1.0, 1.0), seed=seed)
        return ops.convert_to_numpy(layer(images, training=True))

    out = augment(7)
    untouched = np.all(out == images, axis=(1, 2, 3))
    assert 16 <= untouched.sum() <= 48, untouched.sum()
    np.testing.assert_array_equal(augment(7), out)
    assert np.abs(augment(8) - out).max() > 1.0
    # Brightening clips at 255.
    bright = PhotometricAugment(blur_prob=0.0, brightness_range=(2.0, 2.0), seed=0)
    np.testing.assert_array_equal(ops.convert_to_numpy(bright(np.full((1, 4, 4, 1), 200.0, np.float32),
                                                                training=True)), 255.0)


FLOAT32_LAYERS = {  # name -> (layer built with dtype float32, its input)
    "ResNetPreprocess": (lambda: ResNetPreprocess(dtype="float32"),
                         lambda rng: rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)),
    "HeatmapPeak": (lambda: HeatmapPeak(dtype="float32"), lambda rng: rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)),
    "PhotometricAugment": (lambda: PhotometricAugment(blur_prob=0.0, brightness_range=(1.0, 1.0), dtype="float32"),
                           lambda rng: rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)),
}


@pytest.mark.parametrize("name", list(FLOAT32_LAYERS))
def test_layer_computes_in_float32_under_a_bfloat16_floatx(name, rng):
    """With Keras' floatx at bfloat16, a layer built with dtype float32 gives what it gives
    under a float32 floatx: no constant, cast or random draw inside it follows floatx."""
    build, make_input = FLOAT32_LAYERS[name]
    inputs = make_input(rng)
    expected = ops.convert_to_numpy(build()(inputs, training=True) if name == "PhotometricAugment" else build()(inputs))
    keras.config.set_floatx("bfloat16")
    try:
        layer = build()
        got = ops.convert_to_numpy(layer(inputs, training=True) if name == "PhotometricAugment" else layer(inputs))
    finally:
        keras.config.set_floatx("float32")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_soft_argmax_layer_passes_its_beta():
    maps = _gaussian_map_hw(24, 40, 30.3, 5.6, peak=0.3)
    from common.layers import soft_argmax

    got = ops.convert_to_numpy(SoftArgMax(beta=5.0)(maps))
    np.testing.assert_allclose(got, ops.convert_to_numpy(soft_argmax(maps, 5.0)), atol=1e-7)
    assert np.abs(got - ops.convert_to_numpy(soft_argmax(maps, 15.0))).max() * 40 > 0.5


def test_bad_arguments_echo_the_value():
    with pytest.raises(ValueError, match="beta=0"):
        SoftArgMax(beta=0)
    with pytest.raises(ValueError, match="blur_prob=1.5"):
        PhotometricAugment(blur_prob=1.5)
    with pytest.raises(ValueError, match="brightness_range"):
        PhotometricAugment(brightness_range=(1.0, 0.5))
