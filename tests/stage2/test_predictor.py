"""`KeypointPredictor`: the run's preprocessing in, original pixels and the pose out.

A stand-in model returns the true keypoints of a known pose, so every number the
predictor adds (frame mapping, visibility, PnP) is checked against exact values. The
end-to-end test (`test_scripts_e2e.py`) checks it against `use_vis.py` on a real model.
"""

import numpy as np
import pytest

from common.camera import body_to_camera, project_points
from common.errors import DataError
from common.geometry import letterbox_crop_transform, to_input
from stage2_visible_keypoints.config import Stage2Config
from stage2_visible_keypoints.data import ObjectModel
from stage2_visible_keypoints.predictor import KeypointPredictor
from tests.stage2.test_pose_step import CAMERA, FACES, NAMES, POINTS, Q, R

CFG = Stage2Config()  # 1920x1080 canvas, 1000x1000 crop, 128x128 input
XY_ORIGINAL = project_points(body_to_camera(POINTS, Q, R), CAMERA)
TRANSFORM = letterbox_crop_transform((1920, 1200), CFG.data.canvas_size, CFG.data.crop_size, CFG.data.input_size)[0]


class TrueKeypoints:
    """Stands in for a trained model: the true keypoints of (Q, R), whatever the image."""

    def __init__(self, confidence):
        self.confidence, self.batches = np.asarray(confidence, np.float32), []

    def predict_on_batch(self, batch):
        self.batches.append((batch.shape, batch.dtype))
        xy_norm = to_input(XY_ORIGINAL, TRANSFORM) / 128.0
        return {"keypoints": np.repeat(xy_norm[None].astype(np.float32), len(batch), axis=0),
                "confidence": np.repeat(self.confidence[None], len(batch), axis=0)}


def test_keypoints_in_original_pixels_and_the_pose_from_the_visible_ones():
    confidence = np.full(len(POINTS), 0.9)
    confidence[5] = 0.1  # below use.visibility_threshold (0.3): not visible, left out of the pose
    model = TrueKeypoints(confidence)
    predictor = KeypointPredictor(model, CFG, NAMES, ObjectModel(CAMERA, POINTS, FACES, NAMES))
    result = predictor.predict(np.zeros((1200, 1920, 3), np.uint8))
    assert model.batches == [((1, 128, 128, 3), np.uint8)]
    assert result.image_size == (1920, 1200) and result.keypoint_names == NAMES
    np.testing.assert_allclose(result.transform, TRANSFORM)
    # float32 normalised coordinates: 1e-7 of 128 px, over the 0.128 input px per original px.
    np.testing.assert_allclose(result.keypoints, XY_ORIGINAL, atol=2e-3)
    np.testing.assert_allclose(result.keypoints_input, to_input(XY_ORIGINAL, TRANSFORM), atol=2e-4)
    np.testing.assert_array_equal(result.visible, confidence >= 0.3)
    expected_inliers = np.ones(len(POINTS), bool)
    expected_inliers[5] = False
    np.testing.assert_array_equal(result.pose.inliers, expected_inliers)
    np.testing.assert_allclose(result.pose.q * np.sign(result.pose.q[0]), Q * np.sign(Q[0]), atol=1e-4)
    np.testing.assert_allclose(result.pose.r, R, atol=1e-3)


def test_a_list_is_predicted_in_batches_and_keeps_its_order():
    model = TrueKeypoints(np.ones(len(POINTS)))
    predictor = KeypointPredictor(model, CFG)  # no names, no object model: kp00.., no pose
    images = [np.full((1200, 1920, 3), v, np.uint8) for v in (0, 1)] + [np.zeros((600, 960, 3), np.uint8)]
    results = predictor.predict(images, batch_size=2)
    assert [shape[0] for shape, _ in model.batches] == [2, 1]
    assert [r.image_size for r in results] == [(1920, 1200), (1920, 1200), (960, 600)]
    assert results[0].keypoint_names[:2] == ("kp00", "kp01") and results[0].pose is None
    # Half the size: the same normalised output lands on half the original coordinates.
    np.testing.assert_allclose(results[2].keypoints, results[0].keypoints / 2, atol=1e-3)


def test_bad_images_and_a_camera_of_another_size_are_one_line_errors(tmp_path):
    predictor = KeypointPredictor(TrueKeypoints(np.ones(len(POINTS))), CFG, NAMES,
                                  ObjectModel(CAMERA, POINTS, FACES, NAMES), camera_name="camera.json")
    with pytest.raises(DataError, match=r"image 1: image is 960x600 but the camera \(camera.json\) is 1920x1200"):
        predictor.predict([np.zeros((1200, 1920, 3), np.uint8), np.zeros((600, 960, 3), np.uint8)])
    with pytest.raises(DataError, match=r"image 0: expected an \(H, W, 3\) uint8 image, got float32 \(8, 8, 3\)"):
        predictor.predict(np.zeros((8, 8, 3), np.float32))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        predictor.predict(tmp_path / "broken.jpg")


def test_from_run_needs_the_config_beside_the_model(tmp_path):
    (tmp_path / "best.keras").write_bytes(b"")
    with pytest.raises(DataError, match="config.json not found beside the model"):
        KeypointPredictor.from_run(tmp_path)
