"""Metrics against hand-computed numbers."""

import json
import math
import warnings

import numpy as np
import pytest

from common.metrics import (keypoint_error_summary, keypoint_errors, pck_curve, visibility_precision_recall,
                            wrong_keypoint_summary)


def _one_image_three_keypoints():
    # Keypoint 0: error (3, 4) -> 5 px. Keypoint 1: error (0, -1) -> 1 px.
    # Keypoint 2: invisible, huge error and NaN truth; must be ignored.
    xy_true = np.array([[[10.0, 20.0], [30.0, 40.0], [np.nan, np.nan]]])
    xy_pred = np.array([[[13.0, 24.0], [30.0, 39.0], [900.0, -900.0]]])
    visible = np.array([[True, True, False]])
    return xy_pred, xy_true, visible


def test_summary_hand_computed():
    xy_pred, xy_true, visible = _one_image_three_keypoints()
    s = keypoint_error_summary(xy_pred, xy_true, visible, thresholds=(2, 5, 10), keypoint_names=["a", "b", "c"])
    assert s["count"] == 2 and s["images"] == 1 and s["unit"] == "px"
    assert s["mae"] == pytest.approx({"dx": 1.5, "dy": 2.5})  # (3+0)/2, (4+1)/2
    assert s["rmse"] == pytest.approx({"dx": math.sqrt(4.5), "dy": math.sqrt(8.5)})  # sqrt(9/2), sqrt(17/2)
    # errors [5, 1]: mean 3, median 3, p95 (linear) 1 + 0.95 * 4 = 4.8, max 5.
    assert s["euclidean"] == pytest.approx({"mean": 3.0, "median": 3.0, "p95": 4.8, "max": 5.0})
    # PCK is inclusive: the 5 px error counts at t = 5.
    assert s["pck"] == {"2": 0.5, "5": 1.0, "10": 1.0}
    per = {row["name"]: row for row in s["per_keypoint"]}
    assert per["a"]["count"] == 1 and per["a"]["euclidean_mean"] == 5.0
    assert per["a"]["pck"] == {"2": 0.0, "5": 1.0, "10": 1.0}
    assert per["b"]["euclidean_mean"] == 1.0 and per["b"]["pck"]["2"] == 1.0


def test_summary_never_visible_keypoint_is_null_and_json_ready():
    xy_pred, xy_true, visible = _one_image_three_keypoints()
    s = keypoint_error_summary(xy_pred, xy_true, visible, thresholds=(2.5,))
    never = s["per_keypoint"][2]
    assert never == {"index": 2, "name": "kp2", "count": 0, "euclidean_mean": None, "pck": {"2.5": None}}
    # Plain Python types only: the strict encoder rejects NaN and numpy scalars.
    assert json.loads(json.dumps(s, allow_nan=False)) == s


def test_summary_zero_visible_gives_nulls_without_warnings():
    xy = np.zeros((2, 3, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = keypoint_error_summary(xy, xy + 1, np.zeros((2, 3), bool))
        curve = pck_curve(xy, xy + 1, np.zeros((2, 3), bool), [1, 2])
    assert s["count"] == 0 and s["images"] == 2
    assert s["mae"] == {"dx": None, "dy": None}
    assert s["euclidean"]["p95"] is None and s["pck"] == {"2": None, "5": None, "10": None}
    assert all(row["count"] == 0 for row in s["per_keypoint"])
    assert np.isnan(curve).all()


def test_shape_errors_name_argument_and_shapes():
    xy = np.zeros((2, 3, 2))
    with pytest.raises(ValueError, match=r"visible.*\(2, 3\).*Received: visible.shape=\(2, 4\)"):
        keypoint_error_summary(xy, xy, np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"xy_true.*xy_true.shape=\(2, 3, 3\)"):
        keypoint_error_summary(xy, np.zeros((2, 3, 3)), np.ones((2, 3), bool))
    with pytest.raises(ValueError, match=r"xy_pred.*\(N, K, 2\).*xy_pred.shape=\(3, 2\)"):
        keypoint_errors(np.zeros((3, 2)), np.zeros((3, 2)), np.ones(3, bool))
    with pytest.raises(ValueError, match="keypoint_names has 2 names for 3"):
        keypoint_error_summary(xy, xy, np.ones((2, 3), bool), keypoint_names=["a", "b"])


def test_non_finite_visible_keypoint_is_an_error():
    xy_pred, xy_true, visible = _one_image_three_keypoints()
    xy_pred[0, 1] = np.nan
    with pytest.raises(ValueError, match="image 0, keypoint 1"):
        keypoint_errors(xy_pred, xy_true, visible)


def test_pck_curve_monotone_and_matches_errors():
    rng = np.random.default_rng(0)
    xy_true = rng.uniform(0, 128, (20, 5, 2))
    xy_pred = xy_true + rng.normal(0, 4, xy_true.shape)
    visible = rng.random((20, 5)) > 0.3
    thresholds = np.linspace(0, 20, 41)
    curve = pck_curve(xy_pred, xy_true, visible, thresholds)
    assert curve.shape == (41,)
    assert np.all(np.diff(curve) >= 0) and curve[0] == 0.0
    errors = keypoint_errors(xy_pred, xy_true, visible)
    assert errors.shape == (visible.sum(),)
    assert curve[-1] == pytest.approx(np.mean(errors <= 20.0))
    assert curve[10] == pytest.approx(np.mean(errors <= 5.0))
    hand = pck_curve(*_one_image_three_keypoints(), [0.5, 1, 4.99, 5])
    np.testing.assert_array_equal(hand, [0.0, 0.5, 0.5, 1.0])


def test_visibility_precision_recall_hand_case():
    scores = np.array([[0.9, 0.6, 0.2, 0.5], [0.1, 0.7, np.nan, 0.4]])
    visible = np.array([[1, 1, 1, 0], [0, 0, 1, 1]], bool)
    # Predicted (>= 0.5): 0.9 0.6 0.5 0.7.  TP: 0.9, 0.6.  FP: 0.5, 0.7.
    # FN: 0.2, NaN, 0.4.  TN: 0.1.
    r = visibility_precision_recall(scores, visible, 0.5)
    assert (r["true_positive"], r["false_positive"], r["false_negative"], r["true_negative"]) == (2, 2, 3, 1)
    assert r["precision"] == pytest.approx(0.5)
    assert r["recall"] == pytest.approx(0.4)
    assert r["f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert r["threshold"] == 0.5


def test_visibility_precision_recall_zero_division_is_null():
    visible = np.array([True, False])
    r = visibility_precision_recall(np.array([0.1, 0.2]), visible, 0.5)
    assert r["precision"] is None and r["recall"] == 0.0 and r["f1"] is None
    r = visibility_precision_recall(np.array([0.1, 0.9]), np.array([False, False]), 0.5)
    assert r["recall"] is None and r["precision"] == 0.0 and r["f1"] is None
    r = visibility_precision_recall(np.array([0.1, 0.9]), np.array([True, False]), 0.5)
    assert r["precision"] == 0.0 and r["recall"] == 0.0 and r["f1"] == 0.0
    with pytest.raises(ValueError, match=r"scores.shape=\(3,\), visible.shape=\(2,\)"):
        visibility_precision_recall(np.zeros(3), visible, 0.5)


# ---------------------------------------------------------------- wrong keypoints


def test_wrong_keypoint_summary_by_hand():
    # Image 0: truths a (0, 0), b (10, 0), c (0, 10), d (30, 30) hidden.
    #   a predicted at (9, 0): 9 px off, 1 px from b -> wrong (a -> b).
    #   b predicted at (10.5, 0): 0.5 px, right.
    #   c predicted at (28, 29): 28.0 px off, 2.2 px from hidden d -> wrong (c -> d).
    # Image 1: a (0, 0), b (1.5, 0) visible, c and d hidden (c NaN: never a candidate).
    #   a predicted at (1.4, 0): 1.4 px off, nearer b, but <= min_error 2 -> not wrong.
    #   b predicted at (1.5, 3): 3 px off, nearest other is a at 3.35 px -> not wrong.
    truth = np.array([[[0, 0], [10, 0], [0, 10], [30, 30]],
                      [[0, 0], [1.5, 0], [np.nan, np.nan], [50, 50]]], float)
    pred = np.array([[[9, 0], [10.5, 0], [28, 29], [0, 0]],
                     [[1.4, 0], [1.5, 3], [np.nan, np.nan], [0, 0]]], float)
    visible = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    summary = wrong_keypoint_summary(pred, truth, visible, min_error=2.0, keypoint_names="abcd")
    errors = [9.0, 0.5, math.hypot(28, 19), 1.4, 3.0]
    assert summary["count"] == 5 and summary["wrong"] == 2 and summary["fraction"] == pytest.approx(0.4)
    assert summary["error_share"] == pytest.approx((9.0 + math.hypot(28, 19)) / sum(errors))
    assert summary["pairs"] == [{"keypoint": "a", "nearest": "b", "count": 1},
                                {"keypoint": "c", "nearest": "d", "count": 1}]
    assert summary["names"] == ["a", "b", "c", "d"] and summary["visible_per_keypoint"] == [2, 2, 1, 0]
    assert summary["matrix"] == [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    # With min_error 1, image 1's a (1.4 px off, 0.1 px from b) counts too.
    assert wrong_keypoint_summary(pred, truth, visible, min_error=1.0)["wrong"] == 3
    json.dumps(summary)


def test_wrong_keypoint_summary_counts_pairs_and_handles_no_error():
    truth = np.tile(np.array([[0.0, 0.0], [20.0, 0.0]]), (3, 1, 1))  # 3 images, 2 keypoints
    swapped = truth[:, ::-1]  # every prediction on the other keypoint
    summary = wrong_keypoint_summary(swapped, truth, np.ones((3, 2), bool), top=1)
    assert summary["wrong"] == 6 and summary["fraction"] == 1.0 and summary["error_share"] == 1.0
    assert summary["pairs"] == [{"keypoint": "kp0", "nearest": "kp1", "count": 3}]  # top=1 of two pairs
    assert summary["matrix"] == [[0, 3], [3, 0]]
    perfect = wrong_keypoint_summary(truth, truth, np.ones((3, 2), bool))
    assert perfect["wrong"] == 0 and perfect["error_share"] is None and perfect["pairs"] == []
    none_visible = wrong_keypoint_summary(truth, truth, np.zeros((3, 2), bool))
    assert none_visible["count"] == 0 and none_visible["fraction"] is None
    with pytest.raises(ValueError, match="1 names for 2 keypoints"):
        wrong_keypoint_summary(truth, truth, np.ones((3, 2), bool), keypoint_names=["only"])


# ---------------------------------------------------------------- mutation-testing cases (issue 19)


def test_visibility_precision_recall_equal_precision_and_recall_and_float32_scores():
    # TP 1 (0.9), FP 1 (0.8), FN 1 (0.1), TN 1 (0.2): precision = recall = f1 = 1/2
    # (a recall or F1 computed when tp - fn or p - r is nonzero would be None / 0).
    r = visibility_precision_recall([0.9, 0.8, 0.1, 0.2], [True, False, True, False], 0.5)
    assert (r["precision"], r["recall"], r["f1"]) == (0.5, 0.5, 0.5)
    # Scores are compared exactly, in float64: float32 0.7 is 0.69999998807907, below 0.7
    # (NumPy 2 would otherwise round the threshold to float32 and call it equal).
    r = visibility_precision_recall(np.float32([0.7]), [True], 0.7)
    assert (r["true_positive"], r["false_negative"]) == (0, 1)


@pytest.mark.parametrize("thresholds, message", [((), "non-empty"), ((-1,), ">= 0"), ((np.nan,), "finite"),
                                                  ((np.inf, 2), "finite"), ([[1, 2]], "1-D"),
                                                  ((5, 5.0), "distinct")])
def test_bad_thresholds_are_refused_with_a_message(thresholds, message):
    xy = np.zeros((1, 2, 2))
    with pytest.raises(ValueError, match=message):
        keypoint_error_summary(xy, xy, np.ones((1, 2), bool), thresholds=thresholds)


def test_an_infinite_visible_keypoint_is_a_value_error_not_a_warning():
    xy_pred, xy_true, visible = _one_image_three_keypoints()
    xy_pred[0, 0], xy_true[0, 0] = np.inf, np.inf  # inf - inf: NumPy's "invalid value" case
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="image 0, keypoint 0"):
            keypoint_errors(xy_pred, xy_true, visible)


def test_wrong_keypoint_boundaries_defaults_and_key_types():
    # Truths a (0, 0), b (3, 0), c (20, 0), d (40, 0), one image each keypoint test:
    #   a predicted at (2, 0): 2 px off = min_error exactly -> not wrong (1 px from b).
    #   c predicted at (30, 0): 10 px off, 10 px from d: a tie is not "nearer" -> not wrong.
    #   b predicted at (-0.5, 0): 3.5 px off, 0.5 from a -> wrong with the default min_error 2.
    truth = np.array([[[0, 0], [3, 0], [20, 0], [40, 0]]], float)
    pred = np.array([[[2, 0], [-0.5, 0], [30, 0], [40, 0]]], float)
    s = wrong_keypoint_summary(pred, truth, np.ones((1, 4), bool))
    assert s["wrong"] == 1 and s["pairs"] == [{"keypoint": "kp1", "nearest": "kp0", "count": 1}]
    assert s["min_error"] == 2.0
    assert json.dumps(s["matrix"]) == "[[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]"
    # A total error under 1 px still has a share: a (0, 0) predicted at (0.4, 0), 0.1 from b.
    small = wrong_keypoint_summary([[[0.4, 0], [0.5, 0]]], [[[0, 0], [0.5, 0]]], [[True, True]], min_error=0.1)
    assert small["wrong"] == 1 and small["error_share"] == 1.0


def _pairs_case(counts):
    """One image per (keypoint k, nearest j, repeat): only k visible, predicted on j's truth."""
    truth = np.array([[0, 0], [100, 0], [0, 100], [100, 100], [50, 50]], float)
    images, visible = [], []
    for (k, j), n in counts.items():
        for _ in range(n):
            pred = truth.copy()
            pred[k] = truth[j]
            images.append(pred)
            visible.append(np.arange(5) == k)
    return np.array(images), np.tile(truth, (len(images), 1, 1)), np.array(visible)


def test_wrong_keypoint_pairs_most_frequent_first_ties_in_order_and_top_5_by_default():
    # Six pairs; (0, 1) comes first in (keypoint, nearest) order but is the least frequent.
    counts = {(0, 1): 1, (1, 0): 2, (2, 3): 3, (3, 2): 1, (4, 0): 1, (4, 1): 1}
    s = wrong_keypoint_summary(*_pairs_case(counts))
    assert [(p["keypoint"], p["nearest"], p["count"]) for p in s["pairs"]] == [
        ("kp2", "kp3", 3), ("kp1", "kp0", 2), ("kp0", "kp1", 1), ("kp3", "kp2", 1), ("kp4", "kp0", 1)]
    # 20 pairs, counts 1 and 2 alternating: ties keep the (keypoint, nearest) order, which
    # NumPy's default (unstable beyond 16 elements) sort does not.
    all_pairs = [(k, j) for k in range(5) for j in range(5) if k != j]
    counts = {pair: 1 + i % 2 for i, pair in enumerate(all_pairs)}
    s = wrong_keypoint_summary(*_pairs_case(counts), top=20)
    expected = [p for p in all_pairs if counts[p] == 2] + [p for p in all_pairs if counts[p] == 1]
    assert [(p["keypoint"], p["nearest"]) for p in s["pairs"]] == [(f"kp{k}", f"kp{j}") for k, j in expected]


def test_match_groups_by_hand():
    from common.metrics import match_groups

    # Group (0, 1). Image 0: label 1 hidden; prediction 1 sits on label 0 and prediction 0 is
    # 10 px off along y only -> swap (an x-only or per-axis cost sees a tie and keeps them).
    # Image 1: the predictions fit as they are. Image 2: prediction 0 is NaN, label 1 hidden,
    # prediction 1 is 0.2 px from label 0 -> swap (the NaN costs more than any distance).
    truth = np.array([[[0, 0], [0, 10], [5, 5]], [[0, 0], [0, 10], [5, 5]], [[0, 0], [10, 0], [5, 5]]], float)
    pred = np.array([[[0, 10], [0, 0], [5, 5]], [[0, 1], [0, 9], [5, 5]], [[np.nan, np.nan], [0.2, 0], [5, 5]]])
    visible = np.array([[True, False, True], [True, True, True], [True, False, True]])
    order = match_groups(pred, truth, visible, [(0, 1)])
    assert order.tolist() == [[1, 0, 2], [0, 1, 2], [1, 0, 2]]
