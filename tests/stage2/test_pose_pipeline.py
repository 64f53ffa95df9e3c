"""`PosePipeline`: stage 1 box -> crop -> stage 2 keypoints -> PnP, with stand-in models.

The stand-ins return the true box and the true keypoints of a known pose (in whatever
crop they are handed), so every number the pipeline adds (the box in frame pixels, the
crop's transform, keypoints back in frame pixels, the pose, the trust flags and the
evaluation) is checked against exact values. test_pose_vis_e2e.py runs the script.
"""

import dataclasses

import numpy as np
import pytest

from common.geometry import box_crop_transform, points_box, to_input
from stage2_visible_keypoints.camera import body_to_camera, project_points
from stage2_visible_keypoints.config import Stage2Config
from stage2_visible_keypoints.data import Annotations, ObjectModel
from stage2_visible_keypoints.pose_pipeline import PosePipeline, box_iou, evaluate_frames
from stage2_visible_keypoints.predictor import KeypointPredictor
from tests.stage2.test_pose_step import CAMERA, FACES, NAMES, POINTS, Q, R

DATA = dataclasses.replace(Stage2Config().data, input_size=(64, 64), heatmap_size=(32, 32), crop="box")
CFG = dataclasses.replace(Stage2Config(), data=DATA)
XY = project_points(body_to_camera(POINTS, Q, R), CAMERA)
BOX = np.array(points_box(XY, (1920, 1200)))
DETECTOR_SIZE = (240, 160)  # 1920x1200 / 8 by 7.5: an x/y mix-up cannot cancel out


class Detector:
    """Stage 1 stand-in: the true box (in its input's pixels), or nothing, per frame."""

    def __init__(self, found):
        self.found = list(found)

    def predict_on_batch(self, images):
        assert images.shape[1:] == (160, 240, 3) and images.dtype == np.uint8
        out = np.zeros((len(images), 5, 7), np.float32)
        out[:, :, 5] = -1
        for i in range(len(images)):
            if self.found.pop(0):
                out[i, 0] = [*(BOX * [240 / 1920, 160 / 1200, 240 / 1920, 160 / 1200]), 0.9, 0, 3]
                out[i, 1] = [0, 0, 10, 10, 0.2, 0, 4]  # a weaker box, below the first
        return out


class CropKeypoints:
    """Stage 2 stand-in: the true keypoints in the frame of the crop it gets (the crop
    around the true box: what the pipeline must hand it)."""

    def __init__(self, noise=0.0):
        self.transform = box_crop_transform(BOX, (64, 64), DATA.box_margin)
        self.noise, self.calls = noise, 0

    def predict_on_batch(self, batch):
        self.calls += len(batch)
        xy = to_input(XY, self.transform) / 64.0
        xy = xy + np.random.default_rng(0).normal(0, self.noise, xy.shape)
        return {"keypoints": np.repeat(xy[None].astype(np.float32), len(batch), axis=0),
                "confidence": np.full((len(batch), len(POINTS)), 0.9, np.float32)}


def pipeline(found, noise=0.0, **kwargs):
    predictor = KeypointPredictor(CropKeypoints(noise), CFG, NAMES, ObjectModel(CAMERA, POINTS, FACES, NAMES))
    return PosePipeline(Detector(found), DETECTOR_SIZE, predictor, **kwargs)


def test_frame_to_box_to_crop_to_keypoints_to_pose():
    frames = [np.zeros((1200, 1920, 3), np.uint8)] * 3
    results = pipeline([True, False, True]).predict(frames)
    assert [r.status for r in results] == ["pose", "no object", "pose"]
    found = results[0]
    # float32 box in the detector's pixels: ~1e-5 of 8 px per detector px.
    np.testing.assert_allclose(found.box, BOX, atol=1e-3)
    assert found.box_score == pytest.approx(0.9)
    np.testing.assert_allclose(found.keypoints.transform, box_crop_transform(found.box, (64, 64), 1.25))
    np.testing.assert_allclose(found.keypoints.keypoints_original, XY, atol=1e-2)
    np.testing.assert_allclose(found.pose.q * np.sign(found.pose.q[0]), Q * np.sign(Q[0]), atol=1e-4)
    np.testing.assert_allclose(found.pose.r, R, atol=1e-3)
    assert found.trusted
    # No object: no keypoints, no pose, not an error.
    assert results[1].box is None and results[1].keypoints is None and results[1].pose is None
    assert not results[1].trusted


def test_given_boxes_replace_stage_1_and_a_nan_box_is_no_object():
    pipe = pipeline([])  # the detector would fail: it has no answers
    results = pipe.predict([np.zeros((1200, 1920, 3), np.uint8)] * 2, boxes=[BOX, [np.nan] * 4])
    assert [r.status for r in results] == ["pose", "no object"] and results[0].box_score is None
    np.testing.assert_allclose(results[0].keypoints.keypoints_original, XY, atol=1e-2)


def test_few_inliers_or_a_large_reprojection_error_is_untrusted():
    frame = np.zeros((1200, 1920, 3), np.uint8)
    assert pipeline([True], min_inliers=len(POINTS) + 1).predict(frame).trusted is False
    noisy = pipeline([True], noise=0.05, max_reprojection_px=0.5).predict(frame)  # ~3 input px of noise
    assert noisy.status == "pose" and not noisy.trusted
    assert pipeline([True], noise=0.05, max_reprojection_px=50.0).predict(frame).trusted


def test_a_box_model_without_boxes_or_detector_is_refused():
    predictor = KeypointPredictor(CropKeypoints(), CFG, NAMES, ObjectModel(CAMERA, POINTS, FACES, NAMES))
    with pytest.raises(ValueError, match="pass boxes"):
        PosePipeline(None, None, predictor).predict(np.zeros((1200, 1920, 3), np.uint8))
    with pytest.raises(ValueError, match="object_model"):
        PosePipeline(None, None, KeypointPredictor(CropKeypoints(), CFG))


def test_evaluation_counts_found_frames_errors_and_poses():
    frames = [np.zeros((1200, 1920, 3), np.uint8)] * 2
    results = pipeline([True, False]).predict(frames)
    visible = np.ones((2, len(POINTS)), bool)
    shifted = XY + [3.0, 4.0]  # labels 5 px off the prediction
    annotations = Annotations(None, [None, None], np.stack([shifted, XY]), visible, np.array([[1920, 1200]] * 2),
                              NAMES, pose_q=np.stack([Q, Q]), pose_r=np.stack([R, R]), boxes=np.stack([BOX, BOX]))
    summary = evaluate_frames(results, annotations)
    assert summary["object_found"] == 0.5 and summary["no_object_frames"] == 1
    assert summary["detection"]["recall50"] == 0.5
    assert summary["detection"]["mean_iou"] == pytest.approx(0.5, abs=1e-6)
    assert summary["keypoints"]["count"] == len(POINTS)  # the found frame's only
    assert summary["keypoints"]["mean"] == pytest.approx(5.0, abs=1e-2)
    pose = summary["pose"]
    assert pose["solved"] == 1 and pose["rotation_deg"]["median"] < 0.01
    # Over all frames: the unsolved one counts pi + 1, the solved one about 0.
    assert pose["speed_score_all"]["mean"] == pytest.approx((np.pi + 1) / 2, abs=1e-3)
    assert summary["trusted"] == 1 and summary["untrusted"] == 0


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [np.nan] * 4) == 0.0


def test_box_error_is_measured_in_the_terms_of_the_jitter():
    results = pipeline([]).predict([np.zeros((1200, 1920, 3), np.uint8)], boxes=[BOX + [10, 0, 10, 0]])
    size = BOX[2:] - BOX[:2]
    annotations = Annotations(None, [None], XY[None], np.ones((1, len(POINTS)), bool), np.array([[1920, 1200]]),
                              NAMES, boxes=BOX[None])
    error = evaluate_frames(results, annotations)["detection"]["box_error"]
    assert error["shift_median"] == pytest.approx(5 / size[0])  # x moved by 10 px, y not: the median of the two
    assert error["shift_p90"] == pytest.approx(0.9 * 10 / size[0])
    assert error["scale_median"] == pytest.approx(0.0, abs=1e-12)


def test_a_box_model_needs_boxes_from_python_and_from_use_vis_images(tmp_path):
    from common.errors import DataError
    from stage2_visible_keypoints.data import preprocess_folder

    predictor = KeypointPredictor(CropKeypoints(), CFG, NAMES)
    with pytest.raises(ValueError, match="pass boxes"):
        predictor.predict(np.zeros((1200, 1920, 3), np.uint8))
    with pytest.raises(DataError, match="pose_vis.py"):
        preprocess_folder([tmp_path / "a.jpg"], DATA)
