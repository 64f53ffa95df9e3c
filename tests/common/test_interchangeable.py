"""Interchangeable keypoints: group config, the min-over-assignments loss, distinct
peaks in decoding, matched evaluation (issue 25)."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from common.codecs import GaussianHeatmapCodec
from common.config import load_config
from common.errors import DataError
from common.interchangeable import group_permutations, resolve_groups
from common.losses import HeatmapPeakLoss, InterchangeableLoss, MaskedL1
from common.metrics import match_groups, relabel
from tests.harness import run_loss_test

NAMES = ("head", "hand_left", "hand_right", "foot_left", "foot_right")


def _per_sample(loss, y_true, y_pred):
    return ops.convert_to_numpy(loss.call(ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)))


# --- config ---


def test_groups_by_name_or_index_and_a_bad_name_is_one_line_naming_it():
    from baselines.config import BaselinesConfig

    cfg = load_config(BaselinesConfig, overrides=["data.interchangeable=[[hand_left, hand_right], [3, 4]]"])
    assert cfg.data.interchangeable == (("hand_left", "hand_right"), (3, 4))
    assert resolve_groups(cfg.data.interchangeable, NAMES) == ((1, 2), (3, 4))
    with pytest.raises(DataError, match=r"data\.interchangeable: no keypoint named 'hand_lft' \(keypoints: head, "):
        resolve_groups([["hand_lft", "hand_right"]], NAMES, "cache/train")
    with pytest.raises(DataError, match="listed twice"):
        resolve_groups([[1, 2], ["hand_left", 3]], NAMES)
    with pytest.raises(DataError, match="out of range"):
        resolve_groups([[1, 5]], NAMES)
    with pytest.raises(DataError, match="at least 2 keypoints"):
        load_config(BaselinesConfig, overrides=["data.interchangeable=[[hand_left]]"])


def test_permutations_are_the_product_of_each_groups():
    perms = group_permutations(((1, 2), (3, 4, 0)), 5)
    assert len(perms) == 2 * 6 and perms[0].tolist() == [0, 1, 2, 3, 4]
    assert len({tuple(p) for p in perms}) == 12
    assert all(sorted(p[[1, 2]]) == [1, 2] and sorted(p[[0, 3, 4]]) == [0, 3, 4] for p in perms)


# --- loss: the minimum over the group's permutations ---


def test_group_loss_is_the_minimum_over_permutations_on_hand_cases():
    # Keypoints 0 and 1 interchangeable, keypoint 2 not. Masked L1 = mean |dx|, |dy| over visible.
    y_true = np.array([[[0.0, 0.0, 1], [1.0, 1.0, 1], [0.5, 0.5, 1]],
                       [[0.0, 0.0, 1], [1.0, 1.0, 1], [0.5, 0.5, 1]]], np.float32)
    y_pred = np.array([[[0.9, 1.0], [0.2, 0.0], [0.5, 0.5]],   # swapped: (0.1 + 0.2) / 6 vs (1.9 + 1.8) / 6
                       [[0.1, 0.0], [1.0, 0.7], [0.5, 0.6]]], np.float32)  # as labelled: (0.1 + 0.3 + 0.1) / 6
    loss = InterchangeableLoss(MaskedL1(), groups=[(0, 1)])
    np.testing.assert_allclose(_per_sample(loss, y_true, y_pred), [0.3 / 6, 0.5 / 6], atol=1e-6)
    np.testing.assert_allclose(_per_sample(MaskedL1(), y_true, y_pred), [3.7 / 6, 0.5 / 6], atol=1e-6)
    # A group of three: a cyclic relabelling of the truth costs nothing, only the
    # non-member's error is left: |0.5 - 0.2| / 8 (4 visible keypoints).
    y3 = np.array([[[0.1, 0.1, 1], [0.5, 0.9, 1], [0.9, 0.1, 1], [0.2, 0.2, 1]]], np.float32)
    pred3 = np.concatenate([y3[:, [2, 0, 1], :2], [[[0.5, 0.2]]]], axis=1)
    loss3 = InterchangeableLoss(MaskedL1(), groups=[(0, 1, 2)])
    np.testing.assert_allclose(_per_sample(loss3, y3, pred3), [0.3 / 8], atol=1e-6)
    # Against the brute-force minimum on random data, two groups (2 x 2 assignments).
    rng = np.random.default_rng(0)
    y4 = np.concatenate([rng.uniform(size=(6, 5, 2)), rng.uniform(size=(6, 5, 1)) > 0.2], -1).astype(np.float32)
    pred4 = rng.uniform(size=(6, 5, 2)).astype(np.float32)
    brute = np.min([_per_sample(MaskedL1(), y4[:, [0, *a, *b]], pred4)
                    for a in itertools.permutations((1, 2)) for b in itertools.permutations((3, 4))], axis=0)
    got = _per_sample(InterchangeableLoss(MaskedL1(), [(1, 2), (3, 4)]), y4, pred4)
    np.testing.assert_allclose(got, brute, rtol=1e-6)


def test_heatmap_group_loss_is_the_min_and_invariant_to_swapping_labels():
    codec = GaussianHeatmapCodec((16, 16), 1.5)
    xy = np.array([[[0.2, 0.3], [0.7, 0.6], [0.5, 0.9]]], np.float32)
    visible = np.ones((1, 3), np.float32)
    maps = ops.convert_to_numpy(codec.encode(xy[:, [1, 0, 2]], visible)[0])  # the model put the hands swapped
    y_true = np.concatenate([xy, visible[..., None]], -1)
    base = HeatmapPeakLoss(beta=1e-3, foreground_weight=10.0, **codec.get_config())
    loss = InterchangeableLoss(base, [(0, 1)])
    as_given, swapped = _per_sample(base, y_true, maps), _per_sample(base, y_true[:, [1, 0, 2]], maps)
    assert as_given[0] > 0.01 and swapped[0] < 1e-3
    np.testing.assert_allclose(_per_sample(loss, y_true, maps), swapped, rtol=1e-6)
    np.testing.assert_allclose(_per_sample(loss, y_true[:, [1, 0, 2]], maps), swapped, rtol=1e-6)
    # Target heatmaps (cached, rank 4) are relabelled on their last axis.
    np.testing.assert_allclose(_per_sample(InterchangeableLoss(keras.losses.MeanSquaredError(), [(0, 1)]),
                                           maps[..., [1, 0, 2]], maps).mean(), 0.0, atol=1e-7)


def test_group_loss_serialises_trains_and_runs_under_mixed_precision():
    codec = GaussianHeatmapCodec((8, 8), 1.0)
    loss = InterchangeableLoss(HeatmapPeakLoss(beta=1e-3, **codec.get_config()), [(0, 1)])
    y_true = np.array([[[0.2, 0.3, 1], [0.7, 0.6, 1]]] * 2, np.float32)
    y_pred = np.random.default_rng(1).uniform(size=(2, 8, 8, 2)).astype(np.float32)
    run_loss_test(loss, y_true, y_pred)
    value = loss(y_true, ops.cast(y_pred, "float16"))
    assert keras.backend.standardize_dtype(value.dtype) == "float32" and np.isfinite(ops.convert_to_numpy(value))
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same")(inputs))
    model.compile(optimizer="sgd", loss=loss)
    history = model.fit(y_pred[..., :1], y_true, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# --- decoding: one group, distinct peaks ---


def test_two_maps_of_one_group_peaking_at_one_place_decode_to_distinct_points():
    codec = GaussianHeatmapCodec((32, 32), 1.5)
    strong = ops.convert_to_numpy(codec.encode(np.array([[[0.25, 0.25]]], np.float32))[0])[..., 0]
    weak = ops.convert_to_numpy(codec.encode(np.array([[[0.75, 0.5]]], np.float32))[0])[..., 0]
    both = np.maximum(strong, 0.6 * weak)  # both hands' maps: the stronger peak on one drawn hand
    maps = np.stack([both, both * 0.9, strong * 0.0 + weak * 0.2], axis=-1)  # keypoint 2 is not in the group
    raw = codec.decode(maps)[0][0]
    np.testing.assert_allclose(raw[0], raw[1], atol=1e-6)  # without the group: both on one hand
    xy = codec.decode(maps, groups=[(0, 1)])[0][0]
    np.testing.assert_allclose(xy[0], [0.25, 0.25], atol=1e-3)  # the higher map keeps its peak
    np.testing.assert_allclose(xy[1], [0.75, 0.5], atol=1e-3)  # the other takes the next-best, far enough
    np.testing.assert_allclose(xy[2], raw[2])  # outside the group nothing moves
    # Peaks already distinct are not moved.
    apart = np.stack([strong, weak, weak], axis=-1)
    np.testing.assert_allclose(codec.decode(apart, groups=[(0, 1)])[0], codec.decode(apart)[0])


def _one_hot_pixels(shape, *pixels):
    """A (H, W) map that is 0 but for `(row, col, value)` pixels: isolated pixels refine to
    their own centres (a symmetric neighbourhood), so decoded points are hand values."""
    out = np.zeros(shape, np.float32)
    for row, col, value in pixels:
        out[row, col] = value
    return out


@pytest.mark.parametrize("offset, min_distance, kept", [
    ((0, 3), 3.0, True),  # exactly min_distance away along x: far enough (the rule is strict, d < r)
    ((3, 0), 3.0, True),  # the same along y
    ((2, 2), 3.0, False),  # sqrt(8) = 2.83 px: too close, although 2 px along each axis
    ((0, 4), 3.0, True),
    ((0, 2), None, True),  # the default is 2 sigma = 2 px: 2 px away is far enough
    ((1, 1), None, False),
])
def test_group_exclusion_is_a_disc_of_min_distance(offset, min_distance, kept):
    # Keypoint 0 peaks at (row 4, col 4); keypoint 1 has its maximum there too (lower), a second
    # candidate at `offset` from it and a weak third far away at (8, 8).
    codec = GaussianHeatmapCodec((10, 10), sigma=1.0)
    candidate = (4 + offset[0], 4 + offset[1])
    first = _one_hot_pixels((10, 10), (4, 4, 1.0))
    second = _one_hot_pixels((10, 10), (4, 4, 0.9), (*candidate, 0.5), (8, 8, 0.2))
    xy = codec.decode(np.stack([first, second], axis=-1)[None], groups=[(0, 1)], min_distance=min_distance)[0][0]
    np.testing.assert_allclose(xy[0] * 10, [4.5, 4.5], atol=1e-6)
    row, col = candidate if kept else (8, 8)
    np.testing.assert_allclose(xy[1] * 10, [col + 0.5, row + 0.5], atol=1e-6)


def test_a_group_of_three_avoids_every_earlier_members_peak():
    # All three maps peak at (4, 4); the second's next best (4, 8) is 4 px away; the third's
    # next best after its own (4, 8) is (8, 1), far from both: it must avoid (4, 4) and (4, 8).
    codec = GaussianHeatmapCodec((10, 10), sigma=1.0)
    maps = np.stack([_one_hot_pixels((10, 10), (4, 4, 1.0)),
                     _one_hot_pixels((10, 10), (4, 4, 0.9), (4, 8, 0.6)),
                     _one_hot_pixels((10, 10), (4, 4, 0.8), (4, 8, 0.5), (8, 1, 0.3))], axis=-1)[None]
    xy = codec.decode(maps, groups=[(0, 1, 2)], min_distance=3.0)[0][0]
    np.testing.assert_allclose(xy * 10, [[4.5, 4.5], [8.5, 4.5], [1.5, 8.5]], atol=1e-6)


def test_each_image_of_a_batch_decodes_its_group_on_its_own():
    # 5x5 maps, min_distance 4. Image 0: both keypoints peak at the centre, and every pixel of the
    # map lies within 4 px of it (the farthest corner is sqrt(8) away): no free pixel, so the
    # second keeps its own maximum. Image 1 (higher maps): both peak at the corner (0, 0); the
    # opposite corner is free. Whether a pixel is free, and which pixel is highest, is per image.
    codec = GaussianHeatmapCodec((5, 5), sigma=1.0)
    image0 = np.stack([_one_hot_pixels((5, 5), (2, 2, 0.8)), _one_hot_pixels((5, 5), (2, 2, 0.7))], axis=-1)
    image1 = np.stack([_one_hot_pixels((5, 5), (0, 0, 1.0)),
                       _one_hot_pixels((5, 5), (0, 0, 0.9), (4, 4, 0.4))], axis=-1)
    xy, scores = codec.decode(np.stack([image0, image1]), groups=[(0, 1)], min_distance=4.0)
    np.testing.assert_allclose(xy * 5, [[[2.5, 2.5], [2.5, 2.5]], [[0.5, 0.5], [4.5, 4.5]]], atol=1e-6)
    np.testing.assert_allclose(scores, [[0.8, 0.7], [1.0, 0.4]])


# --- evaluation: matched vs raw ---


def test_matching_relabels_within_groups_only_and_evaluation_reports_both():
    from baselines.pipeline import evaluate

    truth = np.array([[[32, 20], [16, 60], [48, 60], [20, 110], [44, 110]]], np.float32) / 128
    pred = truth[:, [0, 2, 1, 4, 3]].copy()  # hands and feet swapped
    pred[0, 0, 0] += 2 / 128  # head 2 px off
    visible = np.ones((1, 5), bool)
    order = match_groups(pred * 128, truth * 128, visible, [(1, 2)])
    assert order.tolist() == [[0, 2, 1, 3, 4]]  # the feet are not a declared group: left as they are
    np.testing.assert_allclose(relabel(pred, order)[0, 1:3], truth[0, 1:3])
    y = {"xy_norm": truth, "labelled": visible, "visible": visible, "keypoint_names": list(NAMES)}
    summary = evaluate(pred, y, 128, groups=[(1, 2)])
    # Raw: hands 32 px off, feet 24 px off, head 2 px: mean (2 + 32 + 32 + 24 + 24) / 5.
    assert summary["mean_error_px"] == pytest.approx((2 + 32 + 32 + 24 + 24) / 5, abs=1e-3)
    assert summary["matched"]["mean_error_px"] == pytest.approx((2 + 24 + 24) / 5, abs=1e-3)
    assert summary["matched"]["groups"] == [["hand_left", "hand_right"]]
    assert summary["matched"]["relabelled_images"] == 1.0
    # PCK@0.05 of the box diagonal (sqrt(32^2 + 90^2) * 0.05 = 4.8 px): head only raw, head + hands matched.
    assert summary["pck"]["0.05"] == pytest.approx(1 / 5) and summary["matched"]["pck"]["0.05"] == pytest.approx(3 / 5)
    assert "matched" not in evaluate(pred, y, 128)


def test_group_loss_refuses_overlapping_or_single_groups():
    for groups in ([(0, 1), (1, 2)], [(0,)], [(0, -1)]):
        with pytest.raises(ValueError, match="disjoint groups of >= 2"):
            InterchangeableLoss(MaskedL1(), groups)
