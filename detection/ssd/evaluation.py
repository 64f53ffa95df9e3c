"""Detection evaluation in numpy: VOC all-point AP, COCO AP@[.5:.95], per-class AP and
per-scale statistics.

Inputs, per image: detections {"boxes" (n, 4) xyxy, "scores" (n,), "classes" (n,),
optionally "anchors" (n,)} and ground truth (boxes (m, 4) xyxy, classes (m,)).

Matching follows pycocotools' `COCOeval.evaluateImg` (bbox, area "all", no crowd):
per image and class, detections sorted by score (stable) and cut to `max_dets`; each
one in turn takes the still-unmatched ground-truth box of highest IoU if that IoU is
>= the threshold. Accumulation follows `COCOeval.accumulate`: detections of all images
ranked by score (stable), cumulative precision / recall, the precision envelope, and
(COCO) precision sampled at the 101 recall points 0, 0.01, ..., 1, or (VOC all-point)
the area under the envelope at every recall step. A class without ground truth is
left out of the means (as COCO does).
"""

import numpy as np

COCO_IOUS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def iou_matrix(boxes_a, boxes_b):
    """(n, 4), (m, 4) xyxy -> (n, m) IoU, in float64."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    union = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
             - inter)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_image(det_boxes, det_scores, gt_boxes, thresholds):
    """Greedy COCO matching of one image and class.

    Returns order (n,) (detections by descending score) and matched (T, n) int: the
    ground-truth index matched to detection order[k] at threshold t, or -1.
    """
    order = np.argsort(-np.asarray(det_scores), kind="mergesort")
    matched = np.full((len(thresholds), len(order)), -1, np.int64)
    if not len(order) or not len(gt_boxes):
        return order, matched
    ious = iou_matrix(np.asarray(det_boxes)[order], gt_boxes)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(len(gt_boxes), bool)
        for d in range(len(order)):  # sequential by definition: each match removes a box
            candidates = np.where(taken, -1.0, ious[d])
            best = int(np.argmax(candidates))
            if candidates[best] >= min(threshold, 1 - 1e-10):
                taken[best] = True
                matched[t, d] = best
    return order, matched


def precision_recall(scores, tp, num_gt):
    """Ranked cumulative precision and recall. scores (n,), tp (n,) bool -> (precision, recall)."""
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    tp = np.asarray(tp, bool)[order]
    tp_sum, fp_sum = np.cumsum(tp), np.cumsum(~tp)
    recall = tp_sum / num_gt
    precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))
    return precision, recall


def _envelope(precision):
    return np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision


def coco_ap(precision, recall):
    """Mean of the precision envelope at the 101 recall points (0 where not reached)."""
    envelope = _envelope(precision)
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    q = np.zeros(len(RECALL_POINTS))
    ok = index < len(envelope)
    q[ok] = envelope[index[ok]]
    return float(q.mean())


def voc_ap(precision, recall):
    """VOC all-point AP: area under the precision envelope over every recall step."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = _envelope(mpre)
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def evaluate_detections(detections, ground_truth, class_names, max_dets=100):
    """mAP@0.5 (VOC all-point), COCO mAP@[.5:.95], AP50/AP75 (COCO 101-point), per class.

    detections: list per image of dicts (boxes, scores, classes). ground_truth: list per
    image of (boxes, classes). Returns a JSON-ready dict.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection lists for {len(ground_truth)} images")
    per_class = {}
    for c, name in enumerate(class_names):
        scores, matched, num_gt = [], [], 0
        for dets, (gt_boxes, gt_classes) in zip(detections, ground_truth):
            gt = np.asarray(gt_boxes).reshape(-1, 4)[np.asarray(gt_classes) == c]
            num_gt += len(gt)
            mine = np.asarray(dets["classes"]) == c
            boxes, s = np.asarray(dets["boxes"]).reshape(-1, 4)[mine], np.asarray(dets["scores"])[mine]
            order, m = match_image(boxes, s, gt, COCO_IOUS)
            order, m = order[:max_dets], m[:, :max_dets]
            scores.append(s[order])
            matched.append(m >= 0)
        scores = np.concatenate(scores) if scores else np.zeros(0)
        matched = np.concatenate(matched, axis=1) if matched else np.zeros((len(COCO_IOUS), 0), bool)
        entry = {"ground_truth": num_gt, "detections": int(len(scores))}
        if num_gt:
            curves = [precision_recall(scores, matched[t], num_gt) for t in range(len(COCO_IOUS))]
            coco = [coco_ap(p, r) for p, r in curves]
            entry.update({"ap50": voc_ap(*curves[0]), "coco_ap": float(np.mean(coco)), "coco_ap50": coco[0],
                          "coco_ap75": coco[5], "recall50": float(curves[0][1][-1]) if len(scores) else 0.0})
        per_class[name] = entry
    scored = [v for v in per_class.values() if v["ground_truth"]]

    def mean(key):
        return float(np.mean([v[key] for v in scored])) if scored else None

    return {"map50": mean("ap50"), "coco_map": mean("coco_ap"), "coco_map50": mean("coco_ap50"),
            "coco_map75": mean("coco_ap75"), "per_class": per_class,
            "notes": "map50: VOC all-point AP at IoU 0.5; coco_*: pycocotools' 101-point AP (bbox, area all, "
                     "maxDets 100); means over classes with ground truth"}


def box_iou_summary(detections, ground_truth, score_threshold):
    """How well the boxes fit: per ground-truth box, the IoU of the best detection of its
    class scoring >= score_threshold (0 when there is none). Returns {"mean", "median",
    "ground_truth", "score_threshold"} (mean and median None without ground truth): for
    a one-object detector (stage 1 of the pose pipeline) the fit of its crops."""
    best = []
    for dets, (gt_boxes, gt_classes) in zip(detections, ground_truth):
        keep = np.asarray(dets["scores"]) >= score_threshold
        boxes = np.asarray(dets["boxes"]).reshape(-1, 4)[keep]
        classes = np.asarray(dets["classes"])[keep]
        for box, c in zip(np.asarray(gt_boxes).reshape(-1, 4), np.asarray(gt_classes)):
            ious = iou_matrix(boxes[classes == c], box)[:, 0]
            best.append(float(ious.max()) if len(ious) else 0.0)
    return {"mean": float(np.mean(best)) if best else None, "median": float(np.median(best)) if best else None,
            "ground_truth": len(best), "score_threshold": score_threshold}


def size_band(boxes, band_edges):
    """Band index of each box by sqrt(area): 0 below band_edges[0], ..., len(edges) above."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    return np.searchsorted(np.asarray(band_edges, np.float64), side, side="right")


def band_edges_from_anchors(anchor_sizes):
    """Edges between the scales' size bands: the geometric mean of one scale's largest
    anchor and the next scale's smallest."""
    return [float(np.sqrt(max(a) * min(b))) for a, b in zip(anchor_sizes[:-1], anchor_sizes[1:])]


def true_positives(detections, ground_truth, score_threshold, iou_threshold=0.5):
    """Matched pairs at one operating point: list of (image, detection row, gt row)."""
    pairs = []
    for i, (dets, (gt_boxes, gt_classes)) in enumerate(zip(detections, ground_truth)):
        gt_boxes, gt_classes = np.asarray(gt_boxes).reshape(-1, 4), np.asarray(gt_classes)
        keep = np.flatnonzero(np.asarray(dets["scores"]) >= score_threshold)
        for c in np.unique(np.asarray(dets["classes"])[keep]):
            rows = keep[np.asarray(dets["classes"])[keep] == c]
            gt_rows = np.flatnonzero(gt_classes == c)
            order, matched = match_image(np.asarray(dets["boxes"])[rows], np.asarray(dets["scores"])[rows],
                                         gt_boxes[gt_rows], [iou_threshold])
            for d, g in zip(order, matched[0]):
                if g >= 0:
                    pairs.append((i, int(rows[d]), int(gt_rows[g])))
    return pairs


def scale_statistics(detections, ground_truth, class_names, anchor_scale, band_edges, score_threshold):
    """Which scale found which objects, at the operating point `score_threshold`, IoU 0.5.

    anchor_scale: (N,) scale index of every anchor (detections carry their anchor).
    Returns per size band: ground-truth count, recall, and the true positives each
    scale produced (`by_scale`), plus the same counts by class, and each scale's
    detections and precision.
    """
    num_scales = int(np.max(anchor_scale)) + 1
    num_bands = len(band_edges) + 1
    band_names = _band_names(band_edges)
    pairs = true_positives(detections, ground_truth, score_threshold)
    tp_band_scale = np.zeros((num_bands, num_scales), np.int64)
    tp_class_scale = np.zeros((len(class_names), num_scales), np.int64)
    for i, d, g in pairs:
        band = size_band(ground_truth[i][0][g:g + 1], band_edges)[0]
        scale = anchor_scale[int(detections[i]["anchors"][d])]
        tp_band_scale[band, scale] += 1
        tp_class_scale[int(ground_truth[i][1][g]), scale] += 1
    gt_bands = np.concatenate([size_band(b, band_edges) for b, _ in ground_truth]) if ground_truth else np.zeros(0)
    dets_per_scale = np.zeros(num_scales, np.int64)
    for dets in detections:
        keep = np.asarray(dets["scores"]) >= score_threshold
        np.add.at(dets_per_scale, anchor_scale[np.asarray(dets["anchors"])[keep].astype(np.int64)], 1)
    tp_per_scale = tp_band_scale.sum(axis=0)
    bands = {}
    for b, name in enumerate(band_names):
        count = int((gt_bands == b).sum())
        found = int(tp_band_scale[b].sum())
        bands[name] = {"ground_truth": count, "recall50": found / count if count else None,
                       "true_positives_by_scale": {f"scale{s + 1}": int(tp_band_scale[b, s])
                                                   for s in range(num_scales)},
                       "share_of_main_scale": float(tp_band_scale[b].max() / found) if found else None}
    return {"score_threshold": score_threshold, "iou_threshold": 0.5, "band_edges_px": list(band_edges),
            "size_bands": bands,
            "by_class": {name: {f"scale{s + 1}": int(tp_class_scale[c, s]) for s in range(num_scales)}
                         for c, name in enumerate(class_names)},
            "scales": {f"scale{s + 1}": {"detections": int(dets_per_scale[s]), "true_positives": int(tp_per_scale[s]),
                                         "precision50": float(tp_per_scale[s] / dets_per_scale[s])
                                         if dets_per_scale[s] else None}
                       for s in range(num_scales)},
            "band_scale_matrix": tp_band_scale.tolist()}


def _band_names(edges):
    bounds = [0.0] + list(edges) + [np.inf]
    return [f"{lo:.0f}-{hi:.0f}px" if np.isfinite(hi) else f">={lo:.0f}px" for lo, hi in zip(bounds[:-1], bounds[1:])]
