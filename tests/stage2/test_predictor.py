"""`KeypointPredictor`: the run's preprocessing in, original pixels and the pose out.

A stand-in model returns the true keypoints of a known pose, so every number the
predictor adds (frame mapping, visibility, PnP) is checked against exact values. The
end-to-end test (`test_scripts_e2e.py`) checks it against `use_vis.py` on a real model.
"""

import dataclasses

import numpy as np
import pytest

from common.errors import DataError
from common.geometry import letterbox_crop_transform, to_input
from stage2_visible_keypoints.camera import body_to_camera, project_points
from stage2_visible_keypoints.config import Stage2Config
from stage2_visible_keypoints.data import ObjectModel
from stage2_visible_keypoints.predictor import KeypointPredictor
from tests.stage2.test_pose_step import CAMERA, FACES, NAMES, POINTS, Q, R

# A 96x64 input (1920x1080 canvas, 1000x1000 crop): an x/y mix-up cannot cancel out.
CFG = dataclasses.replace(Stage2Config(), data=dataclasses.replace(Stage2Config().data, input_size=(96, 64),
                                                                   heatmap_size=(48, 32)))
XY_ORIGINAL = project_points(body_to_camera(POINTS, Q, R), CAMERA)
TRANSFORM = letterbox_crop_transform((1920, 1200), CFG.data.canvas_size, CFG.data.crop_size, CFG.data.input_size)[0]


class TrueKeypoints:
    """Stands in for a trained model: the true keypoints of (Q, R), whatever the image."""

    def __init__(self, confidence):
        self.confidence, self.batches = np.asarray(confidence, np.float32), []

    def predict_on_batch(self, batch):
        self.batches.append((batch.shape, batch.dtype))
        xy_norm = to_input(XY_ORIGINAL, TRANSFORM) / [96.0, 64.0]
        return {"keypoints": np.repeat(xy_norm[None].astype(np.float32), len(batch), axis=0),
                "confidence": np.repeat(self.confidence[None], len(batch), axis=0)}


def test_keypoints_in_original_pixels_and_the_pose_from_the_visible_ones():
    confidence = np.full(len(POINTS), 0.9)
    confidence[5] = 0.1  # below use.visibility_threshold (0.3): not visible, left out of the pose
    model = TrueKeypoints(confidence)
    predictor = KeypointPredictor(model, CFG, NAMES, ObjectModel(CAMERA, POINTS, FACES, NAMES))
    result = predictor.predict(np.zeros((1200, 1920, 3), np.uint8))
    assert model.batches == [((1, 64, 96, 3), np.uint8)]
    assert result.image_size == (1920, 1200) and result.keypoint_names == NAMES
    np.testing.assert_allclose(result.transform, TRANSFORM)
    # float32 normalised coordinates: about 1e-5 input px, over 0.096 / 0.064 input px per original px.
    np.testing.assert_allclose(result.keypoints_original, XY_ORIGINAL, atol=2e-3)
    np.testing.assert_allclose(result.keypoints_input, to_input(XY_ORIGINAL, TRANSFORM), atol=2e-4)
    np.testing.assert_array_equal(result.visible_pred, confidence >= 0.3)
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
    np.testing.assert_allclose(results[2].keypoints_original, results[0].keypoints_original / 2, atol=1e-3)
    # An (N, H, W, 3) array is N images; one (H, W, 3) array is one.
    assert len(predictor.predict(np.zeros((2, 1200, 1920, 3), np.uint8))) == 2


def test_bad_images_and_a_camera_of_another_size_are_one_line_errors(tmp_path):
    predictor = KeypointPredictor(TrueKeypoints(np.ones(len(POINTS))), CFG, NAMES,
                                  ObjectModel(CAMERA, POINTS, FACES, NAMES), camera_name="camera.json")
    with pytest.raises(DataError, match=r"image 1: image is 960x600 but the camera \(camera.json\) is 1920x1200"):
        predictor.predict([np.zeros((1200, 1920, 3), np.uint8), np.zeros((600, 960, 3), np.uint8)])
    with pytest.raises(DataError, match=r"image 0: expected an image file or an \(H, W, 3\) uint8 array, got float32"):
        predictor.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(DataError, match=r"image 0: .* got uint8 \(8, 8\)"):  # grayscale: one image, not 8 rows
        predictor.predict(np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="image 1: .* got dict"):
        predictor.predict([np.zeros((1200, 1920, 3), np.uint8), {}])
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        predictor.predict(tmp_path / "broken.jpg")


def test_keypoint_names_and_the_object_model_must_agree():
    with pytest.raises(ValueError, match="object_model.names must be keypoint_names"):
        KeypointPredictor(TrueKeypoints(np.ones(len(POINTS))), CFG, NAMES[::-1],
                          ObjectModel(CAMERA, POINTS, FACES, NAMES))


def test_from_run_names_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="model file not found"):
        KeypointPredictor.from_run(tmp_path / "no_such_run")
    (tmp_path / "best.keras").write_bytes(b"")
    with pytest.raises(DataError, match="config.json not found beside the model"):
        KeypointPredictor.from_run(tmp_path)
    with pytest.raises(ValueError, match="poses need both camera and mesh"):
        KeypointPredictor.from_run(tmp_path, camera="camera.json")
