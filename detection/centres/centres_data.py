"""DOTA-format folder -> tiled caches (X_data.npy, Y_data.npz) for the centre detector.

`preprocess(data_cfg)` splits the images of `data_dir` (`images/`, `labelTxt/`) into
train / val / test by a seeded shuffle of the sorted names, cuts every image into
overlapping tiles (`detection.centres.tiling`) resized to the model input, and writes per split
`{cache_dir}/{split}/`:

    X_data.npy   (T, S, S, 3) uint8 tiles (S = input size), memory-mapped when read
    Y_data.npz   objects (T, M, 4) float32 = (x_norm, y_norm, class, valid) per tile: the
                 training targets, M = the most objects in any tile (>= 1), padded;
                 tile_image (T,), tile_transforms (T, 4) (original -> input pixels);
                 per image: filenames, image_paths, image_sizes (N, 2);
                 per true object (flat, G): gt_image, gt_class, gt_xy_original (G, 2),
                 gt_polygons (G, 4, 2), gt_size (longest side, px), gt_difficult,
                 gt_small, gt_clustered, gt_border; class_names, config_hash, config_json,
                 source_hash, x_crc32, input_size, heatmap_size, sigma, tile_size

A tile's objects are those whose centre lies inside it: a tile covers [x0, x0 + tile),
and the last tile of a row or column also its end, where an object centred exactly on
the image's right or bottom edge lies (DOTA keeps centres in [0, W] x [0, H]). Written
and read by `common.cache`: an unchanged config and unchanged inputs reuse the caches;
the cache of a split that the config leaves empty is removed, so no stale one is left
for training to trip over.
"""

import dataclasses
import json
import time
import warnings
from pathlib import Path

import numpy as np

from common import cache
from common.data_io import open_image, read_image_rgb
from common.errors import DataError
from common.parallel import parallel_map
from detection.centres.dota import DOTA_CATEGORIES, DOTA_V1_5, find_dota_pairs, read_dota_labels
from detection.centres.tiling import cut_tiles, tile_grid, tile_transform

SPLITS = ("train", "val", "test")


def preprocess_config(data_cfg):
    """The part of the config that decides the caches' content (its hash names them)."""
    keys = ("categories", "single_class", "split", "split_seed", "tile_size", "tile_overlap", "input_size",
            "sigma", "small_size", "cluster_distance", "skip_difficult")
    return json.loads(json.dumps({key: getattr(data_cfg, key) for key in keys}))


LAYOUT = cache.Layout(
    rebuild="preprocess_centres.py",
    shapes={"objects": ("T", "M", 4), "tile_image": ("T",), "tile_transforms": ("T", 4), "filenames": ("I",),
            "image_paths": ("I",), "image_sizes": ("I", 2), "gt_image": ("G",), "gt_class": ("G",),
            "gt_xy_original": ("G", 2), "gt_polygons": ("G", 4, 2), "gt_size": ("G",), "gt_difficult": ("G",),
            "gt_small": ("G",), "gt_clustered": ("G",), "gt_border": ("G",), "class_names": ("C",),
            "input_size": (2,), "heatmap_size": (2,), "sigma": (), "tile_size": ()},
    images=lambda y: ("T", int(y["input_size"][0]), int(y["input_size"][0]), 3),
    settings=preprocess_config,
    names="class_names",
    required=("objects", "tile_image", "tile_transforms", "filenames", "image_sizes", "gt_image", "gt_class",
              "gt_xy_original", "class_names", "input_size", "heatmap_size", "sigma"),
    finite=("objects", "tile_transforms"),
)


def split_names(count, fractions, seed):
    """Seeded shuffle of range(count) cut into train / val / test index arrays.

    Counts are rounded; with 3 or more images every split with a nonzero fraction
    gets at least one.
    """
    order = np.random.default_rng(seed).permutation(count)
    sizes = [int(round(count * f)) for f in fractions[1:]]
    if count >= 3:
        sizes = [max(1, s) if f > 0 else 0 for s, f in zip(sizes, fractions[1:])]
    n_val, n_test = sizes
    n_train = max(0, count - n_val - n_test)
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:n_train + n_val + n_test]}


@dataclasses.dataclass
class ImageLabels:
    """One image's kept objects in original pixels (K objects)."""

    image_path: Path
    size: tuple  # (width, height)
    xy: np.ndarray  # (K, 2)
    classes: np.ndarray  # (K,)
    polygons: np.ndarray  # (K, 4, 2)
    sizes: np.ndarray  # (K,)
    difficult: np.ndarray  # (K,)


def read_labels(pairs, data_cfg, skipped=None):
    """[ImageLabels] for (image, label) pairs; objects of other categories are dropped.
    skipped: a list to collect (path, reason) of the pairs whose image or label file is
    bad in (their entry is then None: `--skip-bad`), instead of raising.

    A requested category that no object of any of the label files has is an error (a typo
    in `data.categories` would otherwise train on nothing); of a whole DOTA list, at least
    one category must be present.
    """
    class_index = {name: (0 if data_cfg.single_class else i) for i, name in enumerate(data_cfg.categories)}
    known = tuple(dict.fromkeys(DOTA_V1_5 + data_cfg.categories))
    out, seen, outside = [], set(), []
    for image_path, label_path in pairs:
        try:
            with open_image(image_path) as img:
                size = img.size
            labels = read_dota_labels(label_path, known, image_size=size)
        except DataError as err:
            if skipped is None:
                raise
            skipped.append((err.path, err.message))
            out.append(None)
            continue
        outside += [(label_path, n) for n in labels.header["outside_lines"]]
        keep = np.array([c in class_index for c in labels.categories], bool)
        if data_cfg.skip_difficult:
            keep &= ~labels.difficult
        seen.update(labels.categories[~labels.difficult] if data_cfg.skip_difficult else labels.categories)
        out.append(ImageLabels(image_path, size, labels.centres[keep],
                               np.array([class_index[c] for c in labels.categories[keep]], np.int64),
                               labels.polygons[keep], labels.sizes[keep], labels.difficult[keep]))
    if outside:
        path, line = outside[0]
        warnings.warn(f"{len(outside)} objects whose centre lies outside their image were left out "
                      f"(first: {path}, line {line})", stacklevel=2)
    absent = [name for name in data_cfg.categories if name not in seen]
    if data_cfg.categories in DOTA_CATEGORIES.values() and len(absent) < len(data_cfg.categories):
        absent = []  # a whole DOTA list (dota-v1.0 / v1.5) may meet a subset that lacks a few classes
    if absent and pairs:
        raise DataError(f"field 'data.categories': {absent[0]!r} matches no object in the {len(pairs)} label files "
                        f"(present: {', '.join(sorted(seen)) or 'none'}; DOTA names: {', '.join(DOTA_V1_5)}; "
                        f"shortcuts: {', '.join(DOTA_CATEGORIES)})", pairs[0][1].parent)
    return out


def preprocess(data_cfg, progress=True, workers=1, labels=None, images=None, skip_bad=False):
    """Build (or reuse) the train / val / test caches from `data_dir` (or the `labels`
    and `images` folders); returns {split: summary}.
    skip_bad: leave out images whose image or label file cannot be read, listed in each
    split's `skipped.tsv`, instead of stopping."""
    start = time.perf_counter()
    pairs = find_dota_pairs(data_cfg.data_dir, labels, images)
    cfg_values = preprocess_config(data_cfg)
    splits = split_names(len(pairs), data_cfg.split, data_cfg.split_seed)
    if data_cfg.split[0] > 0 and not len(splits["train"]):
        raise DataError(f"field 'data.split': {list(data_cfg.split)} of {len(pairs)} images leaves train empty "
                        f"(val {len(splits['val'])}, test {len(splits['test'])}); add images or raise the train "
                        "fraction", Path(data_cfg.data_dir))
    labels = None  # read, for all splits at once (the category check looks at every file), when one is rebuilt
    summaries = {}
    for split in SPLITS:
        split_pairs = [pairs[i] for i in np.sort(splits[split])]
        out_dir = Path(data_cfg.cache_dir) / split
        if not split_pairs:
            # A cache left from a run with another split would be refused by training as
            # stale, with advice (preprocess again) that could not help: remove it.
            removed = _remove_cache(out_dir)
            summaries[split] = {"images": 0, "tiles": 0, "objects": 0, "cache": None, "reused": False,
                                "removed": removed}
            continue
        src_hash = cache.source_hash([label for _, label in split_pairs], [image for image, _ in split_pairs],
                                     skip_bad=skip_bad)
        y, stale = cache.current(out_dir, LAYOUT, cfg_values, src_hash)
        if y is not None:
            summaries[split] = _summary(out_dir, y, reused=True)
            continue
        if labels is None:
            bad = [] if skip_bad else None
            labels = read_labels(pairs, data_cfg, bad)
            bad = dict(zip([i for i, item in enumerate(labels) if item is None], bad or []))
        split_labels = [labels[i] for i in np.sort(splits[split]) if labels[i] is not None]
        if not split_labels:
            path, reason = bad[int(np.sort(splits[split])[0])]
            raise DataError(f"every image of the {split} split is bad; the first: {reason}", path)
        with cache.writing(out_dir, cfg_values, src_hash) as writer:
            y = _write_split(writer, split_labels, data_cfg, progress, workers, split)
            writer.skipped([bad[i] for i in np.sort(splits[split]) if i in bad])
        summaries[split] = _summary(out_dir, y, reused=False, rebuilt=stale)
    summaries["seconds"] = round(time.perf_counter() - start, 2)
    return summaries


def _write_split(writer, labels, data_cfg, progress, workers, split):
    """Tile the images of `labels` into `writer` (a `common.cache.CacheWriter`); returns the Y arrays."""
    size, tile = data_cfg.input_size[0], data_cfg.tile_size
    origins = [tile_grid(item.size[0], item.size[1], tile, data_cfg.tile_overlap) for item in labels]
    tile_image = np.concatenate([np.full(len(o), i) for i, o in enumerate(origins)]).astype(np.int64)
    transforms = np.concatenate([[tile_transform(o, tile, size) for o in grid] for grid in origins])
    count = len(tile_image)

    # Per tile: the objects whose centre falls inside it, in normalised input coordinates.
    # Tested in original pixels (integer origins: exact): the last tile of a row or column
    # also takes its end, so that a centre on the image's right or bottom edge lands in one.
    tile_origins = np.concatenate(origins)
    per_tile = []
    for t in range(count):
        item = labels[tile_image[t]]
        local = item.xy - tile_origins[t]
        last = tile_origins[t] + tile >= np.asarray(item.size)  # (2,): this tile ends at (or past) the edge
        inside = ((local >= 0) & ((local < tile) | (last & (local <= tile)))).all(axis=1)
        xy_input = item.xy * transforms[t, :2] + transforms[t, 2:]
        per_tile.append(np.concatenate([xy_input[inside] / size, item.classes[inside, None],
                                        np.ones((int(inside.sum()), 1))], axis=1))
    slots = max(1, max(len(p) for p in per_tile))
    objects = np.zeros((count, slots, 4), np.float32)
    for t, rows in enumerate(per_tile):
        objects[t, :len(rows)] = rows

    jobs = [(item.image_path, grid, tile, size) for item, grid in zip(labels, origins)]
    writer.images((count, size, size, 3), parallel_map(_tile_file, jobs, workers, f"preprocess {split}",
                                                       progress=progress))

    gt_image = np.concatenate([np.full(len(item.xy), i) for i, item in enumerate(labels)]).astype(np.int64)
    gt_xy = np.concatenate([item.xy for item in labels]).reshape(-1, 2)
    sizes = np.array([item.size for item in labels], np.int64)
    y = {
        "objects": objects, "tile_image": tile_image, "tile_transforms": transforms,
        "filenames": np.array([item.image_path.name for item in labels]),
        "image_paths": np.array([str(item.image_path.resolve()) for item in labels]),
        "image_sizes": sizes,
        "gt_image": gt_image, "gt_xy_original": gt_xy,
        "gt_class": np.concatenate([item.classes for item in labels]).astype(np.int64),
        "gt_polygons": np.concatenate([item.polygons for item in labels]).reshape(-1, 4, 2),
        "gt_size": np.concatenate([item.sizes for item in labels]),
        "gt_difficult": np.concatenate([item.difficult for item in labels]).astype(bool),
        "gt_small": np.concatenate([item.sizes for item in labels]) < data_cfg.small_size,
        "gt_clustered": _clustered(gt_image, gt_xy, data_cfg.cluster_distance),
        "gt_border": _near_border(gt_xy, sizes[gt_image], data_cfg.small_size / 2),
        "class_names": np.array(data_cfg.class_names),
        "input_size": np.array(data_cfg.input_size), "heatmap_size": np.array(data_cfg.heatmap_size),
        "sigma": np.float32(data_cfg.sigma), "tile_size": np.int64(tile),
    }
    writer.labels(y)
    return y


def _remove_cache(folder):
    """Remove the cache files in `folder` (Y first: a folder without Y holds no cache), and
    the folder when that empties it. Returns whether there was a cache."""
    folder = Path(folder)
    found = False
    for name in (cache.Y_FILE, cache.X_FILE):
        if (folder / name).is_file():
            (folder / name).unlink()
            found = True
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return found


def _tile_file(job):
    """Read one image and cut its tiles (a process-pool task)."""
    path, origins, tile, size = job
    return cut_tiles(read_image_rgb(path), origins, tile, size)


def _clustered(gt_image, gt_xy, distance):
    """(G,) bool: another object of the same image has its centre closer than `distance`."""
    from scipy.spatial import cKDTree

    out = np.zeros(len(gt_xy), bool)
    for image in np.unique(gt_image):
        index = np.flatnonzero(gt_image == image)
        if len(index) > 1:
            d, _ = cKDTree(gt_xy[index]).query(gt_xy[index], k=2)
            out[index] = d[:, 1] < distance
    return out


def _near_border(xy, image_sizes, margin):
    """(G,) bool: the centre is within `margin` px of an image edge."""
    return ((xy < margin) | (xy > image_sizes - margin)).any(axis=1)


def _summary(out_dir, y, reused, rebuilt=None):
    return {"images": int(len(y["filenames"])), "tiles": int(len(y["objects"])), "objects": int(len(y["gt_image"])),
            "cache": str(out_dir), "reused": reused, "rebuilt": rebuilt,
            "skipped": cache.skipped_items(out_dir), "report": str(Path(out_dir) / cache.REPORT_FILE)}


class Cache(cache.Cache):
    """A loaded split: tiles (T, S, S, 3) uint8 memory map and the Y arrays (dict)."""

    layout = LAYOUT
    class_names = cache.Cache.names


load_cache = Cache.load  # (cache_dir, split, data_cfg=None)
