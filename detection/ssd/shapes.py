"""The built-in synthetic shapes dataset: images + a COCO-format detection JSON.

Each image (224 x 224 RGB by default) holds 1 to `max_objects` objects of three
classes in three size bands, one per detection scale: small circles, medium squares,
large triangles (sizes are box sides in pixels). Colours, positions and backgrounds
(flat, gradient, noise, stripes) are random; objects may overlap (large ones are drawn
first, so smaller ones stay visible) and may be cut by the border (a box keeps at least
`min_visible` of its area inside). Boxes are the visible extent, [x, y, w, h] in
pixels with pixel i covering [i, i + 1).

    write_shapes(out_dir, ShapesConfig(num_images=500, seed=1), split="test")
    -> out_dir/images/test/*.png, out_dir/test.json
"""

import dataclasses
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from common.data_io import save_json
from common.parallel import parallel_map

CATEGORIES = ({"id": 1, "name": "circle"}, {"id": 2, "name": "square"}, {"id": 3, "name": "triangle"})


@dataclasses.dataclass
class ShapesConfig:
    """size_bands: (min, max) box side per class (circle, square, triangle), pixels."""

    num_images: int = 1000
    seed: int = 0
    image_size: tuple = (224, 224)
    max_objects: int = 6
    size_bands: tuple = ((12, 34), (40, 88), (96, 176))
    min_visible: float = 0.6

    def __post_init__(self):
        if self.num_images < 1 or self.max_objects < 1:
            raise ValueError(f"num_images and max_objects must be >= 1. Received: {self.num_images}, "
                             f"{self.max_objects}")
        if len(self.size_bands) != len(CATEGORIES):
            raise ValueError(f"size_bands needs one (min, max) per class. Received: {self.size_bands}")


def _background(rng, width, height):
    kind = rng.integers(4)
    base = rng.uniform(0, 255, 3)
    if kind == 0:  # flat
        image = np.broadcast_to(base, (height, width, 3)).copy()
    elif kind == 1:  # linear gradient between two colours
        other = rng.uniform(0, 255, 3)
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:height, 0:width]
        t = (np.cos(angle) * xx + np.sin(angle) * yy)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        image = base * (1 - t[..., None]) + other * t[..., None]
    elif kind == 2:  # smooth noise
        coarse = rng.uniform(-60, 60, (height // 16 + 1, width // 16 + 1, 3))
        noise = np.asarray(Image.fromarray(coarse.astype(np.float32)[..., 0]).resize((width, height)))
        image = base + noise[..., None]
    else:  # stripes
        other = rng.uniform(0, 255, 3)
        period = rng.uniform(8, 40)
        yy, xx = np.mgrid[0:height, 0:width]
        angle = rng.uniform(0, math.pi)
        stripe = (np.cos(angle) * xx + np.sin(angle) * yy) % period < period / 2
        image = np.where(stripe[..., None], base, other)
    image = image + rng.normal(0, 4, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_points(kind, side, rng):
    """Outline of one object centred at 0 with a box side near `side` (circle: None)."""
    if kind == 0:
        return None
    if kind == 1:
        half = side / 2
        return np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    angle = rng.uniform(0, 2 * math.pi)
    corners = np.array([[math.cos(angle + k * 2 * math.pi / 3), math.sin(angle + k * 2 * math.pi / 3)]
                        for k in range(3)])
    extent = corners.max(axis=0) - corners.min(axis=0)
    corners = corners / extent.max() * side  # the longer box side is `side`
    return corners - (corners.max(axis=0) + corners.min(axis=0)) / 2


def _contrasting_colour(rng, background):
    for _ in range(20):
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - background).sum() > 150:
            return colour
    return 255 - background


def render_image(seed, cfg):
    """One image and its objects: (image (H, W, 3) uint8, boxes (n, 4) xyxy, classes (n,) 0-based).

    Each object is drawn on its own mask first (on a canvas padded beyond the border),
    so its box is the exact extent of its pixels inside the image.
    """
    rng = np.random.default_rng(seed)
    width, height = cfg.image_size
    pad = int(max(high for _, high in cfg.size_bands))
    image = Image.fromarray(_background(rng, width, height))
    count = int(rng.integers(1, cfg.max_objects + 1))
    kinds = np.sort(rng.integers(0, len(CATEGORIES), count))[::-1]  # large first
    boxes, classes = [], []
    for kind in kinds:
        low, high = cfg.size_bands[kind]
        side = rng.uniform(low, high)
        points = _shape_points(kind, side, rng)
        half = np.full(2, side / 2) if points is None else (points.max(axis=0) - points.min(axis=0)) / 2
        for _ in range(30):  # a centre that keeps enough of the object inside
            centre = rng.uniform(-half * 0.5, np.array([width, height]) + half * 0.5)
            mask = Image.new("L", (width + 2 * pad, height + 2 * pad), 0)
            if points is None:
                ImageDraw.Draw(mask).ellipse(list(np.concatenate([centre - half, centre + half]) + pad), fill=255)
            else:
                ImageDraw.Draw(mask).polygon([tuple(p) for p in points + centre + pad], fill=255)
            full = np.asarray(mask) > 0
            inside = full[pad:pad + height, pad:pad + width]
            if inside.sum() >= cfg.min_visible * max(full.sum(), 1):
                rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
                box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float64)
                if min(box[2] - box[0], box[3] - box[1]) >= 4:
                    break
        else:
            continue
        colour = _contrasting_colour(rng, np.asarray(image)[inside].mean(axis=0))
        layer = Image.new("RGB", (width, height), tuple(int(c) for c in colour))
        image.paste(layer, (0, 0), Image.fromarray(inside.astype(np.uint8) * 255))
        boxes.append(box)
        classes.append(int(kind))
    return np.asarray(image), np.array(boxes, np.float64).reshape(-1, 4), np.array(classes, np.int64)


def _render_job(job):
    index, seed, cfg, path = job
    image, boxes, classes = render_image(seed, cfg)
    Image.fromarray(image).save(path)
    return boxes, classes


def write_shapes(out_dir, cfg, split="train", workers=1, progress=True):
    """Render a split: `out_dir/images/{split}/00000.png ...` and `out_dir/{split}.json` (COCO)."""
    out_dir = Path(out_dir)
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    # Split-dependent seeds: train and test from the same --seed never share an image.
    base = np.random.default_rng([cfg.seed, sum(map(ord, split))]).integers(0, 2 ** 31, cfg.num_images)
    jobs = [(i, int(base[i]), cfg, image_dir / f"{i:05d}.png") for i in range(cfg.num_images)]
    images, annotations = [], []
    for (i, _, _, path), (boxes, classes) in zip(jobs, parallel_map(_render_job, jobs, workers, f"render {split}",
                                                                    progress=progress)):
        images.append({"id": i + 1, "file_name": path.name, "width": cfg.image_size[0], "height": cfg.image_size[1]})
        for box, cls in zip(boxes, classes):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cls) + 1,
                                "bbox": [round(float(box[0]), 2), round(float(box[1]), 2), round(float(w), 2),
                                         round(float(h), 2)],
                                "area": round(float(w * h), 2), "iscrowd": 0})
    coco = {"images": images, "annotations": annotations, "categories": [dict(c) for c in CATEGORIES],
            "info": {"description": "synthetic shapes", "config": dataclasses.asdict(cfg)}}
    json_path = out_dir / f"{split}.json"
    save_json(json_path, coco)
    return json_path
