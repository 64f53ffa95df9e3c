"""Annotation readers (COCO keypoints and the simple list format) and the image cache.

Two label formats are read, picked by their fields:

- COCO keypoints: `{"images": [{"id", "file_name", ...}], "annotations": [{"image_id",
  "keypoints": [x, y, v] * K, ...}], "categories": [{"keypoints": [names], ...}]}`.
  One person per image (the first annotation of an image is used); v = 0 is
  "not labelled" and counts as invisible, v = 1 and v = 2 as labelled.
- List format: `{"images": [{"id", "file_name", "keypoints": [[x, y], ...]}],
  "keypoint_names": [...], "num_keypoints": K}`; every keypoint is labelled.

Coordinates are read in the package convention (pixel i covers [i, i + 1), centre
i + 0.5) in the pixels of the image file.

Cache `{cache_dir}/{split}/` (written and read by `common.cache`):
    X_data.npy   (N, S, S, 1) uint8, images resized to data.input_size (grayscale)
    Y_data.npz   xy_norm (N, K, 2) float32 in [0, 1] of the image; visible (N, K) bool;
                 image_sizes (N, 2) (width, height) of the files; filenames (N,);
                 keypoint_names (K,); input_size; config_hash, config_json, source_hash
"""

import json
from pathlib import Path

import cv2
import numpy as np

from common import cache
from common.data_io import data_file, load_json, require
from common.errors import DataError
from common.parallel import parallel_map


def read_annotations(path):
    """Read a COCO-keypoints or list-format file.

    Returns:
        dict with `file_names` (N,) list, `xy` (N, K, 2) float32 image pixels,
        `visible` (N, K) bool and `keypoint_names` (K,) list.
    """
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataError("expected a JSON object with 'images'", path)
    if "annotations" in data:
        return _read_coco(data, path)
    return _read_list(data, path)


def _read_coco(data, path):
    categories = require(data, "categories", path)
    if not isinstance(categories, list) or not categories:
        raise DataError("field 'categories' must be a non-empty list", path)
    names = [str(n) for n in require(categories[0], "keypoints", path, "categories[0]: ")]
    num_keypoints = len(names)
    if num_keypoints == 0:
        raise DataError("categories[0]: field 'keypoints' names no keypoints", path)
    by_image = {}
    for i, ann in enumerate(require(data, "annotations", path)):
        image_id = require(ann, "image_id", path, f"annotations[{i}]: ")
        if image_id not in by_image:
            by_image[image_id] = (i, require(ann, "keypoints", path, f"annotations[{i}]: "))
    file_names, rows = [], []
    for j, image in enumerate(require(data, "images", path)):
        where = f"images[{j}]: "
        image_id = require(image, "id", path, where)
        if image_id not in by_image:
            raise DataError(f"{where}no annotation with image_id {image_id!r}", path)
        i, values = by_image[image_id]
        values = _numbers(values, path, f"annotations[{i}] (image {image_id}): field 'keypoints'")
        if values.size != 3 * num_keypoints:
            raise DataError(f"annotations[{i}] (image {image_id}): field 'keypoints' has {values.size} "
                            f"numbers, expected 3 * {num_keypoints}", path)
        rows.append(values.reshape(num_keypoints, 3))
        file_names.append(str(require(image, "file_name", path, where)))
    if not rows:
        raise DataError("no images", path)
    rows = np.stack(rows)
    flags = rows[..., 2]
    if not np.isin(flags, (0, 1, 2)).all():
        n = int(np.argwhere(~np.isin(flags, (0, 1, 2)))[0, 0])
        raise DataError(f"images[{n}] ({file_names[n]}): visibility flags must be 0, 1 or 2, "
                        f"got {flags[n].tolist()}", path)
    return {"file_names": file_names, "xy": rows[..., :2].astype(np.float32), "visible": flags > 0,
            "keypoint_names": names}


def _read_list(data, path):
    images = require(data, "images", path)
    names = data.get("keypoint_names")
    num_keypoints = data.get("num_keypoints", len(names) if names else None)
    if not isinstance(images, list) or not images:
        raise DataError("field 'images' must be a non-empty list", path)
    file_names, rows = [], []
    for j, image in enumerate(images):
        where = f"images[{j}]: "
        file_names.append(str(require(image, "file_name", path, where)))
        values = _numbers(require(image, "keypoints", path, where), path, f"{where}field 'keypoints'")
        if num_keypoints is None:
            num_keypoints = len(values)
        if values.shape != (num_keypoints, 2):
            raise DataError(f"{where}field 'keypoints' has shape {values.shape}, expected "
                            f"({num_keypoints}, 2) as [[x, y], ...]", path)
        rows.append(values)
    names = [str(n) for n in names] if names else [f"kp{k}" for k in range(num_keypoints)]
    if len(names) != num_keypoints:
        raise DataError(f"'keypoint_names' has {len(names)} names but num_keypoints is {num_keypoints}", path)
    xy = np.stack(rows).astype(np.float32)
    return {"file_names": file_names, "xy": xy, "visible": np.ones(xy.shape[:2], bool),
            "keypoint_names": names}


def _numbers(values, path, where):
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where} must hold numbers", path) from None
    if not np.isfinite(array).all():
        raise DataError(f"{where} holds NaN or infinite values", path)
    return array


def preprocess_config(data_cfg):
    """What the cache depends on in the config (only the input size)."""
    return {"input_size": data_cfg.input_size}


LAYOUT = cache.Layout(
    rebuild="preprocess_base.py --split {split}",
    shapes={"xy_norm": ("N", "K", 2), "visible": ("N", "K"), "image_sizes": ("N", 2), "filenames": ("N",),
            "keypoint_names": ("K",), "input_size": ()},
    images=lambda y: ("N", int(y["input_size"]), int(y["input_size"]), 1),
    settings=preprocess_config,
    names="keypoint_names",
    required=("xy_norm", "visible", "image_sizes", "filenames", "keypoint_names", "input_size"),
    finite=("xy_norm",),
)


def _read_gray(job):
    """Read one image as grayscale and resize it to `size` x `size` (a process-pool task);
    returns the (1, size, size, 1) image and the file's (width, height)."""
    path, size = job
    if not Path(path).is_file():
        raise DataError("image file not found", path)
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataError("cannot read image (corrupt or not an image)", path)
    h, w = image.shape
    if (h, w) != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image[None, ..., None], (w, h)


def read_images(paths, data_cfg):
    """Unlabelled image files as the cache holds images: (images (N, S, S, 1) uint8,
    grayscale, resized to `data_cfg.input_size`; sizes (N, 2) (width, height))."""
    read = [_read_gray((path, data_cfg.input_size)) for path in paths]
    return np.concatenate([image for image, _ in read]), np.array([size for _, size in read], np.int32)


def preprocess(data_dir, split, cache_dir, data_cfg, progress=True, workers=1, allow_outside=False):
    """Labels `{data_dir}/{split}.json` + images -> cache; an up-to-date cache is reused.

    Images are looked up in `images/{split}/`, then `images/`; a `file_name` that leads
    outside `data_dir` is a `DataError` unless `allow_outside`. Each is read as
    grayscale and resized to `data_cfg.input_size` (keypoints scaled with it), by
    `workers` processes. Returns the cache folder.
    """
    data_dir, out = Path(data_dir), Path(cache_dir) / split
    labels_path = data_dir / f"{split}.json"
    labels = read_annotations(labels_path)
    paths = []
    for n, name in enumerate(labels["file_names"]):
        # Every place to look is checked before any is looked at (`data_file`).
        candidates = [data_file(data_dir, Path("images", *folder, name), labels_path, f"images[{n}] ({name}): ",
                                allow_outside) for folder in ((split,), ())]
        paths.append(next((path for path in candidates if path.is_file()), candidates[0]))
    missing = next((path for path in paths if not path.is_file()), None)
    if missing is not None:
        raise DataError("image file not found", missing)
    cfg_values = preprocess_config(data_cfg)
    src_hash = cache.source_hash([labels_path], paths)
    if cache.current(out, LAYOUT, cfg_values, src_hash)[0] is not None:
        return out
    size = data_cfg.input_size
    sizes = np.zeros((len(paths), 2), np.int32)

    def images():  # the resized images, keeping each file's size for the labels
        jobs = [(path, size) for path in paths]
        for i, (image, file_size) in enumerate(parallel_map(_read_gray, jobs, workers, f"preprocess {split}",
                                                             progress=progress)):
            sizes[i] = file_size
            yield image

    with cache.writing(out, cfg_values, src_hash) as writer:
        writer.images((len(paths), size, size, 1), images())
        xy_norm = labels["xy"] / sizes[:, None, :].astype(np.float32)  # resizing keeps xy_norm
        visible = labels["visible"] & (xy_norm >= 0).all(-1) & (xy_norm <= 1).all(-1)
        writer.labels({"xy_norm": xy_norm, "visible": visible, "image_sizes": sizes,
                       "filenames": np.array(labels["file_names"]),
                       "keypoint_names": np.array(labels["keypoint_names"]), "input_size": np.int64(size)})
    return out


def load_cache(cache_dir, split, data_cfg):
    """(images (N, S, S, 1) uint8 memory map, labels dict); a stale cache is refused."""
    return cache.load(Path(cache_dir) / split, LAYOUT, preprocess_config(data_cfg))


def labels_json(labels):
    """The list format for `labels` (as returned by `read_annotations`), e.g. to write one."""
    return json.loads(json.dumps({
        "images": [{"id": i + 1, "file_name": name, "keypoints": labels["xy"][i].tolist()}
                   for i, name in enumerate(labels["file_names"])],
        "keypoint_names": list(labels["keypoint_names"]), "num_keypoints": len(labels["keypoint_names"])}))
