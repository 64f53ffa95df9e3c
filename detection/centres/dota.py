"""DOTA v1.0 / v1.5 oriented-box labels -> object centres.

A DOTA label file (`labelTxt/NAME.txt` beside `images/NAME.png`) holds optional header
lines `imagesource:...` and `gsd:...`, then one object per line:

    x1 y1 x2 y2 x3 y3 x4 y4 category difficult

in original image pixels (the four corners of the oriented box, in order). The
centre of an object is the area centroid of that polygon (the vertex mean when the
polygon is degenerate). A malformed line raises `DataError` naming the file and line:
coordinates that are not finite float32 numbers, or a `gsd` that is not a number. When
the image size is given, objects whose centre lies outside the image are left out (a
polygon may stick out of the image, as in real DOTA; real DOTA-v1.5 files also hold a few
objects far outside their image), and their line numbers are returned.
"""

import dataclasses
from pathlib import Path

import numpy as np

from common.data_io import IMAGE_SUFFIXES
from common.errors import DataError

DOTA_V1_0 = ("plane", "ship", "storage-tank", "baseball-diamond", "tennis-court", "basketball-court",
             "ground-track-field", "harbor", "bridge", "large-vehicle", "small-vehicle", "helicopter",
             "roundabout", "soccer-ball-field", "swimming-pool")
DOTA_V1_5 = DOTA_V1_0 + ("container-crane",)
DOTA_CATEGORIES = {"dota-v1.0": DOTA_V1_0, "dota-v1.5": DOTA_V1_5}
# Coordinates are cached as float32: anything larger is a corrupt file, not a position.
MAX_COORDINATE = float(np.finfo(np.float32).max)


@dataclasses.dataclass
class DotaLabels:
    """The objects of one label file. M objects.

    polygons (M, 4, 2) float64 original pixels; centres (M, 2) polygon centroids;
    categories (M,) str; difficult (M,) bool; header {"imagesource": ..., "gsd": float}.
    """

    polygons: np.ndarray
    centres: np.ndarray
    categories: np.ndarray
    difficult: np.ndarray
    header: dict

    @property
    def sizes(self):
        """(M,) the longest side of each oriented box, original pixels."""
        sides = np.linalg.norm(self.polygons - np.roll(self.polygons, -1, axis=1), axis=-1)
        return sides.max(axis=1) if len(sides) else np.zeros(0)


def polygon_centroid(polygons):
    """(M, V, 2) polygons -> (M, 2) area centroids (shoelace); vertex mean where the area is ~0."""
    polygons = np.asarray(polygons, dtype=np.float64)
    x, y = polygons[..., 0], polygons[..., 1]
    x1, y1 = np.roll(x, -1, axis=-1), np.roll(y, -1, axis=-1)
    cross = x * y1 - x1 * y
    area = cross.sum(axis=-1) / 2.0
    safe = np.where(np.abs(area) > 1e-9, area, 1.0)
    cx = ((x + x1) * cross).sum(axis=-1) / (6.0 * safe)
    cy = ((y + y1) * cross).sum(axis=-1) / (6.0 * safe)
    mean = polygons.mean(axis=-2)
    degenerate = np.abs(area) <= 1e-9
    return np.stack([np.where(degenerate, mean[..., 0], cx), np.where(degenerate, mean[..., 1], cy)], axis=-1)


def read_dota_labels(path, known_categories=DOTA_V1_5, image_size=None):
    """Parse one DOTA label file. `known_categories`: the names a line may use;
    `image_size` (width, height): when given, objects whose centre lies outside [0, W] x [0, H]
    are left out (real DOTA-v1.5 files have a few), their line numbers in
    `header["outside_lines"]`."""
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder, not a label file", path)
    if not path.is_file():
        raise DataError("label file not found", path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # DOTA's own downloads begin with a byte-order mark
    except UnicodeDecodeError as err:
        raise DataError(f"not a text file ({err})", path) from None
    except OSError as err:
        raise DataError(f"cannot read label file ({err.__class__.__name__}: {err.strerror})", path) from None
    header, polygons, categories, difficult, line_numbers = {}, [], [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("imagesource", "gsd"):
            if key.strip() == "gsd":
                header["gsd"] = _gsd(value.strip(), number, path)
            else:
                header["imagesource"] = value.strip()
            continue
        fields = line.split()
        if len(fields) not in (9, 10):
            raise DataError(f"line {number}: expected 'x1 y1 x2 y2 x3 y3 x4 y4 category difficult', "
                            f"got {len(fields)} fields: {line[:80]!r}", path)
        try:
            corners = np.array([float(v) for v in fields[:8]]).reshape(4, 2)
        except ValueError:
            raise DataError(f"line {number}: the 8 corner coordinates must be numbers: {line[:80]!r}", path) from None
        if not np.isfinite(corners).all():
            raise DataError(f"line {number}: corner coordinates must be finite: {line[:80]!r}", path)
        if np.abs(corners).max() > MAX_COORDINATE:
            raise DataError(f"line {number}: corner coordinates must be float32 numbers (|x| <= "
                            f"{MAX_COORDINATE:.3g}): {line[:80]!r}", path)
        category = fields[8]
        if category not in known_categories:
            raise DataError(f"line {number}: unknown category {category!r} (known: {', '.join(known_categories)})",
                            path)
        flag = fields[9] if len(fields) == 10 else "0"
        if flag not in ("0", "1"):
            raise DataError(f"line {number}: difficult must be 0 or 1, got {flag!r}", path)
        polygons.append(corners)
        categories.append(category)
        difficult.append(flag == "1")
        line_numbers.append(number)
    polygons = np.array(polygons, dtype=np.float64).reshape(-1, 4, 2)
    centres = polygon_centroid(polygons)
    categories, difficult = np.array(categories, dtype=str), np.array(difficult, dtype=bool)
    if image_size is not None:
        inside = ((centres >= 0) & (centres <= np.asarray(image_size, dtype=np.float64))).all(axis=1)
        header["outside_lines"] = [n for n, ok in zip(line_numbers, inside) if not ok]
        polygons, centres, categories, difficult = polygons[inside], centres[inside], categories[inside], difficult[inside]
    return DotaLabels(polygons, centres, categories, difficult, header)


def _gsd(text, number, path):
    """The `gsd:` header value (metres per pixel), or None when empty, null, or not a positive
    finite number (nothing here uses it: an odd value is not worth refusing a file for)."""
    if text in ("", "null", "None"):
        return None
    try:
        gsd = float(text)
    except ValueError:
        raise DataError(f"line {number}: gsd must be a number, got {text!r}", path) from None
    return gsd if 0 < gsd < np.inf else None


def write_dota_labels(path, polygons, categories, difficult=None, imagesource="synthetic", gsd=None):
    """Write a DOTA label file (atomically); polygons (M, 4, 2) original pixels."""
    from common.data_io import atomic_path

    polygons = np.asarray(polygons, dtype=np.float64).reshape(-1, 4, 2)
    difficult = np.zeros(len(polygons), bool) if difficult is None else np.asarray(difficult, bool)
    lines = [f"imagesource:{imagesource}", f"gsd:{'null' if gsd is None else gsd}"]
    for corners, category, flag in zip(polygons, categories, difficult):
        lines.append(" ".join(f"{v:.2f}" for v in corners.ravel()) + f" {category} {int(flag)}")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def find_dota_pairs(data_dir, labels=None, images=None):
    """Sorted (image path, label path) pairs of a DOTA folder (`images/`, `labelTxt/`), or
    of the `labels` folder (`NAME.txt` files) and the `images` folder the user named.

    Every image needs a label file; label files without an image are an error too.
    """
    data_dir = Path(data_dir)
    image_dir = Path(images) if images else data_dir / "images"
    label_dir = Path(labels) if labels else data_dir / "labelTxt"
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise DataError("folder not found (a DOTA folder holds images/ and labelTxt/)", folder)
    images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not images:
        raise DataError("no images (.png, .jpg, ...) in folder", image_dir)
    labels = {p.stem: p for p in sorted(label_dir.glob("*.txt"))}
    for path in list(images.values()) + list(labels.values()):
        if not path.is_file():
            raise DataError("not a regular file (a folder?)", path)
    missing = sorted(set(images) - set(labels))
    if missing:
        raise DataError(f"no label file for image {images[missing[0]].name} ({len(missing)} missing)",
                        label_dir / f"{missing[0]}.txt")
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise DataError(f"label file without an image ({len(orphans)} such)", labels[orphans[0]])
    return [(images[name], labels[name]) for name in sorted(images)]
