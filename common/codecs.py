"""Gaussian heatmap codec: keypoints -> training targets, heatmaps -> keypoints.

One codec object builds the training targets (`encode`) and decodes the predictions
(`decode`, `decode_soft`), so the two cannot drift apart (the mmpose codec design).

Conventions (stated once here; every heatmap function in the package follows them):

- Sizes passed between functions are `(width, height)`, as in the configs, PIL and
  `common.geometry`: `heatmap_size=(48, 32)` is 48 pixels wide and 32 high. Arrays keep
  numpy's shapes, so that codec's maps are `(batch, 32, 48, K)`; `map_shape` gives the
  `(H, W)` of an array, and that is the one place the two orders meet.
- Heatmaps are channels-last: `(batch, H, W, K)`, one map per keypoint.
- Keypoints are `xy_norm`, `(batch, K, 2)` as `(x, y)` normalised to `[0, 1]` of the
  frame. Coordinates are continuous: pixel `i` covers `[i, i + 1)` and its centre is
  `i + 0.5`. Heatmap pixel `j`'s centre is therefore at `x_norm = (j + 0.5) / W`, and
  `x_heatmap = x_norm * W` converts to heatmap pixels.
- Visibility is `(batch, K)`, float or bool; nonzero means visible.

`encode` is `keras.ops` code (it runs inside losses on the device, on TensorFlow and
JAX); `decode` is numpy post-processing; `decode_soft` is the differentiable
`SoftArgMax` expectation.
"""

import numpy as np
from keras import ops

from common.layers import soft_argmax


class GaussianHeatmapCodec:
    """Unnormalised Gaussian heatmaps with argmax + log-parabola decoding.

    Args:
        heatmap_size: `(width, height)` of the heatmaps in pixels.
        sigma: standard deviation of the Gaussian in heatmap pixels.
    """

    def __init__(self, heatmap_size=(64, 64), sigma=2.0):
        if isinstance(heatmap_size, list):  # JSON configs turn tuples into lists
            heatmap_size = tuple(heatmap_size)
        if (
            not isinstance(heatmap_size, tuple)
            or len(heatmap_size) != 2
            or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in heatmap_size)
        ):
            raise ValueError(
                "`heatmap_size` must be two positive integers (width, height). "
                f"Received: heatmap_size={heatmap_size}"
            )
        if not sigma > 0:
            raise ValueError(f"`sigma` must be positive. Received: sigma={sigma}")
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = float(sigma)

    @property
    def map_shape(self):
        """`(H, W)`: the array shape of one map (numpy order, the reverse of `heatmap_size`)."""
        width, height = self.heatmap_size
        return (height, width)

    def check_maps(self, heatmaps, name="heatmaps"):
        """Raise unless `(batch, H, W, K)` maps are of this codec's size (a static `None` passes).

        A map decoded or scored with the wrong codec would give keypoints scaled by the
        wrong side; a swapped width and height fails here instead.
        """
        shape = tuple(heatmaps.shape)
        if len(shape) != 4:
            raise ValueError(f"`{name}` must have shape (batch, H, W, K). Received: shape={shape}")
        if None not in shape[1:3] and tuple(int(s) for s in shape[1:3]) != self.map_shape:
            raise ValueError(f"`{name}` maps are (H, W) = {tuple(shape[1:3])} but the codec's "
                             f"heatmap_size={self.heatmap_size} (width, height) gives {self.map_shape}")

    def encode(self, xy_norm, visible=None):
        """Build Gaussian target heatmaps (keras.ops; numpy or backend tensors).

        Each map is `exp(-d^2 / (2 sigma^2))` with `d` the distance in heatmap pixels
        from the pixel centre to the keypoint, so the peak value is 1 exactly at the
        keypoint (which may lie between pixel centres). A keypoint that is invisible,
        outside `[0, 1]` or NaN gets an all-zero map and weight 0.

        Args:
            xy_norm: `(batch, K, 2)` keypoints `(x, y)` in `[0, 1]`.
            visible: `(batch, K)` visibility, or None for all visible.

        Returns:
            heatmaps: `(batch, H, W, K)` float32, `(H, W) = map_shape`.
            weights: `(batch, K)` float32, 1 for a keypoint with a target peak.
        """
        width, height = self.heatmap_size
        xy_norm = ops.cast(ops.convert_to_tensor(xy_norm), "float32")
        x_norm, y_norm = xy_norm[..., 0], xy_norm[..., 1]
        inside = (x_norm >= 0.0) & (x_norm <= 1.0) & (y_norm >= 0.0) & (y_norm <= 1.0)
        if visible is not None:
            inside = inside & (ops.cast(ops.convert_to_tensor(visible), "float32") > 0)
        weights = ops.cast(inside, "float32")
        # Park invalid (possibly NaN) keypoints at the centre so 0 * NaN never appears.
        x_heatmap = ops.where(inside, x_norm, 0.5) * width  # (batch, K)
        y_heatmap = ops.where(inside, y_norm, 0.5) * height
        x_centres = ops.arange(width, dtype="float32") + 0.5
        y_centres = ops.arange(height, dtype="float32") + 0.5
        dx2 = ops.square(x_centres[None, :, None] - x_heatmap[:, None, :])  # (batch, W, K)
        dy2 = ops.square(y_centres[None, :, None] - y_heatmap[:, None, :])  # (batch, H, K)
        d2 = dy2[:, :, None, :] + dx2[:, None, :, :]  # (batch, H, W, K)
        heatmaps = ops.exp(-d2 / (2.0 * self.sigma**2)) * weights[:, None, None, :]
        return heatmaps, weights

    def decode(self, heatmaps, groups=(), min_distance=None):
        """Argmax + sub-pixel log-parabola refinement (numpy).

        For each axis a parabola is fitted to the log heatmap at three consecutive
        pixels around the maximum (shifted inward at a border, so a peak in the first
        or last pixel is still refined) and its vertex is taken, clipped to +-0.5 px
        of the argmax pixel centre. For a Gaussian the log is an exact parabola, so
        encoded targets decode back exactly up to float error. A flat or non-concave
        neighbourhood (e.g. an all-zero map) keeps the pixel centre.

        Interchangeable keypoints (`common.interchangeable`): within each of `groups`, the
        maps take their peaks in order of peak height, and a map whose maximum lies within
        `min_distance` heatmap pixels (default 2 sigma) of a peak already taken by its
        group takes its highest pixel beyond that distance instead, so two labels of one
        group never decode onto the same drawn point. (Two members closer than
        `min_distance` in truth are pushed apart by it: the price of the rule.)

        Args:
            heatmaps: `(batch, H, W, K)` numpy array or backend tensor, `(H, W) = map_shape`.
            groups: tuples of keypoint indices whose peaks must be distinct.
            min_distance: heatmap pixels between the peaks of one group; None = 2 sigma.

        Returns:
            xy_norm: `(batch, K, 2)` float32 keypoints in `[0, 1]`.
            scores: `(batch, K)` float32 peak values.
        """
        heatmaps = np.asarray(ops.convert_to_numpy(heatmaps), dtype=np.float32)
        self.check_maps(heatmaps)
        batch, height, width, num_keypoints = heatmaps.shape
        maps = heatmaps.transpose(0, 3, 1, 2)  # (batch, K, H, W)
        flat_index = maps.reshape(batch, num_keypoints, -1).argmax(axis=-1)
        row, col = np.divmod(flat_index, width)
        b = np.arange(batch)[:, None]
        k = np.arange(num_keypoints)[None, :]
        if groups:
            radius = 2.0 * self.sigma if min_distance is None else float(min_distance)
            row, col = _distinct_group_peaks(maps, row, col, groups, radius)
        scores = maps[b, k, row, col]
        log_maps = np.log(np.maximum(maps, 1e-10))
        x_heatmap = col + 0.5 + _parabola_offset(log_maps[b, k, row, :], col)
        y_heatmap = row + 0.5 + _parabola_offset(log_maps[b, k, :, col], row)
        xy_norm = np.stack([x_heatmap / width, y_heatmap / height], axis=-1)
        return xy_norm.astype(np.float32), scores.astype(np.float32)

    def decode_soft(self, heatmaps, beta=15.0, debias=False):
        """Soft-argmax decode (the `SoftArgMax` layer's math); returns `(batch, K, 2)` float32."""
        return soft_argmax(heatmaps, beta=beta, debias=debias)

    def get_config(self):
        return {"heatmap_size": self.heatmap_size, "sigma": self.sigma}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _distinct_group_peaks(maps, row, col, groups, radius):
    """Peaks `(row, col)` `(batch, K)` moved so that no two members of a group lie within
    `radius` pixels of each other (see `GaussianHeatmapCodec.decode`); vectorised over
    the batch, a loop over the few members of each group."""
    batch, _, height, width = maps.shape
    row, col = row.copy(), col.copy()
    b = np.arange(batch)
    yy, xx = np.mgrid[:height, :width]
    for group in groups:
        group = np.asarray(group)
        heights = maps[b[:, None], group[None, :], row[:, group], col[:, group]]  # (batch, g)
        ranked = group[np.argsort(-heights, axis=1, kind="stable")]  # strongest first
        taken = np.zeros((batch, height, width), bool)
        for rank in range(len(group)):
            member = ranked[:, rank]  # (batch,)
            own = maps[b, member]  # (batch, H, W)
            free = ~taken
            # All pixels taken (a map smaller than the exclusion discs): keep the argmax.
            candidates = np.where(free, own, -np.inf)
            flat = np.where(free.any(axis=(1, 2)), candidates.reshape(batch, -1).argmax(-1),
                            own.reshape(batch, -1).argmax(-1))
            r, c = np.divmod(flat, width)
            row[b, member], col[b, member] = r, c
            taken |= (yy[None] - r[:, None, None]) ** 2 + (xx[None] - c[:, None, None]) ** 2 < radius ** 2
    return row, col


def _parabola_offset(profile, peak):
    """Vertex offset (pixels, clipped to +-0.5) of a parabola through `profile` near `peak`.

    profile: `(batch, K, L)` log values along one axis; peak: `(batch, K)` argmax index.
    """
    length = profile.shape[-1]
    if length < 3:
        return np.zeros(peak.shape, np.float32)
    centre = np.clip(peak, 1, length - 2)
    left, mid, right = (
        np.take_along_axis(profile, (centre + d)[..., None], axis=-1)[..., 0] for d in (-1, 0, 1)
    )
    curvature = left - 2.0 * mid + right
    concave = curvature < -1e-6
    vertex = centre + 0.5 * (left - right) / np.where(concave, curvature, -1.0)
    return np.where(concave, np.clip(vertex - peak, -0.5, 0.5), 0.0)


class CentreHeatmapCodec:
    """Many objects per image: one Gaussian peak per object centre, one map per class.

    Shapes: B images, M object slots (padded), C classes, P decoded peaks. Objects are
    `(B, M, 4)` rows `(x_norm, y_norm, class, valid)`, normalised to `[0, 1]` of the
    frame with the pixel-centre convention of this module; rows with `valid == 0` are
    padding. Heatmaps are `(B, H, W, C)`; where objects' Gaussians overlap, the map
    holds their maximum (not their sum), so every object keeps a peak of height 1.

    `encode` is `keras.ops` code (it runs inside the loss, on the device); `decode` is
    vectorised numpy: a 3x3 max-pool NMS (a pixel is a peak when no neighbour is higher;
    of equal neighbours the first in raster order wins), a score threshold, then the
    log-parabola sub-pixel refinement of `GaussianHeatmapCodec.decode` at each peak.

    Args:
        heatmap_size: `(width, height)` of the heatmaps in pixels.
        num_classes: C, the number of maps.
        sigma: standard deviation of the Gaussians in heatmap pixels.
    """

    def __init__(self, heatmap_size=(64, 64), num_classes=1, sigma=1.5):
        self.gaussian = GaussianHeatmapCodec(heatmap_size, sigma)
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive integer. Received: num_classes={num_classes}")
        self.heatmap_size, self.sigma = self.gaussian.heatmap_size, self.gaussian.sigma
        self.map_shape = self.gaussian.map_shape
        self.num_classes = int(num_classes)

    def check_maps(self, heatmaps, name="heatmaps"):
        """Raise unless `(B, H, W, C)` maps have this codec's `map_shape` and C classes."""
        self.gaussian.check_maps(heatmaps, name)
        channels = heatmaps.shape[-1]
        if channels is not None and int(channels) != self.num_classes:
            raise ValueError(f"`{name}` have {channels} maps but the codec has num_classes={self.num_classes}")

    def encode(self, objects):
        """`(B, M, 4)` objects -> `(B, H, W, C)` float32 target heatmaps (keras.ops).

        Objects that are padding, NaN, outside `[0, 1]` or of a class outside
        `0 .. C - 1` leave no peak.
        """
        objects = ops.cast(ops.convert_to_tensor(objects), "float32")
        classes = ops.cast(objects[..., 2], "int32")
        valid = (objects[..., 3] > 0) & (classes >= 0) & (classes < self.num_classes)
        maps, _ = self.gaussian.encode(objects[..., :2], valid)  # (B, H, W, M), one map per object
        onehot = ops.one_hot(ops.where(valid, classes, 0), self.num_classes)  # (B, M, C)
        return ops.max(maps[..., :, None] * onehot[:, None, None, :, :], axis=3)  # (B, H, W, C)

    def decode(self, heatmaps, threshold=0.3, max_peaks=None):
        """Peaks of `(B, H, W, C)` heatmaps (numpy or backend tensors).

        Returns a dict of flat `(P,)` arrays, ordered by image then by falling score:
        `image` (int), `class` (int), `xy_norm` `(P, 2)` float32 (refined), `score`
        (peak height). `max_peaks` keeps at most that many per image (highest first).
        """
        heatmaps = np.asarray(ops.convert_to_numpy(heatmaps), dtype=np.float32)
        self.check_maps(heatmaps)
        batch, height, width, _ = heatmaps.shape
        b, row, col, cls = np.nonzero(peak_mask(heatmaps) & (heatmaps >= threshold))
        score = heatmaps[b, row, col, cls]
        order = np.lexsort((-score, b))
        b, row, col, cls, score = b[order], row[order], col[order], cls[order], score[order]
        if max_peaks is not None:
            rank = np.arange(len(b)) - np.searchsorted(b, b)  # position within its image
            keep = rank < max_peaks
            b, row, col, cls, score = b[keep], row[keep], col[keep], cls[keep], score[keep]
        log_maps = np.log(np.maximum(heatmaps, 1e-10))
        x_profile = log_maps[b, row, :, cls][:, None, :]  # (P, 1, W)
        y_profile = log_maps[b, :, col, cls][:, None, :]  # (P, 1, H)
        x = col + 0.5 + _parabola_offset(x_profile, col[:, None])[:, 0]
        y = row + 0.5 + _parabola_offset(y_profile, row[:, None])[:, 0]
        xy_norm = np.stack([x / width, y / height], axis=-1).astype(np.float32)
        return {"image": b.astype(np.int64), "class": cls.astype(np.int64), "xy_norm": xy_norm,
                "score": score.astype(np.float32)}

    def get_config(self):
        return {"heatmap_size": self.heatmap_size, "num_classes": self.num_classes, "sigma": self.sigma}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def peak_mask(heatmaps):
    """`(B, H, W, C)` bool: 3x3 non-maximum suppression, vectorised.

    A pixel survives when it is >= its 8 neighbours and > the 4 neighbours that come
    before it in raster order (left, up-left, up, up-right), so a plateau of equal
    values keeps exactly one pixel. Outside the map counts as -inf.
    """
    heatmaps = np.asarray(heatmaps)
    height, width = heatmaps.shape[1:3]
    padded = np.pad(heatmaps, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    keep = np.ones(heatmaps.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == dx == 0:
                continue
            neighbour = padded[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
            earlier = dy < 0 or (dy == 0 and dx < 0)
            keep &= heatmaps > neighbour if earlier else heatmaps >= neighbour
    return keep
