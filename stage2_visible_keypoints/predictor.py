"""Stage 2 from Python: keypoints (and the pose) of images in memory or on disk.

```python
from stage2_visible_keypoints.predictor import KeypointPredictor

predictor = KeypointPredictor.from_run("runs/demo/model",          # best.keras + config.json
                                       camera="runs/demo/renders/camera.json",  # optional: poses
                                       mesh="runs/demo/renders/mesh.obj")
result = predictor.predict("runs/demo/renders/images/test/img000001.jpg")  # or an (H, W, 3) uint8 array
result.keypoints, result.confidence, result.visible, result.pose
```

The image goes through the run's own preprocessing (`data.canvas_size`, `crop_size`,
`input_size` from its `config.json`), and the keypoints come back in the image's own
pixels. `use_vis.py` does the same for a cache split or a folder, and writes files.
"""

import dataclasses
from pathlib import Path

import numpy as np

from common.config import load_config
from common.errors import DataError
from common.geometry import to_original, warp_image, warp_image_file
from common.pose import PnPResult
from stage2_visible_keypoints.config import Stage2Config
from stage2_visible_keypoints.pipeline import (KEYPOINT_NAMES_FILE, _check_camera_size, estimate_poses, load_object_model,
                                               load_stage2_model, run_keypoint_names)

@dataclasses.dataclass
class KeypointPrediction:
    """One image's keypoints.

    keypoints: (K, 2) in the image's own pixels (`xy_original`); keypoints_input: (K, 2)
    in the model input frame; confidence: (K,) peak heights; visible: (K,) bool,
    confidence >= the visibility threshold; transform: (4,) image -> input frame
    (`common.geometry`); pose: `common.pose.PnPResult` from the visible keypoints, or
    None (no camera and mesh given, or no pose found).
    """

    keypoints: np.ndarray
    keypoints_input: np.ndarray
    confidence: np.ndarray
    visible: np.ndarray
    keypoint_names: tuple
    transform: np.ndarray
    image_size: tuple
    pose: PnPResult = None


class KeypointPredictor:
    """A trained stage-2 model with its preprocessing, for images one by one or in batches.

    Args:
        model: a loaded stage-2 model (`pipeline.load_stage2_model`), or anything with
            its `predict_on_batch` returning `keypoints`, `confidence`.
        cfg: the run's `Stage2Config` (input sizes, `use.visibility_threshold`,
            `use.pnp_ransac_px`).
        keypoint_names: K names in the model's output order; None = `kp00`, `kp01`, ...
        object_model: `data.ObjectModel` (camera and 3-D keypoints) for poses, or None.
    """

    def __init__(self, model, cfg, keypoint_names=None, object_model=None, camera_name="camera"):
        self.model, self.cfg = model, cfg
        self.keypoint_names = tuple(keypoint_names) if keypoint_names is not None else None
        self.object_model, self.camera_name = object_model, camera_name

    @classmethod
    def from_run(cls, run, camera=None, mesh=None):
        """Load `run/best.keras` (or the `.keras` file `run`) and the `config.json` beside it.

        camera, mesh: `camera.json` and `mesh.obj` for poses (both or neither); the mesh's
        vertices are matched to the keypoints by name when the run saved its names,
        else taken in order.
        """
        run = Path(run)
        model_path = run / "best.keras" if run.is_dir() else run
        config_path = model_path.parent / "config.json"
        if not config_path.is_file():
            raise DataError("config.json not found beside the model (train_vis.py writes it)", config_path)
        cfg = load_config(Stage2Config, str(config_path))
        model = load_stage2_model(model_path)
        model_hw = tuple(model.input.shape[1:3])
        if model_hw != tuple(cfg.data.input_size[::-1]):
            raise DataError(f"model takes {model_hw[1]}x{model_hw[0]} images but its config.json says "
                            f"data.input_size {cfg.data.input_size[0]}x{cfg.data.input_size[1]}", model_path)
        num_keypoints = int(model.get_layer("keypoints").output.shape[1])
        names = run_keypoint_names(model_path)
        if names is not None and len(names) != num_keypoints:
            raise DataError(f"{len(names)} keypoint names for a model of {num_keypoints} keypoints",
                            model_path.parent / KEYPOINT_NAMES_FILE)
        object_model = None
        if (camera is None) != (mesh is None):
            raise ValueError(f"poses need both camera and mesh. Received: camera={camera}, mesh={mesh}")
        if camera is not None:
            use_cfg = dataclasses.replace(cfg.use, camera=str(camera), mesh=str(mesh))
            object_model = load_object_model(use_cfg, {"keypoint_names": np.array(names)} if names else None,
                                             num_keypoints)
            names = names or object_model.names
        return cls(model, cfg, names, object_model, camera_name=Path(camera).name if camera else "camera")

    def predict(self, images, batch_size=32):
        """Keypoints of one image or of a list of images.

        images: a path, an (H, W, 3) uint8 array, or a list of them. Returns one
        `KeypointPrediction`, or a list for a list.
        """
        single = isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim == 3)
        items = [images] if single else list(images)
        predictions = []
        for start in range(0, len(items), batch_size):
            predictions += self._predict_batch(items[start:start + batch_size], start)
        return predictions[0] if single else predictions

    __call__ = predict

    def _prepare(self, item, index):
        data = self.cfg.data
        if isinstance(item, (str, Path)):
            return warp_image_file(item, data.canvas_size, data.crop_size, data.input_size)
        image = np.asarray(item)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}", f"image {index}")
        warped, transform = warp_image(image, data.canvas_size, data.crop_size, data.input_size)
        return warped, transform, (image.shape[1], image.shape[0])

    def _predict_batch(self, items, offset):
        prepared = [self._prepare(item, offset + i) for i, item in enumerate(items)]
        if self.object_model is not None:  # before predicting: a wrong image fails fast
            where = [item if isinstance(item, (str, Path)) else f"image {offset + i}" for i, item in enumerate(items)]
            _check_camera_size(self.object_model.camera, np.array([p[2] for p in prepared]), where, self.camera_name)
        batch = np.stack([p[0] for p in prepared])
        transforms = np.stack([p[1] for p in prepared])
        out = self.model.predict_on_batch(batch)
        xy_norm = np.asarray(out["keypoints"], dtype=np.float64)
        confidence = np.asarray(out["confidence"], dtype=np.float64)
        xy_input = xy_norm * np.asarray(self.cfg.data.input_size, dtype=np.float64)
        xy_original = to_original(xy_input, transforms)
        visible = confidence >= self.cfg.use.visibility_threshold
        names = self.keypoint_names or tuple(f"kp{k:02d}" for k in range(xy_norm.shape[1]))
        poses = None
        if self.object_model is not None:
            poses = estimate_poses(xy_original, visible, transforms, self.object_model, self.cfg.use.pnp_ransac_px)
        results = []
        for i, (_, transform, size) in enumerate(prepared):
            pose = None
            if poses is not None and poses["found"][i]:
                pose = PnPResult(q=poses["q"][i], r=poses["r"][i], inliers=poses["inliers"][i],
                                 reprojection_px=float(poses["reprojection_px"][i]))
            results.append(KeypointPrediction(keypoints=xy_original[i], keypoints_input=xy_input[i],
                                              confidence=confidence[i], visible=visible[i], keypoint_names=names,
                                              transform=transform, image_size=tuple(int(v) for v in size),
                                              pose=pose))
        return results

