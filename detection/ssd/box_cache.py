"""Detection caches: COCO JSON + images -> uint8 image array + padded box arrays.

Cache `{cache_dir}/{split}/`:
    X_data.npy   (N, H_in, W_in, 3) uint8, images resized to data.input_size
    Y_data.npz   boxes (N, M, 4) float32 xyxy in input pixels (zero rows past `counts`);
                 classes (N, M) int32, -1 past `counts`; counts (N,) int32;
                 scales (N, 2) = (sx, sy) with input = original * scale; image_sizes (N, 2);
                 filenames, image_paths, image_ids (as strings); category_ids, category_names;
                 bbox_format (as read); input_size; config_hash, config_json, source_hash.

Written as in stage 2: images stream through a memory map under a temporary name, the
labels last (they mark the cache complete); an unchanged config and unchanged inputs
reuse the cache; training on a cache built with another config is refused.
"""

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common.config import check_cache_config, config_hash
from common.data_io import atomic_path, load_npz, open_image_cache, read_image_rgb, save_npz
from common.errors import DataError
from common.parallel import parallel_map
from detection.ssd.coco import check_image_size, load_coco

CACHE_KEYS = ("boxes", "classes", "counts", "scales", "image_sizes", "filenames", "category_ids",
              "category_names", "input_size", "config_hash", "config_json")


def preprocess_config(data_cfg):
    """The part of the config that decides the cache's content (its hash)."""
    return {"input_size": list(data_cfg.input_size), "max_boxes": data_cfg.max_boxes,
            "bbox_format": data_cfg.bbox_format}


def resize_image(image, input_size):
    """(H, W, 3) uint8 -> (input_h, input_w, 3) uint8 (bilinear), and (sx, sy)."""
    height, width = image.shape[:2]
    scale = (input_size[0] / width, input_size[1] / height)
    if (width, height) != tuple(input_size):
        image = np.asarray(Image.fromarray(image).resize(tuple(input_size), Image.BILINEAR))
    return image, scale


def _resize_file(job):
    """Read, check against the declared size (the labels' scales come from it) and resize."""
    path, input_size, declared, label_path, where = job
    image = read_image_rgb(path)
    check_image_size(image, declared, label_path, where)
    return resize_image(image, input_size)[0]


def _source_hash(labels):
    digest = hashlib.sha256(labels.label_path.read_bytes())
    for path in labels.image_paths:
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def preprocess(data_cfg, split, progress=True, workers=1):
    """Build (or reuse) the cache of one split from `{data_dir}/{split}.json`; returns a summary."""
    start = time.perf_counter()
    labels = load_coco(Path(data_cfg.data_dir) / f"{split}.json", data_cfg.data_dir, split,
                       data_cfg.bbox_format, data_cfg.max_boxes)
    out_dir = Path(data_cfg.cache_dir) / split
    x_path, y_path = out_dir / "X_data.npy", out_dir / "Y_data.npz"
    cfg_values = preprocess_config(data_cfg)
    cfg_hash, src_hash = config_hash(cfg_values), _source_hash(labels)
    count = len(labels.image_paths)
    width, height = data_cfg.input_size
    if _is_current(x_path, y_path, cfg_hash, src_hash, (count, height, width, 3)):
        return _summary(split, out_dir, labels, True, time.perf_counter() - start)

    y_path.unlink(missing_ok=True)  # Y marks a complete cache: never beside half-new images
    with atomic_path(x_path) as tmp_x:
        images = np.lib.format.open_memmap(tmp_x, mode="w+", dtype=np.uint8, shape=(count, height, width, 3))
        jobs = [(path, data_cfg.input_size, tuple(size), labels.label_path, f"images[{i}] ({path.name}): ")
                for i, (path, size) in enumerate(zip(labels.image_paths, labels.image_sizes.tolist()))]
        for i, image in enumerate(parallel_map(_resize_file, jobs, workers, f"preprocess {split}", progress=progress)):
            images[i] = image
        images.flush()
        del images
    max_boxes = data_cfg.max_boxes
    boxes = np.zeros((count, max_boxes, 4), np.float32)
    classes = np.full((count, max_boxes), -1, np.int32)
    counts = np.array([len(b) for b in labels.boxes], np.int32)
    scales = np.stack([width / labels.image_sizes[:, 0], height / labels.image_sizes[:, 1]], axis=1)
    for i, (b, c) in enumerate(zip(labels.boxes, labels.classes)):
        boxes[i, :len(b)] = b * np.tile(scales[i], 2)
        classes[i, :len(c)] = c
    save_npz(y_path, boxes=boxes, classes=classes, counts=counts, scales=scales, image_sizes=labels.image_sizes,
             filenames=np.array([p.name for p in labels.image_paths]),
             image_paths=np.array([str(p.resolve()) for p in labels.image_paths]),
             image_ids=np.array([str(i) for i in labels.image_ids]),
             category_ids=np.array([str(c) for c in labels.category_ids]),
             category_names=np.array(labels.category_names), bbox_format=np.array(labels.bbox_format),
             input_size=np.array(data_cfg.input_size), config_hash=np.array(cfg_hash),
             config_json=np.array(json.dumps(cfg_values)), source_hash=np.array(src_hash))
    return _summary(split, out_dir, labels, False, time.perf_counter() - start)


def _is_current(x_path, y_path, cfg_hash, src_hash, shape):
    if not (x_path.is_file() and y_path.is_file()):
        return False
    try:
        y = load_npz(y_path, required=("config_hash", "source_hash"))
        x = np.load(x_path, mmap_mode="r", allow_pickle=False)
    except (DataError, ValueError, OSError, EOFError):  # EOFError: an empty file
        return False
    return str(y["config_hash"]) == cfg_hash and str(y["source_hash"]) == src_hash and x.shape == shape


def _summary(split, out_dir, labels, reused, seconds):
    counts = np.array([len(b) for b in labels.boxes])
    return {"split": split, "cache": str(out_dir), "images": len(labels.image_paths), "boxes": int(counts.sum()),
            "classes": list(labels.category_names), "bbox_format": labels.bbox_format, "note": labels.note,
            "reused": reused, "seconds": round(seconds, 2)}


@dataclasses.dataclass
class BoxCache:
    """A loaded split: images (N, H, W, 3) uint8 memory map and the Y arrays (dict)."""

    images: np.ndarray
    y: dict

    @property
    def category_names(self):
        return tuple(str(n) for n in self.y["category_names"])

    def targets(self):
        """(N, M, 5) float32 = (x1, y1, x2, y2, class), class -1 = padding: the loss's y_true."""
        return np.concatenate([self.y["boxes"], self.y["classes"][..., None].astype(np.float32)], axis=-1)

    def ground_truth(self, index):
        """(boxes (n, 4), classes (n,)) of image `index`, padding removed."""
        n = int(self.y["counts"][index])
        return self.y["boxes"][index, :n].astype(np.float64), self.y["classes"][index, :n].astype(np.int64)


def load_cache(cache_dir, split, data_cfg=None):
    """Open `{cache_dir}/{split}`; a cache from another config raises `DataError`."""
    out_dir = Path(cache_dir) / split
    y = load_npz(out_dir / "Y_data.npz", required=CACHE_KEYS)
    count, (width, height) = len(y["counts"]), tuple(int(v) for v in y["input_size"])
    images = open_image_cache(out_dir / "X_data.npy", (count, height, width, 3), "preprocess_det.py")
    if y["boxes"].shape[:1] != (count,) or y["classes"].shape != y["boxes"].shape[:2]:
        raise DataError(f"boxes {y['boxes'].shape} and classes {y['classes'].shape} do not match {count} images "
                        "(stale cache; re-run preprocess_det.py)", out_dir / "Y_data.npz")
    if not np.isfinite(y["boxes"]).all():
        raise DataError("array 'boxes' holds NaN or infinite values (re-run preprocess_det.py)",
                        out_dir / "Y_data.npz")
    if data_cfg is not None:
        check_cache_config(y, preprocess_config(data_cfg), out_dir / "Y_data.npz", "preprocess_det.py")
    return BoxCache(images, y)
