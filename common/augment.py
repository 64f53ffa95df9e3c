"""Training-only augmentation as serialisable `keras.ops` layers (TensorFlow and JAX).

Geometric augmentation that moves points with the image, without touching the labels:
`RandomFlipFlags` draws, per image, a horizontal flip, a vertical flip and a transpose
(x <-> y; with the two flips this spans all 8 symmetries of a square);
`FlipTranspose` applies them to the input images and `FlipTranspose(inverse=True)`
undoes them on the output heatmaps. The network thus sees a flipped image and must
predict the flipped heatmaps, which is exactly training on flipped images with flipped
targets: with pixel `j` of a W-wide map covering `[j, j + 1)`, a flip maps it to pixel
`W - 1 - j`, the map of the point `x -> W - x`, so heatmap flips are exact whenever the
input size is a multiple of the output stride. The targets stay in the frame of the
stored image and are still built on the device from the points.

`ColourJitter` adds per-image brightness, contrast, saturation and Gaussian noise.
Every layer is the identity (apart from casts) when `training` is False.
"""

import keras
from keras import ops

PACKAGE = "keypoints"


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomFlipFlags(keras.layers.Layer):
    """Per-image random symmetry flags `(batch, 3)` = (flip x, flip y, transpose), 0 or 1.

    The input is any `(batch, ...)` tensor (only its batch size is used). Each flag is
    1 with probability 0.5 when `training`, else all flags are 0. Output float32.

    Args:
        flip_x, flip_y, transpose: which symmetries to draw (transpose needs square images).
        seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(self, flip_x=True, flip_y=True, transpose=True, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.flip_x, self.flip_y, self.transpose = bool(flip_x), bool(flip_y), bool(transpose)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        batch = ops.shape(inputs)[0]
        if not training:
            return ops.zeros((batch, 3), "float32")
        enabled = ops.convert_to_tensor([self.flip_x, self.flip_y, self.transpose], dtype="float32")
        draws = keras.random.uniform((batch, 3), seed=self.seed_generator)
        return ops.cast(draws < 0.5, "float32") * enabled[None, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 3)

    def get_config(self):
        config = super().get_config()
        config.update({"flip_x": self.flip_x, "flip_y": self.flip_y, "transpose": self.transpose,
                       "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class FlipTranspose(keras.layers.Layer):
    """Apply (or, with `inverse=True`, undo) per-image flags to `(batch, H, W, C)` maps.

    Inputs `[maps, flags]`, flags `(batch, 3)` from `RandomFlipFlags`. Forward order:
    transpose, then flip x, then flip y; the inverse runs the same steps in reverse
    order (each is its own inverse). Transposing needs H == W. The output keeps the
    input's dtype (uint8 images stay uint8).
    """

    def __init__(self, inverse=False, **kwargs):
        super().__init__(**kwargs)
        self.inverse = bool(inverse)
        self._allow_non_tensor_positional_args = True

    def call(self, inputs):
        maps, flags = inputs
        flags = ops.cast(flags, "float32")
        steps = ["transpose", "flip_x", "flip_y"]
        for step in reversed(steps) if self.inverse else steps:
            if step == "transpose":
                if maps.shape[1] != maps.shape[2]:
                    continue  # RandomFlipFlags(transpose=False) for non-square inputs
                changed, flag = ops.transpose(maps, (0, 2, 1, 3)), flags[:, 2]
            elif step == "flip_x":
                changed, flag = ops.flip(maps, axis=2), flags[:, 0]
            else:
                changed, flag = ops.flip(maps, axis=1), flags[:, 1]
            maps = ops.where(flag[:, None, None, None] > 0.5, changed, maps)
        return maps

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def compute_output_spec(self, inputs):
        maps = inputs[0]
        return keras.KerasTensor(maps.shape, dtype=maps.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"inverse": self.inverse})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ColourJitter(keras.layers.Layer):
    """Training-only per-image colour jitter and Gaussian noise on 0..255 RGB images.

    Per image, with factors drawn uniformly: brightness adds `U(-b, b) * 255`, contrast
    scales around the image mean by `U(1 - c, 1 + c)`, saturation blends with the grey
    image by `U(1 - s, 1 + s)`, and Gaussian noise of standard deviation `U(0, noise_std)`
    (0..255 units) is added; the result is clipped to [0, 255]. Geometry never changes.
    Identity (apart from the cast to the compute dtype) when `training` is False.

    Args:
        brightness, contrast, saturation: jitter amplitudes (>= 0; 0 disables).
        noise_std: largest noise standard deviation in 0..255 units.
        seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(self, brightness=0.1, contrast=0.2, saturation=0.2, noise_std=8.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("brightness", brightness), ("contrast", contrast),
                            ("saturation", saturation), ("noise_std", noise_std)):
            if not value >= 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {name}={value}")
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.saturation, self.noise_std = float(saturation), float(noise_std)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        images = ops.cast(images, "float32")
        if training:
            images = self._jitter(images)
        return ops.cast(images, self.compute_dtype)

    def _jitter(self, images):
        batch = ops.shape(images)[0]

        def uniform(low, high):
            return keras.random.uniform((batch, 1, 1, 1), minval=low, maxval=high, seed=self.seed_generator)

        images = images + uniform(-self.brightness, self.brightness) * 255.0
        mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
        images = (images - mean) * uniform(1.0 - self.contrast, 1.0 + self.contrast) + mean
        grey = ops.mean(images, axis=-1, keepdims=True)
        images = (images - grey) * uniform(1.0 - self.saturation, 1.0 + self.saturation) + grey
        noise = keras.random.normal(ops.shape(images), seed=self.seed_generator)
        images = images + noise * uniform(0.0, self.noise_std)
        return ops.clip(images, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"brightness": self.brightness, "contrast": self.contrast,
                       "saturation": self.saturation, "noise_std": self.noise_std, "seed": self.seed})
        return config
