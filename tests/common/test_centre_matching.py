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
