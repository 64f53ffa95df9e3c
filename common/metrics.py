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


def wrong_keypoint_summary(xy_pred, xy_true, visible, min_error=2.0, keypoint_names=None, top=5):
    """Visible keypoints predicted on another keypoint: the identity errors that a
    symmetric or ambiguous object causes, and how much of the error they make.

    A visible keypoint counts as *wrong* when its error exceeds `min_error` and its
    prediction lies nearer to the true position of another keypoint of the same image
    (visible or not: any with finite coordinates) than to its own. It separates identity
    errors from imprecision once a model has found the object; an untrained model's
    scattered predictions mostly lie nearer some other keypoint and count as wrong.

    Args:
        xy_pred, xy_true: `(N, K, 2)` (x, y) in one frame.
        visible: `(N, K)` bool.
        min_error: errors up to this (frame pixels) never count, so two keypoints that
            project a pixel apart do not turn a good prediction into a wrong one.
        keypoint_names: K names for `pairs`, or None for "kp0", "kp1", ...
        top: how many of the most frequent (keypoint, nearest other) pairs to list.

    Returns:
        A JSON-ready dict: `count` (visible keypoints), `wrong`, `fraction` (wrong /
        count), `error_share` (the wrong keypoints' part of the summed Euclidean error),
        `pairs` [{keypoint, nearest, count}], most frequent first, `names` (K),
        `visible_per_keypoint` (K) and `matrix` (K x K counts: row k, column j = visible
        keypoint k predicted on keypoint j). Undefined ratios are None.
    """
    delta, visible = _deltas(xy_pred, xy_true, visible)
    xy_pred, xy_true = np.asarray(xy_pred, dtype=np.float64), np.asarray(xy_true, dtype=np.float64)
    num_keypoints = visible.shape[1]
    names = [f"kp{k}" for k in range(num_keypoints)] if keypoint_names is None else [str(n) for n in keypoint_names]
    if len(names) != num_keypoints:
        raise ValueError(f"keypoint_names has {len(names)} names for {num_keypoints} keypoints. "
                         f"Received: keypoint_names={names}")
    own = np.hypot(delta[..., 0], delta[..., 1])  # (N, K), 0 where invisible
    with np.errstate(invalid="ignore"):
        # (N, K, K): prediction k to the truth of keypoint j; unusable truths and j = k at infinity.
        to_truth = np.linalg.norm(np.where(visible[..., None], xy_pred, 0.0)[:, :, None] - xy_true[:, None], axis=-1)
    to_truth[~np.isfinite(to_truth)] = np.inf
    to_truth[:, np.arange(num_keypoints), np.arange(num_keypoints)] = np.inf
    nearest = to_truth.argmin(axis=-1)  # (N, K)
    wrong = visible & (own > min_error) & (to_truth.min(axis=-1) < own)
    count, total_error = int(visible.sum()), float(own[visible].sum())
    pairs, counts = np.unique(np.stack([np.nonzero(wrong)[1], nearest[wrong]], axis=1), axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    return {
        "count": count,
        "wrong": int(wrong.sum()),
        "fraction": float(wrong.sum() / count) if count else None,
        "error_share": float(own[wrong].sum() / total_error) if total_error > 0 else None,
        "min_error": float(min_error),
        "pairs": [{"keypoint": names[pairs[i, 0]], "nearest": names[pairs[i, 1]], "count": int(counts[i])}
                  for i in order],
        "names": names,
        "visible_per_keypoint": visible.sum(axis=0).tolist(),
        "matrix": np.bincount(pairs[:, 0] * num_keypoints + pairs[:, 1], weights=counts,
                              minlength=num_keypoints ** 2).astype(int).reshape(num_keypoints, -1).tolist(),
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


# --- Many points per image: Hungarian matching with a distance gate ---


def match_points(xy_pred, xy_true, max_distance):
    """One-to-one matching of predicted to true points minimising the total distance.

    Hungarian assignment (`scipy.optimize.linear_sum_assignment`) on the Euclidean
    distances, where pairs farther apart than `max_distance` (inclusive gate) may not
    match: they cost more than any allowed pair, and are dropped from the result.

    Args:
        xy_pred: `(P, 2)` predicted (x, y); xy_true: `(G, 2)` true (x, y), same frame.
        max_distance: the gate, in that frame's pixels.

    Returns:
        pred_index `(Q,)`, true_index `(Q,)` int arrays of the matched pairs (Q <=
        min(P, G)), sorted by true_index, and their distances `(Q,)` float64.
    """
    from scipy.optimize import linear_sum_assignment

    xy_pred = np.asarray(xy_pred, np.float64).reshape(-1, 2)
    xy_true = np.asarray(xy_true, np.float64).reshape(-1, 2)
    if not (np.isfinite(xy_pred).all() and np.isfinite(xy_true).all()):
        raise ValueError("match_points needs finite coordinates")
    empty = np.zeros(0, np.int64)
    if len(xy_pred) == 0 or len(xy_true) == 0:
        return empty, empty, np.zeros(0)
    distance = np.hypot(*(xy_pred[:, None, :] - xy_true[None, :, :]).transpose(2, 0, 1))
    allowed = distance <= max_distance
    # A forbidden pair costs more than all allowed pairs together, so the assignment
    # first maximises the number of allowed matches, then minimises their distance.
    big = (distance[allowed].sum() if allowed.any() else 0.0) + 1.0
    rows, cols = linear_sum_assignment(np.where(allowed, distance, big))
    ok = allowed[rows, cols]
    rows, cols = rows[ok], cols[ok]
    order = np.argsort(cols)
    return rows[order].astype(np.int64), cols[order].astype(np.int64), distance[rows, cols][order]


def centre_detection_summary(pred, truth, class_names, match_distance=10.0, pck_thresholds=(5, 10, 20),
                             groups=None, unit="px"):
    """Evaluate detected centres against true centres, matched per image and class.

    Args:
        pred: dict of flat arrays over P detections: `image` (P,), `class` (P,),
            `xy` (P, 2).
        truth: dict of flat arrays over G objects: `image` (G,), `class` (G,), `xy` (G, 2);
            `images` (int) = the number of images (images without objects count too).
        class_names: C names; classes are indices into them.
        match_distance: gate (inclusive) for precision / recall / F1.
        pck_thresholds: PCK@t = share of true objects matched within t; the matching
            for PCK and for the errors uses a gate at the largest threshold.
        groups: {name: (G,) bool} subsets of the true objects (e.g. "small",
            "clustered"), reported by recall, PCK and errors.
        unit: label of the pixel frame, stored in the result.

    Returns:
        A JSON-ready dict: `counts`, `precision`/`recall`/`f1` and `true_positive`,
        `false_positive`, `false_negative` at `match_distance`; `mae` {dx, dy,
        euclidean} and `mse` (mean squared Euclidean error) of the PCK matches; `pck`
        {t: share}; `count_error` {mean_abs, mean_signed (pred - true), per image};
        `per_class` and `groups` breakdowns. Undefined values are None.
    """
    thresholds = _check_thresholds(pck_thresholds)
    pck_gate = float(thresholds.max())
    p_img, p_cls = np.asarray(pred["image"], np.int64), np.asarray(pred["class"], np.int64)
    p_xy = np.asarray(pred["xy"], np.float64).reshape(-1, 2)
    t_img, t_cls = np.asarray(truth["image"], np.int64), np.asarray(truth["class"], np.int64)
    t_xy = np.asarray(truth["xy"], np.float64).reshape(-1, 2)
    n_images = int(truth["images"])
    true_hit = np.zeros(len(t_xy), bool)          # matched at match_distance
    true_error = np.full(len(t_xy), np.inf)       # distance of the PCK match
    true_delta = np.full((len(t_xy), 2), np.nan)  # pred - true of the PCK match
    for image in range(n_images):
        for cls in range(len(class_names)):
            pi = np.flatnonzero((p_img == image) & (p_cls == cls))
            ti = np.flatnonzero((t_img == image) & (t_cls == cls))
            if len(pi) == 0 or len(ti) == 0:
                continue
            _, cols, _ = match_points(p_xy[pi], t_xy[ti], match_distance)
            true_hit[ti[cols]] = True
            rows, cols, dist = match_points(p_xy[pi], t_xy[ti], pck_gate)
            true_error[ti[cols]] = dist
            true_delta[ti[cols]] = p_xy[pi[rows]] - t_xy[ti[cols]]

    def block(p_mask, t_mask):
        tp, n_pred, n_true = int(true_hit[t_mask].sum()), int(p_mask.sum()), int(t_mask.sum())
        precision = tp / n_pred if n_pred else None
        recall = tp / n_true if n_true else None
        f1 = None if precision is None or recall is None else (
            2 * precision * recall / (precision + recall) if precision + recall else 0.0)
        matched = t_mask & np.isfinite(true_error)
        delta, err = true_delta[matched], true_error[matched]
        out = {"predicted": n_pred, "true": n_true, "true_positive": tp, "false_positive": n_pred - tp,
               "false_negative": n_true - tp, "precision": precision, "recall": recall, "f1": f1,
               "matched_for_errors": int(matched.sum()),
               "mae": {"dx": _mean(np.abs(delta[:, 0])), "dy": _mean(np.abs(delta[:, 1])), "euclidean": _mean(err)},
               "mse": _mean(err**2),
               "pck": {f"{t:g}": (float(np.mean(true_error[t_mask] <= t)) if n_true else None) for t in thresholds}}
        return out

    summary = {"unit": unit, "match_distance": float(match_distance), "pck_gate": pck_gate,
               "images": n_images, **block(np.ones(len(p_xy), bool), np.ones(len(t_xy), bool))}
    n_pred_img = np.bincount(p_img, minlength=n_images)[:n_images]
    n_true_img = np.bincount(t_img, minlength=n_images)[:n_images]
    diff = n_pred_img - n_true_img
    summary["count_error"] = {"mean_abs": _mean(np.abs(diff)), "mean_signed": _mean(diff),
                              "exact_share": _mean(diff == 0)}
    summary["per_class"] = {name: block(p_cls == c, t_cls == c) for c, name in enumerate(class_names)}
    summary["groups"] = {}
    for name, mask in (groups or {}).items():
        mask = np.asarray(mask, bool)
        if mask.shape != (len(t_xy),):
            raise ValueError(f"group {name!r} must be a (G,) mask. Received: shape={mask.shape}")
        entry = block(np.zeros(len(p_xy), bool), mask)
        # A group is a subset of true objects: precision has no meaning there.
        for key in ("predicted", "false_positive", "precision", "f1"):
            entry.pop(key)
        summary["groups"][name] = entry
    return summary


def _mean(values):
    values = np.asarray(values, np.float64)
    return float(values.mean()) if values.size else None


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


# --- Interchangeable keypoints (issue 25): match predictions to labels within groups ---


def match_groups(xy_pred, xy_true, visible, groups):
    """The relabelling of the predictions that best fits the labels within each group.

    Per image and group, every permutation of the group's predictions is tried and the
    one with the smallest sum of Euclidean errors over the group's visible labels is
    kept (a NaN prediction costs more than any finite one); keypoints outside the
    groups keep their labels. Figures computed on `xy_pred[n, order[n]]` are the
    "matched" figures, those on `xy_pred` the "raw" ones.

    Args:
        xy_pred, xy_true: `(N, K, 2)` in one pixel frame.
        visible: `(N, K)` bool (the labels' visibility).
        groups: tuples of keypoint indices (`common.interchangeable.resolve_groups`).

    Returns:
        `order`: `(N, K)` int gather indices; `np.take_along_axis(a, order[..., None], 1)`
        (or `a[np.arange(N)[:, None], order]`) relabels any per-keypoint array `a`.
    """
    import itertools

    xy_pred = np.asarray(xy_pred, dtype=np.float64)
    xy_true = np.asarray(xy_true, dtype=np.float64)
    visible = np.asarray(visible).astype(bool)
    n, k = visible.shape
    order = np.tile(np.arange(k), (n, 1))
    rows = np.arange(n)[:, None]
    for group in groups:
        group = np.asarray(group)
        perms = np.array(list(itertools.permutations(range(len(group)))))  # (P, g)
        pred = xy_pred[:, group[perms]]  # (N, P, g, 2)
        distance = np.hypot(*np.moveaxis(pred - xy_true[:, None, group], -1, 0))  # (N, P, g)
        distance = np.where(np.isfinite(distance), distance, 1e12)
        cost = np.where(visible[:, None, group], distance, 0.0).sum(axis=-1)  # (N, P)
        best = perms[np.argmin(cost, axis=1)]  # (N, g); argmin keeps the identity on ties
        order[rows, group[None, :]] = group[best]
    return order


def relabel(values, order):
    """`values` `(N, K, ...)` relabelled by `match_groups`' `order`."""
    values = np.asarray(values)
    return values[np.arange(len(order))[:, None], order]
