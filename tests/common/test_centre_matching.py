import numpy as np
import pytest

from common.metrics import centre_detection_summary, match_points


def test_hungarian_beats_greedy_and_the_gate_is_inclusive():
    # Greedy nearest-first would pair pred 0 with true 0 (distance 1) and leave true 1
    # unmatched (pred 1 is 9 px from it, above the 8 px gate); Hungarian pairs both.
    truth = np.array([[0.0, 0.0], [-3.0, 0.0]])
    pred = np.array([[1.0, 0.0], [6.0, 0.0]])
    rows, cols, dist = match_points(pred, truth, max_distance=8.0)
    assert list(zip(rows, cols)) == [(1, 0), (0, 1)]
    np.testing.assert_allclose(dist, [6.0, 4.0])
    rows, cols, dist = match_points(pred, truth, max_distance=6.0)  # 6.0 exactly is inside
    assert len(rows) == 2
    rows, cols, _ = match_points(pred, truth, max_distance=5.9)
    assert list(zip(rows, cols)) == [(0, 0)]
    empty = match_points(np.zeros((0, 2)), truth, 10)
    assert all(len(a) == 0 for a in empty)


def test_centre_detection_summary_hand_counts():
    # Image 0: truths A (10, 10) class 0, B (50, 50) class 0, C (80, 20) class 1.
    # Predictions: (13, 14) class 0 -> A at 5 px; (50, 62) class 0 -> B at 12 px;
    # (80, 20) class 0 -> wrong class, no match; (200, 200) class 1 -> nothing near.
    # Image 1: no objects, one false detection.
    truth = {"image": [0, 0, 0], "class": [0, 0, 1], "xy": [[10, 10], [50, 50], [80, 20]], "images": 2}
    pred = {"image": [0, 0, 0, 0, 1], "class": [0, 0, 0, 1, 0],
            "xy": [[13, 14], [50, 62], [80, 20], [200, 200], [5, 5]]}
    s = centre_detection_summary(pred, truth, ["a", "b"], match_distance=10, pck_thresholds=(5, 10, 20),
                                 groups={"small": [True, False, False]})
    assert (s["true_positive"], s["false_positive"], s["false_negative"]) == (1, 4, 2)
    assert s["precision"] == pytest.approx(1 / 5) and s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(2 * (1 / 5) * (1 / 3) / (1 / 5 + 1 / 3))
    assert s["pck"] == {"5": pytest.approx(1 / 3), "10": pytest.approx(1 / 3), "20": pytest.approx(2 / 3)}
    assert s["mae"]["euclidean"] == pytest.approx((5 + 12) / 2)
    assert s["mae"]["dx"] == pytest.approx(1.5) and s["mae"]["dy"] == pytest.approx(8.0)
    assert s["mse"] == pytest.approx((25 + 144) / 2)
    # Counts: image 0 has 4 predictions for 3 objects, image 1 has 1 for 0.
    assert s["count_error"] == {"mean_abs": 1.0, "mean_signed": 1.0, "exact_share": 0.0}
    assert s["per_class"]["b"]["recall"] == 0.0 and s["per_class"]["a"]["recall"] == 0.5
    assert s["groups"]["small"]["recall"] == 1.0 and "precision" not in s["groups"]["small"]


def test_match_points_single_points_dtypes_and_non_finite_input():
    rows, cols, dist = match_points([[1.0, 0.0]], [[0.0, 0.0]], max_distance=5)
    assert (rows.tolist(), cols.tolist(), dist.tolist()) == ([0], [0], [1.0])
    empty = match_points(np.zeros((0, 2)), [[0.0, 0.0]], 5)
    assert empty[0].dtype == np.int64 and empty[1].dtype == np.int64  # usable as indices
    with pytest.raises(ValueError, match="^match_points needs finite coordinates$"):
        match_points([[np.nan, 0.0]], [[0.0, 0.0]], 5)


def test_centre_detection_summary_single_objects_defaults_and_keys():
    # Image 0: class 0 has nothing, class 1 one object at (0, 0) found at (3, 4): 5 px.
    # Image 1: one class-0 object at (0, 0) found 10.5 px away (outside the default 10 px
    # gate, inside the PCK gate 20). Image 2: nothing at all.
    truth = {"image": [0, 1], "class": [1, 0], "xy": [[0, 0], [0, 0]], "images": 3}
    pred = {"image": [0, 1], "class": [1, 0], "xy": [[3, 4], [10.5, 0]]}
    s = centre_detection_summary(pred, truth, ["a", "b"], groups={"first": [1, 0]})
    assert (s["unit"], s["match_distance"], s["pck_gate"], s["images"]) == ("px", 10.0, 20.0, 3)
    assert (s["true"], s["true_positive"], s["matched_for_errors"]) == (2, 1, 2)
    assert s["precision"] == s["recall"] == s["f1"] == 0.5
    assert s["pck"] == {"5": 0.5, "10": 0.5, "20": 1.0}
    assert s["count_error"] == {"mean_abs": 0.0, "mean_signed": 0.0, "exact_share": 1.0}
    assert s["per_class"]["a"]["predicted"] == 1 and s["per_class"]["a"]["f1"] == 0.0
    assert s["per_class"]["b"]["mae"] == {"dx": 3.0, "dy": 4.0, "euclidean": 5.0}
    first = s["groups"]["first"]  # a 0/1 mask is a mask, not indices
    assert (first["true"], first["recall"], first["pck"]["5"], first["mae"]["euclidean"]) == (1, 1.0, 1.0, 5.0)
    with pytest.raises(ValueError, match="group 'bad' must be a"):
        centre_detection_summary(pred, truth, ["a", "b"], groups={"bad": [True]})


def test_centre_detection_summary_with_no_predictions_or_no_objects():
    truth = {"image": [0], "class": [0], "xy": [[5, 5]], "images": 2}
    none_found = centre_detection_summary({"image": [], "class": [], "xy": []}, truth, ["a", "b"])
    assert none_found["recall"] == 0.0 and none_found["precision"] is None
    assert none_found["mae"] == {"dx": None, "dy": None, "euclidean": None} and none_found["mse"] is None
    assert none_found["count_error"] == {"mean_abs": 0.5, "mean_signed": -0.5, "exact_share": 0.5}
    assert none_found["per_class"]["b"]["recall"] is None and none_found["per_class"]["b"]["pck"]["5"] is None
    # Predictions only in image 0 of 2, no objects anywhere.
    nothing_there = centre_detection_summary({"image": [0, 0], "class": [0, 0], "xy": [[1, 1], [2, 2]]},
                                             {"image": [], "class": [], "xy": [], "images": 2}, ["a", "b"])
    assert nothing_there["precision"] == 0.0 and nothing_there["recall"] is None
    assert [nothing_there["per_class"][c]["predicted"] for c in "ab"] == [2, 0]
    assert nothing_there["count_error"] == {"mean_abs": 1.0, "mean_signed": 1.0, "exact_share": 0.5}
