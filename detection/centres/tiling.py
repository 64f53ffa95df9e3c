"""Overlapping square tiles for large images, and merging their detections.

A tile is `tile_size` original pixels square with its top-left corner at an integer
`origin` (x0, y0); it is resized to the model input, so with `s = input / tile_size`

    xy_input = (xy_original - origin) * s      i.e. transform (sx, sy, tx, ty) = (s, s, -x0 s, -y0 s)

in the (sx, sy, tx, ty) form of `common.geometry` (`to_input` / `to_original`). Tiles
start every `tile_size - overlap` pixels and the last one ends at the image edge, so
every pixel is covered; an image smaller than a tile gets one tile, padded with black
beyond its right and bottom edges.
"""

import numpy as np
from PIL import Image
from scipy.spatial import cKDTree


def tile_starts(length, tile_size, overlap):
    """Start offsets along one axis: 0, step, 2 step, ..., length - tile_size (deduplicated)."""
    if length <= tile_size:
        return np.zeros(1, np.int64)
    step = tile_size - overlap
    starts = list(range(0, length - tile_size, step)) + [length - tile_size]
    return np.unique(np.array(starts, np.int64))


def tile_grid(width, height, tile_size, overlap):
    """(T, 2) integer origins (x0, y0) of the tiles covering a width x height image, row-major."""
    xs, ys = tile_starts(width, tile_size, overlap), tile_starts(height, tile_size, overlap)
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)


def tile_transform(origin, tile_size, input_size):
    """(4,) transform (sx, sy, tx, ty) from original pixels to the input frame of one tile."""
    scale = input_size / tile_size
    return np.array([scale, scale, -origin[0] * scale, -origin[1] * scale], np.float64)


def cut_tiles(image, origins, tile_size, input_size):
    """(T, input, input, 3) uint8 tiles of an (H, W, 3) uint8 image, resized (antialiased bilinear)."""
    pil = Image.fromarray(image)
    tiles = []
    for x0, y0 in origins:
        tile = pil.crop((int(x0), int(y0), int(x0) + tile_size, int(y0) + tile_size))  # black beyond the image
        if tile_size != input_size:
            tile = tile.resize((input_size, input_size), Image.BILINEAR)
        tiles.append(np.asarray(tile))
    return np.stack(tiles)


def merge_detections(xy, classes, scores, distance, groups=None):
    """Indices of the detections to keep after merging duplicates from overlapping tiles.

    Greedy, highest score first: a detection is dropped when a kept detection of the
    same class lies within `distance` (original pixels). xy (P, 2), classes (P,),
    scores (P,). groups (P,), optional: the tile of each detection; detections of one
    tile are never merged (its own peak NMS has already told them apart), only a tile's
    with another's. Returns sorted int indices.
    """
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if len(xy) == 0 or distance <= 0:
        return np.arange(len(xy))
    classes = np.asarray(classes)
    order = np.argsort(-np.asarray(scores), kind="stable")
    pairs = cKDTree(xy).query_pairs(distance, output_type="ndarray")
    pairs = pairs[classes[pairs[:, 0]] == classes[pairs[:, 1]]]
    if groups is not None:
        groups = np.asarray(groups)
        pairs = pairs[groups[pairs[:, 0]] != groups[pairs[:, 1]]]
    neighbours = [[] for _ in range(len(xy))]
    for a, b in pairs:
        neighbours[a].append(b)
        neighbours[b].append(a)
    dropped = np.zeros(len(xy), bool)
    for index in order:  # a loop over detections, not pixels
        if not dropped[index]:
            dropped[neighbours[index]] = True
    keep = ~dropped
    return np.flatnonzero(keep)
