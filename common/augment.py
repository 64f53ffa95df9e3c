"""Training-time augmentation in `keras.ops` (TensorFlow and JAX), two families:

1. Flips, transposes and colour as serialisable layers (used by the centre detector).
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

2. Keypoint-aware affine augmentation (used by the baselines): one affine matrix moves
image and keypoints. The matrix maps input to output points in the
package's continuous frame (pixel i covers [i, i + 1), centre i + 0.5; see
`common.codecs`): `p_out = s * R(angle) @ (p_in - c) + c + t` with `c` the image
centre. Keypoints are moved with that matrix; the image is resampled with its inverse
(`keras.ops.image.affine_transform`, which works in pixel indices, so the half-pixel
shift between the two frames is folded into the inverse), so a keypoint on a pixel
feature stays on it after warping, up to the interpolation.

Shapes: images `(batch, H, W, C)`, keypoints `xy_norm` `(batch, K, 2)` normalised to
the image, visibility `(batch, K)`, matrices `(batch, 2, 3)`.
"""

import math

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
        dtype = keras.backend.standardize_dtype(maps.dtype)
        if "int" in dtype:
            # The select runs in float32 (exact for 8- and 16-bit values): LiteRT has no
            # built-in select on uint8, and a TensorFlow ("Flex") op would keep the exported
            # `.tflite` from running in the standalone interpreter.
            maps = ops.cast(maps, "float32")
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
        return ops.cast(maps, dtype)

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


def affine_matrices(angle, scale, shift, image_size):
    """Forward matrices `(batch, 2, 3)` in continuous pixels.

    Args:
        angle: `(batch,)` rotation in radians (positive turns +x toward +y, i.e.
            clockwise on screen, as y points down).
        scale: `(batch,)` zoom factors.
        shift: `(batch, 2)` translation `(tx, ty)` in pixels.
        image_size: `(width, height)` in pixels.
    """
    angle = ops.cast(ops.convert_to_tensor(angle), "float32")
    scale = ops.cast(ops.convert_to_tensor(scale), "float32")
    shift = ops.cast(ops.convert_to_tensor(shift), "float32")
    width, height = image_size
    cx, cy = width / 2.0, height / 2.0
    cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
    tx = cx + shift[:, 0] - (cos * cx - sin * cy)
    ty = cy + shift[:, 1] - (sin * cx + cos * cy)
    row0 = ops.stack([cos, -sin, tx], axis=-1)
    row1 = ops.stack([sin, cos, ty], axis=-1)
    return ops.stack([row0, row1], axis=1)


def transform_keypoints(xy_norm, matrices, image_size):
    """Move `(batch, K, 2)` normalised keypoints with the forward matrices; image_size: `(width, height)`."""
    size = ops.convert_to_tensor(image_size, dtype="float32")
    xy = ops.cast(ops.convert_to_tensor(xy_norm), "float32") * size
    moved = ops.einsum("bij,bkj->bki", matrices[:, :, :2], xy) + matrices[:, None, :, 2]
    return moved / size


def warp_images(images, matrices, fill_mode="nearest", fill_value=0.0):
    """Resample `(batch, H, W, C)` images so content at `p` moves to `matrix @ p` (bilinear).

    Returns float32 images.
    """
    images = ops.cast(ops.convert_to_tensor(images), "float32")
    a, b = matrices[:, :, :2], matrices[:, :, 2]
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    inv = ops.stack([ops.stack([a[:, 1, 1], -a[:, 0, 1]], -1), ops.stack([-a[:, 1, 0], a[:, 0, 0]], -1)], 1)
    inv = inv / det[:, None, None]
    inv_b = -ops.einsum("bij,bj->bi", inv, b)
    # In indices (centre of pixel i at i, not i + 0.5): i_in = inv @ i_out + inv @ 0.5 + inv_b - 0.5.
    offset = 0.5 * ops.sum(inv, axis=-1) + inv_b - 0.5
    zeros = ops.zeros_like(det)
    transform = ops.stack([inv[:, 0, 0], inv[:, 0, 1], offset[:, 0], inv[:, 1, 0], inv[:, 1, 1], offset[:, 1],
                           zeros, zeros], axis=-1)
    return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode=fill_mode,
                                      fill_value=fill_value, data_format="channels_last")


class KeypointAffineAugment:
    """Random rotation, scale and translation applied to images and keypoints together.

    The random draws come in as `uniform` `(batch, 4)` numbers in [0, 1) (from
    `tf.random.uniform` in a `tf.data` map, numpy in a batch iterator), so the same
    `keras.ops` code serves both input pipelines:
    angle = +-rotation_degrees, scale in scale_range, shift = +-translation * size.
    A keypoint moved outside the image becomes invisible.

    Args:
        rotation_degrees: largest absolute rotation.
        scale_range: `(low, high)` zoom factors.
        translation: largest shift as a fraction of the image side.
        fill_mode: how pixels from outside the image are filled (`affine_transform`).
    """

    def __init__(self, rotation_degrees=20.0, scale_range=(0.85, 1.15), translation=0.08, fill_mode="nearest"):
        if rotation_degrees < 0 or translation < 0 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"rotation_degrees and translation must be >= 0 and scale_range (low, high) with "
                             f"0 < low <= high. Received: rotation_degrees={rotation_degrees}, "
                             f"scale_range={scale_range}, translation={translation}")
        self.rotation_degrees = float(rotation_degrees)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.translation = float(translation)
        self.fill_mode = fill_mode

    def matrices(self, uniform, image_size):
        """`(batch, 4)` uniforms -> `(batch, 2, 3)` forward matrices; image_size: `(width, height)`."""
        u = ops.cast(ops.convert_to_tensor(uniform), "float32")
        angle = (2.0 * u[:, 0] - 1.0) * math.radians(self.rotation_degrees)
        low, high = self.scale_range
        scale = low + (high - low) * u[:, 1]
        size = ops.convert_to_tensor(image_size, dtype="float32")
        shift = (2.0 * u[:, 2:4] - 1.0) * self.translation * size
        return affine_matrices(angle, scale, shift, image_size)

    def __call__(self, images, xy_norm, visible, uniform):
        """Returns (images in the input dtype, xy_norm (batch, K, 2), visible (batch, K) float32)."""
        dtype = keras.backend.standardize_dtype(images.dtype)
        image_size = (images.shape[2], images.shape[1])  # (width, height) of (batch, H, W, C)
        matrices = self.matrices(uniform, image_size)
        warped = warp_images(images, matrices, self.fill_mode)
        if "int" in dtype:
            warped = ops.clip(ops.round(warped), 0.0, 255.0)
        warped = ops.cast(warped, dtype)
        moved = transform_keypoints(xy_norm, matrices, image_size)
        inside = ops.all((moved >= 0.0) & (moved <= 1.0), axis=-1)
        visible = ops.cast(ops.convert_to_tensor(visible), "float32") * ops.cast(inside, "float32")
        return warped, moved, visible
