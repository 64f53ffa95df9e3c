"""Anchors, IoU, box encoding and target assignment, on hand-made cases."""

import math

import numpy as np
import pytest
from keras import ops

from detection.ssd.anchors import assign_targets, box_iou, decode_boxes, encode_boxes, feature_sizes, generate_anchors


def _np(x):
    return ops.convert_to_numpy(x)


def test_anchor_generation_hand_case():
    # 32x16 input, one scale of stride 16 -> a 2x1 grid; sizes 8 and 16, ratios 1 and 4.
    anchors, scale = generate_anchors((32, 16), (16,), ((8, 16),), (1.0, 4.0))
    assert anchors.shape == (2 * 1 * 4, 4) and anchors.dtype == np.float32
    # Cell (row 0, column 0) centre (8, 8): size 8 ratio 1; size 8 ratio 4 (w 16, h 4); size 16 ratio 1; ...
    np.testing.assert_allclose(anchors[0], [4, 4, 12, 12])
    np.testing.assert_allclose(anchors[1], [0, 6, 16, 10])
    np.testing.assert_allclose(anchors[2], [0, 0, 16, 16])
    np.testing.assert_allclose(anchors[3], [-8, 4, 24, 12])
    # Next cell: column 1, centre (24, 8).
    np.testing.assert_allclose(anchors[4], [20, 4, 28, 12])
    assert (scale == 0).all()


def test_default_three_scales_count_and_order():
    strides = (4, 8, 16)
    sizes = ((16, 24, 32), (48, 64, 96), (96, 128, 192))
    anchors, scale = generate_anchors((224, 224), strides, sizes)
    assert feature_sizes((224, 224), strides) == [(56, 56), (28, 28), (14, 14)]
    assert len(anchors) == 3 * (56 * 56 + 28 * 28 + 14 * 14)
    assert np.bincount(scale).tolist() == [3 * 56 * 56, 3 * 28 * 28, 3 * 14 * 14]
    # Row-major: the anchor after a row's last column is the next row's first.
    row_end = anchors[3 * 56 - 1]
    np.testing.assert_allclose((row_end[:2] + row_end[2:]) / 2, [222, 2])
    np.testing.assert_allclose((anchors[3 * 56, :2] + anchors[3 * 56, 2:]) / 2, [2, 6])
    first_scale3 = anchors[scale == 2][0]
    np.testing.assert_allclose(first_scale3, [8 - 48, 8 - 48, 8 + 48, 8 + 48])


def test_iou_hand_cases():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    iou = _np(box_iou(a, b))
    assert iou.shape == (3, 3)
    assert iou[0, 0] == pytest.approx(50 / 150)
    assert iou[0, 1] == 0 and iou[0, 2] == pytest.approx(1.0)
    assert (iou[2] == 0).all()  # a degenerate box overlaps nothing
    # Batched: (B, N, 4) x (B, M, 4).
    batched = _np(box_iou(a[None], b[None]))
    np.testing.assert_allclose(batched[0], iou)


def test_encode_decode_round_trip_is_exact():
    rng = np.random.default_rng(0)
    anchors, _ = generate_anchors((64, 64), (8, 16), ((8, 16), (24, 32)), (0.5, 1.0, 2.0))
    xy = rng.uniform(-10, 70, (3, len(anchors), 2))
    wh = rng.uniform(1, 80, (3, len(anchors), 2))
    boxes = np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)
    deltas = encode_boxes(boxes, anchors)
    np.testing.assert_allclose(_np(decode_boxes(deltas, anchors)), boxes, atol=2e-4)
    # A box equal to its anchor encodes to zeros; a hand-made shift and scale.
    np.testing.assert_allclose(_np(encode_boxes(anchors, anchors)), 0, atol=1e-6)
    t = _np(encode_boxes(np.array([[2, 0, 18, 8]], np.float32), np.array([[0, 0, 8, 8]], np.float32)))
    np.testing.assert_allclose(t[0], [(10 - 4) / 8 / 0.1, 0, math.log(2) / 0.2, 0], rtol=1e-6)


def test_assignment_hand_case():
    # Four 10x10 anchors in a row; IoU thresholds 0.5 / 0.4.
    anchors = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10]], np.float32)
    gt = np.zeros((1, 3, 4), np.float32)
    gt[0, 0] = [0, 0, 10, 10]      # exactly anchor 0
    gt[0, 1] = [22, 0, 32, 10]     # IoU 8/12 with anchor 2 (positive), 2/18 with anchor 3
    classes = np.array([[2, 0, -1]])  # third row is padding
    t = {k: _np(v) for k, v in assign_targets(anchors, gt, classes).items()}
    np.testing.assert_array_equal(t["positive"][0], [1, 0, 1, 0])
    np.testing.assert_array_equal(t["negative"][0], [0, 1, 0, 1])
    np.testing.assert_array_equal(t["classes"][0], [2, 0, 0, 0])
    np.testing.assert_array_equal(t["matched_index"][0, [0, 2]], [0, 1])
    assert t["matched_iou"][0, 2] == pytest.approx(8 / 12)
    np.testing.assert_allclose(t["box_targets"][0, 0], 0, atol=1e-6)
    np.testing.assert_allclose(t["box_targets"][0, 2], [2 / 10 / 0.1, 0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(t["box_targets"][0, [1, 3]], 0)


def test_assignment_ignored_band_and_forced_best_anchor():
    anchors = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], np.float32)
    # IoU 0.45 with anchor 0 (ignored band) -> but it is this box's best anchor, so positive.
    gt = np.array([[[0, 0, 10, 4.5]]], np.float32)
    t = {k: _np(v) for k, v in assign_targets(anchors, gt, np.array([[1]])).items()}
    np.testing.assert_array_equal(t["positive"][0], [1, 0, 0])
    # A second box claims nothing better; anchor 1 (IoU 0.45 * 5/10...) stays out of both sets.
    gt2 = np.array([[[0, 0, 10, 10], [3, 0, 13, 10]]], np.float32)  # IoU(anchor1, box1) = 8/12
    t = {k: _np(v) for k, v in assign_targets(anchors, gt2, np.array([[0, 1]]), 0.7, 0.4).items()}
    # box 1's best anchor is anchor 1 (8/12 < 0.7 but forced); anchor 0 matches box 0 exactly.
    np.testing.assert_array_equal(t["positive"][0], [1, 1, 0])
    np.testing.assert_array_equal(t["classes"][0], [0, 1, 0])
    np.testing.assert_array_equal(t["negative"][0], [0, 0, 1])


def test_assignment_with_no_boxes_is_all_negative_and_finite():
    anchors, _ = generate_anchors((32, 32), (16,), ((16,),))
    gt = np.zeros((2, 4, 4), np.float32)
    t = {k: _np(v) for k, v in assign_targets(anchors, gt, -np.ones((2, 4), np.int32)).items()}
    assert t["positive"].sum() == 0 and t["negative"].all()
    assert np.isfinite(t["box_targets"]).all()
