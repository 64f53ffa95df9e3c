"""Serialisable `keras.ops` losses for heatmap keypoint models.

Shapes follow `common.codecs`: heatmaps `(batch, H, W, K)`, keypoints `(batch, K, 3)`
as normalised `(x, y, visible)`. Predictions are cast to float32 first, so the losses
are computed in float32 under mixed precision.
"""

import keras
from keras import ops

from common.codecs import GaussianHeatmapCodec

PACKAGE = "keypoints"


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
    `loss = alpha_t * (1 - p_t) ** gamma * bce`, averaged over H, W, K per sample.
    Unlike MSE on sigmoid outputs, its gradient does not vanish on all-zero maps.

    Args:
        alpha: weight of the positive (target 1) term.
        gamma: focusing exponent.
        heatmap_size: `(H, W)` of the targets built from keypoints.
        sigma: Gaussian sigma in heatmap pixels for targets built from keypoints.
        from_logits: whether `y_pred` are logits (True) or probabilities.
    """

    def __init__(
        self,
        alpha=0.25,
        gamma=2.0,
        heatmap_size=(64, 64),
        sigma=2.0,
        from_logits=True,
        name="focal_heatmap_loss",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha}")
        if not gamma >= 0.0:
            raise ValueError(f"`gamma` must be >= 0. Received: gamma={gamma}")
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.codec = GaussianHeatmapCodec(heatmap_size, sigma)
        self.heatmap_size = self.codec.heatmap_size
        self.sigma = self.codec.sigma
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        if len(y_true.shape) == 3:
            if tuple(y_pred.shape[1:3]) != self.heatmap_size and None not in y_pred.shape[1:3]:
                raise ValueError(
                    f"`y_pred` heatmaps are {tuple(y_pred.shape[1:3])} but the loss builds "
                    f"targets of heatmap_size={self.heatmap_size}"
                )
            targets, _ = self.codec.encode(y_true[..., :2], y_true[..., 2])
        elif len(y_true.shape) == 4:
            targets = y_true
        else:
            raise ValueError(
                "`y_true` must be keypoints (batch, K, 3) or heatmaps (batch, H, W, K). "
                f"Received: shape={y_true.shape}"
            )

        if self.from_logits:
            probs = ops.sigmoid(y_pred)
            bce = targets * ops.softplus(-y_pred) + (1.0 - targets) * ops.softplus(y_pred)
        else:
            probs = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
            bce = -(targets * ops.log(probs) + (1.0 - targets) * ops.log(1.0 - probs))
        p_t = targets * probs + (1.0 - targets) * (1.0 - probs)
        alpha_t = targets * self.alpha + (1.0 - targets) * (1.0 - self.alpha)
        loss = alpha_t * ops.power(1.0 - p_t, self.gamma) * bce
        return ops.mean(loss, axis=(1, 2, 3))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "gamma": self.gamma,
                "heatmap_size": self.heatmap_size,
                "sigma": self.sigma,
                "from_logits": self.from_logits,
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
        heatmap_size: `(H, W)` of targets built from objects.
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
            expected = self.heatmap_size + (self.num_classes,)
            if tuple(y_pred.shape[1:]) != expected and None not in y_pred.shape[1:]:
                raise ValueError(f"`y_pred` is {tuple(y_pred.shape[1:])} per image but the loss builds targets "
                                 f"of heatmap_size + (num_classes,) = {expected}")
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
