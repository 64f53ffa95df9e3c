"""Read a COCO-format detection JSON, checking every field.

    {"images": [{"id": 1, "file_name": "a.png", "width": 224, "height": 224}, ...],
     "annotations": [{"image_id": 1, "category_id": 2, "bbox": [x, y, w, h]}, ...],
     "categories": [{"id": 2, "name": "square"}, ...]}

`bbox` is [x, y, width, height] (COCO, `bbox_format="xywh"`) or, in a common
course-homework variant, [x1, y1, x2, y2] (`"xyxy"`). `"auto"` picks the reading under
which every box is valid and inside its image, only when exactly one reading is, and
reports the choice; otherwise it asks for the format. Boxes may stick out of the image
by up to `BORDER_TOLERANCE` pixels (rounding) and are clipped; a box of zero or negative
size, one outside the image, an unknown category or image id raises a one-line
`DataError` naming the file, the annotation and the field. Ids are integers (strings
are accepted too); `iscrowd` is 0 or 1, and crowd annotations are skipped (COCO
evaluation ignores them too). Widths and heights missing from `images` are read from
the image files; declared ones are checked against the files where the images are read
(`detection.ssd.box_cache`).
"""

import dataclasses
from pathlib import Path

import numpy as np

from common.data_io import find_image, image_size, is_finite_number, load_json, require, split_files
from common.errors import DataError

BORDER_TOLERANCE = 1.0


@dataclasses.dataclass
class CocoDetections:
    """One split's labels. boxes[i] (n_i, 4) xyxy float64 in original pixels; classes[i]
    (n_i,) 0-based indices into category_ids / category_names; image_sizes (N, 2) (w, h)."""

    label_path: Path
    image_paths: list
    image_ids: np.ndarray
    image_sizes: np.ndarray
    boxes: list
    classes: list
    category_ids: tuple
    category_names: tuple
    bbox_format: str
    note: str = ""


def _list_field(coco, field, path):
    value = require(coco, field, path)
    if not isinstance(value, list):
        raise DataError(f"field '{field}' must be a list, got {type(value).__name__}", path)
    return value


def _number(value, field, path, where):
    if not is_finite_number(value):
        raise DataError(f"{where}field '{field}' must be a finite number, got {value!r}", path)
    return float(value)


def _id(record, field, path, where):
    """An id field: an int (not a bool; a whole float such as 1.0, as some exporters write,
    counts as that int) or a string, so that it can be looked up and sorted."""
    value = require(record, field, path, where)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataError(f"{where}field '{field}' must be an integer (or string) id, got {value!r}", path)
    return value


def _crowd(ann, path, where):
    """`iscrowd`: 0 / 1 or false / true (absent = 0); anything else is an error, not a truth value."""
    value = ann.get("iscrowd", 0)
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise DataError(f"{where}field 'iscrowd' must be 0 or 1, got {value!r}", path)


def check_image_size(image, declared, label_path, where):
    """Raise when an image (H, W, ...) array is not the (width, height) its record declares."""
    height, width = image.shape[:2]
    if (width, height) != tuple(declared):
        raise DataError(f"{where}fields 'width', 'height' say {declared[0]:g}x{declared[1]:g} but the image file is "
                        f"{width}x{height}", label_path)


def _valid_boxes(raw, sizes, fmt):
    """(n,) bool: each raw [a, b, c, d] is a positive-size box inside its image when read as fmt."""
    x1, y1 = raw[:, 0], raw[:, 1]
    x2, y2 = (raw[:, 0] + raw[:, 2], raw[:, 1] + raw[:, 3]) if fmt == "xywh" else (raw[:, 2], raw[:, 3])
    tol = BORDER_TOLERANCE
    return ((x2 > x1) & (y2 > y1) & (x1 >= -tol) & (y1 >= -tol)
            & (x2 <= sizes[:, 0] + tol) & (y2 <= sizes[:, 1] + tol))


def _resolve_format(raw, sizes, bbox_format, label_path):
    if bbox_format != "auto":
        return bbox_format, ""
    if not len(raw):
        return "xywh", "no boxes; bbox format xywh assumed"
    fits = {fmt: bool(_valid_boxes(raw, sizes, fmt).all()) for fmt in ("xywh", "xyxy")}
    if fits["xywh"] and fits["xyxy"]:
        raise DataError("bbox format is ambiguous (every box is valid as [x, y, w, h] and as [x1, y1, x2, y2]); "
                        "pass --bbox-format xywh or xyxy", label_path)
    if not fits["xywh"] and not fits["xyxy"]:
        raise DataError("bbox format: boxes are invalid both as [x, y, w, h] and as [x1, y1, x2, y2]; "
                        "pass --bbox-format to see which boxes are bad", label_path)
    fmt = "xywh" if fits["xywh"] else "xyxy"
    return fmt, f"bbox format auto: read as {fmt} (the only reading under which every box is valid)"


def load_coco(label_path, data_dir=None, split="train", bbox_format="auto", max_boxes=None, images_dir=None,
              allow_outside=False):
    """Read and check a COCO detection JSON; returns `CocoDetections`. Images are looked up
    in `images_dir`, else as `common.data_io.split_files` lays out `data_dir` (default:
    the label file's folder); an image `file_name` that leads outside that data folder is
    a `DataError` unless `allow_outside`."""
    label_path = Path(label_path)
    data_dir = Path(data_dir) if data_dir is not None else label_path.parent
    folders = split_files(data_dir, split, images=images_dir)[1]
    coco = load_json(label_path)
    if not isinstance(coco, dict):
        raise DataError("expected a COCO detection object with images, annotations, categories", label_path)
    images = _list_field(coco, "images", label_path)
    annotations = _list_field(coco, "annotations", label_path)
    categories = _list_field(coco, "categories", label_path)
    if not images:
        raise DataError("field 'images' is empty", label_path)
    if not categories:
        raise DataError("field 'categories' is empty", label_path)

    category_ids, category_names = [], []
    for k, cat in enumerate(categories):
        where = f"categories[{k}]: "
        category_ids.append(_id(cat, "id", label_path, where))
        category_names.append(str(cat.get("name", category_ids[-1])))
    if len(set(category_ids)) != len(category_ids):
        raise DataError("field 'categories' has duplicate ids", label_path)
    # Classes in id order (numbers numerically, then strings).
    class_of = {cid: k for k, cid in enumerate(sorted(category_ids, key=lambda c: (isinstance(c, str), c)))}
    order = sorted(range(len(category_ids)), key=lambda k: class_of[category_ids[k]])
    category_ids = tuple(category_ids[k] for k in order)
    category_names = tuple(category_names[k] for k in order)

    index_of, paths, ids, sizes = {}, [], [], []
    for i, record in enumerate(images):
        where = f"images[{i}]: "
        image_id = _id(record, "id", label_path, where)
        filename = str(require(record, "file_name", label_path, where))
        where = f"images[{i}] ({filename}): "
        if image_id in index_of:
            raise DataError(f"{where}duplicate image id {image_id!r}", label_path)
        path = find_image(folders, filename, label_path, where, allow_outside)
        if "width" in record and "height" in record:
            size = (_number(record["width"], "width", label_path, where),
                    _number(record["height"], "height", label_path, where))
            if min(size) <= 0:
                raise DataError(f"{where}width and height must be positive, got {size}", label_path)
        else:
            size = image_size(path)  # the header only
        index_of[image_id] = i
        paths.append(path)
        ids.append(image_id)
        sizes.append(size)
    sizes = np.array(sizes, np.float64)

    rows, raw, cls = [], [], []
    for a, ann in enumerate(annotations):
        where = f"annotations[{a}]: "
        image_id = _id(ann, "image_id", label_path, where)
        if image_id not in index_of:
            raise DataError(f"{where}field 'image_id' {image_id!r} is not an id in 'images'", label_path)
        category = _id(ann, "category_id", label_path, where)
        if category not in class_of:
            raise DataError(f"{where}field 'category_id' {category!r} is an unknown category "
                            f"(known: {list(category_ids)})", label_path)
        bbox = require(ann, "bbox", label_path, where)
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise DataError(f"{where}field 'bbox' must be 4 numbers, got {bbox!r}", label_path)
        values = [_number(v, "bbox", label_path, where) for v in bbox]
        if _crowd(ann, label_path, where):
            continue
        rows.append(index_of[image_id])
        raw.append(values)
        cls.append(class_of[category])
    raw = np.array(raw, np.float64).reshape(-1, 4)
    rows = np.array(rows, np.int64)
    fmt, note = _resolve_format(raw, sizes[rows], bbox_format, label_path)

    valid = _valid_boxes(raw, sizes[rows], fmt)
    if not valid.all():
        bad = int(np.flatnonzero(~valid)[0])
        problem = _box_problem(raw[bad], sizes[rows[bad]], fmt)
        ann_index = _annotation_index(annotations, bad)
        raise DataError(f"annotations[{ann_index}] (image {paths[rows[bad]].name}): field 'bbox' {raw[bad].tolist()} "
                        f"read as {fmt}: {problem}", label_path)
    xyxy = raw.copy()
    if fmt == "xywh":
        xyxy[:, 2:] += xyxy[:, :2]
    xyxy = np.clip(xyxy, 0, np.concatenate([sizes[rows], sizes[rows]], axis=1))
    boxes = [xyxy[rows == i] for i in range(len(images))]
    classes = [np.array(cls, np.int64)[rows == i] for i in range(len(images))]
    if max_boxes is not None:
        counts = np.bincount(rows, minlength=len(images))
        if counts.max(initial=0) > max_boxes:
            i = int(np.argmax(counts))
            raise DataError(f"images[{i}] ({paths[i].name}) has {counts[i]} boxes, more than data.max_boxes="
                            f"{max_boxes}; raise it", label_path)
    return CocoDetections(label_path, paths, np.array(ids), sizes, boxes, classes, category_ids, category_names,
                          fmt, note)


def _annotation_index(annotations, kept_index):
    """Index in the JSON list of the kept_index-th non-crowd annotation."""
    seen = -1
    for a, ann in enumerate(annotations):
        if not ann.get("iscrowd", 0):
            seen += 1
            if seen == kept_index:
                return a
    return kept_index


def _box_problem(values, size, fmt):
    x1, y1 = values[0], values[1]
    x2, y2 = (x1 + values[2], y1 + values[3]) if fmt == "xywh" else (values[2], values[3])
    if x2 <= x1 or y2 <= y1:
        return f"negative or zero size (width {x2 - x1:g}, height {y2 - y1:g})"
    return f"outside the {size[0]:g}x{size[1]:g} image (x {x1:g}..{x2:g}, y {y1:g}..{y2:g})"
