"""Synthetic aerial images with object centres, written as a DOTA-format folder.

Each image (512x512 by default) is a field pattern (rotated parcels of crop colours),
one to three roads, low-frequency texture and pixel noise, tree blobs (distractors),
then 1 to `max_objects` objects of three DOTA categories:

    small-vehicle   rotated rectangle, 10-24 px long (all small)
    large-vehicle   rotated rectangle, 30-64 px long
    storage-tank    ellipse (near-circular), 12-48 px across (some small)

Some objects come in clusters (a parking row or a tank farm: centres 20-40 px apart),
some sit on the image border (centre inside, body cut off). No two objects overlap,
and centres are at least `min_centre_distance` px apart (20 px: 2.5 heatmap pixels of
the default 8 px, the smallest gap at which a 3x3 peak NMS can still separate two
objects). The ground truth of an object is its oriented box, written as a DOTA label
line; its centre (the box centroid) is the object's exact centre.
"""

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from common.data_io import atomic_path
from common.parallel import parallel_map
from detection.centres.dota import write_dota_labels

CATEGORIES = ("small-vehicle", "large-vehicle", "storage-tank")
FIELD_COLOURS = np.array([(96, 120, 60), (120, 140, 70), (150, 140, 90), (110, 100, 70), (80, 105, 55),
                          (170, 160, 110), (130, 125, 80), (100, 115, 85)], np.float32)
VEHICLE_COLOURS = np.array([(230, 230, 230), (30, 30, 35), (200, 40, 40), (40, 70, 170), (190, 190, 200),
                            (220, 200, 60), (120, 120, 125)], np.float32)


@dataclasses.dataclass
class AerialConfig:
    """Image size (px), objects per image (1 .. max_objects), share of clustered and border objects."""

    image_size: int = 512
    max_objects: int = 12
    cluster_prob: float = 0.5
    border_prob: float = 0.15
    min_centre_distance: float = 20.0

    def __post_init__(self):
        if self.image_size < 64 or self.max_objects < 1:
            raise ValueError(f"need image_size >= 64 and max_objects >= 1. Received: image_size={self.image_size}, "
                             f"max_objects={self.max_objects}")


def render_image(seed, cfg=AerialConfig()):
    """One image and its objects: (image (S, S, 3) uint8, polygons (M, 4, 2), categories (M,))."""
    rng = np.random.default_rng(seed)
    size = cfg.image_size
    image = Image.fromarray(_background(rng, size))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(0, 3)):  # roads
        _road(draw, rng, size)
    for _ in range(rng.integers(0, 6)):  # trees: dark green blobs, not objects
        x, y, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(4, 12)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.uniform((20, 50, 20), (50, 80, 40))))

    objects = _place_objects(rng, cfg)
    for category, centre, length, width, angle in objects:
        _draw_object(draw, rng, category, centre, length, width, angle)
    array = np.asarray(image, np.float32)
    array += rng.normal(0, rng.uniform(2, 6), array.shape)
    polygons = np.array([_box(c, l, w, a) for _, c, l, w, a in objects]).reshape(-1, 4, 2)
    return np.clip(array, 0, 255).astype(np.uint8), polygons, [o[0] for o in objects]


def render_folder(out_dir, num_images, seed=0, cfg=AerialConfig(), workers=1, progress=True):
    """Write `num_images` images to `out_dir/images/aerial_NNNNNN.jpg` and their DOTA labels
    to `out_dir/labelTxt/`. Image i uses seed `(seed, i)`, so a folder can be extended."""
    out_dir = Path(out_dir)
    jobs = [(out_dir, seed, index, cfg) for index in range(num_images)]
    counts = list(parallel_map(_render_file, jobs, workers, "render", progress=progress))
    return {"images": num_images, "objects": int(sum(counts)), "folder": str(out_dir)}


def _render_file(job):
    out_dir, seed, index, cfg = job
    image, polygons, categories = render_image([seed, index], cfg)
    name = f"aerial_{index:06d}"
    with atomic_path(out_dir / "images" / f"{name}.jpg") as tmp:
        Image.fromarray(image).save(tmp, quality=92)
    write_dota_labels(out_dir / "labelTxt" / f"{name}.txt", polygons, categories, imagesource="synthetic-aerial")
    return len(categories)


def _background(rng, size):
    """Rotated field parcels with crop colours, stripes and low-frequency texture."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    cell_u, cell_v = rng.uniform(80, 260), rng.uniform(80, 260)
    iu, iv = np.floor(u / cell_u).astype(np.int64), np.floor(v / cell_v).astype(np.int64)
    palette = FIELD_COLOURS[rng.permutation(len(FIELD_COLOURS))] * rng.uniform(0.85, 1.15, (len(FIELD_COLOURS), 1))
    colour = palette[(iu * 7 + iv * 13 + 1000) % len(palette)]
    stripes = 1 + 0.06 * np.sin(2 * np.pi * u / rng.uniform(4, 10))[..., None]  # ploughed rows
    coarse = rng.normal(0, 1, (size // 32 + 2, size // 32 + 2, 1)).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse[..., 0]).resize((size, size), Image.BICUBIC))[..., None]
    return np.clip(colour * stripes + 10 * texture, 0, 255).astype(np.uint8)


def _road(draw, rng, size):
    x0, y0 = rng.uniform(0, size, 2)
    angle = rng.uniform(0, np.pi)
    d = np.array([np.cos(angle), np.sin(angle)]) * 2 * size
    grey = int(rng.uniform(90, 160))
    draw.line([tuple(np.array([x0, y0]) - d), tuple(np.array([x0, y0]) + d)], fill=(grey, grey, grey - 5),
              width=int(rng.uniform(8, 18)))


def _sample_shape(rng, category):
    """(length, width) in px; vehicles are long and thin, tanks near-circular."""
    if category == "small-vehicle":
        length = rng.uniform(10, 24)
        return length, length * rng.uniform(0.42, 0.55)
    if category == "large-vehicle":
        length = rng.uniform(30, 64)
        return length, length * rng.uniform(0.28, 0.4)
    diameter = rng.uniform(12, 48)
    return diameter, diameter * rng.uniform(0.85, 1.0)


def _place_objects(rng, cfg):
    """[(category, centre (2,), length, width, angle)] without overlaps."""
    size, target = cfg.image_size, int(rng.integers(1, cfg.max_objects + 1))
    placed, attempts = [], 0
    while len(placed) < target and attempts < 400:
        attempts += 1
        category = CATEGORIES[rng.choice(3, p=(0.5, 0.2, 0.3))]
        if placed and rng.uniform() < cfg.cluster_prob:  # next to a placed object of the same category
            same = [p for p in placed if p[0] == category] or placed
            anchor = same[rng.integers(len(same))]
            category = anchor[0]
            length, width = _sample_shape(rng, category)
            gap = max(cfg.min_centre_distance, 0.5 * (anchor[2] + length) + 2) * rng.uniform(1.0, 1.4)
            direction = rng.uniform(0, 2 * np.pi)
            centre = anchor[1] + gap * np.array([np.cos(direction), np.sin(direction)])
            angle = anchor[4] + rng.normal(0, 0.1)  # parked in line
        else:
            length, width = _sample_shape(rng, category)
            angle = rng.uniform(0, np.pi)
            if rng.uniform() < cfg.border_prob:  # centre near an edge, body cut off
                centre = rng.uniform(0, size, 2)
                axis, low = rng.integers(2), rng.uniform() < 0.5
                offset = rng.uniform(0.5, max(0.6, length / 3))
                centre[axis] = offset if low else size - offset
            else:
                centre = rng.uniform(0, size, 2)
        if not (0 <= centre[0] < size and 0 <= centre[1] < size):
            continue
        if any(_too_close(centre, length, width, angle, p, cfg.min_centre_distance) for p in placed):
            continue
        placed.append((category, centre, length, width, angle))
    return placed


def _too_close(centre, length, width, angle, other, min_distance):
    """Whether two objects' centres are too close or their boxes overlap (separating axes)."""
    if np.hypot(*(centre - other[1])) < min_distance:
        return True
    a, b = _box(centre, length + 2, width + 2, angle), _box(other[1], other[2] + 2, other[3] + 2, other[4])
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            normal = np.array([-edge[1], edge[0]])
            pa, pb = a @ normal, b @ normal
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def _box(centre, length, width, angle):
    """(4, 2) corners of a rotated rectangle, in order."""
    c, s = np.cos(angle), np.sin(angle)
    half = np.array([[-length, -width], [length, -width], [length, width], [-length, width]]) / 2
    return np.asarray(centre, np.float64) + half @ np.array([[c, s], [-s, c]])


def _draw_object(draw, rng, category, centre, length, width, angle):
    shadow = _box(centre + np.array([2.0, 2.0]), length, width, angle)
    draw.polygon([tuple(p) for p in shadow], fill=(35, 35, 30))
    if category == "storage-tank":
        r_long, r_short = length / 2, width / 2
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        c, s = np.cos(angle), np.sin(angle)
        pts = np.stack([r_long * np.cos(t), r_short * np.sin(t)], -1) @ np.array([[c, s], [-s, c]]) + centre
        shade = int(rng.uniform(170, 235))
        draw.polygon([tuple(p) for p in pts], fill=(shade, shade, shade - 5), outline=(90, 90, 90))
        inner = (pts - centre) * 0.55 + centre
        draw.polygon([tuple(p) for p in inner], outline=(shade - 40,) * 3)
        return
    colour = VEHICLE_COLOURS[rng.integers(len(VEHICLE_COLOURS))] * rng.uniform(0.85, 1.1)
    draw.polygon([tuple(p) for p in _box(centre, length, width, angle)], fill=tuple(int(v) for v in np.clip(colour, 0, 255)))
    # A windscreen / cab stripe marks the front.
    forward = np.array([np.cos(angle), np.sin(angle)])
    cab = _box(np.asarray(centre) + forward * length * 0.25, length * 0.12, width * 0.8, angle)
    draw.polygon([tuple(p) for p in cab], fill=(40, 50, 60))
