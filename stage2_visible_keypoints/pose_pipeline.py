"""From a full camera frame to the pose: stage 1 box -> crop -> stage 2 keypoints -> PnP.

```python
from stage2_visible_keypoints.pose_pipeline import PosePipeline

pipeline = PosePipeline.from_runs("runs/speed/stage1",      # detector run: best.keras, config.json
                                  "runs/speed/stage2",      # keypoint run (data.crop: box)
                                  camera="runs/speed/renders/camera.json",
                                  mesh="runs/speed/renders/mesh.obj")
frame = pipeline.predict("runs/speed/renders/images/test/img000001.jpg")  # or an (H, W, 3) uint8 array
frame.box, frame.box_score, frame.keypoints.keypoints_original, frame.pose, frame.trusted, frame.status
```

Stage 1 (the one-class anchor SSD of `detection/ssd/`) finds the object's box on the
frame downscaled to its input; its best box (score >= `score_threshold`) is the crop
of stage 2 (`common.geometry.box_crop_transform`, the model's `data.box_margin`), whose
keypoints come back in the frame's pixels; PnP (`stage2_visible_keypoints.pose`) gives the
pose. A frame where stage 1 finds nothing has status "no object" and no pose, not an
error. A pose is *untrusted* when PnP kept fewer than `min_inliers` keypoints or its RMS
reprojection error exceeds `max_reprojection_px` input-frame pixels (scaled to the
frame by the crop's scale, as the RANSAC threshold is).

A keypoint model trained on the fixed centre crop (`data.crop: centre`) runs on the whole
frame whatever the box; `boxes=` gives the crops instead of stage 1 (the true boxes,
say: the ceiling of what a better stage 1 could give).
"""

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np

from common.data_io import open_image
from common.errors import DataError
from common.run_config import load_run_config
from stage2_visible_keypoints.pose import PnPResult
from stage2_visible_keypoints.predictor import KeypointPrediction, KeypointPredictor

STATUSES = ("pose", "no object", "no pose")


@dataclasses.dataclass
class FramePose:
    """One frame through the pipeline.

    box: (4,) [x1, y1, x2, y2] frame pixels that stage 2 cropped around (None: no object,
    or the centre crop); box_score: stage 1's score (None when the box was given);
    keypoints: `KeypointPrediction` (None: no object); pose: `PnPResult` or None;
    trusted: the pose passed the inlier and reprojection checks (False without a pose);
    status: "pose", "no object" (stage 1 found nothing) or "no pose" (PnP failed).
    """

    box: np.ndarray = None
    box_score: float = None
    keypoints: KeypointPrediction = None
    pose: PnPResult = None
    trusted: bool = False
    status: str = "no object"


class PosePipeline:
    """Stage 1 detector + stage 2 `KeypointPredictor` + PnP, for frames in memory or on disk.

    Args:
        detector: a stage-1 inference model (`detection.ssd.ssd_pipeline.inference_model`:
            uint8 images of `detector_input_size` -> (batch, D, 7) detections), or None
            when boxes are always given (or the keypoint model takes the centre crop).
        detector_input_size: (width, height) of the detector's input.
        predictor: `KeypointPredictor` with an object model (camera and 3-D keypoints).
        score_threshold: stage 1 boxes below it are not the object.
        min_inliers, max_reprojection_px: a pose with fewer PnP inliers, or a larger RMS
            reprojection error in input-frame pixels, is untrusted.
    """

    def __init__(self, detector, detector_input_size, predictor, score_threshold=0.3, min_inliers=6,
                 max_reprojection_px=3.0):
        if predictor.object_model is None:
            raise ValueError("the predictor needs the camera and the 3-D keypoints (object_model) for poses")
        if not 0 <= score_threshold <= 1 or min_inliers < 4 or not max_reprojection_px > 0:
            raise ValueError(f"need 0 <= score_threshold <= 1, min_inliers >= 4, max_reprojection_px > 0. Received: "
                             f"{score_threshold}, {min_inliers}, {max_reprojection_px}")
        self.detector, self.detector_input_size, self.predictor = detector, tuple(detector_input_size or ()), predictor
        self.score_threshold, self.min_inliers, self.max_reprojection_px = score_threshold, min_inliers, \
            max_reprojection_px

    @classmethod
    def from_runs(cls, detector_run, keypoint_run, camera, mesh, score_threshold=0.3, min_inliers=6,
                  max_reprojection_px=3.0, overrides=()):
        """Load a stage-1 run (`detector_run`/best.keras or a .keras file, with its
        config.json; None = no detector) and a stage-2 run (`KeypointPredictor.from_run`,
        with `camera` and `mesh` for the poses; overrides go to it)."""
        predictor = KeypointPredictor.from_run(keypoint_run, camera=camera, mesh=mesh, overrides=overrides)
        detector, input_size = (None, None) if detector_run is None else load_stage1(detector_run, score_threshold)
        return cls(detector, input_size, predictor, score_threshold, min_inliers, max_reprojection_px)

    @property
    def needs_boxes(self):
        return self.predictor.cfg.data.crop == "box"

    def detect(self, frames):
        """Stage 1's best box per frame: (boxes (N, 4) frame pixels, NaN rows where nothing
        scores >= score_threshold, scores (N,), NaN likewise). frames: (H, W, 3) uint8 arrays."""
        if self.detector is None:
            raise ValueError("no stage-1 detector: pass boxes")
        from detection.ssd.box_cache import resize_image

        resized = [resize_image(frame, self.detector_input_size) for frame in frames]
        with warnings.catch_warnings():
            # One class: the decoder's class softmax is 1 by design (score = objectness), which
            # Keras warns about on every trace.
            warnings.filterwarnings("ignore", message="You are using a softmax over axis")
            raw = np.asarray(self.detector.predict_on_batch(np.stack([r[0] for r in resized])))  # (N, D, 7)
        boxes, scores = np.full((len(frames), 4), np.nan), np.full(len(frames), np.nan)
        for i, ((_, scale), dets) in enumerate(zip(resized, raw)):
            # Rows are (x1, y1, x2, y2, score, class, anchor) sorted by score; padding has score 0.
            best = int(np.argmax(dets[:, 4]))
            if dets[best, 4] >= self.score_threshold:
                boxes[i], scores[i] = dets[best, :4] / np.tile(scale, 2), dets[best, 4]
        return boxes, scores

    def predict(self, frames, boxes=None, batch_size=None):
        """Poses of one frame or several.

        frames: a path, an (H, W, 3) uint8 array, or a list of them. boxes: (N, 4) the
        crops' boxes in frame pixels instead of stage 1's (NaN row = no object).
        Returns one `FramePose` for one frame, a list otherwise. A file that cannot be
        read raises `DataError` naming it.
        """
        single = isinstance(frames, (str, os.PathLike)) or (hasattr(frames, "shape") and np.ndim(frames) == 3)
        items = [frames] if single else list(frames)
        batch_size = batch_size or self.predictor.cfg.use.batch_size
        out = []
        for start in range(0, len(items), batch_size):
            arrays = [read_frame(item, start + i) for i, item in enumerate(items[start:start + batch_size])]
            given = None if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[start:start + len(arrays)]
            out += self._predict_arrays(arrays, given)
        return out[0] if single else out

    __call__ = predict

    def _predict_arrays(self, frames, boxes):
        scores = np.full(len(frames), np.nan)
        if boxes is None and (self.needs_boxes or self.detector is not None):
            boxes, scores = self.detect(frames)
        results = [FramePose() for _ in frames]
        if self.needs_boxes:
            found = np.flatnonzero(np.isfinite(boxes).all(axis=1))
            predictions = self.predictor.predict([frames[i] for i in found], boxes=boxes[found]) if len(found) else []
        else:  # the centre crop: every frame goes in whole
            found = np.arange(len(frames))
            predictions = self.predictor.predict(list(frames))
        for i, prediction in zip(found, predictions):
            result = results[i]
            if boxes is not None and np.isfinite(boxes[i]).all():
                result.box = boxes[i]
            result.box_score = None if np.isnan(scores[i]) else float(scores[i])
            result.keypoints, result.pose = prediction, prediction.pose
            result.status = "pose" if prediction.pose is not None else "no pose"
            result.trusted = self.trusted(prediction)
        return results

    def trusted(self, prediction):
        """Whether a prediction's pose passes the inlier count and the reprojection error
        (input-frame pixels: the frame's error times the crop's scale)."""
        pose = prediction.pose
        if pose is None:
            return False
        scale = float(np.mean(prediction.transform[:2]))
        return bool(pose.inliers.sum() >= self.min_inliers and pose.reprojection_px * scale <= self.max_reprojection_px)


def read_frame(item, index):
    """An (H, W, 3) uint8 frame from a path (`DataError` naming an unreadable file) or an array."""
    if isinstance(item, (str, os.PathLike)):
        with open_image(item) as pil:
            pil.load()
            return np.asarray(pil.convert("RGB"))
    image = np.asarray(item) if hasattr(item, "shape") else None
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.dtype} {image.shape}" if image is not None else type(item).__name__
        raise DataError(f"expected an image file or an (H, W, 3) uint8 array, got {got}", f"frame {index}")
    return image


def load_stage1(run, score_threshold):
    """A stage-1 run (folder with best.keras, or a .keras file, and its config.json) ->
    (inference model, input size (width, height))."""
    from detection.ssd.ssd_config import TRAINED_SETTINGS, DetConfig
    from detection.ssd.ssd_pipeline import inference_model, load_detector

    run = Path(run)
    path = run / "best.keras" if run.is_dir() else run
    if not path.is_file():
        raise DataError("stage-1 model file not found (a run folder holds best.keras; train_det.py writes it)", path)
    cfg, config_path = load_run_config(DetConfig, path, trained=TRAINED_SETTINGS)
    if config_path is None:
        raise DataError("config.json not found beside the stage-1 model (train_det.py writes it)",
                        path.parent / "config.json")
    model = load_detector(path)
    num_classes = model.output["predictions"].shape[-1] - 5
    if num_classes != 1:
        raise DataError(f"stage 1 must be a one-class detector of the object, this one has {num_classes} classes",
                        path)
    return inference_model(model, 1, cfg, score_threshold), cfg.data.input_size


# Mean SPEED score over all frames counts a frame without a pose as this bad: a 180 degree
# rotation error (pi rad) plus a translation error as large as the distance.
UNSOLVED_SPEED_SCORE = float(np.pi + 1.0)


def box_iou(a, b):
    """IoU of boxes [x1, y1, x2, y2] a (..., 4) and b (..., 4); 0 where either is NaN."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    low, high = np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., 2:], b[..., 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=-1)
    union = np.prod(a[..., 2:] - a[..., :2], axis=-1) + np.prod(b[..., 2:] - b[..., :2], axis=-1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
    return np.nan_to_num(iou, nan=0.0)


def evaluate_frames(results, annotations, object_in_frame=None):
    """A labelled split's summary of `PosePipeline.predict` results (one per annotation).

    object_in_frame: (N,) bool, frames whose object is in the image (default: every
    frame). Returns a JSON-ready dict: frames; object_found (a box, or the centre crop's
    keypoints, on a frame with the object) and detection recall@0.5 / mean IoU of the
    boxes (when boxes were used); keypoints: mean / median error in original pixels over
    the truly visible keypoints of the frames with keypoints; pose:
    `stage2_visible_keypoints.pose.pose_error_summary` (NaN pose = unsolved), with
    speed_score_all, the mean SPEED score over all frames with an unsolved one counted
    as UNSOLVED_SPEED_SCORE; trusted and untrusted pose counts.
    """
    from stage2_visible_keypoints.pose import pose_error_summary, pose_errors

    count = len(results)
    present = np.ones(count, bool) if object_in_frame is None else np.asarray(object_in_frame, bool)
    has_keypoints = np.array([r.keypoints is not None for r in results])
    boxes = np.array([r.box if r.box is not None else np.full(4, np.nan) for r in results]).reshape(count, 4)
    summary = {"frames": count, "frames_with_object": int(present.sum()),
               "object_found": float(has_keypoints[present].mean()) if present.any() else None,
               "no_object_frames": int((~has_keypoints).sum())}
    if np.isfinite(boxes).any() and annotations.boxes is not None:
        iou = box_iou(boxes, annotations.boxes)
        summary["detection"] = {"recall50": float((iou[present] >= 0.5).mean()) if present.any() else None,
                                "mean_iou": float(iou[present].mean()) if present.any() else None}
        # The size of stage 1's errors, in the terms of data.box_jitter (shift: of the box
        # size; scale: size ratio - 1), over the frames with a box, for choosing the jitter.
        hit = np.isfinite(boxes).all(axis=1) & present
        if hit.any():
            true = annotations.boxes[hit]
            size = true[:, 2:] - true[:, :2]
            shift = np.abs((boxes[hit, :2] + boxes[hit, 2:]) / 2 - (true[:, :2] + true[:, 2:]) / 2) / size
            scale = np.abs((boxes[hit, 2:] - boxes[hit, :2]) / size - 1)
            summary["detection"]["box_error"] = {"shift_median": float(np.median(shift)),
                                                 "shift_p90": float(np.percentile(shift, 90)),
                                                 "scale_median": float(np.median(scale)),
                                                 "scale_p90": float(np.percentile(scale, 90))}
    errors = []
    for i in np.flatnonzero(has_keypoints):
        visible = annotations.visible[i]
        errors.append(np.linalg.norm(results[i].keypoints.keypoints_original[visible]
                                     - annotations.xy_original[i][visible], axis=1))
    errors = np.concatenate(errors) if errors else np.empty(0)
    summary["keypoints"] = {"unit": "original pixels", "count": int(errors.size),
                            "mean": float(errors.mean()) if errors.size else None,
                            "median": float(np.median(errors)) if errors.size else None}
    solved = np.array([r.pose is not None for r in results])
    trusted = np.array([r.trusted for r in results])
    summary["trusted"], summary["untrusted"] = int(trusted.sum()), int((solved & ~trusted).sum())
    if annotations.pose_q is not None:
        q = np.array([r.pose.q if r.pose is not None else np.full(4, np.nan) for r in results]).reshape(count, 4)
        t = np.array([r.pose.r if r.pose is not None else np.full(3, np.nan) for r in results]).reshape(count, 3)
        pose = pose_error_summary(q, t, annotations.pose_q, annotations.pose_r)
        scores = np.full(count, UNSOLVED_SPEED_SCORE)
        if solved.any():
            scores[solved] = pose_errors(q[solved], t[solved], annotations.pose_q[solved],
                                         annotations.pose_r[solved])["speed_score"]
        pose["speed_score_all"] = {"mean": float(scores.mean()), "unsolved_counts_as": UNSOLVED_SPEED_SCORE}
        summary["pose"] = pose
    return summary
