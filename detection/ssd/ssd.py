"""The multi-scale single-shot detector: model, loss and decoding layer.

    model = build_detector(num_classes=3, data_cfg, model_cfg)      # uint8 images -> raw predictions
    loss = SSDLoss(num_classes=3, **anchor_args(data_cfg, model_cfg))
    detections = DetectionDecoder(num_classes=3, **anchor_args(...))(model.output["predictions"])

Shapes: images (batch, H, W, 3) uint8; predictions (batch, N, 5 + C) float32 with, per
anchor, (tx, ty, tw, th, objectness logit, C class logits); N = sum over scales of
H_s * W_s * A (anchor order of `detection.ssd.anchors.generate_anchors`). Ground truth for
the loss is (batch, M, 5) = (x1, y1, x2, y2, class id) in input pixels, padded with
class -1. Detections are (batch, D, 7) = (x1, y1, x2, y2, score, class, anchor index),
padded with score 0 and class -1.
"""

import math

import keras
import numpy as np
from keras import layers, ops

from detection.ssd.anchors import assign_targets, box_iou, decode_boxes, generate_anchors

PACKAGE = "keypoints"
DETECTION_FIELDS = ("x1", "y1", "x2", "y2", "score", "class", "anchor")


def anchor_args(data_cfg, model_cfg):
    """The constructor arguments shared by the loss and the decoder (they define the anchors)."""
    return {"input_size": tuple(data_cfg.input_size), "strides": tuple(model_cfg.strides),
            "anchor_sizes": tuple(tuple(s) for s in model_cfg.anchor_sizes),
            "aspect_ratios": tuple(model_cfg.aspect_ratios), "variances": tuple(model_cfg.variances)}


def build_detector(num_classes, data_cfg, model_cfg, seed=0):
    """Functional model: uint8 image -> {"predictions": (batch, N, 5 + C) float32}.

    4 stride-2 blocks (3x3 conv + BN + ReLU, `convs_per_block` convolutions each);
    the outputs of `scale_blocks` feed one head each (3x3 conv + ReLU, then a 1x1 conv
    to A * (5 + C) channels). Layers are named block{b}, scale{s}_head_conv,
    scale{s}_head_out, so a feature-extraction model can tap them.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1. Received: num_classes={num_classes}")
    # === Layers ===
    init = keras.initializers.HeUniform(seed=seed)
    width, height = data_cfg.input_size
    num_anchors = len(model_cfg.anchor_sizes[0]) * len(model_cfg.aspect_ratios)
    channels = 5 + num_classes

    # === Functional model ===
    inputs = keras.Input((height, width, 3), dtype="uint8", name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    taps = {}
    for block, filters in enumerate(model_cfg.filters, start=1):
        for k in range(model_cfg.convs_per_block):
            x = layers.Conv2D(filters, 3, strides=2 if k == 0 else 1, padding="same", use_bias=False,
                              kernel_initializer=init, name=f"block{block}_conv{k + 1}")(x)
            x = layers.BatchNormalization(momentum=model_cfg.bn_momentum, name=f"block{block}_bn{k + 1}")(x)
            x = layers.ReLU(name=f"block{block}" if k == model_cfg.convs_per_block - 1 else f"block{block}_relu{k + 1}")(x)
        taps[block] = x
    outputs = []
    for scale, (block, filters) in enumerate(zip(model_cfg.scale_blocks, model_cfg.head_filters), start=1):
        h = layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer=init,
                          name=f"scale{scale}_head_conv")(taps[block])
        h = layers.Conv2D(num_anchors * channels, 1, kernel_initializer=keras.initializers.RandomNormal(
            stddev=0.01, seed=seed + scale), name=f"scale{scale}_head_out")(h)
        outputs.append(layers.Reshape((-1, channels), name=f"scale{scale}_reshape")(h))
    x = layers.Concatenate(axis=1, name="concat")(outputs) if len(outputs) > 1 else outputs[0]
    predictions = layers.Activation("linear", dtype="float32", name="predictions")(x)
    model = keras.Model(inputs, {"predictions": predictions}, name="ssd")

    # === Initial objectness bias ===
    # Prior 0.01 (RetinaNet): at the start nearly every anchor says "background", so the
    # thousands of easy negatives do not swamp the first steps.
    prior = -math.log((1 - 0.01) / 0.01)
    for scale in range(1, len(model_cfg.scale_blocks) + 1):
        layer = model.get_layer(f"scale{scale}_head_out")
        bias = np.zeros(num_anchors * channels, np.float32)
        bias[4::channels] = prior
        layer.bias.assign(bias)
    return model


def _anchors(input_size, strides, anchor_sizes, aspect_ratios):
    anchors, scale_index = generate_anchors(input_size, strides, anchor_sizes, aspect_ratios)
    return anchors, scale_index


def _normalise_anchor_args(input_size, strides, anchor_sizes, aspect_ratios, variances):
    return (tuple(int(v) for v in input_size), tuple(int(s) for s in strides),
            tuple(tuple(float(s) for s in sizes) for sizes in anchor_sizes),
            tuple(float(r) for r in aspect_ratios), tuple(float(v) for v in variances))


def smooth_l1(x):
    """Huber with delta 1: 0.5 x^2 for |x| < 1, |x| - 0.5 beyond."""
    absolute = ops.abs(x)
    return ops.where(absolute < 1.0, 0.5 * x * x, absolute - 0.5)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SSDLoss(keras.losses.Loss):
    """Objectness + box + class loss, with the targets assigned on the device.

    y_true: (batch, M, 5) = (x1, y1, x2, y2, class) in input pixels, class -1 = padding.
    y_pred: (batch, N, 5 + C) raw predictions (cast to float32 first).

    Anchors are matched by `assign_targets` (positive >= positive_iou, negative <
    negative_iou, ignored between, plus each box's best anchor). With P positives in
    the batch, the loss is (objectness + box_weight * box + class_weight * class) / P,
    where box is smooth L1 over (tx, ty, tw, th) of positives, class the softmax
    cross-entropy of positives, and objectness either
      - bce: binary cross-entropy on positives and, per image, the `neg_pos_ratio` x
        (its positives, at least 1) hardest negatives (hard-negative mining; 0 = all), or
      - focal: sigmoid focal loss (alpha, gamma) on all positives and negatives.
    Each sample's value is its share of that batch total times the batch size, so
    Keras' mean over the batch gives exactly the total / P.
    """

    def __init__(self, num_classes, input_size, strides, anchor_sizes, aspect_ratios=(1.0,),
                 variances=(0.1, 0.1, 0.2, 0.2), positive_iou=0.5, negative_iou=0.4, objectness_loss="bce",
                 neg_pos_ratio=3.0, focal_alpha=0.25, focal_gamma=2.0, box_weight=1.0, class_weight=1.0,
                 name="ssd_loss", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        if objectness_loss not in ("bce", "focal"):
            raise ValueError(f"objectness_loss must be bce|focal. Received: objectness_loss={objectness_loss!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1. Received: num_classes={num_classes}")
        self.num_classes = int(num_classes)
        (self.input_size, self.strides, self.anchor_sizes, self.aspect_ratios,
         self.variances) = _normalise_anchor_args(input_size, strides, anchor_sizes, aspect_ratios, variances)
        self.positive_iou, self.negative_iou = float(positive_iou), float(negative_iou)
        self.objectness_loss, self.neg_pos_ratio = objectness_loss, float(neg_pos_ratio)
        self.focal_alpha, self.focal_gamma = float(focal_alpha), float(focal_gamma)
        self.box_weight, self.class_weight = float(box_weight), float(class_weight)
        self.anchors, _ = _anchors(self.input_size, self.strides, self.anchor_sizes, self.aspect_ratios)

    def components(self, y_true, y_pred):
        """Per-sample (objectness, box, class) sums and the batch's positive count."""
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        targets = assign_targets(self.anchors, y_true[..., :4], ops.cast(y_true[..., 4], "int32"),
                                 self.positive_iou, self.negative_iou, self.variances)
        positive, negative = targets["positive"], targets["negative"]
        logits = y_pred[..., 4]
        bce = positive * ops.softplus(-logits) + (1.0 - positive) * ops.softplus(logits)
        if self.objectness_loss == "focal":
            p = ops.sigmoid(logits)
            p_t = positive * p + (1.0 - positive) * (1.0 - p)
            alpha_t = positive * self.focal_alpha + (1.0 - positive) * (1.0 - self.focal_alpha)
            objectness = ops.sum(alpha_t * (1.0 - p_t) ** self.focal_gamma * bce * (positive + negative), axis=1)
        else:
            objectness = ops.sum(bce * (positive + self._hard_negatives(bce, positive, negative)), axis=1)
        box = ops.sum(ops.sum(smooth_l1(y_pred[..., :4] - targets["box_targets"]), axis=-1) * positive, axis=1)
        class_ce = ops.sparse_categorical_crossentropy(targets["classes"], y_pred[..., 5:], from_logits=True)
        classes = ops.sum(class_ce * positive, axis=1)
        return objectness, box, classes, ops.sum(positive)

    def _hard_negatives(self, bce, positive, negative):
        """(batch, N) mask of each image's neg_pos_ratio x max(positives, 1) highest-loss negatives."""
        if self.neg_pos_ratio <= 0:
            return negative
        quota = self.neg_pos_ratio * ops.maximum(ops.sum(positive, axis=1, keepdims=True), 1.0)
        scores = ops.stop_gradient(ops.where(negative > 0, bce, -1.0))
        rank = ops.argsort(ops.argsort(-scores, axis=1), axis=1)  # 0 = hardest
        return negative * ops.cast(ops.cast(rank, "float32") < quota, "float32")

    def call(self, y_true, y_pred):
        objectness, box, classes, num_positive = self.components(y_true, y_pred)
        batch = ops.cast(ops.shape(y_pred)[0], "float32")
        total = objectness + self.box_weight * box + self.class_weight * classes
        return total * batch / ops.maximum(num_positive, 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "input_size": self.input_size, "strides": self.strides,
                       "anchor_sizes": self.anchor_sizes, "aspect_ratios": self.aspect_ratios,
                       "variances": self.variances, "positive_iou": self.positive_iou,
                       "negative_iou": self.negative_iou, "objectness_loss": self.objectness_loss,
                       "neg_pos_ratio": self.neg_pos_ratio, "focal_alpha": self.focal_alpha,
                       "focal_gamma": self.focal_gamma, "box_weight": self.box_weight,
                       "class_weight": self.class_weight})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def non_max_suppression_mask(boxes, scores, iou_threshold, score_threshold):
    """Greedy NMS on score-sorted candidates, vectorised.

    boxes (..., K, 4) and scores (..., K) sorted by descending score. Returns the keep
    mask (..., K) bool. Candidate i is kept when its score >= score_threshold and no
    kept candidate j < i overlaps it with IoU > iou_threshold. `keep` is the fixed point
    of keep_i = valid_i and not any_j<i (keep_j and overlap_ij); iterate K times
    and entries 0..t-1 are final after t rounds, so the result equals greedy NMS
    exactly, without a Python loop over boxes.
    """
    count = boxes.shape[-2]
    valid = scores >= score_threshold
    earlier = np.tril(np.ones((count, count), bool), k=-1)  # [i, j] = j < i
    overlap = ops.logical_and(box_iou(boxes, boxes) > iou_threshold, earlier)

    def step(_, keep):
        suppressed = ops.any(ops.logical_and(overlap, ops.expand_dims(keep, -2)), axis=-1)
        return ops.logical_and(valid, ops.logical_not(suppressed))

    return ops.fori_loop(0, count, step, valid)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DetectionDecoder(keras.layers.Layer):
    """Raw predictions -> detections: decode, score, per-class NMS, top detections.

    Input (batch, N, 5 + C); output (batch, max_detections, 7) float32 =
    (x1, y1, x2, y2, score, class, anchor index), boxes in input pixels clipped to
    the image, sorted by score; rows past the detections have score 0 and class -1.
    Score = sigmoid(objectness) x softmax(class logits). Per class, the
    `pre_nms_top_k` best anchors with score >= score_threshold enter
    `non_max_suppression_mask`; the survivors of all classes are ranked together.
    """

    def __init__(self, num_classes, input_size, strides, anchor_sizes, aspect_ratios=(1.0,),
                 variances=(0.1, 0.1, 0.2, 0.2), score_threshold=0.05, nms_iou=0.45, pre_nms_top_k=100,
                 max_detections=100, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        (self.input_size, self.strides, self.anchor_sizes, self.aspect_ratios,
         self.variances) = _normalise_anchor_args(input_size, strides, anchor_sizes, aspect_ratios, variances)
        self.score_threshold, self.nms_iou = float(score_threshold), float(nms_iou)
        self.pre_nms_top_k, self.max_detections = int(pre_nms_top_k), int(max_detections)
        self.anchors, _ = _anchors(self.input_size, self.strides, self.anchor_sizes, self.aspect_ratios)
        if not 0 < self.nms_iou <= 1:
            raise ValueError(f"nms_iou must be in (0, 1]. Received: nms_iou={nms_iou}")

    def call(self, predictions):
        predictions = ops.cast(predictions, "float32")
        num_anchors, num_classes = len(self.anchors), self.num_classes
        top_k = min(self.pre_nms_top_k, num_anchors)
        boxes = decode_boxes(predictions[..., :4], ops.convert_to_tensor(self.anchors), self.variances)
        width, height = self.input_size
        boxes = ops.clip(boxes, 0.0, ops.convert_to_tensor([width, height, width, height], "float32"))
        scores = ops.sigmoid(predictions[..., 4:5]) * ops.softmax(predictions[..., 5:], axis=-1)  # (B, N, C)
        class_scores, index = ops.top_k(ops.transpose(scores, (0, 2, 1)), top_k)  # (B, C, K)
        per_class = ops.repeat(ops.expand_dims(boxes, 1), num_classes, axis=1)  # (B, C, N, 4)
        candidates = ops.take_along_axis(per_class, ops.repeat(ops.expand_dims(index, -1), 4, axis=-1), axis=2)
        keep = non_max_suppression_mask(candidates, class_scores, self.nms_iou, self.score_threshold)
        kept = ops.reshape(ops.where(keep, class_scores, 0.0), (-1, num_classes * top_k))
        count = min(self.max_detections, num_classes * top_k)
        final_scores, flat = ops.top_k(kept, count)  # (B, D)
        final_boxes = ops.take_along_axis(ops.reshape(candidates, (-1, num_classes * top_k, 4)),
                                          ops.repeat(ops.expand_dims(flat, -1), 4, axis=-1), axis=1)
        anchor = ops.take_along_axis(ops.reshape(index, (-1, num_classes * top_k)), flat, axis=1)
        found = final_scores > 0
        classes = ops.where(found, ops.cast(flat // top_k, "float32"), -1.0)
        anchor = ops.where(found, ops.cast(anchor, "float32"), -1.0)
        final_boxes = ops.where(found[..., None], final_boxes, 0.0)
        detections = ops.concatenate([final_boxes, final_scores[..., None], classes[..., None], anchor[..., None]],
                                     axis=-1)
        if count < self.max_detections:  # fewer candidates than slots: pad
            pad = ops.zeros_like(detections[:, :1, :]) + ops.convert_to_tensor([0, 0, 0, 0, 0, -1, -1], "float32")
            detections = ops.concatenate([detections] + [pad] * (self.max_detections - count), axis=1)
        return detections

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.max_detections, len(DETECTION_FIELDS))

    def compute_output_spec(self, predictions):
        return keras.KerasTensor(self.compute_output_shape(predictions.shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "input_size": self.input_size, "strides": self.strides,
                       "anchor_sizes": self.anchor_sizes, "aspect_ratios": self.aspect_ratios,
                       "variances": self.variances, "score_threshold": self.score_threshold,
                       "nms_iou": self.nms_iou, "pre_nms_top_k": self.pre_nms_top_k,
                       "max_detections": self.max_detections})
        return config


def split_detections(detections):
    """(batch, D, 7) array -> list per image of dict boxes (n, 4), scores (n,), classes (n,)
    int, anchors (n,) int, with the padding rows removed."""
    detections = np.asarray(detections)
    out = []
    for rows in detections:
        rows = rows[rows[:, 4] > 0]
        out.append({"boxes": rows[:, :4].astype(np.float64), "scores": rows[:, 4].astype(np.float64),
                    "classes": rows[:, 5].astype(np.int64), "anchors": rows[:, 6].astype(np.int64)})
    return out
