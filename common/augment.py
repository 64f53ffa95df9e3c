"""Keypoint-aware geometric augmentation: one affine matrix moves image and keypoints.

`keras.ops` code (TensorFlow and JAX). The matrix maps input to output points in the
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


def affine_matrices(angle, scale, shift, image_size):
    """Forward matrices `(batch, 2, 3)` in continuous pixels.

    Args:
        angle: `(batch,)` rotation in radians (positive turns +x toward +y, i.e.
            clockwise on screen, as y points down).
        scale: `(batch,)` zoom factors.
        shift: `(batch, 2)` translation `(tx, ty)` in pixels.
        image_size: `(height, width)`.
    """
    angle = ops.cast(ops.convert_to_tensor(angle), "float32")
    scale = ops.cast(ops.convert_to_tensor(scale), "float32")
    shift = ops.cast(ops.convert_to_tensor(shift), "float32")
    height, width = image_size
    cx, cy = width / 2.0, height / 2.0
    cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
    tx = cx + shift[:, 0] - (cos * cx - sin * cy)
    ty = cy + shift[:, 1] - (sin * cx + cos * cy)
    row0 = ops.stack([cos, -sin, tx], axis=-1)
    row1 = ops.stack([sin, cos, ty], axis=-1)
    return ops.stack([row0, row1], axis=1)


def transform_keypoints(xy_norm, matrices, image_size):
    """Move `(batch, K, 2)` normalised keypoints with the forward matrices."""
    height, width = image_size
    size = ops.convert_to_tensor([width, height], dtype="float32")
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
        """`(batch, 4)` uniforms -> `(batch, 2, 3)` forward matrices."""
        u = ops.cast(ops.convert_to_tensor(uniform), "float32")
        angle = (2.0 * u[:, 0] - 1.0) * math.radians(self.rotation_degrees)
        low, high = self.scale_range
        scale = low + (high - low) * u[:, 1]
        size = ops.convert_to_tensor([image_size[1], image_size[0]], dtype="float32")
        shift = (2.0 * u[:, 2:4] - 1.0) * self.translation * size
        return affine_matrices(angle, scale, shift, image_size)

    def __call__(self, images, xy_norm, visible, uniform):
        """Returns (images in the input dtype, xy_norm (batch, K, 2), visible (batch, K) float32)."""
        dtype = keras.backend.standardize_dtype(images.dtype)
        image_size = tuple(images.shape[1:3])
        matrices = self.matrices(uniform, image_size)
        warped = warp_images(images, matrices, self.fill_mode)
        if "int" in dtype:
            warped = ops.clip(ops.round(warped), 0.0, 255.0)
        warped = ops.cast(warped, dtype)
        moved = transform_keypoints(xy_norm, matrices, image_size)
        inside = ops.all((moved >= 0.0) & (moved <= 1.0), axis=-1)
        visible = ops.cast(ops.convert_to_tensor(visible), "float32") * ops.cast(inside, "float32")
        return warped, moved, visible
