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

Cache `{cache_dir}/{split}/`:
    X_data.npy   (N, S, S, 1) uint8, images resized to data.input_size (grayscale)
    Y_data.npz   xy_norm (N, K, 2) float32 in [0, 1] of the image; visible (N, K) bool;
                 image_sizes (N, 2) (width, height) of the files; filenames (N,);
                 keypoint_names (K,); config_hash; source_hash
"""

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

from common.config import config_hash
from common.data_io import atomic_path, load_json, load_npz, open_image_cache, require, save_npz
from common.errors import DataError

CACHE_KEYS = ("xy_norm", "visible", "image_sizes", "filenames", "keypoint_names", "config_hash")


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


def _read_gray(path):
    if not Path(path).is_file():
        raise DataError("image file not found", path)
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataError("cannot read image (corrupt or not an image)", path)
    return image


def read_images(paths, data_cfg):
    """Unlabelled image files as the cache holds images: (images (N, S, S, 1) uint8,
    grayscale, resized to `data_cfg.input_size`; sizes (N, 2) (width, height))."""
    size, images, sizes = data_cfg.input_size, [], []
    for path in paths:
        image = _read_gray(path)
        sizes.append(image.shape[::-1])
        images.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)[..., None])
    return np.stack(images), np.array(sizes, np.int32)


def preprocess(data_dir, split, cache_dir, data_cfg, progress=True):
    """Labels `{data_dir}/{split}.json` + images -> cache; an up-to-date cache is reused.

    Images are looked up in `images/{split}/`, then `images/`. Each is read as
    grayscale and resized to `data_cfg.input_size` (keypoints scaled with it).
    Returns the cache folder.
    """
    from tqdm import tqdm

    data_dir, out = Path(data_dir), Path(cache_dir) / split
    labels_path = data_dir / f"{split}.json"
    labels = read_annotations(labels_path)
    size = data_cfg.input_size
    digest = hashlib.sha256(labels_path.read_bytes()).hexdigest()[:16]
    want_hash = cache_hash(data_cfg)
    if (out / "Y_data.npz").is_file() and (out / "X_data.npy").is_file():
        old = load_npz(out / "Y_data.npz")
        if str(old.get("config_hash")) == want_hash and str(old.get("source_hash")) == digest:
            return out
    folders = [data_dir / "images" / split, data_dir / "images"]
    n, k = labels["xy"].shape[:2]
    images = np.empty((n, size, size, 1), np.uint8)
    sizes = np.empty((n, 2), np.int32)
    xy_norm = np.empty((n, k, 2), np.float32)
    for i, name in enumerate(tqdm(labels["file_names"], desc=f"preprocess {split}", unit="img",
                                  disable=not progress)):
        path = next((f / name for f in folders if (f / name).is_file()), folders[0] / name)
        image = _read_gray(path)
        h, w = image.shape
        sizes[i] = (w, h)
        images[i, ..., 0] = image if (h, w) == (size, size) else cv2.resize(image, (size, size),
                                                                              interpolation=cv2.INTER_AREA)
        xy_norm[i] = labels["xy"][i] / np.array([w, h], np.float32)
    visible = labels["visible"] & (xy_norm >= 0).all(-1) & (xy_norm <= 1).all(-1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "Y_data.npz").unlink(missing_ok=True)  # labels go first: a half-written cache is never "up to date"
    with atomic_path(out / "X_data.npy") as tmp:
        np.save(tmp, images)
    save_npz(out / "Y_data.npz", xy_norm=xy_norm, visible=visible, image_sizes=sizes,
             filenames=np.array(labels["file_names"]), keypoint_names=np.array(labels["keypoint_names"]),
             config_hash=np.array(want_hash), source_hash=np.array(digest))
    return out


def cache_hash(data_cfg):
    """What the cache depends on in the config (only the input size)."""
    return config_hash({"input_size": data_cfg.input_size})


def load_cache(cache_dir, split, data_cfg):
    """(images (N, S, S, 1) uint8 memory map, labels dict); a stale cache is refused."""
    folder = Path(cache_dir) / split
    y = load_npz(folder / "Y_data.npz", CACHE_KEYS)
    if str(y["config_hash"]) != cache_hash(data_cfg):
        raise DataError("cache was built with another data.input_size; re-run preprocess_base.py",
                        folder / "Y_data.npz")
    size = data_cfg.input_size
    images = open_image_cache(folder / "X_data.npy", (len(y["xy_norm"]), size, size, 1), "preprocess_base.py")
    return images, y


def labels_json(labels):
    """The list format for `labels` (as returned by `read_annotations`), e.g. to write one."""
    return json.loads(json.dumps({
        "images": [{"id": i + 1, "file_name": name, "keypoints": labels["xy"][i].tolist()}
                   for i, name in enumerate(labels["file_names"])],
        "keypoint_names": list(labels["keypoint_names"]), "num_keypoints": len(labels["keypoint_names"])}))
