"""mAP against hand-computed cases and against pycocotools on the same detections."""

import contextlib
import io

import numpy as np
import pytest

from detection.ssd.evaluation import (band_edges_from_anchors, box_iou_summary, coco_ap, evaluate_detections, match_image,
                                  precision_recall, scale_statistics, size_band, voc_ap)


def _dets(boxes, scores, classes, anchors=None):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return {"boxes": boxes, "scores": np.asarray(scores, np.float64), "classes": np.asarray(classes, np.int64),
            "anchors": np.zeros(len(boxes), np.int64) if anchors is None else np.asarray(anchors)}


def test_hand_computed_ap():
    # Two boxes; detections ranked TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    truth = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 0]))]
    dets = [_dets([[0, 0, 10, 10], [50, 50, 60, 60], [21, 20, 31, 30]], [0.9, 0.8, 0.7], [0, 0, 0])]
    result = evaluate_detections(dets, truth, ["a"])
    assert result["map50"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # VOC all-point
    assert result["coco_map50"] == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)  # 101 recall points
    # IoU of the third detection is 90/110 = 0.818: a TP up to 0.8 (7 of 10 thresholds).
    per_threshold = [(51 + 50 * 2 / 3) / 101] * 7 + [51 / 101] * 3
    assert result["coco_map"] == pytest.approx(np.mean(per_threshold))
    assert result["per_class"]["a"]["recall50"] == 1.0


def test_duplicates_and_missing_classes():
    truth = [(np.array([[0, 0, 10, 10]]), np.array([0]))]
    # A duplicate of a matched box is a false positive; class 1 has no ground truth and is left out.
    dets = [_dets([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 5, 5]], [0.9, 0.8, 0.7], [0, 0, 1])]
    result = evaluate_detections(dets, truth, ["a", "b"])
    assert result["per_class"]["a"]["ap50"] == pytest.approx(1.0)
    assert "ap50" not in result["per_class"]["b"] and result["map50"] == pytest.approx(1.0)
    # No detections at all: AP 0.
    assert evaluate_detections([_dets([], [], [])], truth, ["a"])["map50"] == 0.0


def test_matching_prefers_highest_iou_unmatched_box():
    gt = np.array([[0, 0, 10, 10], [2, 0, 12, 10]])
    order, matched = match_image(np.array([[2, 0, 12, 10], [1, 0, 11, 10]]), np.array([0.9, 0.8]), gt, [0.5])
    assert order.tolist() == [0, 1] and matched[0].tolist() == [1, 0]


def test_ap_curves_directly():
    precision, recall = precision_recall([0.3, 0.9, 0.5], [True, True, False], 4)
    np.testing.assert_allclose(recall, [0.25, 0.25, 0.5])
    np.testing.assert_allclose(precision, [1, 0.5, 2 / 3], atol=1e-12)
    assert voc_ap(precision, recall) == pytest.approx(0.25 * 1 + 0.25 * 2 / 3)
    assert coco_ap(precision, recall) == pytest.approx((26 * 1 + 25 * 2 / 3) / 101)


def test_ap_needs_the_precision_envelope():
    # Three boxes; ranked TP, FP, FP, TP, TP: precision 1, 1/2, 1/3, 1/2, 3/5 at recall
    # 1/3, 1/3, 1/3, 2/3, 1. The envelope raises the 1/2 at recall 2/3 to the 3/5 after it.
    precision, recall = precision_recall([0.9, 0.8, 0.7, 0.6, 0.5], [True, False, False, True, True], 3)
    np.testing.assert_allclose(precision, [1, 1 / 2, 1 / 3, 1 / 2, 3 / 5], atol=1e-12)
    assert voc_ap(precision, recall) == pytest.approx((1 + 3 / 5 + 3 / 5) / 3)  # not (1 + 1/2 + 3/5) / 3
    # 101 recall points: 0..0.33 -> 1 (34), 0.34..0.66 -> 3/5 (33), 0.67..1 -> 3/5 (34).
    assert coco_ap(precision, recall) == pytest.approx((34 * 1 + 67 * 3 / 5) / 101)
    # The same through evaluate_detections: exact boxes, so every IoU threshold agrees.
    truth = [(np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]), np.array([0, 0, 0]))]
    dets = [_dets([[0, 0, 10, 10], [0, 50, 10, 60], [20, 50, 30, 60], [20, 0, 30, 10], [40, 0, 50, 10]],
                  [0.9, 0.8, 0.7, 0.6, 0.5], [0, 0, 0, 0, 0])]
    result = evaluate_detections(dets, truth, ["a"])
    assert result["map50"] == pytest.approx((1 + 3 / 5 + 3 / 5) / 3)
    assert result["coco_map50"] == pytest.approx((34 * 1 + 67 * 3 / 5) / 101)
    assert result["coco_map"] == pytest.approx((34 * 1 + 67 * 3 / 5) / 101)


def test_agrees_with_pycocotools():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(7)
    names = ["circle", "square", "triangle"]
    images, annotations, results, truth, dets = [], [], [], [], []
    for i in range(25):
        n = rng.integers(0, 6)
        xy = rng.uniform(0, 150, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(8, 70, (n, 2))], axis=1).round(1)
        classes = rng.integers(0, 3, n)
        truth.append((boxes, classes))
        images.append({"id": i + 1, "width": 224, "height": 224, "file_name": f"{i}.png"})
        for b, c in zip(boxes, classes):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                                "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0})
        # Jittered copies (some poor, some wrong class), duplicates and random boxes.
        jitter = boxes + rng.normal(0, rng.uniform(0.5, 8), boxes.shape)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        extra = rng.uniform(0, 150, (rng.integers(0, 4), 2))
        extra = np.concatenate([extra, extra + 20], axis=1)
        det_boxes = np.concatenate([jitter, jitter[: n // 2] + 2, extra])
        det_classes = np.concatenate([np.where(rng.random(n) < 0.1, (classes + 1) % 3, classes),
                                      classes[: n // 2], rng.integers(0, 3, len(extra))])
        det_scores = rng.uniform(0.01, 1, len(det_boxes)).round(4)
        dets.append(_dets(det_boxes, det_scores, det_classes))
        for b, s, c in zip(det_boxes, det_scores, det_classes):
            results.append({"image_id": i + 1, "category_id": int(c) + 1, "score": float(s),
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    coco_gt = COCO()
    coco_gt.dataset = {"images": images, "annotations": annotations,
                       "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ours = evaluate_detections(dets, truth, names)
    assert ours["coco_map"] == pytest.approx(evaluator.stats[0], abs=1e-3)
    assert ours["coco_map50"] == pytest.approx(evaluator.stats[1], abs=1e-3)
    assert ours["coco_map75"] == pytest.approx(evaluator.stats[2], abs=1e-3)
    # Per class, from COCOeval's precision array (T, R, K, area all, maxDets 100).
    for k, name in enumerate(names):
        precision = evaluator.eval["precision"][:, :, k, 0, -1]
        assert ours["per_class"][name]["coco_ap"] == pytest.approx(precision[precision > -1].mean(), abs=1e-3)
    # A sanity check that the case is not trivial.
    assert 0.1 < ours["coco_map"] < ours["coco_map50"] < 0.95


def test_scale_statistics_hand_case():
    edges = band_edges_from_anchors(((16, 24, 32), (48, 64, 96), (96, 128, 192)))
    assert edges == pytest.approx([np.sqrt(32 * 48), 96.0])
    boxes = np.array([[0, 0, 20, 20], [0, 0, 60, 60], [0, 0, 150, 150]], np.float64)
    assert size_band(boxes, edges).tolist() == [0, 1, 2]
    anchor_scale = np.array([0, 1, 2, 2])
    truth = [(boxes, np.array([0, 1, 2]))]
    # The small box found by scale 1, the medium by scale 3 (anchor 2), the large missed; one FP at scale 3.
    dets = [_dets([[0, 0, 20, 20], [0, 0, 60, 60], [100, 100, 120, 120]], [0.9, 0.8, 0.7], [0, 1, 2],
                  anchors=[0, 2, 3])]
    stats = scale_statistics(dets, truth, ["c", "s", "t"], anchor_scale, edges, 0.5)
    bands = list(stats["size_bands"].values())
    assert [b["ground_truth"] for b in bands] == [1, 1, 1]
    assert [b["recall50"] for b in bands] == [1.0, 1.0, 0.0]
    assert bands[1]["true_positives_by_scale"] == {"scale1": 0, "scale2": 0, "scale3": 1}
    assert stats["band_scale_matrix"] == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert stats["scales"]["scale3"] == {"detections": 2, "true_positives": 1, "precision50": 0.5}
    assert stats["by_class"]["s"] == {"scale1": 0, "scale2": 0, "scale3": 1}


def test_box_iou_summary_takes_the_best_scored_box_of_the_class():
    truth = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 1])), (np.array([[0, 0, 4, 4]]), np.array([0]))]
    dets = [_dets([[0, 0, 10, 5], [0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.4, 0.8], [0, 0, 0]),  # class 1 missed
            _dets([[0, 0, 4, 4]], [0.2], [0])]  # below the threshold
    summary = box_iou_summary(dets, truth, score_threshold=0.5)
    # 0.5 (the 0.4-scored exact box does not count), 0 (no class-1 box), 0 (below threshold).
    assert summary == {"mean": pytest.approx(0.5 / 3), "median": 0.0, "ground_truth": 3, "score_threshold": 0.5}
    assert box_iou_summary(dets, truth, score_threshold=0.1)["mean"] == pytest.approx(2 / 3)


def test_iou_matrix_by_hand_for_boxes_apart_small_and_degenerate():
    from detection.ssd.evaluation import iou_matrix

    boxes = [[0.0, 0.0, 0.2, 0.2],  # normalised coordinates: every union is below 1
             [0.3, 0.3, 0.5, 0.5],  # apart on both axes: negative overlaps must not multiply to a positive
             [0.3, 0.0, 0.5, 0.2],  # apart along x only: a negative width must not give a negative IoU
             [0.0, 0.3, 0.2, 0.5],  # apart along y only
             [0.2, 0.0, 0.4, 0.2],  # touching the first along x: no overlap
             [0.1, 0.1, 0.3, 0.3],  # overlaps the first by 0.1 x 0.1: 0.01 / (0.04 + 0.04 - 0.01)
             [0.5, 0.5, 0.5, 0.5]]  # a point: no area, IoU 0 even with itself
    ious = iou_matrix(boxes, boxes)
    np.testing.assert_allclose(ious[0], [1.0, 0.0, 0.0, 0.0, 0.0, 1 / 7, 0.0], atol=1e-12)
    np.testing.assert_allclose(ious[6], 0.0)


def test_an_iou_exactly_at_the_threshold_matches():
    # COCO matches at IoU >= threshold: a 1x1 detection inside a 2x1 box has IoU 1 / 2 exactly.
    order, matched = match_image([[0.0, 0.0, 1.0, 1.0]], [0.9], [[0.0, 0.0, 2.0, 1.0]], [0.5, 0.55])
    assert matched.tolist() == [[0], [-1]]


def test_size_band_by_hand():
    # Bands by sqrt(area) with edges 4 and 16 px: [0, 4), [4, 16), >= 16 (an edge belongs above).
    boxes = [[50, 60, 58, 68],  # 8 x 8 away from the origin: side 8
             [50, 60, 66, 76],  # side 16 exactly: the band above
             [50, 60, 50, 100],  # no width: side 0, although 40 px high
             [60, 60, 50, 100],  # x2 < x1 (inverted): no width either
             [50, 100, 90, 60],  # y2 < y1: no height
             [50, 60, 52, 68]]  # 2 x 8: side 4 exactly
    np.testing.assert_array_equal(size_band(boxes, [4.0, 16.0]), [1, 2, 0, 0, 0, 1])
