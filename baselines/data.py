"""Annotation readers (COCO keypoints, the simple list format, ISBI 2015) and the image cache.

Three label formats are read, picked by their fields (a folder: ISBI):

- COCO keypoints: `{"images": [{"id", "file_name", ...}], "annotations": [{"image_id",
  "keypoints": [x, y, v] * K, "bbox": [x, y, w, h], "iscrowd"}], "categories":
  [{"keypoints": [names], ...}]}`. Every instance is one sample, cropped from its image
  by its box made square with `data.crop_margin` of context on each side; `iscrowd`
  instances and those with no labelled keypoint are skipped (and counted). v = 0 is
  "not labelled"; v = 1 "labelled, not visible" (trained and evaluated, `visible`
  false); v = 2 labelled and visible.
- List format: `{"images": [{"id", "file_name", "keypoints": [[x, y], ...]}],
  "keypoint_names": [...], "num_keypoints": K}`; every keypoint is labelled.
- ISBI 2015 cephalometric: a folder of landmark files `NNN.txt` (`baselines.cephalometric`)
  with the images `NNN.bmp` in the image folder; every landmark is labelled.

Coordinates are read in the package convention (pixel i covers [i, i + 1), centre
i + 0.5) in the pixels of the image file.

Cache `{cache_dir}/{split}/` (written and read by `common.cache`):
    X_data.npy   (N, S, S, 1) uint8, images resized to data.input_size (grayscale)
    Y_data.npz   xy_norm (N, K, 2) float32 in [0, 1] of the crop; labelled (N, K) bool (what the
                 losses and the evaluation count); visible (N, K) bool; image_sizes (N, 2)
                 (width, height) of the files; crop_boxes (N, 4) (x0, y0, w, h) of each
                 sample's crop in file pixels (the whole file for the list format),
                 so xy_original = (x0, y0) + xy_norm * (w, h); filenames (N,);
                 skipped_iscrowd, skipped_unlabelled: COCO instances left out;
                 keypoint_names (K,); input_size; config_hash, config_json, source_hash, x_crc32
"""

import collections
import json
from pathlib import Path

import cv2
import numpy as np

from common import cache
from common.coco_keypoints import file_name, label_numbers, read_coco_keypoints
from common.data_io import OutsideDataFolder, find_image, is_file, load_json, require, split_files
from common.errors import DataError
from common.parallel import parallel_map
from baselines.cephalometric import read_isbi2015


def read_annotations(path, image_dir=None):
    """Read a COCO-keypoints or list-format file, or an ISBI 2015 folder of landmark files
    (`path` a folder, its images in `image_dir`: `baselines.cephalometric`).

    Returns:
        dict with `file_names` (N,) list (one per sample: a COCO image appears once per
        instance), `xy` (N, K, 2) float32 image pixels, `labelled` (N, K) bool (v > 0),
        `visible` (N, K) bool (v = 2), `keypoint_names` (K,) list, `boxes` (N, 4) COCO
        boxes [x, y, w, h] (None for the list format: whole images) and `skipped`
        {reason: count} (COCO instances left out).
    """
    path = Path(path)
    if path.is_dir():
        return _read_isbi(path, image_dir)
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataError("expected a JSON object with 'images'", path)
    if "annotations" in data:
        return _read_coco(data, path)
    return _read_list(data, path)


def _read_coco(data, path):
    """Every instance of a COCO keypoint file as one sample, cropped by its box: the one
    COCO reader (`common.coco_keypoints`), so stage 2 and the baselines read a file alike."""
    coco = read_coco_keypoints(path, data=data)
    boxes = coco.boxes.copy()
    # [x1, y1, x2, y2] -> [x, y, w, h]; a box of one keypoint is a pixel, so it can be cropped
    boxes[:, 2:] = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)
    return {"file_names": list(coco.file_names), "xy": coco.xy.astype(np.float32), "labelled": coco.v > 0,
            "visible": coco.v == 2, "keypoint_names": list(coco.keypoint_names),
            "boxes": boxes.astype(np.float32), "skipped": coco.skipped}


def crop_boxes(boxes, margin):
    """Square crops (x0, y0, side, side) in image pixels around COCO boxes (M, 4)
    [x, y, w, h]: centred on each box, `margin` times its longer side added on every side,
    so the whole instance and some context fit the square model input undistorted."""
    boxes = np.asarray(boxes, np.float64)
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    side = boxes[:, 2:].max(1) * (1 + 2 * margin)
    return np.concatenate([centre - side[:, None] / 2, side[:, None], side[:, None]], axis=1)


def _read_list(data, path):
    images = require(data, "images", path)
    names = data.get("keypoint_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise DataError(f"field 'keypoint_names' must be a list of strings, got {str(names)[:80]}", path)
    num_keypoints = data.get("num_keypoints", len(names) if names else None)
    if num_keypoints is not None and (type(num_keypoints) is not int or num_keypoints < 1):
        raise DataError(f"field 'num_keypoints' must be a positive integer, got {num_keypoints!r}", path)
    if not isinstance(images, list) or not images:
        raise DataError("field 'images' must be a non-empty list", path)
    file_names, rows = [], []
    for j, image in enumerate(images):
        where = f"images[{j}]: "
        file_names.append(file_name(image, path, where))
        values = label_numbers(require(image, "keypoints", path, where), path, f"{where}field 'keypoints'")
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
    return {"file_names": file_names, "xy": xy, "labelled": np.ones(xy.shape[:2], bool),
            "visible": np.ones(xy.shape[:2], bool), "keypoint_names": names, "boxes": None,
            "skipped": {}}


def _read_isbi(path, image_dir):
    if image_dir is None:
        raise DataError("an ISBI landmark folder needs its image folder (--images)", path)
    isbi = read_isbi2015(path, image_dir)
    # The files hold integer pixel positions: +0.5 puts them on pixel centres (pixel i covers [i, i + 1)).
    xy = isbi["xy"] + np.float32(0.5)
    return {"file_names": [Path(p).name for p in isbi["image_paths"]], "xy": xy, "labelled": np.ones(xy.shape[:2], bool),
            "visible": np.ones(xy.shape[:2], bool), "keypoint_names": isbi["keypoint_names"], "boxes": None,
            "skipped": {}}


def preprocess_config(data_cfg):
    """What the cache depends on in the config: the input size and the crops."""
    return {"input_size": data_cfg.input_size, "crop": data_cfg.crop, "crop_margin": data_cfg.crop_margin}


LAYOUT = cache.Layout(
    rebuild="preprocess_base.py --split {split}",
    shapes={"xy_norm": ("N", "K", 2), "labelled": ("N", "K"), "visible": ("N", "K"), "image_sizes": ("N", 2),
            "crop_boxes": ("N", 4), "filenames": ("N",), "keypoint_names": ("K",), "input_size": (),
            "skipped_iscrowd": (), "skipped_unlabelled": ()},
    images=lambda y: ("N", int(y["input_size"]), int(y["input_size"]), 1),
    settings=preprocess_config,
    names="keypoint_names",
    required=("xy_norm", "labelled", "visible", "image_sizes", "crop_boxes", "filenames", "keypoint_names",
              "input_size"),
    finite=("xy_norm",),
)


def _read_gray(job):
    """Read one image as grayscale, resized to `size` x `size` whole (box None, or a job of
    (path, size) alone) or the square `box` (x0, y0, side, side) of it (black outside the
    image); a process-pool task. Returns the (1, size, size, 1) image and the file's
    (width, height)."""
    path, size, box = (*job, None)[:3]
    if not is_file(path):
        raise DataError("image file not found", path)
    try:
        # Pixels as stored, EXIF orientation ignored: the frame the labels are in, as every
        # other reader of the package reads them (cv2 would turn the image and not the labels).
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as err:  # a header declaring more pixels than OpenCV allows
        raise DataError(f"cannot read image ({' '.join(str(err).split())[-120:]})", path) from None
    if image is None:
        raise DataError("cannot read image (corrupt or not an image)", path)
    h, w = image.shape
    if box is not None:
        # OpenCV puts pixel centres at integers, the package at i + 0.5: the matrix maps
        # u + 0.5 = (x + 0.5 - x0) * scale, so crop and keypoints agree exactly.
        scale = size / box[2]
        matrix = np.array([[scale, 0, (0.5 - box[0]) * scale - 0.5], [0, scale, (0.5 - box[1]) * scale - 0.5]])
        flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.warpAffine(image, matrix, (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    elif (h, w) != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image[None, ..., None], (w, h)


def read_images(paths, data_cfg):
    """Unlabelled image files as the cache holds images: (images (N, S, S, 1) uint8,
    grayscale, resized to `data_cfg.input_size`; sizes (N, 2) (width, height))."""
    read = [_read_gray((path, data_cfg.input_size, None)) for path in paths]
    return np.concatenate([image for image, _ in read]), np.array([size for _, size in read], np.int32)


def preprocess(data_dir, split, cache_dir, data_cfg, progress=True, workers=1, labels=None, images=None,
               skip_bad=False, allow_outside=False):
    """Labels `{data_dir}/{split}.json` + images -> cache; an up-to-date cache is reused.

    Images are looked up in `images/{split}/`, `images/`, then `data_dir` (or in the
    `images` folder, with `labels` naming the label file: `common.data_io.split_files`);
    a file name that leads outside that data folder is a `DataError` unless `allow_outside`.
    Each sample is read as grayscale, its crop (COCO instances) or whole image (the list
    format) resized to `data_cfg.input_size` (keypoints follow), by `workers` processes.
    The COCO instances skipped are counted in the cache (`skipped_iscrowd`,
    `skipped_unlabelled`). skip_bad: leave out missing and unreadable images, listed in
    the cache folder's `skipped.tsv`, instead of stopping. Returns the cache folder.
    """
    label_path, folders = split_files(data_dir, split, labels, images)
    out = Path(cache_dir) / split
    labels = read_annotations(label_path, folders[0])
    paths, found = [], []
    for i, name in enumerate(labels["file_names"]):
        try:
            paths.append(find_image(folders, name, label_path, f"image of sample {i}: ", allow_outside))
            found.append(paths[-1])
        except DataError as err:
            if not skip_bad:
                raise
            # Listed in skipped.tsv in the samples' order: a missing image is read in its place
            # as a missing file; a name leading outside the data folder is not read at all.
            paths.append(err if isinstance(err, OutsideDataFolder) else Path(folders[0]) / name)
    cfg_values = preprocess_config(data_cfg)
    label_files = sorted(label_path.glob("*.txt")) if label_path.is_dir() else [label_path]
    src_hash = cache.source_hash(label_files, sorted(set(found)), skip_bad=skip_bad)
    if cache.current(out, LAYOUT, cfg_values, src_hash)[0] is not None:
        return out
    size = data_cfg.input_size
    sizes, kept, skipped = np.zeros((len(paths), 2), np.int32), [], []
    if data_cfg.crop == "image":
        (name, count), = collections.Counter(labels["file_names"]).most_common(1)
        if count > 1:
            raise DataError(f"image {name} holds {count} instances, but data.crop=image takes one per image; "
                            "use data.crop=instance", label_path)
    boxes = (None if labels["boxes"] is None or data_cfg.crop == "image"
             else crop_boxes(labels["boxes"], data_cfg.crop_margin))

    def read():  # the resized images, keeping each file's size for the labels
        jobs = [(path, size, None if boxes is None else tuple(boxes[i])) for i, path in enumerate(paths)
                if not isinstance(path, DataError)]
        results = iter(parallel_map(_read_gray, jobs, workers, f"preprocess {split}", progress=progress,
                                    errors="return" if skip_bad else "raise"))
        for i, path in enumerate(paths):
            result = path if isinstance(path, DataError) else next(results)  # refused names: only with skip_bad
            if isinstance(result, DataError):  # only with skip_bad
                skipped.append((result.path, result.message))
                continue
            image, sizes[i] = result
            kept.append(i)
            yield image

    with cache.writing(out, cfg_values, src_hash) as writer:
        writer.images((len(paths), size, size, 1), read(), fewer=skip_bad)
        crops = (np.concatenate([np.zeros_like(sizes), sizes], 1).astype(np.float64) if boxes is None
                 else boxes)[kept]
        xy_norm = ((labels["xy"][kept] - crops[:, None, :2]) / crops[:, None, 2:]).astype(np.float32)
        inside = (xy_norm >= 0).all(-1) & (xy_norm <= 1).all(-1)
        writer.labels({"xy_norm": xy_norm, "labelled": labels["labelled"][kept] & inside,
                       "visible": labels["visible"][kept] & inside, "image_sizes": sizes[kept],
                       "crop_boxes": crops.astype(np.float32),
                       "filenames": np.array(labels["file_names"])[kept],
                       "keypoint_names": np.array(labels["keypoint_names"]), "input_size": np.int64(size),
                       "skipped_iscrowd": np.int64(labels["skipped"].get("iscrowd", 0)),
                       "skipped_unlabelled": np.int64(labels["skipped"].get("no_labelled_keypoint", 0))})
        writer.skipped(skipped)
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
