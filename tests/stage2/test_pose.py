"""PnP from keypoints and the SPEED pose errors: exact round trips, RANSAC against wrong
keypoints, hand-computed errors; the camera array form; the mesh's feature edges."""

import math

import numpy as np
import pytest

from stage2_visible_keypoints.camera import Camera, body_to_camera, project_points, speed_camera
from stage2_visible_keypoints.mesh import feature_edges
from stage2_visible_keypoints.pose import pose_error_summary, pose_errors, solve_pnp

# 12 model points (metres): the corners of a 1.0 x 0.8 x 0.6 box and four points off it.
POINTS = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.4, 0.4) for z in (-0.3, 0.3)]
                  + [[0.9, 0.1, 0.2], [-0.7, 0.3, 0.0], [0.2, -0.6, 0.5], [0.0, 0.0, 0.9]])
Q = np.array([0.7, 0.2, -0.5, 0.3]) / np.linalg.norm([0.7, 0.2, -0.5, 0.3])
R = np.array([0.3, -0.2, 9.0])


def project(camera, q=Q, r=R):
    return project_points(body_to_camera(POINTS, q, r), camera)


@pytest.mark.parametrize("camera", [speed_camera(), Camera(800.0, 820.0, 310.5, 240.25, 640, 480,
                                                          (-0.1, 0.02, 0.001, -0.002, 0.0))],
                         ids=["speed", "distorted"])
def test_exact_keypoints_give_the_exact_pose(camera):
    result = solve_pnp(POINTS, project(camera), camera)
    errors = pose_errors(result.q, result.r, Q, R)
    assert errors["rotation_deg"] < 1e-6 and errors["translation_m"] < 1e-6
    assert result.inliers.all() and result.reprojection_px < 1e-6
    assert result.q[0] >= 0


def test_ransac_rejects_keypoints_put_on_the_wrong_vertex():
    camera = speed_camera()
    xy = project(camera)
    xy[[3, 11]] = xy[[11, 3]]  # two keypoints swapped, as a model that confuses them
    xy[9] += 300.0
    plain = solve_pnp(POINTS, xy, camera)
    assert pose_errors(plain.q, plain.r, Q, R)["rotation_deg"] > 1.0  # least squares is dragged
    robust = solve_pnp(POINTS, xy, camera, ransac_px=4.0)
    assert robust.inliers.sum() == len(xy) - 3 and not robust.inliers[[3, 11, 9]].any()
    errors = pose_errors(robust.q, robust.r, Q, R)
    assert errors["rotation_deg"] < 1e-6 and errors["translation_m"] < 1e-6


def test_mask_and_too_few_points():
    camera = speed_camera()
    xy = project(camera)
    garbage = xy.copy()
    garbage[6:] = np.nan  # only the first 6 are usable, and masked ones are never read
    mask = np.zeros(len(xy), bool)
    mask[:6] = True
    result = solve_pnp(POINTS, garbage, camera, mask=mask, ransac_px=2.0)
    assert pose_errors(result.q, result.r, Q, R)["rotation_deg"] < 1e-6
    np.testing.assert_array_equal(result.inliers, mask)
    mask[3:] = False
    assert solve_pnp(POINTS, xy, camera, mask=mask) is None  # 3 points: ambiguous
    with pytest.raises(ValueError, match="min_points"):
        solve_pnp(POINTS, xy, camera, min_points=3)
    with pytest.raises(ValueError, match=r"xy \(K, 2\)"):
        solve_pnp(POINTS, xy[:5], camera)


def test_points_opencv_cannot_solve_give_no_pose():
    # An untrained model puts every keypoint near the same place; SQPnP asserts on that.
    camera = speed_camera()
    bunched = np.array([960.0, 600.0]) + np.random.default_rng(0).normal(0, 0.5, (len(POINTS), 2))
    assert solve_pnp(POINTS, bunched, camera) is None
    assert solve_pnp(POINTS, bunched, camera, ransac_px=3.0) is None
    assert solve_pnp(POINTS, np.full((len(POINTS), 2), 700.0), camera, ransac_px=3.0) is None


def test_pose_errors_hand_computed():
    half = math.sqrt(0.5)
    errors = pose_errors([half, 0, 0, half], [0.0, 0.3, 10.4], [1.0, 0, 0, 0], [0.0, 0.0, 10.0])
    assert errors["rotation_deg"] == pytest.approx(90.0)  # 90 degrees about z
    assert errors["translation_m"] == pytest.approx(0.5)  # a 0.3-0.4-0.5 triangle
    assert errors["translation_rel"] == pytest.approx(0.05)
    assert errors["speed_score"] == pytest.approx(math.pi / 2 + 0.05)
    # q and -q are one rotation; scale does not matter.
    same = pose_errors([-2.0, 0, 0, 0], [1.0, 2.0, 3.0], [1.0, 0, 0, 0], [1.0, 2.0, 3.0])
    assert same["rotation_deg"] == pytest.approx(0.0, abs=1e-6) and same["speed_score"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="quaternions must end in 4"):
        pose_errors([1.0, 0, 0], [0, 0, 1.0], [1.0, 0, 0, 0], [0, 0, 1.0])


def test_pose_error_summary_skips_unsolved_images():
    half = math.sqrt(0.5)
    q_true = np.tile([1.0, 0, 0, 0], (3, 1))
    r_true = np.tile([0.0, 0.0, 10.0], (3, 1))
    q_pred = np.array([[1.0, 0, 0, 0], [half, 0, 0, half], [np.nan] * 4])
    r_pred = np.array([[0.0, 0.0, 10.0], [0.0, 0.3, 10.4], [np.nan] * 3])
    summary = pose_error_summary(q_pred, r_pred, q_true, r_true)
    assert (summary["images"], summary["solved"]) == (3, 2)
    assert summary["solved_fraction"] == pytest.approx(2 / 3)
    assert summary["rotation_deg"]["mean"] == pytest.approx(45.0)
    assert summary["translation_m"]["median"] == pytest.approx(0.25)
    assert summary["speed_score"]["mean"] == pytest.approx((math.pi / 2 + 0.05) / 2)
    none = pose_error_summary(np.full((2, 4), np.nan), np.full((2, 3), np.nan), q_true[:2], r_true[:2])
    assert none["solved"] == 0 and none["rotation_deg"]["mean"] is None


def test_camera_array_round_trip():
    camera = Camera(800.0, 820.0, 310.5, 240.25, 640, 480, (-0.1, 0.02, 0.001, -0.002, 0.003))
    values = camera.to_array()
    assert values.shape == (11,) and Camera.from_array(values) == camera
    with pytest.raises(ValueError, match="11 values"):
        Camera.from_array(values[:10])


def test_feature_edges_drop_the_diagonals_of_flat_polygons():
    cube = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    edges = feature_edges(cube, faces)
    assert len(edges) == 12  # 12 cube edges, none of the 6 face diagonals
    assert np.all(np.abs(cube[edges[:, 0]] - cube[edges[:, 1]]).sum(axis=1) == 1)
    np.testing.assert_array_equal(feature_edges(cube, faces[:1]), [[0, 1], [0, 3], [1, 3]])  # a lone triangle
