"""COCO keypoint files: one instance per object, and the COCO keypoint AP (OKS).

    {"images": [{"id": 1, "file_name": "a.jpg", ...}],
     "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 812.5,
                      "bbox": [x, y, w, h], "keypoints": [x1, y1, v1, x2, y2, v2, ...]}],
     "categories": [{"id": 1, "name": "person", "keypoints": ["nose", ...]}]}

One category is read per run: the only one with a `keypoints` list, or the one named (by
name or id). Every other annotation of it is one instance; `iscrowd` ones and those with
no labelled keypoint (every v = 0) are skipped and counted, as are annotations of other
categories. v = 0: not labelled; v = 1: labelled, hidden; v = 2: labelled, visible.
Coordinates are read as they are (the package convention: pixel i covers [i, i + 1)).

OKS AP is pycocotools' `COCOeval(iouType="keypoints")`, area "all", 20 detections per
image; the per-keypoint sigmas are `oks_sigmas`'.
"""

import contextlib
import dataclasses
import io
from pathlib import Path

import numpy as np

from common.data_io import is_finite_number, json_numbers, load_json, require
from common.errors import DataError

# The 17 COCO person keypoints and their OKS sigmas (pycocotools' `Params.kpt_oks_sigmas`).
COCO_PERSON_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                         "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                         "left_knee", "right_knee", "left_ankle", "right_ankle")
COCO_PERSON_SIGMAS = tuple(s / 10 for s in (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87,
                                              .87, .89, .89))
# Other keypoints have no published sigma: the mean of the person ones (0.0669), a keypoint
# about as hard to place as a typical person joint. `data.oks_sigmas` sets them per keypoint.
DEFAULT_OKS_SIGMA = float(np.mean(COCO_PERSON_SIGMAS))
MAX_PIXEL = 1e9  # a coordinate beyond this (px) is a corrupt label, not a position


def is_coco(data):
    """Whether parsed JSON is a COCO file (an object with 'annotations'), not a list of records."""
    return isinstance(data, dict) and "annotations" in data


@dataclasses.dataclass
class CocoKeypoints:
    """The instances of one category. M instances, K keypoints.

    file_names (M,) the image file of each; image_ids, annotation_ids (M,) as in the file;
    xy (M, K, 2) float64 image pixels; v (M, K) int8 COCO flags; boxes (M, 4) [x1, y1, x2,
    y2] (the `bbox`, else the extent of the labelled keypoints); areas (M,) the `area`
    (else the box's), which scales OKS; skipped {reason: count}; ground_truth: the file's
    images and this category's annotations, crowds included, for `oks_ap`.
    """

    label_path: Path
    category_id: object
    category_name: str
    keypoint_names: tuple
    file_names: list
    image_ids: list
    annotation_ids: list
    xy: np.ndarray
    v: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    skipped: dict
    ground_truth: dict


def read_coco_keypoints(path, category="", bad=None, data=None):
    """Read one category of a COCO keypoint file (see the module docstring).

    category: its name or id ("" = the only category with keypoints). bad: a list to
    collect (path, reason) of bad annotations in, which are then left out (`--skip-bad`),
    instead of raising `DataError`. data: the file's parsed JSON, when already read.
    """
    path = Path(path)
    data = load_json(path) if data is None else data
    if not is_coco(data):
        raise DataError("expected a COCO keypoints object with 'images', 'annotations' and 'categories'", path)
    categories = _list(data, "categories", path)
    chosen = choose_category(categories, category, path)
    several = sum(isinstance(c, dict) and bool(c.get("keypoints")) for c in categories) > 1
    names = tuple(str(n) for n in chosen["keypoints"])
    if len(set(names)) != len(names):
        raise DataError(f"category {chosen['name']!r}: field 'keypoints' names a keypoint twice", path)
    files = {}
    for j, image in enumerate(_list(data, "images", path)):
        where = f"images[{j}]: "
        files[read_id(image, "id", path, where)] = file_name(image, path, where)
    category_id, count = chosen["id"], len(names)
    rows, kept = [], []  # kept: this category's annotations, crowds included, for `oks_ap`
    skipped = {"iscrowd": 0, "no_labelled_keypoint": 0, "other_category": 0}
    for i, ann in enumerate(_list(data, "annotations", path)):
        try:
            where = f"annotations[{i}]: "
            if not isinstance(ann, dict):
                raise DataError(f"{where}expected a JSON object", path)
            # Files with one keypoint category may leave out the ids (as some exporters do).
            if (several or "category_id" in ann) and read_id(ann, "category_id", path, where) != category_id:
                skipped["other_category"] += 1
                continue
            image_id = read_id(ann, "image_id", path, where)
            if image_id not in files:
                raise DataError(f"{where}field 'image_id' {image_id!r} is not an id in 'images'", path)
            where = f"annotations[{i}] (image {image_id}): "
            values, box, area, crowd = _instance(ann, count, path, where)
            kept.append({"image_id": image_id, "iscrowd": int(crowd), "keypoints": values.ravel().tolist(),
                         "area": area, "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
            if crowd or not (values[:, 2] > 0).any():
                skipped["iscrowd" if crowd else "no_labelled_keypoint"] += 1
                continue
            rows.append((files[image_id], image_id, _plain_id(ann, i), values, box, area))
        except DataError as err:
            if bad is None:
                raise
            bad.append((err.path, err.message))
    if not rows:
        raise DataError(f"no instance of category {chosen['name']!r} with a labelled keypoint "
                        f"({skipped['iscrowd']} iscrowd, {skipped['no_labelled_keypoint']} with none labelled, "
                        f"{skipped['other_category']} of other categories)", path)
    file_names, image_ids, annotation_ids, values, boxes, areas = (list(part) for part in zip(*rows))
    values = np.stack(values)
    ground_truth = {"images": [{"id": image_id, "file_name": name} for image_id, name in files.items()],
                    "annotations": kept,
                    "categories": [{"id": category_id, "name": chosen["name"], "keypoints": list(names)}]}
    return CocoKeypoints(path, category_id, str(chosen["name"]), names, file_names, image_ids, annotation_ids,
                         values[..., :2].astype(np.float64), values[..., 2].astype(np.int8),
                         np.array(boxes, np.float64), np.array(areas, np.float64), skipped, ground_truth)


def choose_category(categories, category, path):
    """The category (a dict) with keypoints named by `category` (its name or id), or the
    only one with keypoints when `category` is empty."""
    with_keypoints = []
    for j, entry in enumerate(categories):
        where = f"categories[{j}]: "
        if not isinstance(entry, dict):
            raise DataError(f"{where}expected a JSON object", path)
        if "keypoints" not in entry:
            continue
        if not isinstance(entry["keypoints"], list) or not all(isinstance(n, str) for n in entry["keypoints"]):
            raise DataError(f"{where}field 'keypoints' must be a list of names", path)
        if entry["keypoints"]:
            # Without an id (the only keypoint category of a file without ids), it is id 1.
            category_id = read_id(entry, "id", path, where) if "id" in entry else 1
            with_keypoints.append({"id": category_id, "name": str(entry.get("name", "")),
                                   "keypoints": entry["keypoints"]})
    listed = ", ".join(f"{c['name']!r} (id {c['id']})" for c in with_keypoints)
    if not with_keypoints:
        raise DataError("no category has a 'keypoints' list: not a COCO keypoints file", path)
    if not category:
        if len(with_keypoints) > 1:
            raise DataError(f"{len(with_keypoints)} categories have keypoints ({listed}); name one with --category "
                            "(data.category)", path)
        return with_keypoints[0]
    found = [c for c in with_keypoints if str(c["id"]) == str(category)] or \
        [c for c in with_keypoints if c["name"] == str(category)]
    if not found:
        raise DataError(f"no category {category!r} with keypoints; those with keypoints: {listed}", path)
    if len(found) > 1:
        raise DataError(f"category {category!r} has {len(found)} keypoint definitions (ids "
                        f"{', '.join(str(c['id']) for c in found)}); name one by id with --category", path)
    return found[0]


def _instance(ann, count, path, where):
    """((K, 3) keypoints, box [x1, y1, x2, y2], area, iscrowd) of an annotation. A crowd
    may have no keypoints (all 0) and no box (an empty one)."""
    crowd = ann.get("iscrowd", 0)
    if not (isinstance(crowd, bool) or (type(crowd) is int and crowd in (0, 1))):
        raise DataError(f"{where}field 'iscrowd' must be 0 or 1, got {crowd!r:.80}", path)
    if crowd and "keypoints" not in ann:
        values = np.zeros((count, 3))
    else:
        values = label_numbers(require(ann, "keypoints", path, where), path, f"{where}field 'keypoints'")
        if values.size != 3 * count:
            raise DataError(f"{where}field 'keypoints' has {values.size} numbers, expected 3 * {count}", path)
        values = values.reshape(count, 3)
    if not np.isin(values[:, 2], (0, 1, 2)).all():
        raise DataError(f"{where}visibility flags (every third number of 'keypoints') must be 0, 1 or 2, got "
                        f"{values[:, 2].tolist()}", path)
    labelled = values[:, 2] > 0
    if "bbox" in ann:
        x, y, w, h = _box(ann["bbox"], path, where)
    elif labelled.any():  # the extent of the labelled keypoints
        (x, y), (w, h) = values[labelled, :2].min(0), np.ptp(values[labelled, :2], axis=0)
    else:
        x = y = w = h = 0.0
    area = ann.get("area")
    if area is not None and not (is_finite_number(area) and area > 0):
        raise DataError(f"{where}field 'area' must be a positive number, got {area!r:.80}", path)
    # OKS divides by the area: a box of one keypoint has none, so it counts as a pixel.
    area = float(area) if area is not None else max(float(w * h), 1.0)
    return values, [float(v) for v in (x, y, x + w, y + h)], area, bool(crowd)


def _plain_id(ann, index):
    """The annotation's id (its index in the file when it has none)."""
    value = ann.get("id", index)
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else index


def _box(value, path, where):
    box = label_numbers(value, path, f"{where}field 'bbox'")
    if box.shape != (4,) or not (box[2:] > 0).all():
        raise DataError(f"{where}field 'bbox' must be [x, y, width, height] with a positive size, got "
                        f"{value!r:.80}", path)
    return box


def _list(data, field, path, where=""):
    value = require(data, field, path, where)
    if not isinstance(value, list):
        raise DataError(f"{where}field '{field}' must be a list, got {type(value).__name__}", path)
    return value


def read_id(record, field, path, where=""):
    """An id: an integer (1.0 counts as 1, as some exporters write) or a string."""
    value = require(record, field, path, where)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataError(f"{where}field '{field}' must be an integer (or string) id, got {value!r:.80}", path)
    return value


def file_name(record, path, where):
    """A record's `file_name`: a non-empty string."""
    value = require(record, "file_name", path, where)
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}field 'file_name' must be a non-empty string, got {value!r:.80}", path)
    return value


def label_numbers(values, path, where):
    """JSON numbers as an array: finite, within `MAX_PIXEL` (DataError naming `where` otherwise)."""
    array = json_numbers(values)  # JSON numbers only: numpy would read "1" and true as 1.0
    if array is None:
        raise DataError(f"{where} must hold numbers", path)
    if not np.isfinite(array).all():
        raise DataError(f"{where} holds NaN or infinite values", path)
    if np.abs(array).max(initial=0.0) > MAX_PIXEL:
        raise DataError(f"{where} holds a value beyond {MAX_PIXEL:.0e}", path)
    return array


def oks_sigmas(keypoint_names, configured=(), source="data.oks_sigmas"):
    """(K,) OKS sigmas: `configured` (one per keypoint) when given; the COCO person ones,
    by name, when the keypoints are the 17 COCO person keypoints; else `DEFAULT_OKS_SIGMA`
    for each. Returns (sigmas, where they came from)."""
    names = tuple(str(n) for n in keypoint_names)
    if configured:
        if len(configured) != len(names):
            raise DataError(f"{source} has {len(configured)} values for {len(names)} keypoints "
                            f"({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})")
        return np.array(configured, np.float64), source
    if sorted(names) == sorted(COCO_PERSON_KEYPOINTS):
        table = dict(zip(COCO_PERSON_KEYPOINTS, COCO_PERSON_SIGMAS))
        return np.array([table[n] for n in names]), "COCO person"
    return np.full(len(names), DEFAULT_OKS_SIGMA), f"uniform {DEFAULT_OKS_SIGMA:.4f} (the COCO person mean)"


def keypoint_results(image_ids, category_id, xy, scores, confidence=None):
    """COCO keypoint results: one {image_id, category_id, keypoints [x, y, c] * K, score}
    per instance; c is the keypoint's confidence (COCO's evaluation reads only x and y)."""
    xy = np.asarray(xy, np.float64)
    confidence = np.ones(xy.shape[:2]) if confidence is None else np.asarray(confidence, np.float64)
    triplets = np.concatenate([xy, confidence[..., None]], axis=-1).reshape(len(xy), -1)
    return [{"image_id": _plain(image_id), "category_id": _plain(category_id),
             "keypoints": [round(float(value), 3) for value in row], "score": round(float(score), 5)}
            for image_id, row, score in zip(image_ids, triplets, scores)]


def _plain(value):
    """A numpy id as the JSON value it was read from."""
    return value.item() if hasattr(value, "item") else value


def oks_ap(ground_truth, results, sigmas, image_ids=None):
    """COCO keypoint AP of `results` against `ground_truth` by pycocotools' COCOeval
    (iouType "keypoints", area "all").

    ground_truth: {"images": [{"id"}], "annotations": [COCO annotations of one category,
    crowds included], "categories": [that category]}; results: `keypoint_results`;
    sigmas: (K,) OKS sigmas; image_ids: the images to evaluate (default: every one).
    Returns {ap, ap50, ap75, ar, instances, results}: AP over OKS 0.50:0.95, at 0.5 and
    0.75, and AR; None where there is no labelled instance.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    category_id = ground_truth["categories"][0]["id"]
    annotations = []
    for i, ann in enumerate(ground_truth["annotations"]):
        values = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
        annotations.append({"id": i + 1, "image_id": ann["image_id"], "category_id": category_id,
                            "iscrowd": int(bool(ann.get("iscrowd", 0))), "keypoints": values.ravel().tolist(),
                            "num_keypoints": int((values[:, 2] > 0).sum()), "area": float(ann["area"]),
                            "bbox": [float(v) for v in ann["bbox"]]})
    image_ids = sorted({_plain(i) for i in (image_ids if image_ids is not None else
                                             (image["id"] for image in ground_truth["images"]))}, key=str)
    counted = sum(1 for ann in annotations if not ann["iscrowd"] and ann["num_keypoints"]
                  and ann["image_id"] in set(image_ids))
    summary = {"ap": None, "ap50": None, "ap75": None, "ar": None, "instances": counted, "results": len(results)}
    if not counted:
        return summary
    if not results:
        return {**summary, "ap": 0.0, "ap50": 0.0, "ap75": 0.0, "ar": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports every step on stdout
        truth = COCO()
        truth.dataset = {"images": [{"id": i} for i in image_ids], "annotations": annotations,
                         "categories": [dict(ground_truth["categories"][0])]}
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(list(results)), iouType="keypoints")
        evaluation.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        evaluation.params.imgIds, evaluation.params.catIds = image_ids, [category_id]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [None if value < 0 else round(float(value), 6) for value in evaluation.stats]
    return {**summary, "ap": stats[0], "ap50": stats[1], "ap75": stats[2], "ar": stats[5]}
