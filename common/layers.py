"""Serialisable `keras.ops` layers: heatmap decoding, input preprocessing, augmentation.

Shapes and the pixel-centre convention are those of `common.codecs`: heatmaps are
`(batch, H, W, K)`, keypoints `(batch, K, 2)` as normalised `(x, y)` with heatmap
pixel `j`'s centre at `(j + 0.5) / W`. Images are `(batch, H, W, 3)` RGB in 0..255.
Every layer runs on the TensorFlow and JAX backends.
"""

import math

import keras
from keras import ops

PACKAGE = "keypoints"

# keras.applications.resnet50 ("caffe" mode) channel means, BGR order.
RESNET_BGR_MEAN = (103.939, 116.779, 123.68)


def soft_argmax(heatmaps, beta=15.0, debias=False):
    """Expected pixel-centre position under `softmax(beta * h)` over each map.

    Computed in float32. With `debias=True` the pull of the background toward the
    map centre is removed in closed form (Gu et al., ICCV 2021, "Removing the Bias of
    Integral Pose Regression"): with `C = sum exp(beta * h)` and `N = H * W`, a map
    whose background is exactly 0 gives `x_soft = [N * x_mean + (C - N) * x_peak] / C`
    with `x_mean = 0.5`, hence `x_peak = (x_soft - r * 0.5) / (1 - r)`, `r = N / C`.
    `r` is computed in log space (`C = exp(beta * max) * sum exp(beta * (h - max))`),
    so large inputs do not overflow; where `1 - r` is tiny (no peak, e.g. an all-zero
    map) the plain `x_soft` is returned. Background values above 0 (e.g. sigmoid
    outputs of 0.01) make the correction approximate, and for a nearly flat map
    (`r` close to 1, early in training) it divides by a small `1 - r`, which
    amplifies noise; the result is not clipped to [0, 1].

    Args:
        heatmaps: `(batch, H, W, K)`.
        beta: softmax inverse temperature.
        debias: apply the closed-form correction.

    Returns:
        `(batch, K, 2)` float32 normalised `(x, y)`.
    """
    heatmaps = ops.cast(ops.convert_to_tensor(heatmaps), "float32")
    shape = ops.shape(heatmaps)
    height, width, num_keypoints = shape[1], shape[2], shape[3]
    logits = beta * ops.reshape(heatmaps, (-1, height * width, num_keypoints))
    # One softmax op, not exp / sum: full-integer INT8 (LiteRT) has a softmax kernel, while a
    # quantised division by the quantised sum fails once that sum rounds to zero.
    probs = ops.softmax(logits, axis=1)  # (batch, H*W, K)

    flat = ops.arange(height * width, dtype="int32")
    x_centres = (ops.cast(flat % width, "float32") + 0.5) / ops.cast(width, "float32")
    y_centres = (ops.cast(flat // width, "float32") + 0.5) / ops.cast(height, "float32")
    x_soft = ops.sum(probs * x_centres[None, :, None], axis=1)  # (batch, K)
    y_soft = ops.sum(probs * y_centres[None, :, None], axis=1)
    xy = ops.stack([x_soft, y_soft], axis=-1)  # (batch, K, 2)
    if not debias:
        return xy

    peak = ops.max(logits, axis=1, keepdims=True)  # (batch, 1, K)
    total = ops.sum(ops.exp(logits - peak), axis=1, keepdims=True)
    # r = N / C = exp(log N - beta * max - log sum exp(beta * (h - max))), at most 1.
    log_ratio = (
        ops.log(ops.cast(height * width, "float32"))
        - ops.squeeze(peak, axis=1)
        - ops.log(ops.squeeze(total, axis=1))
    )
    ratio = ops.exp(ops.minimum(log_ratio, 0.0))[..., None]  # (batch, K, 1)
    denom = 1.0 - ratio
    valid = denom > 1e-6
    # Safe denominator in both branches so the unused branch never yields NaN gradients.
    debiased = (xy - 0.5 * ratio) / ops.where(valid, denom, 1.0)
    return ops.where(valid, debiased, xy)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SoftArgMax(keras.layers.Layer):
    """Differentiable heatmap -> keypoint decoding (see `soft_argmax`).

    Input `(batch, H, W, K)` heatmaps (values about [0, 1], e.g. sigmoid outputs);
    output `(batch, K, 2)` normalised `(x, y)`, always float32: the layer's dtype
    defaults to "float32", so mixed precision never reaches the softmax.

    Args:
        beta: softmax inverse temperature. Its effect depends on the heatmap size.
        debias: apply the Gu et al. (ICCV 2021) closed-form bias correction.
    """

    def __init__(self, beta=15.0, debias=False, **kwargs):  # pragma: no mutate block (keras reads the signature)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not beta > 0:
            raise ValueError(f"`beta` must be positive. Received: beta={beta}")
        self.beta = float(beta)
        self.debias = bool(debias)

    def call(self, heatmaps):
        return soft_argmax(heatmaps, beta=self.beta, debias=self.debias)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[3], 2)

    def get_config(self):
        config = super().get_config()
        config.update({"beta": self.beta, "debias": self.debias})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class HeatmapPeak(keras.layers.Layer):
    """Per-keypoint confidence: the maximum of each map, `(batch, H, W, K) -> (batch, K)`.

    Output is float32 (the layer's dtype defaults to "float32").
    """

    def __init__(self, **kwargs):  # pragma: no mutate block (keras reads the signature)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, heatmaps):
        return ops.max(ops.cast(heatmaps, "float32"), axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[3])


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResNetPreprocess(keras.layers.Layer):
    """Keras ResNet50 "caffe" preprocessing inside the model.

    Raw RGB images `(batch, H, W, 3)` with values 0..255 (any dtype, e.g. uint8) ->
    BGR with the ImageNet channel means subtracted, as
    `keras.applications.resnet50.preprocess_input` does, in the compute dtype.
    Keeping this in the model lets the data pipeline carry uint8 images.
    """

    def call(self, images):
        # Subtract in float32 and cast last: exact for uint8 input under float16 too.
        images = ops.flip(ops.cast(images, "float32"), axis=-1)
        images = images - ops.convert_to_tensor(RESNET_BGR_MEAN, dtype="float32")
        return ops.cast(images, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PhotometricAugment(keras.layers.Layer):
    """Training-only random darkening and Gaussian blur of `(batch, H, W, C)` 0..255 images.

    Per image: multiply by a factor drawn from `U(brightness_range)` and clip to
    [0, 255]; then, with probability `blur_prob`, blur with a Gaussian whose sigma is
    drawn from `U(0, max_blur_sigma)` pixels. The blur is separable and vectorised:
    each image gets its own 1D kernel (radius `ceil(3 * max_blur_sigma)`), applied as
    a weighted sum of shifted copies of the reflect-padded batch. Geometry never
    changes, so keypoints stay valid. Identity (apart from the cast to the compute
    dtype) when `training` is False. Images must be larger than the blur radius
    (reflect padding).

    Args:
        blur_prob: probability of blurring each image.
        max_blur_sigma: largest blur sigma in pixels (0 disables the blur).
        brightness_range: `(low, high)` factor range, `0 <= low <= high`.
        seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(
        self,
        blur_prob=0.5,
        max_blur_sigma=1.5,
        brightness_range=(0.6, 1.0),
        seed=None,
        **kwargs,
    ):  # pragma: no mutate block (keras reads the signature)
        super().__init__(**kwargs)
        if not 0.0 <= blur_prob <= 1.0:
            raise ValueError(f"`blur_prob` must be in [0, 1]. Received: blur_prob={blur_prob}")
        if not max_blur_sigma >= 0.0:
            raise ValueError(
                f"`max_blur_sigma` must be >= 0. Received: max_blur_sigma={max_blur_sigma}"
            )
        if len(brightness_range) != 2 or not 0.0 <= brightness_range[0] <= brightness_range[1]:
            raise ValueError(
                "`brightness_range` must be (low, high) with 0 <= low <= high. "
                f"Received: brightness_range={brightness_range}"
            )
        self.blur_prob = float(blur_prob)
        self.max_blur_sigma = float(max_blur_sigma)
        self.brightness_range = (float(brightness_range[0]), float(brightness_range[1]))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.radius = math.ceil(3.0 * self.max_blur_sigma)

    def call(self, images, training=False):
        images = ops.cast(images, "float32")
        if training:
            images = self._augment(images)
        return ops.cast(images, self.compute_dtype)

    def _augment(self, images):
        batch = ops.shape(images)[0]
        low, high = self.brightness_range
        # float32 draws: by default they follow floatx, which may be a 16-bit type.
        factor = keras.random.uniform(
            (batch, 1, 1, 1), minval=low, maxval=high, dtype="float32", seed=self.seed_generator
        )
        images = ops.clip(images * factor, 0.0, 255.0)
        if self.radius == 0 or self.blur_prob == 0.0:
            return images

        sigma = keras.random.uniform(
            (batch, 1), minval=0.0, maxval=self.max_blur_sigma, dtype="float32", seed=self.seed_generator
        )
        blur = keras.random.uniform((batch, 1), dtype="float32", seed=self.seed_generator) < self.blur_prob
        taps = ops.arange(-self.radius, self.radius + 1, dtype="float32")[None, :]
        kernel = ops.exp(-ops.square(taps) / (2.0 * ops.square(ops.maximum(sigma, 1e-3))))
        kernel = kernel / ops.sum(kernel, axis=1, keepdims=True)
        identity = ops.cast(ops.equal(taps, 0.0), "float32")
        kernel = ops.where(blur, kernel, identity)  # (batch, 2 * radius + 1)

        images = self._blur_axis(images, kernel, axis=1)
        return self._blur_axis(images, kernel, axis=2)

    def _blur_axis(self, images, kernel, axis):
        """Convolve along `axis` (1 = rows, 2 = columns) with one 1D kernel per image."""
        r = self.radius
        pad = [[0, 0], [0, 0], [0, 0], [0, 0]]
        pad[axis] = [r, r]
        padded = ops.pad(images, pad, mode="reflect")
        length = ops.shape(images)[axis]
        out = 0.0
        for i in range(2 * r + 1):
            shifted = padded[:, i : i + length] if axis == 1 else padded[:, :, i : i + length]
            out = out + kernel[:, i, None, None, None] * shifted
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "blur_prob": self.blur_prob,
                "max_blur_sigma": self.max_blur_sigma,
                "brightness_range": self.brightness_range,
                "seed": self.seed,
            }
        )
        return config
