"""Anchors, IoU, box encoding and IoU-based target assignment for the single-shot detector.

Boxes are `(x1, y1, x2, y2)` in model-input pixels with the package's convention:
pixel i covers [i, i + 1), so a box covering pixels 0..9 is (0, 0, 10, 10) and its
width is x2 - x1 = 10. Anchors are generated in numpy (a constant of the config);
IoU, encode, decode and assignment are `keras.ops` code that runs batched on the
device inside the loss and the decoder, on TensorFlow and JAX alike.

Anchor order, shared by `generate_anchors` and the model's heads: scale, then row,
then column, then the anchor at that location (sizes outer, aspect ratios inner).
A head's output (batch, H, W, A * (5 + C)) reshaped to (batch, H * W * A, 5 + C)
lines up with it.
"""

import math

import numpy as np
from keras import ops

# SSD's box-target scaling: offsets / 0.1, log sizes / 0.2, so the regression targets
# of matched anchors have a spread near 1.
DEFAULT_VARIANCES = (0.1, 0.1, 0.2, 0.2)


def feature_sizes(input_size, strides):
    """[(width, height)] of each scale's feature map for a (width, height) input
    (stride-2 'same' convolutions round up)."""
    return [(math.ceil(input_size[0] / s), math.ceil(input_size[1] / s)) for s in strides]


def anchors_per_location(sizes, aspect_ratios):
    return len(sizes) * len(aspect_ratios)


def generate_anchors(input_size, strides, sizes, aspect_ratios=(1.0,)):
    """All anchors of all scales.

    Args:
        input_size: (width, height) of the model input in pixels.
        strides: one stride per scale, e.g. (4, 8, 16).
        sizes: per scale, the anchor sizes (sqrt of the area) in pixels,
            e.g. ((16, 24, 32), (48, 64, 96), (96, 128, 192)).
        aspect_ratios: width / height ratios, shared by every scale.

    Returns:
        anchors (N, 4) float32 xyxy, scale_index (N,) int32.
        Anchor centres sit on cell centres: column j of a stride-s map -> x = (j + 0.5) * s.
    """
    if len(strides) != len(sizes):
        raise ValueError(f"one list of sizes per stride. Received: strides={strides}, sizes={sizes}")
    boxes, scale_index = [], []
    for scale, ((width, height), stride, scale_sizes) in enumerate(zip(feature_sizes(input_size, strides),
                                                                       strides, sizes)):
        shapes = np.array([(s * math.sqrt(r), s / math.sqrt(r)) for s in scale_sizes for r in aspect_ratios])
        cx = (np.arange(width) + 0.5) * stride
        cy = (np.arange(height) + 0.5) * stride
        centre = np.stack(np.meshgrid(cx, cy), axis=-1)[:, :, None, :]  # (H, W, 1, 2)
        half = shapes[None, None, :, :] / 2.0  # (1, 1, A, 2)
        grid = np.concatenate([centre - half, centre + half], axis=-1)  # (H, W, A, 4)
        boxes.append(grid.reshape(-1, 4))
        scale_index.append(np.full(len(boxes[-1]), scale, np.int32))
    return np.concatenate(boxes).astype(np.float32), np.concatenate(scale_index)


def box_iou(boxes_a, boxes_b):
    """Pairwise IoU. boxes_a (..., N, 4), boxes_b (..., M, 4) xyxy -> (..., N, M).
    Degenerate boxes (zero area) have IoU 0 with everything."""
    a = ops.expand_dims(boxes_a, -2)  # (..., N, 1, 4)
    b = ops.expand_dims(boxes_b, -3)  # (..., 1, M, 4)
    width = ops.maximum(ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]), 0.0)
    height = ops.maximum(ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return ops.where(union > 0, inter / ops.maximum(union, 1e-9), 0.0)


def _centre_form(boxes):
    return ((boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2,
            boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])


def encode_boxes(boxes, anchors, variances=DEFAULT_VARIANCES):
    """xyxy boxes (..., N, 4) relative to anchors (N, 4) -> (tx, ty, tw, th) (..., N, 4).

    tx = (cx - cx_a) / w_a / v0, ty = (cy - cy_a) / h_a / v1, tw = log(w / w_a) / v2,
    th = log(h / h_a) / v3. Boxes must have positive width and height.
    """
    cx, cy, w, h = _centre_form(boxes)
    acx, acy, aw, ah = _centre_form(anchors)
    return ops.stack([(cx - acx) / aw / variances[0], (cy - acy) / ah / variances[1],
                      ops.log(w / aw) / variances[2], ops.log(h / ah) / variances[3]], axis=-1)


def decode_boxes(deltas, anchors, variances=DEFAULT_VARIANCES):
    """The inverse of `encode_boxes`: (tx, ty, tw, th) (..., N, 4) -> xyxy (..., N, 4).
    Log sizes are clipped at log(1000) so an untrained head cannot overflow."""
    acx, acy, aw, ah = _centre_form(anchors)
    cx = deltas[..., 0] * variances[0] * aw + acx
    cy = deltas[..., 1] * variances[1] * ah + acy
    limit = math.log(1000.0)
    w = ops.exp(ops.minimum(deltas[..., 2] * variances[2], limit)) * aw
    h = ops.exp(ops.minimum(deltas[..., 3] * variances[3], limit)) * ah
    return ops.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def assign_targets(anchors, gt_boxes, gt_classes, positive_iou=0.5, negative_iou=0.4,
                   variances=DEFAULT_VARIANCES):
    """Match anchors to ground-truth boxes by IoU, batched.

    An anchor is positive when its best IoU with a ground-truth box is >= positive_iou,
    negative when it is < negative_iou, ignored in between; in addition every
    ground-truth box makes its best anchor positive (so a box no anchor overlaps
    well still trains one), whatever that anchor's IoU.

    Args:
        anchors: (N, 4) xyxy.
        gt_boxes: (B, M, 4) xyxy, padded.
        gt_classes: (B, M) int, -1 marks padding.

    Returns:
        dict of box_targets (B, N, 4) encoded (0 where not positive), classes (B, N)
        int32 (0 where not positive), positive (B, N) float32, negative (B, N) float32,
        matched_iou (B, N) float32, matched_index (B, N) int32 (the ground-truth row).
    """
    anchors = ops.convert_to_tensor(anchors, "float32")
    gt_boxes = ops.cast(gt_boxes, "float32")
    valid = ops.cast(gt_classes, "int32") >= 0  # (B, M)
    num_anchors = anchors.shape[0]
    iou = box_iou(anchors[None], gt_boxes)  # (B, N, M)
    iou = ops.where(valid[:, None, :], iou, -1.0)
    max_iou = ops.max(iou, axis=2)
    best_gt = ops.argmax(iou, axis=2)
    # Each valid ground-truth box claims its best anchor; where several claim one, the
    # highest IoU wins.
    best_anchor = ops.argmax(iou, axis=1)  # (B, M)
    claims = ops.transpose(ops.one_hot(best_anchor, num_anchors), (0, 2, 1))  # (B, N, M)
    claims = claims * ops.cast(valid, claims.dtype)[:, None, :]
    claimed = ops.max(claims, axis=2) > 0
    claimed_gt = ops.argmax(claims * (iou + 2.0), axis=2)
    best_gt = ops.cast(ops.where(claimed, claimed_gt, best_gt), "int32")
    positive = ops.logical_or(max_iou >= positive_iou, claimed)
    negative = ops.logical_and(max_iou < negative_iou, ops.logical_not(claimed))

    index = ops.repeat(best_gt[..., None], 4, axis=-1)
    matched = ops.take_along_axis(gt_boxes, index, axis=1)  # (B, N, 4)
    # Non-positive anchors encode themselves (all-zero targets), so padding boxes of
    # zero size never reach the log.
    matched = ops.where(positive[..., None], matched, anchors[None])
    box_targets = encode_boxes(matched, anchors, variances)
    classes = ops.take_along_axis(ops.cast(gt_classes, "int32"), best_gt, axis=1)
    matched_iou = ops.take_along_axis(iou, best_gt[..., None], axis=2)[..., 0]
    return {"box_targets": box_targets, "classes": ops.where(positive, classes, 0),
            "positive": ops.cast(positive, "float32"), "negative": ops.cast(negative, "float32"),
            "matched_iou": matched_iou, "matched_index": best_gt}
