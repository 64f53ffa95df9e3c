"""Stage 2 on COCO keypoints: per-instance figures and OKS AP of a COCO cache, and the
instances of a folder of images (the boxes of a detections file or of a labels file).

`use_vis.py` on a cache built from a COCO keypoints file reports, beside the errors of
`pipeline.evaluate`, each instance's mean error (original pixels) and OKS, and the COCO
keypoint AP (`common.coco_keypoints.oks_ap`) of its predictions, each scored by its mean
keypoint confidence. On `--images` with `--boxes`, every box is cropped and predicted
(score = box score x mean keypoint confidence); `--labels` adds the AP against that file.
"""

import dataclasses
from pathlib import Path

import numpy as np

from common.coco_keypoints import MAX_PIXEL, file_name, is_coco, keypoint_results, oks_ap, oks_sigmas, read_coco_keypoints, read_id
from common.data_io import find_image, image_paths, is_finite_number, json_numbers, load_json, require
from common.errors import DataError

RESULTS_FILE = "keypoint_results.json"


def cache_ground_truth(y):
    """The COCO ground truth of a COCO cache's instances, for `oks_ap`."""
    flags = y["coco_v"].astype(np.float64)[..., None]
    keypoints = np.concatenate([y["xy_original"], flags], axis=-1).reshape(len(flags), -1)
    boxes = y["true_boxes"]
    annotations = [{"image_id": image_id.item(), "iscrowd": 0, "keypoints": row.tolist(), "area": float(area),
                    "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]}
                   for image_id, row, area, box in zip(y["image_ids"], keypoints, y["instance_areas"], boxes)]
    return {"images": [{"id": i.item()} for i in np.unique(y["image_ids"])], "annotations": annotations,
            "categories": [{"id": y["category_id"].item(), "name": str(y["category_name"])}]}


def instance_oks(xy, xy_true, labelled, areas, sigmas):
    """(N,) OKS of each instance: the mean over its labelled keypoints of
    exp(-d^2 / (2 s^2 k^2)), s^2 the instance's area, k = 2 sigma (pycocotools' computeOks
    for a prediction matched to its instance); NaN with nothing labelled."""
    d2 = np.sum((np.asarray(xy, np.float64) - xy_true) ** 2, axis=-1)
    e = d2 / (2 * np.asarray(areas, np.float64)[:, None] * (2 * np.asarray(sigmas)) ** 2 + np.spacing(1))
    labelled = np.asarray(labelled, bool)
    with np.errstate(invalid="ignore"):
        return np.where(labelled, np.exp(-e), 0.0).sum(-1) / labelled.sum(-1)


def instance_figures(xy_original, y, data_cfg):
    """Each instance's mean error over its labelled keypoints (original pixels) and OKS,
    (N,) each, of predictions on a COCO cache; and the sigmas (`oks_sigmas`) and their source."""
    sigmas, source = oks_sigmas(y["keypoint_names"], data_cfg.oks_sigmas)
    labelled = y["coco_v"] > 0
    errors = np.linalg.norm(np.asarray(xy_original, np.float64) - y["xy_original"], axis=-1)
    with np.errstate(invalid="ignore"):
        mean = np.where(labelled, errors, 0.0).sum(-1) / labelled.sum(-1)
    return mean, instance_oks(xy_original, y["xy_original"], labelled, y["instance_areas"], sigmas), sigmas, source


def evaluate_instances(xy_original, confidence, y, data_cfg):
    """The COCO block of an evaluation summary on a COCO cache: OKS AP (`oks_ap`, each
    prediction scored by its mean confidence), and the distribution of each instance's
    mean error (original pixels) and OKS."""
    errors, oks, sigmas, source = instance_figures(xy_original, y, data_cfg)
    results = keypoint_results(y["image_ids"], y["category_id"], xy_original, np.mean(confidence, axis=1), confidence)
    summary = oks_ap(cache_ground_truth(y), results, sigmas)
    summary.update(sigmas=source, images=int(len(np.unique(y["image_ids"]))),
                   instance_error_px=_spread(errors), instance_oks=_spread(oks),
                   notes="OKS AP: pycocotools COCOeval iouType keypoints, area all, on the cached instances (their "
                         "true boxes, with data.box_jitter); instance_error_px: original pixels")
    return summary


def _spread(values):
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"mean": None, "median": None, "max": None}
    return {"mean": float(values.mean()), "median": float(np.median(values)), "max": float(values.max())}


@dataclasses.dataclass
class BoxInstances:
    """The objects of a folder of images to crop. M boxes.

    paths (M,) image files; boxes (M, 4) [x1, y1, x2, y2] pixels; scores (M,) the boxes'
    (1 for labelled boxes); image_ids (M,); names (M,) unique, for the output files;
    category_id; labels: `common.coco_keypoints.CocoKeypoints` of `--labels`, or None.
    """

    paths: list
    boxes: np.ndarray
    scores: np.ndarray
    image_ids: list
    names: list
    category_id: object
    labels: object = None


def box_instances(images_dir, boxes=None, labels=None, category=""):
    """The boxes to crop in `images_dir`: those of the detections file `boxes`, else the
    labelled boxes of the COCO keypoints file `labels`.

    boxes: a COCO detection results file (`[{"image_id", "category_id", "bbox": [x, y, w,
    h], "score"}]`; an image is its `file_name` when the detection has one, else the one
    `labels` gives its id, else the file whose name is its id, as COCO names them) or the
    detections.json of `detection/ssd/use_det.py` (boxes in original pixels per file).
    Only the model's category is kept: `category` (the run's `data.category`) in `labels`,
    or the detections' only category. labels: COCO keypoints, for the image ids and the AP.
    """
    images_dir = Path(images_dir)
    coco = read_coco_keypoints(labels, category) if labels is not None else None
    files = {image["id"]: image["file_name"] for image in coco.ground_truth["images"]} if coco is not None else {}
    if boxes is None:
        if coco is None:
            raise ValueError("box_instances needs boxes or labels")
        rows = [(coco.file_names[i], coco.image_ids[i], coco.boxes[i], 1.0, f"ann{coco.annotation_ids[i]}")
                for i in range(len(coco.file_names))]
        source, category_id = Path(labels), coco.category_id
    else:
        source = Path(boxes)
        data = load_json(source)
        folder = {} if files else {path.stem: path.name for path in image_paths(images_dir)}
        if isinstance(data, list):
            rows, category_id = _coco_detections(data, source, files, folder, coco, category)
        elif isinstance(data, dict) and isinstance(data.get("images"), list) and not is_coco(data):
            rows, category_id = _use_det_detections(data, source, files, coco, category)
        else:
            raise DataError("expected COCO detection results (a JSON list of {image_id, category_id, bbox, "
                            "score}) or the detections.json of use_det.py", source)
    if not rows:
        raise DataError(f"no box of the model's category ({category or category_id!r})", source)
    paths, found = [], {}
    for name, *_ in rows:
        if name not in found:
            found[name] = find_image([images_dir], name, source, f"image '{name}': ")
        paths.append(found[name])
    names = [f"{name}.{tag}" for name, _, _, _, tag in rows]
    return BoxInstances(paths, np.array([row[2] for row in rows], np.float64).reshape(-1, 4),
                        np.array([row[3] for row in rows], np.float64), [row[1] for row in rows], names,
                        category_id, coco)


def _coco_detections(data, path, files, folder, coco, category):
    """(rows (file, image id, box xyxy, score, tag), category id) of COCO detection results."""
    ids = set()
    detections = []
    for j, det in enumerate(data):
        where = f"detection {j}: "
        if not isinstance(det, dict):
            raise DataError(f"{where}expected a JSON object", path)
        image_id = read_id(det, "image_id", path, where)
        box = json_numbers(require(det, "bbox", path, where))
        if box is None or box.shape != (4,) or not (np.abs(box) <= MAX_PIXEL).all() \
                or not (box[:2] + box[2:] > box[:2]).all():  # a size that vanishes beside x, y too
            raise DataError(f"{where}field 'bbox' must be [x, y, width, height] with a positive size (at most "
                            f"{MAX_PIXEL:.0e} px)", path)
        score = det.get("score", 1.0)
        if not is_finite_number(score):
            raise DataError(f"{where}field 'score' must be a number, got {score!r:.80}", path)
        category_id = read_id(det, "category_id", path, where) if "category_id" in det else None
        if category_id is not None:
            ids.add(category_id)
        if "file_name" in det:
            name = file_name(det, path, where)
        elif files:
            if image_id not in files:
                raise DataError(f"{where}image_id {image_id!r} is not an image of {coco.label_path}", path)
            name = files[image_id]
        else:  # COCO names its images by id: 000000397133.jpg is image 397133
            name = folder.get(str(image_id)) or next(
                (file for stem, file in folder.items() if stem.isdigit() and int(stem) == image_id), None)
            if name is None:
                raise DataError(f"{where}no image named by image_id {image_id!r} in the image folder; pass --labels "
                                "(its 'images' name the files) or give each detection a 'file_name'", path)
        detections.append((name, image_id, [box[0], box[1], box[0] + box[2], box[1] + box[3]], float(score),
                           category_id))
    if coco is not None:
        wanted = coco.category_id
    elif len(ids) <= 1:  # a detection without a category_id is of the model's category
        wanted = next(iter(ids), 1)
    else:
        raise DataError(f"detections of {len(ids)} categories ({', '.join(sorted(map(str, ids)))}): pass --labels, "
                        f"whose categories say which is the model's ({category!r})", path)
    count = {}
    rows = []
    for name, image_id, box, score, category_id in detections:
        if category_id == wanted or category_id is None:
            count[name] = count.get(name, -1) + 1
            rows.append((name, image_id, box, score, f"det{count[name]}"))
    return rows, wanted


def _use_det_detections(data, path, files, coco, category):
    """Rows as `_coco_detections`' from the detections.json of use_det.py."""
    classes = data.get("classes") or []
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataError("field 'classes' must be a list of class names", path)
    name = coco.category_name if coco is not None else category
    if name not in classes and len(classes) > 1:
        raise DataError(f"the detector's classes ({', '.join(map(str, classes))}) do not include the model's "
                        f"category {name!r}", path)
    ids = {file: image_id for image_id, file in files.items()}
    rows = []
    for j, record in enumerate(data["images"]):
        where = f"images[{j}]: "
        if not isinstance(record, dict):
            raise DataError(f"{where}expected a JSON object", path)
        file = file_name(record, path, where)
        boxes = json_numbers(require(record, "boxes_xyxy_original", path, where))
        scores = json_numbers(require(record, "scores", path, where))
        if boxes is None or scores is None or scores.ndim != 1 or (boxes.shape != (len(scores), 4) and len(scores)) \
                or not ((np.abs(boxes) <= MAX_PIXEL).all() and np.isfinite(scores).all()):
            raise DataError(f"{where}fields 'boxes_xyxy_original' and 'scores' must be N boxes [x1, y1, x2, y2] (at "
                            f"most {MAX_PIXEL:.0e} px) and N scores", path)
        boxes = boxes.reshape(-1, 4)
        if not (boxes[:, 2:] > boxes[:, :2]).all():
            raise DataError(f"{where}field 'boxes_xyxy_original' holds a box with x2 <= x1 or y2 <= y1", path)
        labels = record.get("classes", [name] * len(scores))
        if not isinstance(labels, list) or len(labels) != len(scores):
            raise DataError(f"{where}field 'classes' must name the class of each box", path)
        if coco is not None and file not in ids:
            raise DataError(f"{where}'{file}' is not an image of {coco.label_path}", path)
        stem = Path(file).stem
        image_id = ids[file] if coco is not None else (int(stem) if stem.isdigit() else file)
        kept = [k for k in range(len(scores)) if len(classes) <= 1 or labels[k] == name]
        rows += [(file, image_id, boxes[k].tolist(), float(scores[k]), f"det{n}") for n, k in enumerate(kept)]
    # A detector's file has class names, not COCO ids: the labels' id, else 1 (COCO's first category id).
    return rows, coco.category_id if coco is not None else 1


def instance_results(instances, xy_original, confidence):
    """COCO keypoint results of predictions on `box_instances`' crops: score = box score x
    mean keypoint confidence."""
    scores = instances.scores * np.mean(confidence, axis=1)
    return keypoint_results(instances.image_ids, instances.category_id, xy_original, scores, confidence)


def evaluate_results(instances, results, keypoint_names, data_cfg):
    """OKS AP of `results` against `instances.labels` (its crowds count as COCO counts them)."""
    sigmas, source = oks_sigmas(keypoint_names, data_cfg.oks_sigmas)
    summary = oks_ap(instances.labels.ground_truth, results, sigmas)
    summary.update(sigmas=source, labels=str(instances.labels.label_path),
                   notes="OKS AP: pycocotools COCOeval iouType keypoints, area all, against every labelled image")
    return summary
