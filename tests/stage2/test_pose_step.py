"""The stage-2 pose step without a model: RANSAC thresholds in input pixels, the 3-D
model from files or the cache, and refusing images of another size than the camera."""

import numpy as np
import pytest

from common.errors import DataError
from stage2_visible_keypoints.camera import Camera, body_to_camera, project_points, save_camera_json
from stage2_visible_keypoints.config import UseConfig
from stage2_visible_keypoints.data import ObjectModel
from stage2_visible_keypoints.data import check_camera_size
from stage2_visible_keypoints.mesh import Mesh, save_obj
from stage2_visible_keypoints.pipeline import estimate_poses, load_object_model, pose_wireframe

CAMERA = Camera(fx=3003.4, fy=3003.4, cx=960.0, cy=600.0, width=1920, height=1200)
POINTS = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.4, 0.4) for z in (-0.3, 0.3)]
                  + [[0.9, 0.1, 0.2], [-0.7, 0.3, 0.0], [0.2, -0.6, 0.5], [0.0, 0.0, 0.9]])
NAMES = tuple(f"v{k}" for k in range(len(POINTS)))
FACES = np.array([[0, 1, 3], [0, 3, 2], [8, 9, 10]])
Q, R = np.array([0.8, 0.1, -0.5, 0.3]) / np.linalg.norm([0.8, 0.1, -0.5, 0.3]), np.array([0.2, -0.1, 10.0])


def test_ransac_threshold_is_in_input_pixels():
    # Scale 0.1 input px per original px: 3 input px = 30 original px. A keypoint 20
    # original px off (2 input px) stays an inlier; one 60 px off (6 input px) does not.
    xy = project_points(body_to_camera(POINTS, Q, R), CAMERA)[None].copy()
    xy[0, 4] += [20.0, 0.0]
    xy[0, 7] += [0.0, 60.0]
    model = ObjectModel(CAMERA, POINTS, FACES, NAMES)
    mask = np.ones((1, len(POINTS)), bool)
    poses = estimate_poses(xy, mask, np.array([[0.1, 0.1, 0.0, 0.0]]), model, 3.0)
    expected = np.ones(len(POINTS), bool)
    expected[7] = False
    np.testing.assert_array_equal(poses["inliers"][0], expected)
    no_ransac = estimate_poses(xy, mask, np.array([[0.1, 0.1, 0.0, 0.0]]), model, None)
    assert no_ransac["inliers"][0].all()
    # Too few keypoints: a NaN row, and no wireframe for it.
    few = estimate_poses(xy, mask & (np.arange(len(POINTS)) < 3), np.array([[0.1, 0.1, 0.0, 0.0]]), model, 3.0)
    assert np.isnan(few["q"][0]).all() and not few["inliers"].any()
    assert pose_wireframe(model, few, 0) is None
    wire = pose_wireframe(model, poses, 0)
    assert wire.shape == (7, 2, 2)  # the quad's 4 edges (not its diagonal) and the triangle's 3
    np.testing.assert_allclose(pose_wireframe(model, poses, 0, transform=np.array([0.1, 0.1, 2.0, 0.0])),
                               0.1 * wire + [2.0, 0.0])  # the same edges in the input frame


def test_object_model_from_files_follows_the_cache_keypoint_order(tmp_path):
    save_camera_json(tmp_path / "camera.json", CAMERA)
    save_obj(tmp_path / "mesh.obj", Mesh(POINTS, FACES, NAMES))
    uc = UseConfig(camera=str(tmp_path / "camera.json"), mesh=str(tmp_path / "mesh.obj"))
    names = NAMES[3:] + NAMES[:3]
    model = load_object_model(uc, {"keypoint_names": np.array(names)}, len(POINTS))
    np.testing.assert_array_equal(model.keypoints_3d, np.roll(POINTS, -3, axis=0))
    np.testing.assert_array_equal(model.keypoints_3d[model.faces], POINTS[FACES])
    assert load_object_model(uc, None, len(POINTS)).names == NAMES  # no names at all: mesh order
    run_order = load_object_model(uc, None, len(POINTS), keypoint_names=names)  # a run's keypoint_names.json
    np.testing.assert_array_equal(run_order.keypoints_3d, np.roll(POINTS, -3, axis=0))
    assert run_order.names == names
    with pytest.raises(DataError, match="mesh vertex names are not the keypoint names"):
        load_object_model(uc, {"keypoint_names": np.array(("x",) + NAMES[1:])}, len(POINTS))
    with pytest.raises(DataError, match="mesh has 12 vertices but the model predicts 11"):
        load_object_model(uc, None, 11)
    assert load_object_model(UseConfig(), {"keypoint_names": np.array(NAMES)}, len(POINTS)) is None


def test_images_of_another_size_than_the_camera_are_refused():
    check_camera_size(CAMERA, np.array([[1920, 1200], [1920, 1200]]), ["a.jpg", "b.jpg"], "camera.json")
    with pytest.raises(DataError, match=r"b.jpg: image is 960x600 but the camera \(camera.json\) is 1920x1200"):
        check_camera_size(CAMERA, np.array([[1920, 1200], [960, 600]]), ["a.jpg", "b.jpg"], "camera.json")
