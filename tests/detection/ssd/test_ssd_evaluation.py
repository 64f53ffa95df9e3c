"""mAP against hand-computed cases and against pycocotools on the same detections."""

import contextlib
import io
import json

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


# Hand-computed cases written against the surviving mutants of `make mutate` on this module
# (bench/results/mutation/evaluation.md): each names the mistake it catches.


def test_evaluate_detections_reads_the_iou_05_curve_and_reports_its_keys():
    # Class a: one box found at IoU 52/100 = 0.52, a true positive at IoU 0.5 only, so AP and
    # recall at 0.5 are 1 and every stricter threshold (0.55 next) has none. Class b: ground
    # truth but no detection, recall 0 (not 1).
    truth = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 1]))]
    dets = [_dets([[0, 0, 10, 5.2]], [0.9], [0])]
    result = evaluate_detections(dets, truth, ["a", "b"])
    assert result["per_class"]["a"] == pytest.approx({"ground_truth": 1, "detections": 1, "ap50": 1.0, "coco_ap": 0.1,
                                                      "coco_ap50": 1.0, "coco_ap75": 0.0, "recall50": 1.0})
    assert result["per_class"]["b"] == pytest.approx({"ground_truth": 1, "detections": 0, "ap50": 0.0, "coco_ap": 0.0,
                                                      "coco_ap50": 0.0, "coco_ap75": 0.0, "recall50": 0.0})
    assert (result["map50"], result["coco_map"], result["coco_map50"], result["coco_map75"]) == pytest.approx(
        (0.5, 0.05, 0.5, 0.0))
    # The notes a reader of the JSON sees, whole.
    assert result["notes"] == ("map50: VOC all-point AP at IoU 0.5; coco_*: pycocotools' 101-point AP (bbox, area all, "
                               "maxDets 100); means over classes with ground truth")


def test_evaluate_detections_keeps_the_top_100_per_image_and_class():
    # 101 detections of one class: the best finds box A, 99 miss, the 101st (lowest score)
    # finds box B. COCO's maxDets 100 drops it: recall 1/2, AP50 1/2.
    truth = [(np.array([[0, 0, 10, 10], [20, 0, 30, 10]]), np.array([0, 0]))]
    boxes = [[0, 0, 10, 10]] + [[100, 100, 110, 110]] * 99 + [[20, 0, 30, 10]]
    scores = np.linspace(1.0, 0.001, 101)
    result = evaluate_detections([_dets(boxes, scores, np.zeros(101))], truth, ["a"])
    assert result["per_class"]["a"]["detections"] == 100
    assert result["per_class"]["a"]["recall50"] == 0.5 and result["map50"] == pytest.approx(0.5)


def test_evaluate_detections_of_no_images_and_mismatched_lists():
    result = evaluate_detections([], [], ["a"])
    assert result["per_class"] == {"a": {"ground_truth": 0, "detections": 0}}
    assert [result[k] for k in ("map50", "coco_map", "coco_map50", "coco_map75")] == [None] * 4
    with pytest.raises(ValueError, match="^2 detection lists for 1 images$"):
        evaluate_detections([_dets([], [], [])] * 2, [(np.zeros((0, 4)), np.zeros(0))], ["a"])


def test_ties_keep_their_input_order_beyond_16_detections():
    # 20 detections scored 0.9, 0.5, 0.9, 0.5, ...: NumPy's default quicksort is stable only
    # below 16 elements and reorders these ties; COCO ranks ties in input order (mergesort).
    scores = np.array([0.9, 0.5] * 10)
    stable = list(range(0, 20, 2)) + list(range(1, 20, 2))
    order, matched = match_image(np.tile([[0.0, 0.0, 1.0, 1.0]], (20, 1)), scores, np.zeros((0, 4)), [0.5])
    assert order.tolist() == stable
    assert matched.dtype == np.int64 and matched.tolist() == [[-1] * 20]
    # The first five 0.9s are true positives (of 5), the rest false: in input order the
    # curve starts with five hits, precision 1 up to recall 1, AP 1.
    tp = np.zeros(20, bool)
    tp[[0, 2, 4, 6, 8]] = True
    precision, recall = precision_recall(scores, tp, 5)
    np.testing.assert_allclose(precision, [1] * 5 + [5 / k for k in range(6, 21)], atol=1e-12)
    np.testing.assert_allclose(recall, [0.2, 0.4, 0.6, 0.8] + [1.0] * 16)
    assert voc_ap(precision, recall) == pytest.approx(1.0)
    # tp given as 0 / 1 integers reads as booleans (~1 is -2, not False).
    np.testing.assert_allclose(precision_recall(scores, tp.astype(int), 5)[0], precision, atol=1e-12)


def test_an_exact_match_at_iou_threshold_1_survives_rounding():
    # 0.1 + 0.2 != 0.3: the same box computes to an IoU just below 1, matched at threshold 1
    # as in pycocotools (min(t, 1 - 1e-10)).
    from detection.ssd.evaluation import iou_matrix

    det, gt = [[0.0, 0.0, 0.3, 0.3]], [[0.0, 0.0, 0.1 + 0.2, 0.1 + 0.2]]
    assert 1 - 1e-10 < iou_matrix(det, gt)[0, 0] < 1.0
    assert match_image(det, [0.9], gt, [1.0])[1].tolist() == [[0]]


def test_integer_pixel_boxes_do_not_wrap():
    # 300 x 300 px boxes as uint16: an area of 90000 wraps to 24464 unless cast to float first.
    from detection.ssd.evaluation import iou_matrix

    a, b = np.array([[0, 0, 300, 300]], np.uint16), np.array([[0, 0, 300, 150]], np.uint16)
    assert iou_matrix(a, b)[0, 0] == 0.5 and iou_matrix(b, a)[0, 0] == 0.5
    # An inverted uint16 box (x2 < x1) has no width, not 65535 px; side 300 is above edge 200.
    boxes = np.array([[0, 0, 300, 300], [10, 0, 5, 300]], np.uint16)
    assert size_band(boxes, [200.0]).tolist() == [1, 0]


def test_box_iou_summary_counts_a_score_at_the_threshold_and_no_ground_truth():
    truth = [(np.array([[0, 0, 10, 10]]), np.array([0]))]
    dets = [_dets([[0, 0, 10, 9]], [0.5], [0])]  # exactly at the threshold: kept
    assert box_iou_summary(dets, truth, score_threshold=0.5)["mean"] == pytest.approx(0.9)
    empty = box_iou_summary([_dets([], [], [])], [(np.zeros((0, 4)), np.zeros(0))], score_threshold=0.5)
    assert empty == {"mean": None, "median": None, "ground_truth": 0, "score_threshold": 0.5}


def test_scale_statistics_counts_by_hand():
    # Edges 10 and 30 px; anchors 0 -> scale 1, 1 and 2 -> scale 2, 3 -> scale 3 (never used).
    anchor_scale = np.array([0, 1, 1, 2])
    truth = [(np.array([[0, 0, 20, 20], [40, 0, 60, 20],  # class 0, side 20: band 10-30
                        [100, 100, 150, 150], [200, 200, 250, 250]]),  # class 1, side 50: band >= 30
              np.array([0, 0, 1, 1]))]
    dets = [_dets([[0, 0, 20, 20],  # 0.9, scale 2: finds box 0
                   [40, 0, 60, 18],  # 0.5 (at the threshold: counts), scale 2: IoU 0.9 with box 1
                   [100, 100, 150, 150],  # 0.7, scale 1: finds box 2
                   [300, 300, 310, 310],  # 0.6, scale 2: a false positive
                   [200, 200, 250, 250]],  # 0.4, below the threshold: not counted anywhere
                  [0.9, 0.5, 0.7, 0.6, 0.4], [0, 0, 1, 1, 1], anchors=[1, 2, 0, 1, 0])]
    stats = scale_statistics(dets, truth, ["a", "b"], anchor_scale, [10.0, 30.0], 0.5)
    assert (stats["score_threshold"], stats["iou_threshold"], stats["band_edges_px"]) == (0.5, 0.5, [10.0, 30.0])
    none = {"scale1": 0, "scale2": 0, "scale3": 0}
    assert stats["size_bands"] == {
        "0-10px": {"ground_truth": 0, "recall50": None, "true_positives_by_scale": none, "share_of_main_scale": None},
        "10-30px": {"ground_truth": 2, "recall50": 1.0, "true_positives_by_scale": {**none, "scale2": 2},
                    "share_of_main_scale": 1.0},
        ">=30px": {"ground_truth": 2, "recall50": 0.5, "true_positives_by_scale": {**none, "scale1": 1},
                   "share_of_main_scale": 1.0}}
    assert stats["by_class"] == {"a": {**none, "scale2": 2}, "b": {**none, "scale1": 1}}
    assert stats["scales"] == {"scale1": {"detections": 1, "true_positives": 1, "precision50": 1.0},
                               "scale2": {"detections": 3, "true_positives": 2, "precision50": pytest.approx(2 / 3)},
                               "scale3": {"detections": 0, "true_positives": 0, "precision50": None}}
    # Integers in the JSON, not 2.0.
    assert json.dumps(stats["band_scale_matrix"]) == "[[0, 0, 0], [0, 2, 0], [1, 0, 0]]"


def test_scale_statistics_of_no_images():
    stats = scale_statistics([], [], ["a"], np.array([0, 1]), [10.0], 0.5)
    assert {name: band["ground_truth"] for name, band in stats["size_bands"].items()} == {"0-10px": 0, ">=10px": 0}
    assert stats["scales"]["scale1"] == {"detections": 0, "true_positives": 0, "precision50": None}
