"""Stage-2 data: SPEED-style labels -> uint8 image cache + keypoint/transform cache.

Label file `{data_dir}/{split}.json` is a list of records (the SPEED / SPEED+ layout):

    {"filename": "img000001.jpg",
     "q_vbs2tango": [q0, q1, q2, q3],           # or "q_vbs2tango_true" (SPEED+)
     "r_Vo2To_vbs_true": [x, y, z],             # metres, camera frame
     "keypoints": [[x, y], ...],                # K points, original image pixels (optional)
     "visible": [true, ...],                    # K flags (optional)
     "bbox": [x1, y1, x2, y2]}                  # the object's box, pixels (optional; renders)

A COCO keypoints file (`data.label_format` coco, or auto-detected: a JSON object with
"annotations") gives one sample per instance of one category (`data.category`), cropped
by its box with the same `data.crop: box` crops (`common.coco_keypoints` reads it);
v = 1 and 2 are both labelled, so both are `visible` here (stage 2's one flag: where the
model must find the keypoint); v = 0 is not. It has no camera or mesh, so no poses.

With `data.crop: box`, each image is cropped around its object's box ("bbox", else the
box of its keypoints, clipped to the image; the whole image when neither is there), with
`data.box_jitter`'s random error, and the crop's transform is stored like the letterbox's.

Images are looked up in `images/{split}/`, `images/`, then the data folder (or in the
folder `--images` names, with `--labels` naming the label file). When a record has no
"keypoints", they are projected from its pose with `camera.json` and `mesh.obj`
(whose vertices are the keypoints) and their visibility is ray-cast on the mesh, which
is how real SPEED labels (poses only) are read. When "visible" is absent, a keypoint
is visible when it lies inside the image. The side files (`camera.json`, `mesh.obj`,
`keypoint_names.json`) are taken from the data folder, else from its parent: SPEED+
keeps one `camera.json` beside its `synthetic/`, `lightbox/` and `sunlamp/` folders.

Cache `{cache_dir}/{split}/` (written and read by `common.cache`):
    X_data.npy   (N, H_in, W_in, 3) uint8, model input frame (ResNet preprocessing is in the model)
    Y_data.npz   xy_norm (N, K, 2) float32 normalised input frame; visible (N, K) bool
                 (visible in the original AND inside the input frame); xy_original (N, K, 2);
                 visible_original (N, K); transforms (N, 4) original -> input (common.geometry);
                 image_sizes (N, 2); filenames (N,); image_paths (N,) absolute; keypoint_names (K,); input_size, heatmap_size,
                 sigma; config_hash, config_json, source_hash, x_crc32 (`common.cache`);
                 heatmaps (N, h, w, K) float16 if asked;
                 when every record has a pose: pose_q (N, 4), pose_r (N, 3); when the data folder
                 has camera.json and a mesh.obj whose vertices are the keypoints: camera (11,)
                 (`Camera.to_array`), keypoints_3d (K, 3) body frame, mesh_faces (F, 3). With
                 those, use_vis.py also estimates each image's pose from the predicted keypoints.
                 COCO keypoints, one row per instance: image_ids, annotation_ids (N,) as in the
                 file, coco_v (N, K) int8 the file's flags, true_boxes (N, 4) xyxy (unjittered),
                 instance_areas (N,) (OKS scale), category_id, category_name, skipped_iscrowd,
                 skipped_unlabelled, skipped_other_category, source_images.
"""

import dataclasses
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

from common import cache
from common.coco_keypoints import is_coco, read_coco_keypoints
from common.data_io import find_image, image_size, json_numbers, load_json, require, split_files
from common.errors import DataError
from common.geometry import box_crop_transform, inside, jitter_box, points_box, to_input, warp_image_file
from common.parallel import parallel_map, prefetch_batches
from stage2_visible_keypoints.camera import Camera, body_to_camera, load_camera_json, project_points
from stage2_visible_keypoints.mesh import (Mesh, default_keypoint_names, feature_edges, load_obj, symmetry_warnings,
                                           visible_vertices)
from stage2_visible_keypoints.pose import pose_error_summary

QUATERNION_FIELDS = ("q_vbs2tango", "q_vbs2tango_true")
MAX_PIXEL = 1e9  # a keypoint coordinate beyond this (px) is a corrupt label, not a position
# Pose values beyond these are corrupt labels: 1e301 is finite, but projecting it or taking
# its norm overflows float64. A quaternion whose norm is below MIN_QUATERNION_NORM has no direction.
MAX_POSE_VALUE = 1e9  # |q_i| and |r_i| (metres)
MIN_QUATERNION_NORM = 1e-6
TRANSLATION_FIELD = "r_Vo2To_vbs_true"
KEYPOINT_NAMES_FILE = "keypoint_names.json"  # in a data folder (renders) and beside a trained model
SIDE_FILES = (KEYPOINT_NAMES_FILE, "camera.json", "mesh.obj")
# Raised when the cache gains arrays (2: poses and the object model), so older caches rebuild.
CACHE_FORMAT = 2


@dataclasses.dataclass
class Annotations:
    """One split's labels. xy_original (N, K, 2) float64; visible (N, K) bool;
    image_sizes (N, 2) (width, height)."""

    label_path: Path
    image_paths: list
    xy_original: np.ndarray
    visible: np.ndarray
    image_sizes: np.ndarray
    keypoint_names: tuple
    pose_q: np.ndarray = None
    pose_r: np.ndarray = None
    object_model: "ObjectModel" = None
    boxes: np.ndarray = None  # (N, 4) xyxy original pixels: "bbox", else the keypoints' box, else the image
    instances: dict = None  # COCO keypoints: the per-instance arrays and counts of the cache (module docstring)


@dataclasses.dataclass
class ObjectModel:
    """What PnP needs: the camera and the keypoints' body-frame positions (the mesh
    vertices in keypoint order), plus the mesh faces, the edges drawn from them
    (`stage2_visible_keypoints.mesh.feature_edges`, computed here once) and the keypoint names."""

    camera: Camera
    keypoints_3d: np.ndarray
    faces: np.ndarray
    names: tuple = ()
    edges: np.ndarray = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        self.edges = feature_edges(self.keypoints_3d, self.faces)


def load_annotations(data_dir, split, camera_path=None, mesh_path=None, skipped=None, labels=None, images=None,
                     allow_outside=False):
    """Read and check `{data_dir}/{split}.json` (or the `labels` file, with its images in
    the `images` folder: `common.data_io.split_files`); every problem raises a one-line
    `DataError`. camera.json, mesh.obj and keypoint_names.json are looked up beside the
    label file, then in its parent.

    camera_path, mesh_path: camera.json and the keypoint model (OBJ) to use instead of those
    side files (a real SPEED / SPEED+ folder has no mesh.obj; both or neither). skipped: a
    list to collect (path, reason) of bad records in, which are then left out
    (`--skip-bad`), instead of raising. allow_outside: read image file names that lead
    outside the data folder (refused by default: `common.data_io.find_image`).
    """
    label_path, folders = split_files(data_dir, split, labels, images)
    data_dir = label_path.parent
    records = load_json(label_path)
    if not isinstance(records, list) or not records:
        raise DataError("expected a non-empty JSON list of image records", label_path)
    overrides = {"camera.json": camera_path, "mesh.obj": mesh_path}
    if (camera_path is None) != (mesh_path is None):
        raise ValueError(f"camera_path and mesh_path go together. Received: {camera_path}, {mesh_path}")
    names = _keypoint_names(data_dir) if mesh_path is None else tuple(load_obj(mesh_path).vertex_names)
    projector = None
    paths, points, flags, sizes, poses, boxes = [], [], [], [], [], []
    seen = {}
    for index, record in enumerate(records):
        try:
            filename = require(record, "filename", label_path, f"record {index}: ")
            where = f"record {index} ({filename}): "
            if str(filename) in seen:
                raise DataError(f"{where}the file name appears twice (first in record {seen[str(filename)]})",
                                label_path)
            seen[str(filename)] = index
            path = find_image(folders, str(filename), label_path, where, allow_outside)
            size = image_size(path)  # the header only
            pose = _read_pose(record, label_path, where, required="keypoints" not in record)
            if "keypoints" in record:
                xy, visible = _read_keypoints(record, size, label_path, where)
            else:
                if projector is None:
                    projector = _PoseProjector(data_dir, label_path, names, overrides)
                xy, visible = projector(*pose)
            if names is None:
                names = default_keypoint_names(len(xy))
            if len(xy) != len(names):
                raise DataError(f"{where}field 'keypoints' has {len(xy)} entries, expected {len(names)}", label_path)
            outside = visible & ~inside(xy, size)
            if outside.any():
                k = int(np.flatnonzero(outside)[0])
                raise DataError(f"{where}keypoint {k} is marked visible but ({xy[k, 0]:.1f}, {xy[k, 1]:.1f}) "
                                f"lies outside the {size[0]}x{size[1]} image", label_path)
            boxes.append(_read_box(record, xy, size, label_path, where))
            paths.append(path)
            points.append(xy)
            flags.append(visible)
            sizes.append(size)
            poses.append(pose)
        except DataError as err:
            if skipped is None:
                raise
            skipped.append((err.path, err.message))
    if not paths:  # a problem of the whole split (say, no camera.json), not of a few records
        raise DataError(f"all {len(records)} records are bad; the first: {skipped[0][1]}", skipped[0][0])
    annotations = Annotations(label_path, paths, np.stack(points), np.stack(flags), np.array(sizes), tuple(names),
                              boxes=np.array(boxes, dtype=np.float64),
                              object_model=(_object_model(data_dir, tuple(names), overrides) if projector is None
                                            else projector.object_model(tuple(names))))
    if projector is not None:  # keypoints projected from poses need the images' camera
        check_camera_size(projector.camera, annotations.image_sizes, paths,
                          str(camera_path or side_file(data_dir, "camera.json")))
    if all(pose is not None for pose in poses):
        annotations.pose_q, annotations.pose_r = (np.stack(part) for part in zip(*poses))
    return annotations


def load_labels(data_cfg, split, skipped=None, labels=None, images=None, allow_outside=False):
    """(annotations, data_cfg) of a split: the SPEED layout (`load_annotations`) or a COCO
    keypoints file (`load_coco`), as `data_cfg.label_format` says or the file shows; for
    COCO, the returned config has label_format coco, the category read and crop box."""
    label_path, folders = split_files(data_cfg.data_dir, split, labels, images)
    fmt, data = data_cfg.label_format, None
    if fmt == "auto":
        data = load_json(label_path)
        fmt = "coco" if is_coco(data) else "speed"
    if fmt == "speed":
        return load_annotations(data_cfg.data_dir, split, skipped=skipped, labels=labels, images=images,
                                allow_outside=allow_outside), data_cfg
    annotations = load_coco(label_path, folders, data_cfg.category, skipped, allow_outside, data)
    # The category as read (the only one with keypoints when none was named) decides the cache.
    category = data_cfg.category or annotations.instances["category_name"]
    return annotations, dataclasses.replace(data_cfg, label_format="coco", category=str(category), crop="box")


def load_coco(label_path, folders, category="", skipped=None, allow_outside=False, data=None):
    """`Annotations` of one category of a COCO keypoints file, one row per instance
    (`common.coco_keypoints.read_coco_keypoints`); its images are looked up in `folders`
    (`common.data_io.split_files`). skipped: as `load_annotations`'; an image not found
    then leaves out its instances. data: the file's parsed JSON, when already read."""
    coco = read_coco_keypoints(label_path, category, bad=skipped, data=data)
    found, sizes = {}, {}
    for name in dict.fromkeys(coco.file_names):
        try:
            found[name] = find_image(folders, name, label_path, f"image '{name}': ", allow_outside)
            sizes[name] = image_size(found[name])
        except DataError as err:
            if skipped is None:
                raise
            skipped.append((err.path, err.message))
    rows = [i for i, name in enumerate(coco.file_names) if name in found]
    if not rows:
        raise DataError(f"none of the {len(set(coco.file_names))} images with instances could be read; the first: "
                        f"{skipped[0][1]}", skipped[0][0])
    instances = {
        "image_ids": _id_array([coco.image_ids[i] for i in rows]),
        "annotation_ids": _id_array([coco.annotation_ids[i] for i in rows]),
        "coco_v": coco.v[rows], "true_boxes": coco.boxes[rows], "instance_areas": coco.areas[rows],
        "category_id": _id_array([coco.category_id])[0], "category_name": np.array(coco.category_name),
        "skipped_iscrowd": np.int64(coco.skipped["iscrowd"]),
        "skipped_unlabelled": np.int64(coco.skipped["no_labelled_keypoint"]),
        "skipped_other_category": np.int64(coco.skipped["other_category"]),
        "source_images": np.int64(len(found))}
    paths = [found[coco.file_names[i]] for i in rows]
    return Annotations(Path(label_path), paths, coco.xy[rows], coco.v[rows] > 0,
                       np.array([sizes[coco.file_names[i]] for i in rows]), coco.keypoint_names,
                       boxes=coco.boxes[rows], instances=instances)


def _id_array(ids):
    """COCO ids as an array: int64 when every id is an integer that fits, else strings."""
    limit = np.iinfo(np.int64)
    if all(isinstance(i, int) and limit.min <= i <= limit.max for i in ids):
        return np.array(ids, np.int64)
    return np.array([str(i) for i in ids])


def _read_box(record, xy, size, label_path, where):
    """The object's box: the record's "bbox" (null = not in the image), else the box of
    its keypoints clipped to the image, else the whole image."""
    box = record.get("bbox")
    if box is not None:
        box = _vector(box, 4, "bbox", label_path, where)
        if not (box[2] > box[0] and box[3] > box[1]):
            raise DataError(f"{where}field 'bbox' must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1", label_path)
        return box
    box = points_box(xy, size)
    return np.array(box if box is not None else [0.0, 0.0, *size], dtype=np.float64)


def _read_pose(record, label_path, where, required):
    """(q, r) of a record, None when it has no pose (allowed when it has keypoints)."""
    q_field = next((f for f in QUATERNION_FIELDS if f in record), None)
    if not required and q_field is None and TRANSLATION_FIELD not in record:
        return None
    q_field = q_field or QUATERNION_FIELDS[0]
    q = _vector(require(record, q_field, label_path, where), 4, q_field, label_path, where)
    if not np.any(q):
        raise DataError(f"{where}field '{q_field}' is the zero quaternion", label_path)
    r = _vector(require(record, TRANSLATION_FIELD, label_path, where), 3, TRANSLATION_FIELD, label_path, where)
    for field, values in ((q_field, q), (TRANSLATION_FIELD, r)):
        if np.abs(values).max() > MAX_POSE_VALUE:
            raise DataError(f"{where}field '{field}' holds {_shorten(values.tolist())}: a value beyond "
                            f"{MAX_POSE_VALUE:.0e} is a corrupt label", label_path)
    if not np.linalg.norm(q) >= MIN_QUATERNION_NORM:
        raise DataError(f"{where}field '{q_field}' {q.tolist()} has a norm below {MIN_QUATERNION_NORM:g}: "
                        "not a rotation", label_path)
    return q, r


def read_poses(label_path):
    """{filename: (q (4,), r (3,))} from a JSON list in the SPEED label layout (`filename`,
    `q_vbs2tango` or SPEED+'s `q_vbs2tango_true`, `r_Vo2To_vbs_true`): label files of
    SPEED, SPEED+ or the renderer, and `use_vis.py`'s poses.json."""
    records = load_json(label_path)
    if not isinstance(records, list):
        raise DataError("expected a JSON list of image records", label_path)
    poses = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"record {index}: expected a JSON object", label_path)
        filename = require(record, "filename", label_path, f"record {index}: ")
        if not isinstance(filename, str) or not filename:
            raise DataError(f"record {index}: field 'filename' must be a non-empty string", label_path)
        if filename in poses:
            raise DataError(f"record {index} ({filename}): the file name appears twice", label_path)
        poses[filename] = _read_pose(record, label_path, f"record {index} ({filename}): ", required=True)
    return poses


def score_poses(pred_path, label_path):
    """SPEED errors of the poses in `pred_path` against those in `label_path` (both read
    by `read_poses`), matched by file name: `stage2_visible_keypoints.pose.pose_error_summary` over the
    labelled images, where one with no predicted pose counts as unsolved, plus
    `predicted_not_labelled`, the predictions left out."""
    predicted, labels = read_poses(pred_path), read_poses(label_path)
    if not labels:
        raise DataError("no labelled images", label_path)
    if predicted and not set(predicted) & set(labels):
        raise DataError(f"no predicted file name is in the labels ({label_path}); names are matched exactly, "
                        "folders included", pred_path)
    names = sorted(labels)
    for name in names:
        if not np.linalg.norm(labels[name][1]) > 0:
            raise DataError(f"{name}: field '{TRANSLATION_FIELD}' is zero: the relative error needs a distance",
                            label_path)
    missing = (np.full(4, np.nan), np.full(3, np.nan))
    q_pred, r_pred = (np.stack(part) for part in zip(*(predicted.get(n, missing) for n in names)))
    q_true, r_true = (np.stack(part) for part in zip(*(labels[n] for n in names)))
    summary = pose_error_summary(q_pred, r_pred, q_true, r_true)
    summary["predicted_not_labelled"] = len(set(predicted) - set(labels))
    summary["files"] = {"pred": str(pred_path), "labels": str(label_path)}
    return summary


def side_file(data_dir, name):
    """`data_dir/name`, else `data_dir/../name` (the SPEED+ layout), else None."""
    for path in (Path(data_dir) / name, Path(data_dir).parent / name):
        if path.is_file():
            return path
    return None


def keypoint_mesh(mesh, names):
    """`mesh` with its vertices in the order of `names` (faces follow), or None when its
    vertex names are not the keypoint names."""
    if sorted(mesh.vertex_names) != sorted(names) or len(set(names)) != len(names):
        return None
    order = [mesh.vertex_names.index(name) for name in names]
    remap = np.argsort(order)  # mesh vertex index -> keypoint index
    return Mesh(mesh.vertices[order], remap[mesh.faces], names)


def _object_model(data_dir, names, overrides=None):
    """The camera and the keypoints' 3-D positions, when camera.json and a mesh.obj whose
    vertex names are the keypoint names (in any order) are found; else None."""
    overrides = overrides or {}
    camera_path = overrides.get("camera.json") or side_file(data_dir, "camera.json")
    mesh_path = overrides.get("mesh.obj") or side_file(data_dir, "mesh.obj")
    mesh = keypoint_mesh(load_obj(mesh_path), names) if camera_path and mesh_path else None
    if mesh is None:
        return None
    return ObjectModel(load_camera_json(camera_path), mesh.vertices, mesh.faces, names)


def read_keypoint_names(path):
    """A `keypoint_names.json` (a JSON list of unique strings) as a tuple."""
    names = load_json(path)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError("expected a JSON list of keypoint names", path)
    _check_unique(names, path)
    return tuple(names)


def _check_unique(names, path):
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise DataError(f"keypoint names must be unique; repeated: {', '.join(repeated)}", path)


def _keypoint_names(data_dir):
    names_path = side_file(data_dir, KEYPOINT_NAMES_FILE)
    if names_path is not None:
        return read_keypoint_names(names_path)
    names_path = side_file(data_dir, "mesh.obj")
    if names_path is None:
        return None
    names = load_obj(names_path).vertex_names
    _check_unique(names, names_path)
    return tuple(names)




def _read_keypoints(record, size, label_path, where):
    xy = json_numbers(record["keypoints"])
    if xy is None:
        raise DataError(f"{where}field 'keypoints' must be a list of [x, y] numbers", label_path)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise DataError(f"{where}field 'keypoints' must have shape (K, 2), got {xy.shape}", label_path)
    if not np.isfinite(xy).all():
        raise DataError(f"{where}field 'keypoints' holds NaN or infinite values", label_path)
    if np.abs(xy).max(initial=0.0) > MAX_PIXEL:
        raise DataError(f"{where}field 'keypoints' holds a coordinate beyond {MAX_PIXEL:.0e} px", label_path)
    if "visible" in record:
        visible = record["visible"]
        # Checked element by element: numpy would turn [true, [true]] into a ValueError and "1" into a flag.
        if (not isinstance(visible, list) or len(visible) != len(xy)
                or not all(isinstance(v, bool) or (type(v) is int and v in (0, 1)) for v in visible)):
            raise DataError(f"{where}field 'visible' must be {len(xy)} booleans (or 0/1), got "
                            f"{_shorten(visible)}", label_path)
        return xy, np.array(visible, dtype=bool)
    return xy, inside(xy, size)


class _PoseProjector:
    """Keypoints from a SPEED pose: project the mesh vertices, ray-cast their visibility.

    The keypoints come out in the order of `names` when they are the mesh's vertex names
    in another order; otherwise in mesh order (the names then only label the vertices).
    """

    def __init__(self, data_dir, label_path, names, overrides=None):
        overrides = overrides or {}
        paths = {name: overrides.get(name) or side_file(data_dir, name) for name in ("camera.json", "mesh.obj")}
        for name, path in paths.items():
            if path is None:
                raise DataError(f"records have no 'keypoints', so {name} is needed to project the pose, "
                                f"but neither {data_dir / name} nor {data_dir.parent / name} exists", label_path)
        self.camera = load_camera_json(paths["camera.json"])
        mesh = load_obj(paths["mesh.obj"])
        self.mesh = (keypoint_mesh(mesh, names) if names is not None else None) or mesh

    def object_model(self, names):
        """The camera and 3-D keypoints the projected keypoints came from."""
        return ObjectModel(self.camera, self.mesh.vertices, self.mesh.faces, names)

    def __call__(self, q, r):
        points_cam = body_to_camera(self.mesh.vertices, q, r)
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = project_points(points_cam, self.camera)
        visible = visible_vertices(self.mesh, points_cam, self.camera)
        finite = np.isfinite(xy).all(axis=1)  # a vertex in the camera plane projects to infinity
        xy[~finite] = -1.0
        return xy, visible & finite


def _shorten(value, limit=80):
    """`value` for an error message, cut to `limit` characters (a label file can hold anything)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _vector(value, length, field, label_path, where):
    array = json_numbers(value)
    if array is None:
        array = np.empty(0)
    if array.shape != (length,) or not np.isfinite(array).all():
        raise DataError(f"{where}field '{field}' must be {length} finite numbers", label_path)
    return array


def preprocess_config(data_cfg):
    """The part of the config that decides the cache's content (its hash names the cache)."""
    keys = ("canvas_size", "crop_size", "input_size", "heatmap_size", "sigma", "cache_heatmaps")
    settings = {"cache_format": CACHE_FORMAT, **{key: getattr(data_cfg, key) for key in keys}}
    if data_cfg.crop != "centre":  # only then: caches of the centre crop keep their hash
        settings.update(crop=data_cfg.crop, box_margin=data_cfg.box_margin, box_jitter=data_cfg.box_jitter)
    if data_cfg.label_format == "coco":  # likewise: SPEED caches keep theirs
        settings.update(label_format="coco", category=data_cfg.category)
    return settings


def crop_transforms(annotations, data_cfg, split):
    """(N, 4) box-crop transforms (`data.crop: box`) of a split's images, around their
    boxes with `data.box_jitter`'s error, drawn from (split, image index): reproducible;
    None for the centre crop (each image's letterbox transform is found as it is read)."""
    if data_cfg.crop != "box":
        return None
    scale, shift = data_cfg.box_jitter
    key = zlib.crc32(split.encode())
    boxes = [jitter_box(box, np.random.default_rng([key, i]), scale, shift) if scale or shift else box
             for i, box in enumerate(annotations.boxes)]
    return box_crop_transform(np.array(boxes), data_cfg.input_size, data_cfg.box_margin)


LAYOUT = cache.Layout(
    rebuild="preprocess_vis.py --split {split}",
    shapes={"xy_norm": ("N", "K", 2), "visible": ("N", "K"), "transforms": ("N", 4), "filenames": ("N",),
            "keypoint_names": ("K",), "input_size": (2,), "heatmap_size": (2,), "sigma": (),
            "xy_original": ("N", "K", 2), "visible_original": ("N", "K"), "image_sizes": ("N", 2),
            "image_paths": ("N",), "heatmaps": ("N", "h", "w", "K"), "pose_q": ("N", 4), "pose_r": ("N", 3),
            "camera": (11,), "keypoints_3d": ("K", 3), "mesh_faces": ("F", 3),
            "image_ids": ("N",), "annotation_ids": ("N",), "coco_v": ("N", "K"), "true_boxes": ("N", 4),
            "instance_areas": ("N",), "category_id": (), "category_name": (), "skipped_iscrowd": (),
            "skipped_unlabelled": (), "skipped_other_category": (), "source_images": ()},
    images=lambda y: ("N", int(y["input_size"][1]), int(y["input_size"][0]), 3),
    settings=preprocess_config,
    names="keypoint_names",
    required=("xy_norm", "visible", "transforms", "filenames", "keypoint_names", "input_size", "heatmap_size",
              "sigma"),
    mmap=("heatmaps",),
    # Whether the heatmaps were cached does not matter to training (it builds them when absent).
    optional_settings=("cache_heatmaps",),
)


def preprocess(data_cfg, split, progress=True, workers=1, labels=None, images=None, skip_bad=False,
               allow_outside=False):
    """Build (or reuse) the cache of one split; returns a summary dict.

    Streams images through a memory-mapped `.npy`, so memory does not grow with N
    (`common.cache`). An unchanged config and unchanged inputs reuse the existing cache;
    `rebuilt` in the summary says why an existing one was not. `workers` processes
    decode and resize. skip_bad: leave out bad records and images that cannot be
    decoded, listed in the cache folder's `skipped.tsv`, instead of stopping.
    """
    start = time.perf_counter()
    skipped = [] if skip_bad else None
    annotations, data_cfg = load_labels(data_cfg, split, skipped=skipped, labels=labels, images=images,
                                        allow_outside=allow_outside)
    coco = annotations.instances is not None
    # A data folder's own mesh, as render_vis.py does for the mesh it renders: a symmetric
    # one makes keypoint identities ambiguous, whoever made the images. (COCO data has none.)
    mesh_path = None if coco else side_file(annotations.label_path.parent, "mesh.obj")
    for message in symmetry_warnings(load_obj(mesh_path)) if mesh_path is not None else ():
        warnings.warn(f"{mesh_path}: {message}", stacklevel=2)
    out_dir = Path(data_cfg.cache_dir) / split
    cfg_values = preprocess_config(data_cfg)
    # Names, and the pose projection, come from the side files too.
    side_files = () if coco else (side_file(annotations.label_path.parent, name) for name in SIDE_FILES)
    src_hash = cache.source_hash([annotations.label_path, *side_files], annotations.image_paths, skip_bad=skip_bad)
    y, stale = cache.current(out_dir, LAYOUT, cfg_values, src_hash)
    if y is not None:
        return _summary(split, out_dir, y, reused=True, seconds=time.perf_counter() - start)

    width, height = data_cfg.input_size
    count = len(annotations.image_paths)
    transforms, kept = np.zeros((count, 4)), []

    crops = crop_transforms(annotations, data_cfg, split)

    def warped():  # the images, keeping each one's transform for the labels
        jobs = [(path, data_cfg.canvas_size, data_cfg.crop_size, data_cfg.input_size,
                 None if crops is None else crops[i]) for i, path in enumerate(annotations.image_paths)]
        for i, result in enumerate(parallel_map(_warp_file, jobs, workers, f"preprocess {split}",
                                                progress=progress, errors="return" if skip_bad else "raise")):
            if isinstance(result, DataError):  # only with skip_bad
                skipped.append((result.path, result.message))
                continue
            transforms[i] = result[1]
            kept.append(i)
            yield result[0][None]

    with cache.writing(out_dir, cfg_values, src_hash) as writer:
        writer.images((count, height, width, 3), warped(), fewer=skip_bad)
        annotations, transforms = _subset(annotations, kept), transforms[kept]
        arrays, streamed = _label_arrays(annotations, transforms, data_cfg)
        writer.labels(arrays, streamed)
        writer.skipped(skipped)
    return _summary(split, out_dir, arrays, reused=False, seconds=time.perf_counter() - start, rebuilt=stale)


def _subset(annotations, rows):
    """The annotations of the images at `rows` (those left once bad ones are skipped)."""
    if len(rows) == len(annotations.image_paths):
        return annotations
    per_image = {key: getattr(annotations, key)[rows] for key in ("xy_original", "visible", "image_sizes", "boxes", "pose_q",
                                                                   "pose_r") if getattr(annotations, key) is not None}
    if annotations.instances is not None:
        per_image["instances"] = {key: value[rows] if np.ndim(value) else value
                                  for key, value in annotations.instances.items()}
        per_image["instances"]["source_images"] = np.int64(len({annotations.image_paths[i] for i in rows}))
    return dataclasses.replace(annotations, image_paths=[annotations.image_paths[i] for i in rows], **per_image)


def _label_arrays(annotations, transforms, data_cfg):
    """The Y arrays of a split whose images were warped by `transforms` (N, 4), and the
    streamed heatmaps when they are cached."""
    xy_input = to_input(annotations.xy_original, transforms)
    overflow = ~(np.abs(xy_input) <= np.finfo(np.float32).max).all(axis=(1, 2))  # NaN fails too
    if overflow.any():
        i = int(np.flatnonzero(overflow)[0])
        raise DataError(f"record {i} ({annotations.image_paths[i].name}): a keypoint's coordinates are too large "
                        "for float32 once in the input frame", annotations.label_path)
    visible = annotations.visible & inside(xy_input, data_cfg.input_size)
    xy_norm = (xy_input / np.array(data_cfg.input_size)).astype(np.float32)
    arrays = {
        "xy_norm": xy_norm, "visible": visible,
        "xy_original": annotations.xy_original, "visible_original": annotations.visible,
        "transforms": transforms, "image_sizes": annotations.image_sizes,
        "filenames": np.array([str(p.name) for p in annotations.image_paths]),
        "image_paths": np.array([str(p.resolve()) for p in annotations.image_paths]),
        "keypoint_names": np.array(annotations.keypoint_names),
        "input_size": np.array(data_cfg.input_size), "heatmap_size": np.array(data_cfg.heatmap_size),
        "sigma": np.float32(data_cfg.sigma),
    }
    if annotations.pose_q is not None:
        arrays.update(pose_q=annotations.pose_q, pose_r=annotations.pose_r)
    if annotations.object_model is not None:
        model = annotations.object_model
        arrays.update(camera=model.camera.to_array(), keypoints_3d=model.keypoints_3d, mesh_faces=model.faces)
    if annotations.instances is not None:
        arrays.update(annotations.instances)
    streamed = None
    if data_cfg.cache_heatmaps:  # streamed into the .npz chunk by chunk: memory does not grow with N
        codec = data_cfg.codec()
        shape = (len(xy_norm), *codec.map_shape, len(annotations.keypoint_names))
        streamed = {"heatmaps": (shape, np.float16, _encode_heatmaps(xy_norm, visible, codec))}
    return arrays, streamed


def check_camera_size(camera, sizes, paths, camera_name):
    """Poses need the camera the images were taken with: refuse images of another size."""
    wrong = np.flatnonzero(np.any(np.asarray(sizes) != (camera.width, camera.height), axis=1))
    if len(wrong):
        w, h = (int(v) for v in sizes[wrong[0]])
        raise DataError(f"image is {w}x{h} but the camera ({camera_name}) is {camera.width}x{camera.height}; "
                        "a pose needs the camera the image was taken with", paths[wrong[0]])


def _warp_file(job):
    """Read one image and warp it to the input frame (a process-pool task)."""
    image, transform, _ = warp_image_file(*job)
    return image, transform


def _encode_heatmaps(xy_norm, visible, codec, chunk=256):
    """The Gaussian heatmap targets of `codec` (the data config's), float16, `chunk` images at a time."""
    import keras  # only needed for cached heatmaps

    for i in range(0, len(xy_norm), chunk):
        heatmaps = codec.encode(xy_norm[i:i + chunk], visible[i:i + chunk])[0]
        yield keras.ops.convert_to_numpy(heatmaps).astype(np.float16)


def _summary(split, out_dir, y, reused, seconds, rebuilt=None):
    visible = y["visible"]
    return {"split": split, "cache": str(out_dir), "images": int(visible.shape[0]),
            "keypoints": int(visible.shape[1]), "visible_fraction": float(visible.mean()),
            "poses": "pose_q" in y, "keypoints_3d": "keypoints_3d" in y,
            "coco": {key: (str(y[key]) if key == "category_name" else int(y[key])) for key in
                     ("category_name", "source_images", "skipped_iscrowd", "skipped_unlabelled",
                      "skipped_other_category")} if "image_ids" in y else None,
            "reused": reused, "rebuilt": rebuilt, "seconds": round(seconds, 2),
            "skipped": cache.skipped_items(out_dir), "report": str(Path(out_dir) / cache.REPORT_FILE)}


class Cache(cache.Cache):
    """A loaded split: images (N, H, W, 3) uint8 memory map and the Y arrays (dict)."""

    layout = LAYOUT
    keypoint_names = cache.Cache.names


load_cache = Cache.load  # (cache_dir, split, data_cfg=None)


def preprocess_folder(paths, data_cfg):
    """Unlabelled images -> (images (N, H, W, 3) uint8, transforms (N, 4), sizes (N, 2))."""
    if data_cfg.crop == "box":
        raise DataError("the model takes crops around the object's box (data.crop: box), which a folder of "
                        "images does not give: pass use_vis.py --boxes (detections) or --labels (COCO keypoints), "
                        "or run pose_vis.py with a stage-1 detector", paths[0] if paths else None)
    images, transforms, sizes = [], [], []
    for path in paths:
        warped, transform, size = warp_image_file(path, data_cfg.canvas_size, data_cfg.crop_size, data_cfg.input_size)
        images.append(warped)
        transforms.append(transform)
        sizes.append(size)
    return np.stack(images), np.stack(transforms), np.array(sizes)


def preprocess_boxes(paths, boxes, data_cfg):
    """Crops around boxes -> (images (M, H, W, 3) uint8, transforms (M, 4), sizes (M, 2)).

    paths: (M,) image files, one per box (a file appears once per object in it); boxes:
    (M, 4) [x1, y1, x2, y2] original pixels. Each crop is the one the box gives a cache
    (`common.geometry.box_crop_transform`, `data.box_margin`), without jitter."""
    transforms = box_crop_transform(np.asarray(boxes, np.float64).reshape(-1, 4), data_cfg.input_size,
                                    data_cfg.box_margin)
    images, sizes = [], []
    for path, transform in zip(paths, transforms):
        warped, _, size = warp_image_file(path, data_cfg.canvas_size, data_cfg.crop_size, data_cfg.input_size,
                                          transform)
        images.append(warped)
        sizes.append(size)
    width, height = data_cfg.input_size
    return (np.stack(images) if images else np.zeros((0, height, width, 3), np.uint8), transforms,
            np.array(sizes).reshape(-1, 2))


class FolderStream:
    """Unlabelled images decoded and cut to the input frame in threads, a batch at a time,
    ahead of whoever iterates: `use_vis.py` runs the model on one batch while the next
    ones decode (`common.parallel.prefetch_batches`). PIL releases the GIL while it decodes
    and resamples, so the threads use the cores the model leaves idle, with no worker
    processes to start or arrays to pickle; at a lower priority (by `niceness`), they take
    the gaps in the model's use of the cores instead of preempting its threads.

    Iterating yields (B, H, W, 3) uint8 batches of `batch_size`; at most `ahead` batches
    are decoded but not yet taken, which bounds the memory. The sizes (N, 2) (width,
    height) are read from the files' headers at once, so a missing or unreadable file
    fails before any decoding; after a full iteration `transforms` holds (N, 4) and
    `kept` the first `keep` images (the figures'). `decode_seconds`: summed over threads.
    """

    def __init__(self, paths, data_cfg, batch_size, keep=0, workers=None, ahead=2, niceness=10):
        if data_cfg.crop == "box":
            raise DataError("the model takes crops around the object's box (data.crop: box), which a folder of "
                            "images does not give: run pose_vis.py with a stage-1 detector",
                            paths[0] if paths else None)
        self.paths, self.data_cfg, self.batch_size = list(paths), data_cfg, int(batch_size)
        self.keep, self.ahead, self.niceness = int(keep), int(ahead), int(niceness)
        self.workers = workers  # None: prefetch_batches' default
        self.sizes = np.array([image_size(p) for p in self.paths], np.int64).reshape(-1, 2)
        self.transforms, self.kept, self.decode_seconds = None, [], 0.0

    def __len__(self):
        return len(self.paths)

    def _decode(self, path):
        start = time.perf_counter()
        d = self.data_cfg
        image, transform, _ = warp_image_file(path, d.canvas_size, d.crop_size, d.input_size)
        return image, transform, time.perf_counter() - start

    def __iter__(self):
        transforms, self.kept, self.decode_seconds = [], [], 0.0
        for done in prefetch_batches(self._decode, self.paths, self.batch_size, self.workers, self.ahead,
                                     niceness=self.niceness):
            images = np.stack([d[0] for d in done])
            transforms += [d[1] for d in done]
            self.decode_seconds += sum(d[2] for d in done)
            self.kept += list(images[:max(0, self.keep - len(self.kept))])
            yield images
        self.transforms = np.stack(transforms) if transforms else np.zeros((0, 4))
