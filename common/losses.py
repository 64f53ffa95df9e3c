"""Serialisable `keras.ops` losses for heatmap keypoint models.

Shapes follow `common.codecs`: heatmaps `(batch, H, W, K)`, keypoints `(batch, K, 3)`
as normalised `(x, y, visible)`. Predictions are cast to float32 first, so the losses
are computed in float32 under mixed precision.

The losses that build Gaussian targets take the codec's config, `heatmap_size`
`(width, height)` and `sigma` (`FocalHeatmapLoss(**codec.get_config())`), and build their
codec from it, so that `get_config` alone restores them.

Saved models: until the size convention was made one, these losses stored
`heatmap_size` as `(H, W)`. A loss restored from such a file reads it as
`(width, height)`. That is harmless, so no conversion is kept: the package loads models
with `compile=False` and recompiles them from the run's config (`grep load_model`; only
`bench/stage2_inference.py` restores the compiled loss, and it only predicts); square
maps (the defaults, and every shipped config) read the same either way; and a
non-square one fails the loss's shape check on its first call instead of training on
swapped targets.
"""

import math

import keras
from keras import ops

from common.codecs import GaussianHeatmapCodec
from common.layers import soft_argmax

PACKAGE = "keypoints"
KEYPOINT_REDUCTIONS = ("mean", "sum")  # FocalHeatmapLoss(keypoint_reduction=...)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FocalHeatmapLoss(keras.losses.Loss):
    """Per-pixel sigmoid focal cross-entropy with soft Gaussian targets.

    `y_pred` is `(batch, H, W, K)` heatmap logits (or probabilities when
    `from_logits=False`). `y_true` is either keypoints `(batch, K, 3)` =
    `(x_norm, y_norm, visible)`, turned into Gaussian targets on the device by
    `GaussianHeatmapCodec(heatmap_size, sigma).encode`, or ready target heatmaps
    `(batch, H, W, K)`; the (static) rank decides. Invisible keypoints get an all-zero
    target map, so the model is trained to show no peak for them.

    With target `t`, logit `z` and `p = sigmoid(z)`:
    `bce = t * softplus(-z) + (1 - t) * softplus(z)` (stable on logits),
    `p_t = t * p + (1 - t) * (1 - p)`, `alpha_t = t * alpha + (1 - t) * (1 - alpha)`,
    `loss = alpha_t * (1 - p_t) ** gamma * bce`, averaged over H and W per sample, then
    averaged over the K maps (`keypoint_reduction="mean"`, what
    `keras.losses.BinaryFocalCrossentropy` does with the maps' last axis) or summed over
    them (`"sum"`, what tensorflow-addons' `SigmoidFocalCrossEntropy` did). The sum keeps
    each keypoint's map at the same weight whatever K is, so its balance against a
    per-keypoint coordinate loss does not change with the number of keypoints.
    Unlike MSE on sigmoid outputs, its gradient does not vanish on all-zero maps.

    Args:
        alpha: weight of the positive (target 1) term.
        gamma: focusing exponent.
        heatmap_size: `(width, height)` of the targets built from keypoints.
        sigma: Gaussian sigma in heatmap pixels for targets built from keypoints.
        from_logits: whether `y_pred` are logits (True) or probabilities.
        keypoint_reduction: `"mean"` or `"sum"` over the K maps.
    """

    def __init__(
        self,
        alpha=0.25,
        gamma=2.0,
        heatmap_size=(64, 64),
        sigma=2.0,
        from_logits=True,
        keypoint_reduction="mean",
        name="focal_heatmap_loss",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha}")
        if not gamma >= 0.0:
            raise ValueError(f"`gamma` must be >= 0. Received: gamma={gamma}")
        if keypoint_reduction not in KEYPOINT_REDUCTIONS:
            raise ValueError(f"`keypoint_reduction` must be 'mean' or 'sum'. Received: {keypoint_reduction!r}")
        self.keypoint_reduction = keypoint_reduction
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.codec = GaussianHeatmapCodec(heatmap_size, sigma)
        self.heatmap_size = self.codec.heatmap_size
        self.sigma = self.codec.sigma
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        targets = _keypoint_targets(y_true, self.codec, y_pred)

        if self.from_logits:
            probs = ops.sigmoid(y_pred)
            bce = targets * ops.softplus(-y_pred) + (1.0 - targets) * ops.softplus(y_pred)
        else:
            probs = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
            bce = -(targets * ops.log(probs) + (1.0 - targets) * ops.log(1.0 - probs))
        p_t = targets * probs + (1.0 - targets) * (1.0 - probs)
        alpha_t = targets * self.alpha + (1.0 - targets) * (1.0 - self.alpha)
        loss = ops.mean(alpha_t * ops.power(1.0 - p_t, self.gamma) * bce, axis=(1, 2))
        return ops.sum(loss, axis=-1) if self.keypoint_reduction == "sum" else ops.mean(loss, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "gamma": self.gamma,
                "heatmap_size": self.heatmap_size,
                "sigma": self.sigma,
                "from_logits": self.from_logits,
                "keypoint_reduction": self.keypoint_reduction,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedL1(keras.losses.Loss):
    """Mean absolute coordinate error over visible keypoints.

    `y_true` is `(batch, K, 3)` = `(x, y, visible)`, `y_pred` is `(batch, K, 2)`.
    Per sample: `sum(|dx| * v + |dy| * v) / max(2 * sum(v), 1)`, i.e. the mean over
    the coordinates of the visible keypoints; invisible keypoints do not count and a
    sample with none visible has loss 0. The batch reduction then averages samples.
    """

    def __init__(self, name="masked_l1", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        visible = ops.cast(y_true[..., 2] > 0, "float32")  # (batch, K)
        error = ops.sum(ops.abs(y_pred - y_true[..., :2]), axis=-1)  # (batch, K)
        # where (not multiply) so a NaN coordinate of an invisible keypoint cannot leak in.
        error = ops.where(visible > 0, error, 0.0)
        return ops.sum(error, axis=-1) / ops.maximum(2.0 * ops.sum(visible, axis=-1), 1.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FocalMSEHeatmapLoss(keras.losses.Loss):
    """Focal-weighted MSE for centre heatmaps (CenterNet's focal weighting on an MSE).

    `y_pred` is `(batch, H, W, C)` heatmap probabilities (e.g. sigmoid outputs, values
    in [0, 1]). `y_true` is either objects `(batch, M, 4)` = `(x_norm, y_norm, class,
    valid)`, turned into Gaussian targets on the device by
    `CentreHeatmapCodec(heatmap_size, num_classes, sigma).encode`, or ready target
    heatmaps `(batch, H, W, C)`; the (static) rank decides.

    With prediction `p` and target `t`, a pixel is positive when it is a 3x3 local
    maximum of its target map with `t > 0.5` (the pixel(s) nearest each centre); then
    `positive = (1 - p) ** alpha * (p - t) ** 2` and, over all other pixels,
    `negative = (1 - t) ** beta * p ** alpha * (p - t) ** 2`, and per image
    `loss = (sum positive + sum negative) / max(number of positives, 1)`.
    The issue text writes the negative weight as `t ** beta`; that weight is 0 on the
    background (t = 0), which would leave every background pixel free to predict 1, so
    the `(1 - t) ** beta` of CenterNet's focal loss (Zhou et al. 2019) is used: it
    forgives high predictions right next to a centre and keeps the rest at 0.
    Normalising by the number of positives (not the number of pixels) keeps the few
    positive pixels from being drowned by thousands of background ones.

    Args:
        alpha: focusing exponent on the prediction (2 in CenterNet).
        beta: exponent of the penalty reduction near centres (4 in CenterNet).
        heatmap_size: `(width, height)` of targets built from objects.
        num_classes: C, for targets built from objects.
        sigma: Gaussian sigma in heatmap pixels, for targets built from objects.
    """

    def __init__(
        self,
        alpha=2.0,
        beta=4.0,
        heatmap_size=(64, 64),
        num_classes=1,
        sigma=1.5,
        name="focal_mse_heatmap_loss",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        from common.codecs import CentreHeatmapCodec

        if not alpha >= 0.0 or not beta >= 0.0:
            raise ValueError(f"`alpha` and `beta` must be >= 0. Received: alpha={alpha}, beta={beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.codec = CentreHeatmapCodec(heatmap_size, num_classes, sigma)
        self.heatmap_size, self.num_classes, self.sigma = self.codec.heatmap_size, self.codec.num_classes, self.codec.sigma

    def call(self, y_true, y_pred):
        y_pred = ops.clip(ops.cast(y_pred, "float32"), 0.0, 1.0)
        y_true = ops.cast(y_true, "float32")
        if len(y_true.shape) == 3:
            self.codec.check_maps(y_pred, "y_pred")
            targets = self.codec.encode(y_true)
        elif len(y_true.shape) == 4:
            targets = y_true
        else:
            raise ValueError("`y_true` must be objects (batch, M, 4) or heatmaps (batch, H, W, C). "
                             f"Received: shape={y_true.shape}")
        local_max = ops.max_pool(targets, pool_size=3, strides=1, padding="same")
        positive = ops.cast((targets >= local_max) & (targets > 0.5), "float32")
        squared = ops.square(y_pred - targets)
        pos_term = positive * ops.power(1.0 - y_pred, self.alpha) * squared
        neg_term = (1.0 - positive) * ops.power(1.0 - targets, self.beta) * ops.power(y_pred, self.alpha) * squared
        num_positive = ops.sum(positive, axis=(1, 2, 3))
        return ops.sum(pos_term + neg_term, axis=(1, 2, 3)) / ops.maximum(num_positive, 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "beta": self.beta, "heatmap_size": self.heatmap_size,
                       "num_classes": self.num_classes, "sigma": self.sigma})
        return config


# --- Landmark-accuracy losses (issue 4): Wing, adaptive Wing, MSE + soft-argmax peak ---

def _keypoint_targets(y_true, codec, y_pred):
    """Target heatmaps from `(batch, K, 3)` keypoints, or `y_true` itself when it is heatmaps."""
    if len(y_true.shape) == 3:
        codec.check_maps(y_pred, "y_pred")
        return codec.encode(y_true[..., :2], y_true[..., 2])[0]
    if len(y_true.shape) == 4:
        return y_true
    raise ValueError("`y_true` must be keypoints (batch, K, 3) or heatmaps (batch, H, W, K). "
                     f"Received: shape={y_true.shape}")


@keras.saving.register_keras_serializable(package=PACKAGE)
class WingLoss(keras.losses.Loss):
    """Wing loss on keypoint coordinates (Feng et al., CVPR 2018).

    `y_pred` is `(batch, K, 2)` normalised `(x, y)`; `y_true` is `(batch, K, 3)` =
    `(x, y, visible)` or `(batch, K, 2)` (all visible). Each coordinate difference is
    multiplied by `scale` first (e.g. the heatmap or image side, so `width` and
    `epsilon` are in pixels), then with `d = |difference|`:
    `wing(d) = width * ln(1 + d / epsilon)` for `d < width`, else `d - C` with
    `C = width - width * ln(1 + width / epsilon)` (continuous at `d = width`).
    Per sample: the sum over the visible keypoints' two coordinates divided by
    `max(2 * visible count, 1)`; invisible keypoints do not count.

    Args:
        width: the log-to-linear switch point `w` (pixels after `scale`).
        epsilon: curvature of the log part.
        scale: factor from normalised coordinates to the loss's pixels.
    """

    def __init__(self, width=10.0, epsilon=2.0, scale=64.0, name="wing_loss", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        if not width > 0 or not epsilon > 0 or not scale > 0:
            raise ValueError(f"`width`, `epsilon` and `scale` must be positive. "
                             f"Received: width={width}, epsilon={epsilon}, scale={scale}")
        self.width, self.epsilon, self.scale = float(width), float(epsilon), float(scale)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        if y_true.shape[-1] == 3:
            visible = ops.cast(y_true[..., 2] > 0, "float32")
        else:
            visible = ops.ones_like(y_true[..., 0])
        d = ops.abs(y_pred - y_true[..., :2]) * self.scale  # (batch, K, 2)
        c = self.width - self.width * math.log(1.0 + self.width / self.epsilon)
        wing = ops.where(d < self.width, self.width * ops.log1p(d / self.epsilon), d - c)
        wing = ops.where(visible[..., None] > 0, wing, 0.0)
        return ops.sum(wing, axis=(1, 2)) / ops.maximum(2.0 * ops.sum(visible, axis=-1), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"width": self.width, "epsilon": self.epsilon, "scale": self.scale})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class AdaptiveWingLoss(keras.losses.Loss):
    """Adaptive Wing loss on heatmaps (Wang et al., ICCV 2019).

    `y_pred` is `(batch, H, W, K)` heatmaps (linear outputs); `y_true` is keypoints
    `(batch, K, 3)` (Gaussian targets are built on the device with
    `GaussianHeatmapCodec(heatmap_size, sigma)`) or target heatmaps `(batch, H, W, K)`.
    With target `y`, `d = |y_pred - y|` and exponent `a = alpha - y`:
    `loss = omega * ln(1 + (d / epsilon) ** a)` for `d < theta`, else `A * d - C` with
    `A = omega * a * (theta / epsilon) ** (a - 1) / (epsilon * (1 + (theta / epsilon) ** a))`
    and `C = theta * A - omega * ln(1 + (theta / epsilon) ** a)` (continuous and smooth
    at `d = theta`). Averaged over H, W, K per sample.
    """

    def __init__(self, omega=14.0, theta=0.5, epsilon=1.0, alpha=2.1, heatmap_size=(64, 64), sigma=2.0,
                 name="adaptive_wing_loss", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        if not (omega > 0 and theta > 0 and epsilon > 0 and alpha > 1):
            raise ValueError(f"`omega`, `theta`, `epsilon` must be positive and `alpha` > 1. Received: "
                             f"omega={omega}, theta={theta}, epsilon={epsilon}, alpha={alpha}")
        self.omega, self.theta, self.epsilon, self.alpha = float(omega), float(theta), float(epsilon), float(alpha)
        self.codec = GaussianHeatmapCodec(heatmap_size, sigma)
        self.heatmap_size, self.sigma = self.codec.heatmap_size, self.codec.sigma

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        targets = _keypoint_targets(ops.cast(y_true, "float32"), self.codec, y_pred)
        d = ops.abs(y_pred - targets)
        a = self.alpha - targets
        ratio = self.theta / self.epsilon
        big_a = self.omega * a * ops.power(ratio, a - 1.0) / (self.epsilon * (1.0 + ops.power(ratio, a)))
        c = self.theta * big_a - self.omega * ops.log1p(ops.power(ratio, a))
        # d / epsilon is clipped where the linear branch is taken, so the power never overflows.
        small = self.omega * ops.log1p(ops.power(ops.minimum(d, self.theta) / self.epsilon, a))
        loss = ops.where(d < self.theta, small, big_a * d - c)
        return ops.mean(loss, axis=(1, 2, 3))

    def get_config(self):
        config = super().get_config()
        config.update({"omega": self.omega, "theta": self.theta, "epsilon": self.epsilon, "alpha": self.alpha,
                       "heatmap_size": self.heatmap_size, "sigma": self.sigma})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class HeatmapPeakLoss(keras.losses.Loss):
    """`alpha * MSE(heatmaps, targets) + beta * peak distance`, on linear heatmaps.

    `y_pred` is `(batch, H, W, K)` heatmaps; `y_true` is keypoints `(batch, K, 3)` =
    `(x_norm, y_norm, visible)` (the Gaussian targets are built on the device). The MSE
    is the mean over H, W, K. The peak is the differentiable soft-argmax of each
    predicted map (`common.layers.soft_argmax(beta=softargmax_beta)`), so the
    distance term has a gradient; the distance is Euclidean, in heatmap pixels, averaged
    over the visible keypoints (0 for a sample with none). `beta=0` is plain MSE.
    With `foreground_weight=w` each squared error is weighted by `1 + w * target`, so
    the few pixels under the Gaussians are not outvoted by the background (the
    weighted loss map of Wang et al., ICCV 2019); the mean is still over all pixels.

    Args:
        alpha: weight of the MSE term.
        beta: weight of the peak-distance term (per heatmap pixel).
        foreground_weight: extra weight of the pixels under the target Gaussians.
        softargmax_beta, debias: soft-argmax temperature and bias correction.
        heatmap_size, sigma: target heatmaps of `GaussianHeatmapCodec`; `heatmap_size` is
            `(width, height)`.
    """

    def __init__(self, alpha=1.0, beta=1e-3, softargmax_beta=15.0, debias=False, heatmap_size=(64, 64),
                 sigma=2.0, foreground_weight=0.0, name="heatmap_peak_loss", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        if alpha < 0 or beta < 0 or not softargmax_beta > 0:
            raise ValueError(f"`alpha`, `beta` must be >= 0 and `softargmax_beta` > 0. Received: alpha={alpha}, "
                             f"beta={beta}, softargmax_beta={softargmax_beta}")
        if foreground_weight < 0:
            raise ValueError(f"`foreground_weight` must be >= 0. Received: foreground_weight={foreground_weight}")
        self.alpha, self.beta, self.foreground_weight = float(alpha), float(beta), float(foreground_weight)
        self.softargmax_beta, self.debias = float(softargmax_beta), bool(debias)
        self.codec = GaussianHeatmapCodec(heatmap_size, sigma)
        self.heatmap_size, self.sigma = self.codec.heatmap_size, self.codec.sigma

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        if len(y_true.shape) != 3:
            raise ValueError(f"`y_true` must be keypoints (batch, K, 3). Received: shape={y_true.shape}")
        targets = _keypoint_targets(y_true, self.codec, y_pred)
        weights = 1.0 + self.foreground_weight * targets
        loss = self.alpha * ops.mean(weights * ops.square(y_pred - targets), axis=(1, 2, 3))
        if self.beta == 0.0:
            return loss
        visible = ops.cast(y_true[..., 2] > 0, "float32")
        size = ops.convert_to_tensor(self.heatmap_size, dtype="float32")  # (width, height), as xy
        xy = soft_argmax(y_pred, beta=self.softargmax_beta, debias=self.debias)
        delta = (xy - ops.where(visible[..., None] > 0, y_true[..., :2], 0.5)) * size
        # sqrt(x + tiny): the gradient stays finite at a distance of exactly 0.
        distance = ops.sqrt(ops.sum(ops.square(delta), axis=-1) + 1e-12) * visible
        return loss + self.beta * ops.sum(distance, axis=-1) / ops.maximum(ops.sum(visible, axis=-1), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "beta": self.beta, "softargmax_beta": self.softargmax_beta,
                       "debias": self.debias, "heatmap_size": self.heatmap_size, "sigma": self.sigma,
                       "foreground_weight": self.foreground_weight})
        return config


# --- Interchangeable keypoints (issue 25): the loss under the best assignment ---

@keras.saving.register_keras_serializable(package=PACKAGE)
class InterchangeableLoss(keras.losses.Loss):
    """`loss` under the best assignment of labels within each group of interchangeable
    keypoints (`common.interchangeable`): per sample, the minimum of `loss` over every
    relabelling of `y_true` that permutes keypoints within their groups.

    `y_true` is keypoints `(batch, K, C)` (relabelled on axis 1) or target heatmaps
    `(batch, H, W, K)` (on the last axis); `y_pred` is whatever `loss` takes. `loss` must
    return one value per sample from `call` (every loss of this module does). The
    assignments, the product of the groups' permutations, are enumerated at build time;
    the loss is evaluated once per assignment (2 for a pair, 6 for a triple, 4 for two
    pairs), then the per-sample minimum is taken, so the gradient flows through the
    assignment that fits best. With no groups it is `loss` itself.

    Args:
        loss: a `keras.losses.Loss` (or its serialised config).
        groups: tuples of keypoint indices, each group's labels arbitrary.
    """

    def __init__(self, loss, groups=(), name="interchangeable_loss", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        if not isinstance(loss, keras.losses.Loss):
            raise ValueError(f"`loss` must be a keras.losses.Loss. Received: loss={loss!r}")
        groups = tuple(tuple(int(k) for k in group) for group in groups)
        members = [k for g in groups for k in g]
        if any(len(g) < 2 for g in groups) or min(members, default=0) < 0 or len(set(members)) != len(members):
            raise ValueError(f"`groups` must be disjoint groups of >= 2 keypoint indices >= 0. "
                             f"Received: groups={groups}")
        self.loss, self.groups = loss, groups
        self._permutations = {}  # K -> (P, K) gather indices, built once per keypoint count

    def permutations(self, num_keypoints):
        from common.interchangeable import group_permutations

        if num_keypoints not in self._permutations:
            self._permutations[num_keypoints] = group_permutations(self.groups, num_keypoints)
        return self._permutations[num_keypoints]

    def call(self, y_true, y_pred):
        if not self.groups:
            return self.loss.call(y_true, y_pred)
        axis = 1 if len(y_true.shape) == 3 else len(y_true.shape) - 1
        values = [self.loss.call(ops.take(y_true, perm, axis=axis), y_pred)
                  for perm in self.permutations(int(y_true.shape[axis]))]
        return ops.min(ops.stack([ops.cast(v, "float32") for v in values], axis=0), axis=0)

    def get_config(self):
        config = super().get_config()
        config.update({"loss": keras.saving.serialize_keras_object(self.loss),
                       "groups": [list(g) for g in self.groups]})
        return config
