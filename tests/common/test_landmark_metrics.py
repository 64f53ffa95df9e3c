"""PCK of the bbox diagonal and MRE / SDR: hand-computed cases."""

import numpy as np
import pytest

from common.metrics import bbox_diagonals, mre_sdr, pck_bbox


def test_pck_bbox_hand_case_inclusive():
    truth = np.array([[[0.0, 0.0], [30.0, 40.0]]])  # diagonal 50: 5 % = 2.5 px
    pred = truth + np.array([[[2.5, 0.0], [0.0, 3.0]]])
    assert bbox_diagonals(truth, np.ones((1, 2), bool)).tolist() == [50.0]
    assert pck_bbox(pred, truth, np.ones((1, 2), bool), (0.05, 0.1)) == {"0.05": 0.5, "0.1": 1.0}


def test_pck_bbox_per_image_diagonal_and_invisible():
    truth = np.array([[[0.0, 0.0], [30.0, 40.0], [500.0, 500.0]], [[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]]])
    visible = np.array([[True, True, False], [True, True, True]])
    pred = truth + 1.0  # error sqrt(2) = 1.41 px everywhere
    pred[0, 2] = np.nan  # invisible: ignored
    # Image 0: diagonal 50 (the invisible point is not in the box) -> 10 % = 5 px: both hit.
    # Image 1: diagonal 5 -> 10 % = 0.5 px: its three miss.
    assert pck_bbox(pred, truth, visible, (0.1,)) == {"0.1": pytest.approx(2 / 5)}


def test_mre_sdr_hand_case():
    truth = np.zeros((1, 4, 2))
    pred = np.array([[[10.0, 0.0], [0.0, 20.0], [15.0, 20.0], [41.0, 0.0]]])  # 10, 20, 25, 41 px
    result = mre_sdr(pred, truth, np.ones((1, 4), bool), spacing_mm=0.1)
    assert result["mre_mm"] == pytest.approx((1 + 2 + 2.5 + 4.1) / 4)
    assert result["sdr"] == {"2": 0.5, "2.5": 0.75, "3": 0.75, "4": 0.75}
    assert result["count"] == 4 and result["spacing_mm"] == 0.1
    with pytest.raises(ValueError, match="spacing_mm"):
        mre_sdr(pred, truth, np.ones((1, 4), bool), spacing_mm=0.0)
    empty = mre_sdr(pred, truth, np.zeros((1, 4), bool), spacing_mm=0.1)
    assert empty["mre_mm"] is None and empty["sdr"]["2"] is None


def test_bbox_diagonals_offset_box_invisible_points_and_an_empty_image():
    truth = np.array([[[10.0, 20.0], [40.0, 60.0], [500.0, 500.0]], [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]])
    visible = np.array([[True, True, False], [False, False, False]])
    # Box (10, 20) - (40, 60): diagonal hypot(30, 40) = 50; the hidden point is outside it.
    diagonal = bbox_diagonals(truth, visible)
    assert diagonal.dtype == np.float64 and diagonal[0] == 50.0 and np.isnan(diagonal[1])
    # Nothing visible anywhere: PCK is None, not NaN.
    assert pck_bbox(truth, truth, np.zeros((2, 3), bool), (0.1,)) == {"0.1": None}


def test_mre_sdr_standard_deviation_and_per_image_spacing():
    truth = np.zeros((2, 1, 2))
    pred = np.array([[[10.0, 0.0]], [[0.0, 20.0]]])  # 10 px at 0.1 mm, 20 px at 0.2 mm: 1 and 4 mm
    result = mre_sdr(pred, truth, np.ones((2, 1), bool), spacing_mm=[0.1, 0.2])
    assert result["spacing_mm"] == [0.1, 0.2]
    assert result["mre_mm"] == pytest.approx(2.5) and result["sd_mm"] == pytest.approx(1.5)
    assert result["sdr"] == {"2": 0.5, "2.5": 0.5, "3": 0.5, "4": 1.0}
    empty = mre_sdr(pred, truth, np.zeros((2, 1), bool), spacing_mm=0.1)
    assert empty["sd_mm"] is None and empty["count"] == 0
