"""Detection caches: COCO JSON + images -> uint8 image array + padded box arrays.

Cache `{cache_dir}/{split}/`:
    X_data.npy   (N, H_in, W_in, 3) uint8, images resized to data.input_size
    Y_data.npz   boxes (N, M, 4) float32 xyxy in input pixels (zero rows past `counts`);
                 classes (N, M) int32, -1 past `counts`; counts (N,) int32;
                 scales (N, 2) = (sx, sy) with input = original * scale; image_sizes (N, 2);
                 filenames, image_paths, image_ids (as strings); category_ids, category_names;
                 bbox_format (as read); input_size; config_hash, config_json, source_hash, x_crc32.

Written and read by `common.cache`: an unchanged config and unchanged inputs reuse the
cache; training on a cache built with another config is refused.
"""

import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import cache
from common.data_io import read_image_rgb, split_files
from common.errors import DataError
from common.parallel import parallel_map
from detection.ssd.coco import check_image_size, load_coco


def preprocess_config(data_cfg):
    """The part of the config that decides the cache's content (its hash)."""
    return {"input_size": list(data_cfg.input_size), "max_boxes": data_cfg.max_boxes,
            "bbox_format": data_cfg.bbox_format}


LAYOUT = cache.Layout(
    rebuild="preprocess_det.py --split {split}",
    shapes={"boxes": ("N", "M", 4), "classes": ("N", "M"), "counts": ("N",), "scales": ("N", 2),
            "image_sizes": ("N", 2), "filenames": ("N",), "image_paths": ("N",), "image_ids": ("N",),
            "category_ids": ("C",), "category_names": ("C",), "input_size": (2,)},
    images=lambda y: ("N", int(y["input_size"][1]), int(y["input_size"][0]), 3),
    settings=preprocess_config,
    names="category_names",
    required=("boxes", "classes", "counts", "scales", "image_sizes", "filenames", "category_ids",
              "category_names", "input_size"),
    finite=("boxes",),
)


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


def preprocess(data_cfg, split, progress=True, workers=1, labels=None, images=None, skip_bad=False,
               allow_outside=False):
    """Build (or reuse) the cache of one split from `{data_dir}/{split}.json` (or the
    `labels` file, with images in the `images` folder); returns a summary.
    skip_bad: leave out images that cannot be read or do not have their declared size,
    listed in the cache folder's `skipped.tsv`, instead of stopping. allow_outside: read
    images the labels name outside the data folder (refused by default)."""
    start = time.perf_counter()
    label_path = split_files(data_cfg.data_dir, split, labels)[0]
    labels = load_coco(label_path, label_path.parent, split, data_cfg.bbox_format, data_cfg.max_boxes, images,
                       allow_outside)
    out_dir = Path(data_cfg.cache_dir) / split
    cfg_values = preprocess_config(data_cfg)
    src_hash = cache.source_hash([labels.label_path], labels.image_paths, skip_bad=skip_bad)
    y, stale = cache.current(out_dir, LAYOUT, cfg_values, src_hash)
    if y is not None:
        return _summary(split, out_dir, labels, True, time.perf_counter() - start, y["counts"])

    count, (width, height) = len(labels.image_paths), data_cfg.input_size
    jobs = [(path, data_cfg.input_size, tuple(size), labels.label_path, f"images[{i}] ({path.name}): ")
            for i, (path, size) in enumerate(zip(labels.image_paths, labels.image_sizes.tolist()))]
    max_boxes = data_cfg.max_boxes
    boxes = np.zeros((count, max_boxes, 4), np.float32)
    classes = np.full((count, max_boxes), -1, np.int32)
    scales = np.stack([width / labels.image_sizes[:, 0], height / labels.image_sizes[:, 1]], axis=1)
    for i, (b, c) in enumerate(zip(labels.boxes, labels.classes)):  # ragged lists into padded rows
        boxes[i, :len(b)] = b * np.tile(scales[i], 2)
        classes[i, :len(c)] = c
    kept, skipped = [], []

    def resized():
        results = parallel_map(_resize_file, jobs, workers, f"preprocess {split}", progress=progress,
                               errors="return" if skip_bad else "raise")
        for i, image in enumerate(results):
            if isinstance(image, DataError):  # only with skip_bad
                skipped.append((image.path, image.message))
                continue
            kept.append(i)
            yield image[None]

    with cache.writing(out_dir, cfg_values, src_hash) as writer:
        writer.images((count, height, width, 3), resized(), fewer=skip_bad)
        paths = [labels.image_paths[i] for i in kept]
        counts = np.array([len(labels.boxes[i]) for i in kept], np.int32)
        writer.labels({
            "boxes": boxes[kept], "classes": classes[kept], "counts": counts,
            "scales": scales[kept], "image_sizes": labels.image_sizes[kept],
            "filenames": np.array([p.name for p in paths]),
            "image_paths": np.array([str(p.resolve()) for p in paths]),
            "image_ids": np.array([str(labels.image_ids[i]) for i in kept]),
            "category_ids": np.array([str(c) for c in labels.category_ids]),
            "category_names": np.array(labels.category_names), "bbox_format": np.array(labels.bbox_format),
            "input_size": np.array(data_cfg.input_size)})
        writer.skipped(skipped)
    return _summary(split, out_dir, labels, False, time.perf_counter() - start, counts, rebuilt=stale)


def _summary(split, out_dir, labels, reused, seconds, counts, rebuilt=None):
    """counts: the boxes of each image the cache holds (a --skip-bad run may leave some out)."""
    return {"split": split, "cache": str(out_dir), "images": len(counts), "boxes": int(np.sum(counts)),
            "classes": list(labels.category_names), "bbox_format": labels.bbox_format, "note": labels.note,
            "reused": reused, "rebuilt": rebuilt, "seconds": round(seconds, 2),
            "skipped": cache.skipped_items(out_dir), "report": str(Path(out_dir) / cache.REPORT_FILE)}


class BoxCache(cache.Cache):
    """A loaded split: images (N, H, W, 3) uint8 memory map and the Y arrays (dict)."""

    layout = LAYOUT
    category_names = cache.Cache.names

    def targets(self):
        """(N, M, 5) float32 = (x1, y1, x2, y2, class), class -1 = padding: the loss's y_true."""
        return np.concatenate([self.y["boxes"], self.y["classes"][..., None].astype(np.float32)], axis=-1)

    def ground_truth(self, index):
        """(boxes (n, 4), classes (n,)) of image `index`, padding removed."""
        n = int(self.y["counts"][index])
        return self.y["boxes"][index, :n].astype(np.float64), self.y["classes"][index, :n].astype(np.int64)


load_cache = BoxCache.load  # (cache_dir, split, data_cfg=None)
