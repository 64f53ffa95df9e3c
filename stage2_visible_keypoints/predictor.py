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
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import DataError
from common.geometry import box_crop_transform, to_original, warp_image, warp_image_file
from common.interchangeable import resolve_groups
from common.run_config import load_model, load_run_config
from stage2_visible_keypoints.camera import Camera, load_camera_json
from stage2_visible_keypoints.config import TRAINED_SETTINGS, Stage2Config
from stage2_visible_keypoints.data import KEYPOINT_NAMES_FILE, ObjectModel, check_camera_size, keypoint_mesh, \
    read_keypoint_names
from stage2_visible_keypoints.mesh import default_keypoint_names, load_obj
from stage2_visible_keypoints.pose import PnPResult, solve_pnp_groups


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
    """A trained stage-2 model with its preprocessing, for images one by one or in batches:
    the one inference path (`use_vis.py` is this predictor plus writers and evaluation).

    Image files are decoded as `preprocess_vis.py` decodes them (a JPEG at a reduced size
    where that keeps two source pixels per input pixel); an array is resampled from its
    full size, so the same image can differ by a grey level or two between the two.

    Args:
        model: a loaded stage-2 model (`load_stage2_model`), or anything whose
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
    def from_run(cls, run, camera=None, mesh=None, overrides=()):
        """Load `run/best.keras` (or the `.keras` file `run`) and the `config.json` and
        `keypoint_names.json` beside it. A fine-tuned run is in `run/fine_tune/`.

        camera, mesh: `camera.json` and `mesh.obj` for poses (both or neither); the mesh's
        vertices are put in keypoint order by name when the run saved its names (they
        must then be its vertex names), else taken in order.
        overrides: inference settings, e.g. `["use.visibility_threshold=0.5"]`; one that
        contradicts what the model was trained with is a `DataError`.
        """
        if (camera is None) != (mesh is None):
            raise ValueError(f"poses need both camera and mesh. Received: camera={camera}, mesh={mesh}")
        run = Path(run)
        # A run folder holds best.keras; a SavedModel folder (export_vis.py) is the model itself.
        model_path = run / "best.keras" if run.is_dir() and not (run / "saved_model.pb").is_file() else run
        if not model_path.exists():
            raise DataError("model file not found (a run folder holds best.keras)", model_path)
        cfg, config_path = load_run_config(Stage2Config, model_path, overrides=list(overrides),
                                           trained=TRAINED_SETTINGS)
        if config_path is None:
            raise DataError("config.json not found beside the model (train_vis.py writes it)",
                            model_path.parent / "config.json")
        model = load_stage2_model(model_path, cfg.data.input_size)
        names = run_keypoint_names(model_path, num_keypoints(model))
        object_model = None
        if camera is not None:
            use_cfg = dataclasses.replace(cfg.use, camera=str(camera), mesh=str(mesh))
            object_model = load_object_model(use_cfg, None, num_keypoints(model), names)
            names = names or object_model.names
        return cls(model, cfg, names, object_model, camera_name=Path(camera).name if camera else "camera")

    def predict(self, images, batch_size=None, boxes=None):
        """Keypoints of one image or of several.

        images: a path, an (H, W, 3) uint8 array, or a list of them (or an (N, H, W, 3)
        array). Returns one `KeypointPrediction` for one image, a list otherwise.
        batch_size: images per model call (default `use.batch_size`).
        boxes: the object's box [x1, y1, x2, y2] (original pixels) per image (one box
        for one image), which a model trained on box crops (`data.crop: box`) needs:
        the crop around it is its input (`PosePipeline` gives stage 1's boxes).
        """
        single = isinstance(images, (str, os.PathLike)) or (hasattr(images, "shape") and np.ndim(images) != 4)
        items = [images] if single else list(images)
        if self.cfg.data.crop == "box" and boxes is None:
            raise ValueError("this model was trained on crops around the object's box (data.crop: box): pass boxes "
                             "(stage 1's, as PosePipeline does)")
        if boxes is not None:
            boxes = np.asarray(boxes, dtype=np.float64).reshape(len(items), 4)
        batch_size = batch_size or self.cfg.use.batch_size
        predictions = []
        for start in range(0, len(items), batch_size):
            predictions += self._predict_batch(items[start:start + batch_size], start,
                                               None if boxes is None else boxes[start:start + batch_size])
        return predictions[0] if single else predictions

    __call__ = predict

    def predict_input(self, images, transforms, image_sizes=None, image_names=None, batch_size=None, progress=False,
                      timing=None):
        """Keypoints (and poses) of images already in the model input frame: a cache's, or
        `data.preprocess_folder`'s. What `use_vis.py` writes and evaluates.

        images: (N, h, w, 3) uint8 (may be a memory map), or a `data.FolderStream` (its
        own batches, decoded while the model runs); transforms: (N, 4) image -> input
        frame (`common.geometry`), None for a stream (it gives them); image_sizes: (N, 2)
        (width, height) and image_names: N names, for the check that the images fit the
        camera (poses only). batch_size: images per model call (default `use.batch_size`).
        timing: a dict to which seconds are added (`predict_arrays`).
        Returns a dict of xy_norm, xy_input, xy_original (N, K, 2), confidence (N, K),
        visible_pred (N, K) bool, heatmap_logits ((N, h/2, w/2, K) float16, or None when
        the model has no such output) and poses (`estimate_poses`' dict, or None).
        """
        if self.object_model is not None:  # before predicting: a wrong image fails fast
            check_camera_size(self.object_model.camera, image_sizes, image_names, self.camera_name)
        xy_norm, confidence, logits = predict_arrays(self.model, images, batch_size or self.cfg.use.batch_size,
                                                     progress, timing)
        if transforms is None:
            transforms = images.transforms
        xy_input = xy_norm.astype(np.float64) * np.asarray(self.cfg.data.input_size, dtype=np.float64)
        xy_original = to_original(xy_input, transforms)
        visible = confidence >= self.cfg.use.visibility_threshold
        poses = None
        if self.object_model is not None:
            poses = estimate_poses(xy_original, visible, transforms, self.object_model, self.cfg.use.pnp_ransac_px,
                                   self.interchangeable(xy_norm.shape[1]))
        return {"xy_norm": xy_norm, "xy_input": xy_input, "xy_original": xy_original, "confidence": confidence,
                "visible_pred": visible, "heatmap_logits": logits, "poses": poses}

    def interchangeable(self, num_keypoints):
        """`data.interchangeable` as keypoint indices of these predictions (DataError for a bad name)."""
        return resolve_groups(self.cfg.data.interchangeable, self.names_for(num_keypoints))

    def names_for(self, num_keypoints):
        """The keypoint names of the predictions: the run's, the object model's, or kp00, kp01, ..."""
        return (self.keypoint_names or (self.object_model.names if self.object_model is not None else None)
                or default_keypoint_names(num_keypoints))

    def crop_transform(self, box):
        """(4,) image -> input transform of the crop around `box` (None: the centre crop)."""
        if box is None:
            return None
        return box_crop_transform(box, self.cfg.data.input_size, self.cfg.data.box_margin)

    def _prepare(self, item, index, box=None):
        data = self.cfg.data
        transform = self.crop_transform(box)
        if isinstance(item, (str, os.PathLike)):
            return warp_image_file(item, data.canvas_size, data.crop_size, data.input_size, transform)
        image = np.asarray(item) if hasattr(item, "shape") else None
        if image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            got = f"{image.dtype} {image.shape}" if image is not None else type(item).__name__
            raise DataError(f"expected an image file or an (H, W, 3) uint8 array, got {got}", f"image {index}")
        warped, transform = warp_image(image, data.canvas_size, data.crop_size, data.input_size, transform)
        return warped, transform, (image.shape[1], image.shape[0])

    def _predict_batch(self, items, offset, boxes=None):
        prepared = [self._prepare(item, offset + i, None if boxes is None else boxes[i])
                    for i, item in enumerate(items)]
        sizes, transforms = np.array([p[2] for p in prepared]), np.stack([p[1] for p in prepared])
        where = [item if isinstance(item, (str, os.PathLike)) else f"image {offset + i}"
                 for i, item in enumerate(items)]
        out = self.predict_input(np.stack([p[0] for p in prepared]), transforms, sizes, where, len(items))
        names, poses = self.names_for(out["xy_norm"].shape[1]), out["poses"]
        results = []
        for i in range(len(items)):
            pose = None
            if poses is not None and poses["found"][i]:
                pose = PnPResult(q=poses["q"][i], r=poses["r"][i], inliers=poses["inliers"][i],
                                 reprojection_px=float(poses["reprojection_px"][i]),
                                 assignment=poses["assignment"][i])
            results.append(KeypointPrediction(
                keypoints_original=out["xy_original"][i], keypoints_input=out["xy_input"][i],
                confidence=out["confidence"][i].astype(np.float64), visible_pred=out["visible_pred"][i],
                keypoint_names=names, transform=transforms[i], image_size=tuple(int(v) for v in sizes[i]), pose=pose))
        return results


def load_stage2_model(path, input_size=None):
    """Load a saved stage-2 model: a `.keras` file with Keras safe mode (no arbitrary code),
    or a file `export_vis.py` wrote (SavedModel folder, `.onnx`, `.tflite`) as a
    `common.export` runner, which neither needs nor imports Keras (ONNX, LiteRT).

    input_size: (width, height) the model must take, e.g. the config's `data.input_size`.
    """
    from common.export import load_inference_model, model_format

    path = Path(path)
    if path.suffix != ".keras" and model_format(path) != "keras":
        model = load_inference_model(path)
        height, width = model.input_shape[:2]
        _check_input_size((width, height), input_size, path)
        return model
    # Keras only here: the pose functions of this module serve scripts that need no model.
    import stage2_visible_keypoints.model  # noqa: F401  (registers the model's layers and metric for loading)

    model = load_model(path, "train_vis.py", outputs=("keypoints", "confidence"))
    _check_input_size((model.input.shape[2], model.input.shape[1]), input_size, path)  # (batch, H, W, 3)
    return model


def _check_input_size(model_size, input_size, path):
    if input_size is not None and tuple(model_size) != tuple(input_size):
        raise DataError(f"model takes {model_size[0]}x{model_size[1]} images but data.input_size is "
                        f"{input_size[0]}x{input_size[1]}; use the config it was trained with "
                        "(saved beside it as config.json)", path)


def num_keypoints(model):
    """K, the keypoints a stage-2 model (or a `common.export` runner of one) predicts."""
    if hasattr(model, "output_shapes"):
        return int(model.output_shapes["keypoints"][0])
    return int(model.get_layer("keypoints").output.shape[1])


def run_keypoint_names(model_path, count=None):
    """The keypoint names saved beside a trained model (`train` writes them), or None.
    count: the model's K; names of another count are a `DataError`."""
    path = Path(model_path).parent / KEYPOINT_NAMES_FILE
    names = read_keypoint_names(path) if path.is_file() else None
    if names is not None and count is not None and len(names) != count:
        raise DataError(f"{len(names)} keypoint names for a model of {count} keypoints", path)
    return names


def predict_arrays(model, images, batch_size, progress=True, timing=None):
    """Run the model batch by batch through its compiled predict step (`predict_on_batch`;
    an exported file's runtime alike).

    images: (N, H, W, 3) uint8 (may be a memory map), or an iterable of such batches of
    `batch_size` with a length in images (`data.FolderStream`, which decodes the next
    batches while the model runs on this one).
    timing: a dict to which the seconds spent waiting for each batch (`input`: reading a
    memory map, or decoding that the model did not hide) and in the model (`model`) are added.
    Returns xy_norm (N, K, 2), confidence (N, K) and the heatmap logits (N, h, w, K),
    stored as float16 to halve their memory (None for a model without them).
    """
    if hasattr(images, "shape"):
        batches = (images[start:start + batch_size] for start in range(0, len(images), batch_size))
    else:
        batches = iter(images)
    timing = {} if timing is None else timing
    xy, conf, logits = [], [], []
    with tqdm(total=len(images), desc="predict", unit="img", disable=not progress) as bar:
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            batch = np.asarray(batch)
            loaded = time.perf_counter()
            out = model.predict_on_batch(batch)
            xy.append(np.asarray(out["keypoints"]))
            conf.append(np.asarray(out["confidence"]))
            if "heatmap_logits" in out:
                logits.append(np.asarray(out["heatmap_logits"]).astype(np.float16))
            timing["input"] = timing.get("input", 0.0) + loaded - start
            timing["model"] = timing.get("model", 0.0) + time.perf_counter() - loaded
            bar.update(len(batch))
    return np.concatenate(xy), np.concatenate(conf), np.concatenate(logits) if logits else None


def load_object_model(uc, y, num_keypoints, keypoint_names=None):
    """The camera and 3-D keypoints for PnP: use.camera/use.mesh when set, else the
    cache's (`y`); None when neither has them.

    The mesh from use.mesh is put in keypoint order: the order of `keypoint_names` (a
    run's `keypoint_names.json`), else of the cache's names; its vertex names must be
    those names, in any order. With no names at all it is taken in vertex order.
    """
    if uc.camera:
        mesh = load_obj(uc.mesh)
        if len(mesh.vertices) != num_keypoints:
            raise DataError(f"mesh has {len(mesh.vertices)} vertices but the model predicts {num_keypoints} "
                            "keypoints", uc.mesh)
        if keypoint_names is None and y is not None:
            keypoint_names = y["keypoint_names"]
        if keypoint_names is not None:
            names = tuple(str(n) for n in keypoint_names)
            mesh = keypoint_mesh(mesh, names)
            if mesh is None:
                raise DataError(f"mesh vertex names are not the keypoint names ({', '.join(names[:3])}, "
                                "...)", uc.mesh)
        return ObjectModel(load_camera_json(uc.camera), mesh.vertices, mesh.faces, mesh.vertex_names)
    if y is not None and "keypoints_3d" in y and "camera" in y:
        return ObjectModel(Camera.from_array(y["camera"]), y["keypoints_3d"], y["mesh_faces"],
                           tuple(str(n) for n in y["keypoint_names"]))
    return None


def estimate_poses(xy_original, mask, transforms, object_model, ransac_px, groups=()):
    """PnP for every image from the keypoints in `mask` (N, K).

    ransac_px is in input-frame pixels (None: no RANSAC); each image's threshold in
    original pixels follows from its transform. groups: interchangeable keypoints (as
    indices): every allowed assignment is tried and the best reprojection kept
    (`pose.solve_pnp_groups`). Returns found (N,) bool, q (N, 4) and r (N, 3) (NaN rows
    where no pose was found), inliers (N, K) bool, reprojection_px (N,) RMS in original
    pixels and assignment (N, K) (the identity where no pose was found or no groups).
    """
    count, num_keypoints = mask.shape
    poses = {"found": np.zeros(count, bool), "q": np.full((count, 4), np.nan), "r": np.full((count, 3), np.nan),
             "inliers": np.zeros((count, num_keypoints), bool), "reprojection_px": np.full(count, np.nan),
             "assignment": np.tile(np.arange(num_keypoints), (count, 1))}
    for i in range(count):
        scale = float(np.mean(transforms[i, :2]))  # input px per original px
        threshold = None if ransac_px is None else ransac_px / scale
        result = solve_pnp_groups(object_model.keypoints_3d, xy_original[i], object_model.camera, mask[i],
                                  threshold, groups=groups)
        if result is not None:
            poses["found"][i], poses["q"][i], poses["r"][i] = True, result.q, result.r
            poses["inliers"][i], poses["reprojection_px"][i] = result.inliers, result.reprojection_px
            poses["assignment"][i] = result.assignment
    return poses
