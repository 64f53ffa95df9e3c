"""Numpy evaluation of keypoint predictions: errors, PCK, visibility precision/recall.

Shape legend: N images, K keypoints, T thresholds. Keypoint arrays are `(N, K, 2)`
with the last axis (x, y) in one pixel frame (the caller's: `xy_input`,
`xy_original`, ...); errors come out in that frame's pixels. Only keypoints marked
visible count; invisible ones may hold anything, NaN included.

PCK at threshold t is the fraction of visible keypoints whose Euclidean error is
<= t (inclusive, so an error of exactly 5 px counts at t = 5).

The summaries are JSON-ready: plain Python floats and ints, and `None` (JSON null)
where a value is undefined (no visible keypoints), never NaN.
"""

import numpy as np


def keypoint_errors(xy_pred, xy_true, visible):
    """Euclidean errors of the visible keypoints.

    Args:
        xy_pred: `(N, K, 2)` predicted (x, y).
        xy_true: `(N, K, 2)` true (x, y), same frame.
        visible: `(N, K)` bool (nonzero = visible).

    Returns:
        `(M,)` float64 errors, M = number of visible keypoints, in row-major
        (image, keypoint) order.
    """
    delta, visible = _deltas(xy_pred, xy_true, visible)
    return np.hypot(delta[..., 0], delta[..., 1])[visible]


def keypoint_error_summary(xy_pred, xy_true, visible, thresholds=(2, 5, 10), keypoint_names=None, unit="px"):
    """Error statistics over the visible keypoints, overall and per keypoint.

    Args:
        xy_pred: `(N, K, 2)` predicted (x, y).
        xy_true: `(N, K, 2)` true (x, y), same frame.
        visible: `(N, K)` bool (nonzero = visible).
        thresholds: PCK thresholds in `unit`.
        keypoint_names: K names, or None for "kp0", "kp1", ...
        unit: label of the error unit, stored in the result (e.g. "px (input frame)").

    Returns:
        A JSON-ready dict: `count` (visible keypoints), `images` (N), `mae` and
        `rmse` {dx, dy} (per-axis, absolute), `euclidean` {mean, median, p95, max},
        `pck` {f"{t:g}": fraction in [0, 1]}, `per_keypoint` (list of {index, name,
        count, euclidean_mean, pck}) and `unit`. Undefined values are None.
    """
    delta, visible = _deltas(xy_pred, xy_true, visible)
    thresholds = _check_thresholds(thresholds)
    n_images, num_keypoints = visible.shape
    if keypoint_names is None:
        keypoint_names = [f"kp{k}" for k in range(num_keypoints)]
    keypoint_names = [str(name) for name in keypoint_names]
    if len(keypoint_names) != num_keypoints:
        raise ValueError(
            f"keypoint_names has {len(keypoint_names)} names for {num_keypoints} keypoints. "
            f"Received: keypoint_names={keypoint_names}"
        )

    d = delta[visible]  # (M, 2)
    errors = np.hypot(d[:, 0], d[:, 1])
    count = int(errors.size)

    def stat(fn, values):
        return float(fn(values)) if values.size else None

    per_keypoint = []
    for k, name in enumerate(keypoint_names):
        d_k = delta[:, k][visible[:, k]]
        e_k = np.hypot(d_k[:, 0], d_k[:, 1])
        per_keypoint.append(
            {
                "index": k,
                "name": name,
                "count": int(e_k.size),
                "euclidean_mean": stat(np.mean, e_k),
                "pck": _pck_dict(e_k, thresholds),
            }
        )

    return {
        "count": count,
        "images": int(n_images),
        "unit": unit,
        "mae": {"dx": stat(np.mean, np.abs(d[:, 0])), "dy": stat(np.mean, np.abs(d[:, 1]))},
        "rmse": {
            "dx": stat(lambda v: np.sqrt(np.mean(v**2)), d[:, 0]),
            "dy": stat(lambda v: np.sqrt(np.mean(v**2)), d[:, 1]),
        },
        "euclidean": {
            "mean": stat(np.mean, errors),
            "median": stat(np.median, errors),
            "p95": stat(lambda v: np.percentile(v, 95), errors),
            "max": stat(np.max, errors),
        },
        "pck": _pck_dict(errors, thresholds),
        "per_keypoint": per_keypoint,
    }


def pck_curve(xy_pred, xy_true, visible, thresholds):
    """Fraction of visible keypoints with error <= each threshold.

    Args:
        xy_pred, xy_true: `(N, K, 2)` (x, y) in one frame.
        visible: `(N, K)` bool.
        thresholds: `(T,)` thresholds in that frame's pixels.

    Returns:
        `(T,)` float64 fractions in [0, 1]; all NaN when no keypoint is visible.
    """
    errors = keypoint_errors(xy_pred, xy_true, visible)
    thresholds = _check_thresholds(thresholds)
    if errors.size == 0:
        return np.full(thresholds.shape, np.nan)
    return (errors[None, :] <= thresholds[:, None]).mean(axis=1)


def visibility_precision_recall(scores, visible, threshold):
    """Precision and recall of "visible" predicted as `scores >= threshold`.

    Args:
        scores: any shape, e.g. `(N, K)` peak values or visibility probabilities.
            NaN scores count as predicted invisible.
        visible: same shape, bool ground truth (nonzero = visible).
        threshold: score at or above which a keypoint is predicted visible.

    Returns:
        A JSON-ready dict {threshold, precision, recall, f1, true_positive,
        false_positive, false_negative, true_negative}. A ratio whose denominator
        is zero is None (JSON null), not 0.0, so "predicted nothing" is not read
        as "all wrong"; f1 is None when precision or recall is None.
    """
    scores = np.asarray(scores, dtype=np.float64)
    visible = np.asarray(visible)
    if scores.shape != visible.shape:
        raise ValueError(
            f"scores and visible must have the same shape. "
            f"Received: scores.shape={scores.shape}, visible.shape={visible.shape}"
        )
    visible = visible.astype(bool)
    predicted = scores >= threshold  # NaN >= t is False, without a warning
    tp = int(np.sum(predicted & visible))
    fp = int(np.sum(predicted & ~visible))
    fn = int(np.sum(~predicted & visible))
    tn = int(np.sum(~predicted & ~visible))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_positive": tp,
        "false_positive": fp,
        "false_negative": fn,
        "true_negative": tn,
    }


def _deltas(xy_pred, xy_true, visible):
    """Check shapes; return `(N, K, 2)` pred - true (0 where invisible) and `(N, K)` bool."""
    xy_pred = np.asarray(xy_pred, dtype=np.float64)
    xy_true = np.asarray(xy_true, dtype=np.float64)
    visible = np.asarray(visible)
    if xy_pred.ndim != 3 or xy_pred.shape[-1] != 2:
        raise ValueError(f"xy_pred must have shape (N, K, 2). Received: xy_pred.shape={xy_pred.shape}")
    if xy_true.shape != xy_pred.shape:
        raise ValueError(
            f"xy_true must have the shape of xy_pred (N, K, 2). "
            f"Received: xy_true.shape={xy_true.shape}, xy_pred.shape={xy_pred.shape}"
        )
    if visible.shape != xy_pred.shape[:2]:
        raise ValueError(
            f"visible must have shape (N, K) = {xy_pred.shape[:2]}. "
            f"Received: visible.shape={visible.shape}, xy_pred.shape={xy_pred.shape}"
        )
    visible = visible.astype(bool)
    # Invisible entries may be NaN; zero them before any arithmetic so no warning fires.
    mask = visible[..., None]
    with np.errstate(invalid="ignore"):  # inf - inf on a visible keypoint is reported below
        delta = np.where(mask, xy_pred, 0.0) - np.where(mask, xy_true, 0.0)
    bad = visible & ~np.isfinite(delta).all(axis=-1)
    if bad.any():
        n, k = np.argwhere(bad)[0]
        raise ValueError(
            f"{int(bad.sum())} visible keypoints have non-finite coordinates; "
            f"first at image {n}, keypoint {k}: xy_pred={xy_pred[n, k]}, xy_true={xy_true[n, k]}"
        )
    return delta, visible


def _check_thresholds(thresholds):
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if thresholds.ndim != 1 or thresholds.size == 0 or not np.all(np.isfinite(thresholds)) or np.any(thresholds < 0):
        raise ValueError(f"thresholds must be a non-empty 1-D list of finite values >= 0. Received: thresholds={thresholds}")
    keys = [f"{t:g}" for t in thresholds]
    if len(set(keys)) != len(keys):
        raise ValueError(f"thresholds must be distinct. Received: thresholds={thresholds}")
    return thresholds


def _pck_dict(errors, thresholds):
    """{f"{t:g}": fraction of `errors` <= t}, values None when `errors` is empty."""
    return {f"{t:g}": (float(np.mean(errors <= t)) if errors.size else None) for t in thresholds}


# --- Landmark accuracy (issue 4): MRE / SDR given a pixel spacing, PCK of the bbox diagonal ---


def bbox_diagonals(xy_true, visible):
    """`(N,)` diagonal of each image's bounding box of its visible true keypoints (NaN if none)."""
    xy_true = np.asarray(xy_true, dtype=np.float64)
    visible = np.asarray(visible).astype(bool)
    low = np.where(visible[..., None], xy_true, np.inf).min(axis=1)
    high = np.where(visible[..., None], xy_true, -np.inf).max(axis=1)
    with np.errstate(invalid="ignore"):
        diagonal = np.hypot(*(high - low).T)
    return np.where(visible.any(axis=1), diagonal, np.nan)


def pck_bbox(xy_pred, xy_true, visible, fractions=(0.05, 0.1, 0.15, 0.2)):
    """PCK with per-image thresholds `fraction * bbox diagonal` of the true keypoints.

    A visible keypoint counts as correct when its error is <= fraction * the diagonal
    of the box around its image's visible true keypoints (inclusive). Images whose
    box is degenerate (one visible keypoint: diagonal 0) only count exact hits.

    Returns:
        `{f"{fraction:g}": share in [0, 1]}` (None when no keypoint is visible).
    """
    delta, visible = _deltas(xy_pred, xy_true, visible)
    fractions = _check_thresholds(fractions)
    errors = np.hypot(delta[..., 0], delta[..., 1])  # (N, K)
    diagonal = bbox_diagonals(xy_true, visible)  # (N,)
    e, d = errors[visible], np.broadcast_to(diagonal[:, None], errors.shape)[visible]
    return {f"{f:g}": (float(np.mean(e <= f * d)) if e.size else None) for f in fractions}


def mre_sdr(xy_pred, xy_true, visible, spacing_mm, radii_mm=(2.0, 2.5, 3.0, 4.0)):
    """Mean radial error and successful detection rates in millimetres.

    Args:
        xy_pred, xy_true: `(N, K, 2)` in one pixel frame.
        visible: `(N, K)` bool.
        spacing_mm: pixel spacing in mm/px of that frame (ISBI 2015: 0.1), a scalar
            or `(N,)` per image.
        radii_mm: SDR radii; a landmark within `r` mm (inclusive) is detected.

    Returns:
        JSON-ready `{"spacing_mm", "mre_mm", "sd_mm" (standard deviation of the radial
        errors), "sdr": {f"{r:g}": share}, "count"}`; None values when nothing is visible.
    """
    delta, visible = _deltas(xy_pred, xy_true, visible)
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), visible.shape[:1])
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"spacing_mm must be positive. Received: spacing_mm={spacing_mm}")
    radii = _check_thresholds(radii_mm)
    errors_mm = (np.hypot(delta[..., 0], delta[..., 1]) * spacing[:, None])[visible]
    empty = errors_mm.size == 0
    return {
        "spacing_mm": float(spacing[0]) if np.all(spacing == spacing[0]) else spacing.tolist(),
        "count": int(errors_mm.size),
        "mre_mm": None if empty else float(errors_mm.mean()),
        "sd_mm": None if empty else float(errors_mm.std()),
        "sdr": _pck_dict(errors_mm, radii),
    }
