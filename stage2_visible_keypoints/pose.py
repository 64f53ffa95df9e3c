"""Object pose from predicted keypoints (PnP), and pose errors in the SPEED convention.

The keypoints are the vertices of a known 3-D model, so a set of predicted 2-D
keypoints with their model points gives the object's pose by Perspective-n-Point:
OpenCV's SQPnP inside RANSAC (so a keypoint put on the wrong vertex does not drag the
pose), then a Levenberg-Marquardt refinement on the inliers. Poses follow
`stage2_visible_keypoints.camera`: p_cam = quat2dcm(q).T @ p_body + r.

Errors are the SPEED challenge's: the rotation angle between two quaternions,
e_q = 2 arccos(|<q_pred, q_true>|); the translation error ||r_pred - r_true|| in metres
and relative to the distance, e_t = ||r_pred - r_true|| / ||r_true||; and the SPEED score
e_q (radians) + e_t, whose mean over a set ranks the challenge's entries.
"""

import dataclasses

import numpy as np

from stage2_visible_keypoints.camera import dcm2quat


@dataclasses.dataclass
class PnPResult:
    """q: (4,) quaternion (q0 >= 0); r: (3,) metres, camera frame; inliers: (K,) bool over
    all K keypoints (False where not used or rejected by RANSAC); reprojection_px: RMS
    distance between the inliers and the model points projected with the pose.
    assignment: (K,) gather indices from `solve_pnp_groups`: model point k was matched
    with image point `xy[assignment[k]]` (None from `solve_pnp`: the identity)."""

    q: np.ndarray
    r: np.ndarray
    inliers: np.ndarray
    reprojection_px: float
    assignment: np.ndarray = None


def solve_pnp(points_body, xy, camera, mask=None, ransac_px=None, min_points=4):
    """The pose that projects `points_body` onto `xy`, or None when it cannot be found.

    Args:
        points_body: `(K, 3)` model points, body frame (metres).
        xy: `(K, 2)` image points in the camera's pixels (`xy_original`).
        camera: `stage2_visible_keypoints.camera.Camera` (its distortion is used).
        mask: `(K,)` bool, the points to use (e.g. predicted visible); None = all.
        ransac_px: RANSAC inlier threshold in pixels; None = use every masked point
            (no RANSAC). RANSAC needs 6 points; with fewer, all masked points are used.
        min_points: fewest points to try (at least 4: fewer leave the pose ambiguous).

    Returns:
        `PnPResult`, or None when fewer than `min_points` finite masked points (or
        inliers) are left, when OpenCV cannot solve the point set (e.g. image points
        bunched within a few pixels, as an untrained model predicts them), or when the
        solution puts a model point behind the camera.
    """
    import cv2  # OpenCV is only needed here

    points_body = np.asarray(points_body, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64)
    num_keypoints = len(points_body)
    if points_body.shape != (num_keypoints, 3) or xy.shape != (num_keypoints, 2):
        raise ValueError(f"points_body must be (K, 3) and xy (K, 2). Received: points_body.shape="
                         f"{points_body.shape}, xy.shape={xy.shape}")
    if min_points < 4:
        raise ValueError(f"min_points must be at least 4. Received: min_points={min_points}")
    use = np.isfinite(xy).all(axis=1) if mask is None else np.asarray(mask, bool) & np.isfinite(xy).all(axis=1)
    index = np.flatnonzero(use)
    if len(index) < min_points:
        return None
    try:
        return _solve(points_body, xy, index, camera, ransac_px, min_points)
    except cv2.error:  # a degenerate point set (SQPnP asserts on the spread of the points)
        return None


def solve_pnp_groups(points_body, xy, camera, mask=None, ransac_px=None, min_points=4, groups=()):
    """`solve_pnp` under every allowed assignment of interchangeable keypoints, keeping the best.

    groups: tuples of keypoint indices whose labels are arbitrary (`data.interchangeable`,
    e.g. the vertices a mesh symmetry maps onto each other: `mesh.symmetry_groups`). Each
    assignment (the product of the groups' permutations, `common.interchangeable`)
    relabels the image points (and the mask) before PnP. The best has the most inliers,
    then the smallest reprojection RMS: with RANSAC a wrong assignment can shed the
    points it misplaces as outliers and fit the rest well, so the RMS alone would favour
    it. Returns that `PnPResult` with its `assignment` (None when no assignment solves).
    """
    from common.interchangeable import group_permutations

    xy = np.asarray(xy, dtype=np.float64)
    mask = np.ones(len(xy), bool) if mask is None else np.asarray(mask, bool)
    best = None
    for perm in group_permutations(groups, len(xy)):
        result = solve_pnp(points_body, xy[perm], camera, mask[perm], ransac_px, min_points)
        if result is not None and (best is None or (-result.inliers.sum(), result.reprojection_px)
                                   < (-best.inliers.sum(), best.reprojection_px)):
            best = dataclasses.replace(result, assignment=perm.copy())
    return best


def _solve(points_body, xy, index, camera, ransac_px, min_points):
    import cv2

    matrix, dist = camera.matrix, np.asarray(camera.dist_coeffs, dtype=np.float64)
    method = getattr(cv2, "SOLVEPNP_SQPNP", cv2.SOLVEPNP_EPNP)  # SQPnP: OpenCV >= 4.5.3
    obj, img = points_body[index], xy[index]
    if ransac_px is not None and len(index) >= 6:
        ok, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, matrix, dist, iterationsCount=200,
                                                 reprojectionError=float(ransac_px), confidence=0.999,
                                                 flags=method)
        if not ok or inl is None or len(inl) < min_points:
            return None
        index = index[np.sort(inl.ravel())]
        obj, img = points_body[index], xy[index]
    else:
        ok, rvec, tvec = cv2.solvePnP(obj, img, matrix, dist, flags=method)
        if not ok:
            return None
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, matrix, dist, rvec, tvec)
    rotation = cv2.Rodrigues(rvec)[0]  # body -> camera, = quat2dcm(q).T
    r = tvec.ravel()
    if np.any(obj @ rotation.T[:, 2] + r[2] <= 0):
        return None
    projected = cv2.projectPoints(obj, rvec, tvec, matrix, dist)[0].reshape(-1, 2)
    inliers = np.zeros(len(points_body), bool)
    inliers[index] = True
    rms = float(np.sqrt(np.mean(np.sum((projected - img) ** 2, axis=1))))
    return PnPResult(q=dcm2quat(rotation.T), r=r, inliers=inliers, reprojection_px=rms)


def pose_errors(q_pred, r_pred, q_true, r_true):
    """Per-pose errors; inputs `(..., 4)` and `(..., 3)` broadcast together.

    Returns a dict of arrays `(...)`: rotation_deg, translation_m, translation_rel
    (error over the true distance) and speed_score (rotation in radians +
    translation_rel). Quaternions need not be unit; q and -q are the same rotation.
    """
    q_pred, q_true = (np.asarray(q, dtype=np.float64) for q in (q_pred, q_true))
    r_pred, r_true = (np.asarray(r, dtype=np.float64) for r in (r_pred, r_true))
    if q_pred.shape[-1:] != (4,) or q_true.shape[-1:] != (4,) or r_pred.shape[-1:] != (3,) \
            or r_true.shape[-1:] != (3,):
        raise ValueError(f"quaternions must end in 4 and translations in 3. Received: q_pred {q_pred.shape}, "
                         f"q_true {q_true.shape}, r_pred {r_pred.shape}, r_true {r_true.shape}")
    dot = np.abs(np.sum(q_pred * q_true, axis=-1))
    dot /= np.linalg.norm(q_pred, axis=-1) * np.linalg.norm(q_true, axis=-1)
    rotation = 2 * np.arccos(np.clip(dot, 0.0, 1.0))
    translation = np.linalg.norm(r_pred - r_true, axis=-1)
    relative = translation / np.linalg.norm(r_true, axis=-1)
    return {"rotation_deg": np.degrees(rotation), "translation_m": translation, "translation_rel": relative,
            "speed_score": rotation + relative}


def pose_error_summary(q_pred, r_pred, q_true, r_true):
    """Statistics of `pose_errors` over the images whose pose was found.

    q_pred `(N, 4)` and r_pred `(N, 3)` hold NaN rows for images without a pose; they
    count in `images`, not in the statistics. Returns a JSON-ready dict: images, solved,
    solved_fraction, and {mean, median, p95} of rotation_deg, translation_m,
    translation_rel and speed_score (None when no pose was found).
    """
    q_pred = np.asarray(q_pred, dtype=np.float64)
    solved = np.isfinite(q_pred).all(axis=-1) & np.isfinite(np.asarray(r_pred, dtype=np.float64)).all(axis=-1)
    errors = pose_errors(q_pred[solved], np.asarray(r_pred)[solved], np.asarray(q_true)[solved],
                         np.asarray(r_true)[solved])
    summary = {"images": int(len(solved)), "solved": int(solved.sum()),
               "solved_fraction": float(solved.mean()) if len(solved) else None}
    for name, values in errors.items():
        summary[name] = {key: (float(fn(values)) if values.size else None) for key, fn in
                         (("mean", np.mean), ("median", np.median), ("p95", lambda v: np.percentile(v, 95)))}
    summary["units"] = {"rotation_deg": "degrees", "translation_m": "metres", "translation_rel": "error / distance",
                        "speed_score": "rotation (rad) + translation_rel, the SPEED challenge score"}
    return summary
