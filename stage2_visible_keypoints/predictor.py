"""Stage 2 from Python: keypoints (and the pose) of images in memory or on disk.

```python
from stage2_visible_keypoints.predictor import KeypointPredictor

predictor = KeypointPredictor.from_run("runs/demo/model",  # best.keras, config.json, keypoint_names.json
                                       camera="runs/demo/renders/camera.json",  # optional: poses
                                       mesh="runs/demo/renders/mesh.obj")
result = predictor.predict("runs/demo/renders/images/test/img000001.jpg")  # or an (H, W, 3) uint8 array
result.keypoints_original, result.confidence, result.visible_pred, result.pose
```

Each image goes through the run's own preprocessing (`data.canvas_size`, `crop_size`,
`input_size` from its `config.json`), and the keypoints come back in the image's own
pixels. The fields are those of the `per_image/*.json` files that `use_vis.py` writes
for a cache split or a folder.
"""

import dataclasses
import os
from pathlib import Path

import numpy as np

from common.config import load_config
from common.errors import DataError
from common.geometry import to_original, warp_image, warp_image_file
from stage2_visible_keypoints.config import Stage2Config
from stage2_visible_keypoints.data import KEYPOINT_NAMES_FILE, check_camera_size
from stage2_visible_keypoints.mesh import default_keypoint_names
from stage2_visible_keypoints.pipeline import (
    estimate_poses,
    load_object_model,
    load_stage2_model,
    run_keypoint_names,
)
from stage2_visible_keypoints.pose import PnPResult


@dataclasses.dataclass
class KeypointPrediction:
    """One image's keypoints.

    keypoints_original: (K, 2) in the image's own pixels; keypoints_input: (K, 2) in the
    model input frame; confidence: (K,) peak heights; visible_pred: (K,) bool, confidence
    >= `use.visibility_threshold`; keypoint_names: K names; transform: (4,) image -> input
    frame (`common.geometry`); image_size: (width, height); pose: `stage2_visible_keypoints.pose.PnPResult`
    from the predicted-visible keypoints, or None (no camera and mesh, or no pose found).
    """

    keypoints_original: np.ndarray
    keypoints_input: np.ndarray
    confidence: np.ndarray
    visible_pred: np.ndarray
    keypoint_names: tuple
    transform: np.ndarray
    image_size: tuple
    pose: PnPResult = None


class KeypointPredictor:
    """A trained stage-2 model with its preprocessing, for images one by one or in batches.

    Image files are decoded as `preprocess_vis.py` decodes them (a JPEG at a reduced size
    where that keeps two source pixels per input pixel); an array is resampled from its
    full size, so the same image can differ by a grey level or two between the two.

    Args:
        model: a loaded stage-2 model (`pipeline.load_stage2_model`), or anything whose
            `predict_on_batch` returns `keypoints` (normalised) and `confidence`.
        cfg: the run's `Stage2Config` (input sizes, `use.visibility_threshold`,
            `use.pnp_ransac_px`, `use.batch_size`).
        keypoint_names: K names in the model's output order; None = `kp00`, `kp01`, ...
        object_model: `data.ObjectModel` (camera and 3-D keypoints, in the same keypoint
            order) for poses, or None.
        camera_name: how errors name the camera (e.g. its file name).
    """

    def __init__(self, model, cfg, keypoint_names=None, object_model=None, camera_name="camera"):
        if keypoint_names is not None and object_model is not None and object_model.names \
                and tuple(object_model.names) != tuple(keypoint_names):
            raise ValueError(f"object_model.names must be keypoint_names, in the same order. Received: "
                             f"keypoint_names={tuple(keypoint_names)[:3]}..., "
                             f"object_model.names={tuple(object_model.names)[:3]}...")
        self.model, self.cfg = model, cfg
        self.keypoint_names = tuple(keypoint_names) if keypoint_names is not None else None
        self.object_model, self.camera_name = object_model, camera_name

    @classmethod
    def from_run(cls, run, camera=None, mesh=None):
        """Load `run/best.keras` (or the `.keras` file `run`) and the `config.json` and
        `keypoint_names.json` beside it. A fine-tuned run is in `run/fine_tune/`.

        camera, mesh: `camera.json` and `mesh.obj` for poses (both or neither); the mesh's
        vertices are put in keypoint order by name when the run saved its names (they
        must then be its vertex names), else taken in order.
        """
        if (camera is None) != (mesh is None):
            raise ValueError(f"poses need both camera and mesh. Received: camera={camera}, mesh={mesh}")
        run = Path(run)
        model_path = run / "best.keras" if run.is_dir() else run
        if not model_path.is_file():
            raise DataError("model file not found (a run folder holds best.keras)", model_path)
        config_path = model_path.parent / "config.json"
        if not config_path.is_file():
            raise DataError("config.json not found beside the model (train_vis.py writes it)", config_path)
        cfg = load_config(Stage2Config, str(config_path))
        model = load_stage2_model(model_path, cfg.data.input_size)
        num_keypoints = int(model.get_layer("keypoints").output.shape[1])
        names = run_keypoint_names(model_path)
        if names is not None and len(names) != num_keypoints:
            raise DataError(f"{len(names)} keypoint names for a model of {num_keypoints} keypoints",
                            model_path.parent / KEYPOINT_NAMES_FILE)
        object_model = None
        if camera is not None:
            use_cfg = dataclasses.replace(cfg.use, camera=str(camera), mesh=str(mesh))
            object_model = load_object_model(use_cfg, None, num_keypoints, names)
            names = names or object_model.names
        return cls(model, cfg, names, object_model, camera_name=Path(camera).name if camera else "camera")

    def predict(self, images, batch_size=None):
        """Keypoints of one image or of several.

        images: a path, an (H, W, 3) uint8 array, or a list of them (or an (N, H, W, 3)
        array). Returns one `KeypointPrediction` for one image, a list otherwise.
        batch_size: images per model call (default `use.batch_size`).
        """
        single = isinstance(images, (str, os.PathLike)) or (hasattr(images, "shape") and np.ndim(images) != 4)
        items = [images] if single else list(images)
        batch_size = batch_size or self.cfg.use.batch_size
        predictions = []
        for start in range(0, len(items), batch_size):
            predictions += self._predict_batch(items[start:start + batch_size], start)
        return predictions[0] if single else predictions

    __call__ = predict

    def _prepare(self, item, index):
        data = self.cfg.data
        if isinstance(item, (str, os.PathLike)):
            return warp_image_file(item, data.canvas_size, data.crop_size, data.input_size)
        image = np.asarray(item) if hasattr(item, "shape") else None
        if image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            got = f"{image.dtype} {image.shape}" if image is not None else type(item).__name__
            raise DataError(f"expected an image file or an (H, W, 3) uint8 array, got {got}", f"image {index}")
        warped, transform = warp_image(image, data.canvas_size, data.crop_size, data.input_size)
        return warped, transform, (image.shape[1], image.shape[0])

    def _predict_batch(self, items, offset):
        prepared = [self._prepare(item, offset + i) for i, item in enumerate(items)]
        sizes, transforms = np.array([p[2] for p in prepared]), np.stack([p[1] for p in prepared])
        if self.object_model is not None:  # before predicting: a wrong image fails fast
            where = [item if isinstance(item, (str, os.PathLike)) else f"image {offset + i}"
                     for i, item in enumerate(items)]
            check_camera_size(self.object_model.camera, sizes, where, self.camera_name)
        out = self.model.predict_on_batch(np.stack([p[0] for p in prepared]))
        xy_norm = np.asarray(out["keypoints"], dtype=np.float64)
        confidence = np.asarray(out["confidence"], dtype=np.float64)
        xy_input = xy_norm * np.asarray(self.cfg.data.input_size, dtype=np.float64)
        xy_original = to_original(xy_input, transforms)
        visible = confidence >= self.cfg.use.visibility_threshold
        names = self.keypoint_names or default_keypoint_names(xy_norm.shape[1])
        poses = None
        if self.object_model is not None:
            poses = estimate_poses(xy_original, visible, transforms, self.object_model, self.cfg.use.pnp_ransac_px)
        results = []
        for i in range(len(items)):
            pose = None
            if poses is not None and poses["found"][i]:
                pose = PnPResult(q=poses["q"][i], r=poses["r"][i], inliers=poses["inliers"][i],
                                 reprojection_px=float(poses["reprojection_px"][i]))
            results.append(KeypointPrediction(
                keypoints_original=xy_original[i], keypoints_input=xy_input[i], confidence=confidence[i],
                visible_pred=visible[i], keypoint_names=names, transform=transforms[i],
                image_size=tuple(int(v) for v in sizes[i]), pose=pose))
        return results
