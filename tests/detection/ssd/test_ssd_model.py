"""The detector's model, loss (hand-computed values, harness) and decoding layer with NMS."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from detection.ssd.anchors import encode_boxes, generate_anchors
from detection.ssd.evaluation import iou_matrix
from detection.ssd.ssd import DetectionDecoder, SSDLoss, build_detector, non_max_suppression_mask, split_detections
from common.config import load_config
from common.errors import DataError
from detection.ssd.ssd_config import DataConfig, DetConfig, ModelConfig
from tests.harness import run_layer_test, run_loss_test

LN2 = math.log(2.0)


def softplus(x):
    return math.log1p(math.exp(x))


def _loss(width, **kwargs):
    return SSDLoss(2, input_size=(width, 16), strides=(16,), anchor_sizes=((16,),), **kwargs)


def _value(loss, y_true, y_pred):
    return float(ops.convert_to_numpy(loss(y_true, y_pred)))


def test_loss_hand_computed_single_positive():
    # One anchor (0, 0, 16, 16) and a box equal to it: box loss 0, objectness and class ln 2 each.
    y_true = np.array([[[0, 0, 16, 16, 1]]], np.float32)
    y_pred = np.zeros((1, 1, 7), np.float32)
    assert _value(_loss(16), y_true, y_pred) == pytest.approx(2 * LN2, rel=1e-6)
    # Through the harness: config and serialisation round trips.
    assert run_loss_test(_loss(16), y_true, y_pred) == pytest.approx(2 * LN2, rel=1e-6)


def test_loss_bce_focal_and_box_terms():
    # Two anchors; the box is anchor 0, anchor 1 is a negative with objectness logit 2; tx = 0.5.
    y_true = np.array([[[0, 0, 16, 16, 0], [0, 0, 0, 0, -1]]], np.float32)
    y_pred = np.zeros((1, 2, 7), np.float32)
    y_pred[0, 0, 0] = 0.5
    y_pred[0, 1, 4] = 2.0
    expected = LN2 + 0.125 + LN2 + softplus(2.0)
    assert _value(_loss(32), y_true, y_pred) == pytest.approx(expected, rel=1e-6)
    p = 1 / (1 + math.exp(-2.0))
    focal = 0.25 * 0.25 * LN2 + 0.75 * p ** 2 * softplus(2.0)
    loss = _loss(32, objectness_loss="focal")
    assert _value(loss, y_true, y_pred) == pytest.approx(focal + 0.125 + LN2, rel=1e-5)
    run_loss_test(loss, y_true, y_pred)


def test_hard_negative_mining_keeps_the_hardest():
    # Four anchors; anchor 0 positive; negatives with logits 0, 3, 1: ratio 1 keeps only logit 3.
    y_true = np.array([[[0, 0, 16, 16, 1]]], np.float32)
    y_pred = np.zeros((1, 4, 7), np.float32)
    y_pred[0, 1:, 4] = [0.0, 3.0, 1.0]
    expected = 2 * LN2 + softplus(3.0)
    assert _value(_loss(64, neg_pos_ratio=1.0), y_true, y_pred) == pytest.approx(expected, rel=1e-6)
    every = 2 * LN2 + softplus(0.0) + softplus(3.0) + softplus(1.0)
    assert _value(_loss(64, neg_pos_ratio=0.0), y_true, y_pred) == pytest.approx(every, rel=1e-6)


def test_loss_is_normalised_by_the_batch_positives():
    # Image 1 has one positive, image 2 none (all 4 anchors negative, logits 0). Quotas:
    # 3 x 1 negatives in each image, so the batch total is (2 + 3 + 3) ln 2, over 1 positive.
    y_true = np.array([[[0, 0, 16, 16, 1]], [[0, 0, 0, 0, -1]]], np.float32)
    y_pred = np.zeros((2, 4, 7), np.float32)
    total = 2 * LN2 + 3 * LN2 + 3 * LN2  # image 1: pos + class + its 3 negatives; image 2: 3 hardest of 4
    assert _value(_loss(64), y_true, y_pred) == pytest.approx(total, rel=1e-6)


def _greedy_nms(boxes, scores, iou_threshold, score_threshold):
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] < score_threshold:
            continue
        if all(iou_matrix(boxes[i], boxes[j])[0, 0] <= iou_threshold for j in keep):
            keep.append(i)
    return sorted(keep)


def test_nms_equals_greedy_reference():
    rng = np.random.default_rng(3)
    for _ in range(5):
        xy = rng.uniform(0, 40, (30, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (30, 2))], axis=1).astype(np.float32)
        scores = np.sort(rng.uniform(0, 1, 30))[::-1].astype(np.float32)
        keep = ops.convert_to_numpy(non_max_suppression_mask(boxes, scores, 0.45, 0.2))
        assert np.flatnonzero(keep).tolist() == _greedy_nms(boxes, scores, 0.45, 0.2)


def test_nms_chain_needs_the_iterations():
    # A suppresses B, B would suppress C, but B is gone so C stays: greedy, not one-shot.
    boxes = np.array([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    keep = ops.convert_to_numpy(non_max_suppression_mask(boxes, scores, 0.3, 0.1))
    assert keep.tolist() == [True, False, True]


DECODER = dict(num_classes=2, input_size=(32, 32), strides=(16,), anchor_sizes=((16,),), max_detections=5,
               pre_nms_top_k=4, score_threshold=0.0)


def test_decoder_harness():
    data = np.random.default_rng(0).normal(size=(2, 4, 7)).astype(np.float32)
    run_layer_test(DetectionDecoder, DECODER, data, (2, 5, 7), mixed_precision_output_dtype="float32")
    run_layer_test(DetectionDecoder, {**DECODER, "max_detections": 10}, data, (2, 10, 7),
                   run_training_check=False, run_mixed_precision_check=False)


def test_decoder_hand_case():
    anchors, _ = generate_anchors((32, 32), (16,), ((16,),))
    # Anchors 0 and 1 predict nearly the same box of class 1; anchor 3 a box of class 0.
    boxes = np.array([[2, 2, 14, 14], [3, 2, 15, 14], [0, 0, 16, 16], [18, 18, 30, 30]], np.float32)
    pred = np.zeros((1, 4, 7), np.float32)
    pred[0, :, :4] = ops.convert_to_numpy(encode_boxes(boxes, anchors))
    pred[0, :, 4] = [3.0, 2.0, -9.0, 1.0]
    pred[0, :, 5:] = [[-5, 5], [-5, 5], [0, 0], [5, -5]]
    decoder = DetectionDecoder(**{**DECODER, "score_threshold": 0.05, "nms_iou": 0.5})
    dets = split_detections(ops.convert_to_numpy(decoder(pred)))[0]
    sig = 1 / (1 + np.exp(-np.array([3.0, 1.0])))
    soft = 1 / (1 + math.exp(-10))
    np.testing.assert_allclose(dets["scores"], sig * soft, rtol=1e-5)
    np.testing.assert_array_equal(dets["classes"], [1, 0])
    np.testing.assert_array_equal(dets["anchors"], [0, 3])
    np.testing.assert_allclose(dets["boxes"], boxes[[0, 3]], atol=1e-4)


def test_model_outputs_and_layer_names():
    data_cfg = DataConfig(input_size=(64, 32))
    model_cfg = ModelConfig(filters=(4, 8, 8, 8), head_filters=(8, 8, 8))
    model = build_detector(3, data_cfg, model_cfg)
    anchors, _ = generate_anchors((64, 32), model_cfg.strides, model_cfg.anchor_sizes)
    out = model(np.zeros((2, 32, 64, 3), np.uint8))["predictions"]
    assert tuple(out.shape) == (2, len(anchors), 8) and keras.backend.standardize_dtype(out.dtype) == "float32"
    assert [model.get_layer(f"block{b}").output.shape[1:3] for b in (2, 3, 4)] == [(8, 16), (4, 8), (2, 4)]
    # The objectness prior: sigmoid(bias) = 0.01 at the start.
    bias = ops.convert_to_numpy(model.get_layer("scale1_head_out").bias)
    np.testing.assert_allclose(1 / (1 + np.exp(-bias[4::8])), 0.01, rtol=1e-5)


@pytest.mark.parametrize("override, message", [
    ("model.anchor_sizes=[[.nan, 24, 32], [48, 64, 96], [96, 128, 192]]", r"anchor sizes must be positive finite"),
    ("model.anchor_sizes=[[.inf, 24, 32], [48, 64, 96], [96, 128, 192]]", r"anchor sizes must be positive finite"),
    ("model.aspect_ratios=[.nan]", r"aspect_ratios must be positive finite numbers. Received: aspect_ratios=\(nan,\)"),
    ("model.variances=[0.1, 0.1, .nan, 0.2]", r"variances must be 4 positive finite numbers"),
    ("train.neg_pos_ratio=.nan", r"neg_pos_ratio must be a finite number >= 0. Received: nan"),
    ("train.scale_jitter=[0.8, .inf]", r"scale_jitter must be \(min, max\)"),
])
def test_config_rejects_nan_and_infinity(override, message):
    # `x <= 0` lets NaN through; the checks are written so that it fails.
    with pytest.raises(DataError, match=message):
        load_config(DetConfig, None, [override])
