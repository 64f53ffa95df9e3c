"""One cache for every part: a split's images and labels, written atomically, read memory-mapped.

`{cache_dir}/{split}/`
    X_data.npy   (N, H, W, C) uint8 images (or tiles), memory-mapped when read
    Y_data.npz   the part's arrays, uncompressed (so any of them can be memory-mapped),
                 plus config_hash, config_json (the settings that decide the content)
                 and source_hash (the inputs it was built from)

A part declares its arrays in a `Layout` and keeps its label reader; the rest is here.
`writing` streams the images into a temporary X and the labels into a temporary Y and
renames them only once both are complete, so an exception (or a kill) before then leaves
the previous cache as it was. Y is removed before X is renamed and renamed last: a Y
always describes the X beside it, and a folder without Y holds no cache.

`current` tells preprocessing whether a cache can be reused, and if not, why (one line);
`load` opens one for training or use, and refuses a missing, damaged or stale cache with
one `DataError` line naming the file and the command that rebuilds it.
"""

import contextlib
import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from common.config import config_hash
from common.data_io import atomic_path, load_npz, save_npz
from common.errors import DataError

X_FILE, Y_FILE = "X_data.npy", "Y_data.npz"
META_KEYS = ("config_hash", "config_json", "source_hash")


@dataclasses.dataclass(frozen=True)
class Layout:
    """What one part's cache holds, for the checks and their messages.

    rebuild: the command that rebuilds a split's cache, `{split}` filled in
        ("preprocess_vis.py --split {split}").
    shapes: Y array -> shape, of ints and dimension names: a name stands for one number
        in every array that uses it ("N" images, "K" keypoints). Arrays in `required`
        must be there; the others are checked when present. An array whose shape starts
        with the images' first dimension has one row per image (`Cache.take` picks them).
    images: y -> the shape X_data.npy must have, in the same terms (("N", 64, 64, 3)),
        called once the Y shapes have passed.
    mmap: Y arrays to memory-map instead of reading (large ones: cached heatmaps).
    finite: float Y arrays that must hold no NaN or infinity (labels the loss reads).
    optional_settings: config settings that only add optional arrays, so that a cache
        built with or without them serves either config (preprocessing still rebuilds).
    settings: the part's data config -> the JSON-ready settings that decide the content.
    names: the Y array that names what the labels index (keypoints, classes): `Cache.names`.
    """

    rebuild: str
    shapes: dict
    images: Callable
    settings: Callable
    names: str = None
    required: tuple = ()
    mmap: tuple = ()
    finite: tuple = ()
    optional_settings: tuple = ()


def source_hash(files=(), images=()):
    """Fingerprint of a cache's inputs: `files` (labels, side files; None for one that is
    absent) by name and content, `images` by name, size and modification time (reading
    every image again would cost as much as preprocessing them)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(b"-" if path is None else Path(path).name.encode() + b":" + Path(path).read_bytes())
    for path in images:
        stat = Path(path).stat()
        digest.update(f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


class CacheWriter:
    """Writes one split's X and Y under temporary names (see `writing`)."""

    def __init__(self, x_tmp, y_tmp, config, source):
        self._x_tmp, self._y_tmp = x_tmp, y_tmp
        self._meta = {"config_hash": np.array(config_hash(config)),
                      "config_json": np.array(json.dumps(config, default=str)), "source_hash": np.array(source)}
        self._written = set()

    def images(self, shape, chunks):
        """Stream uint8 images into X_data.npy through a memory map (memory does not grow
        with N): `chunks` yields (n, H, W, C) arrays whose rows, in order, make up `shape`."""
        shape = tuple(int(n) for n in shape)
        out = np.lib.format.open_memmap(self._x_tmp, mode="w+", dtype=np.uint8, shape=shape)
        row = 0
        for chunk in chunks:
            # A single (H, W, C) image would broadcast over H rows without this check.
            if chunk.shape[1:] != shape[1:] or row + len(chunk) > shape[0]:
                raise ValueError(f"images: chunk of shape {chunk.shape} at row {row} does not fit {shape}")
            out[row:row + len(chunk)] = chunk
            row += len(chunk)
        if row != shape[0]:
            raise ValueError(f"images: {row} rows written, {shape[0]} expected")
        out.flush()
        del out
        self._written.add("images")

    def labels(self, arrays, streamed=None):
        """Write Y_data.npz: `arrays` (name -> array) plus the config and source hashes;
        `streamed` as in `common.data_io.save_npz`, for arrays larger than memory."""
        save_npz(self._y_tmp, streamed=streamed, **arrays, **self._meta)
        self._written.add("labels")


@contextlib.contextmanager
def writing(folder, config, source):
    """Yield a `CacheWriter` for the cache in `folder`; call its `images` then `labels`.

    config: the JSON-ready settings that decide the content (stored with their hash);
    source: `source_hash` of the inputs. The files are renamed into place when the block
    succeeds; on an exception the previous cache is left as it was.
    """
    folder = Path(folder)
    y_path = folder / Y_FILE
    with atomic_path(y_path) as y_tmp, atomic_path(folder / X_FILE) as x_tmp:
        writer = CacheWriter(x_tmp, y_tmp, config, source)
        yield writer
        if writer._written != {"images", "labels"}:
            raise ValueError(f"cache {folder}: both images and labels must be written")
        # Renamed in this order: X (leaving the block), then Y (leaving the outer one).
        # Without this unlink a kill between the two would leave the old Y beside new images.
        y_path.unlink(missing_ok=True)


def current(folder, layout, config, source):
    """(Y arrays, None) when the cache in `folder` can be reused: whole, consistent, built
    with exactly `config` from `source`. Else (None, why): why is None when there is no
    cache at all, else the one line that says what is wrong with it (stale or damaged)."""
    folder = Path(folder)
    if not ((folder / X_FILE).exists() or (folder / Y_FILE).exists()):
        return None, None
    try:
        return _open(folder, layout, config, source)[1], None
    except DataError as err:
        return None, str(err)


def load(folder, layout, config=None):
    """Open the cache in `folder`: (images memory map, Y arrays dict).

    With `config`, a cache built with other settings (but `layout.optional_settings`)
    is refused. Every refusal is one `DataError` line naming the file, what is wrong
    and the command that rebuilds the cache.
    """
    folder = Path(folder)
    try:
        return _open(folder, layout, config, None)
    except DataError as err:
        command = layout.rebuild.format(split=folder.name)
        raise DataError(f"{err.message}; to rebuild it, run {command} with the same --config/--set",
                        err.path) from None


def _open(folder, layout, config, source):
    """`load`'s checks, plus the source hash and the exact config when `source` is given."""
    y_path = folder / Y_FILE
    y = load_npz(y_path, mmap=layout.mmap)
    for key in ("config_hash", "config_json", *(("source_hash",) if source is not None else ()), *layout.required):
        if key not in y:
            raise DataError(f"missing array '{key}' (a stale or foreign cache)", y_path)
    if source is not None and str(y["source_hash"]) != source:
        raise DataError("cache was built from other inputs (the labels or images changed)", y_path)
    if config is not None:
        check_config(y, config, y_path, ignore=layout.optional_settings if source is None else ())
    dims = {}
    for key, expected in layout.shapes.items():
        if key in y and not _fits(y[key].shape, expected, dims):
            raise DataError(f"array '{key}' has shape {y[key].shape}, expected {_format(expected, dims)}", y_path)
    for key in layout.finite:
        if key in y and not np.isfinite(y[key]).all():
            raise DataError(f"array '{key}' holds NaN or infinite values", y_path)
    return _open_images(folder / X_FILE, layout.images(y), dims), y


def _open_images(path, expected, dims):
    if not path.is_file():
        raise DataError("cache file not found", path)
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:  # EOFError: an empty file
        raise DataError(f"cannot read cache ({err or type(err).__name__})", path) from None
    if not _fits(images.shape, expected, dims) or images.dtype != np.uint8:
        raise DataError(f"holds {images.shape} {images.dtype}, expected {_format(expected, dims)} uint8 "
                        f"to match {Y_FILE}", path)
    return images


def _fits(shape, expected, dims):
    """Whether `shape` matches `expected` (ints and names); binds names seen first."""
    if len(shape) != len(expected):
        return False
    return all(size == (dims.setdefault(want, size) if isinstance(want, str) else want)
               for size, want in zip(shape, expected))


def _format(expected, dims):
    sizes = [str(dims.get(d, d)) if isinstance(d, str) else str(d) for d in expected]
    return f"({sizes[0]},)" if len(sizes) == 1 else f"({', '.join(sizes)})"


def check_config(stored, wanted, path, ignore=()):
    """Refuse a cache built with another config.

    stored: the cache's arrays, with `config_hash` and `config_json`; wanted: the
    JSON-ready settings the cache must match; ignore: settings that may differ (say,
    whether optional arrays were cached). The error names every setting that differs.
    """
    if str(stored["config_hash"]) == config_hash(wanted):
        return
    built, wanted = json.loads(str(stored["config_json"])), json.loads(json.dumps(wanted, default=str))
    keys = list(wanted) + [k for k in built if k not in wanted]
    differ = [k for k in keys if built.get(k) != wanted.get(k)]
    if differ and all(k in ignore for k in differ):
        return
    diff = ", ".join(f"{k}={built.get(k)} (config: {wanted.get(k)})" for k in differ or keys)
    raise DataError(f"cache was built with another config: {diff}", path)


@dataclasses.dataclass
class Cache:
    """A loaded split: images (N, H, W, C) uint8 memory map and the Y arrays (dict).

    A part subclasses it, setting `layout` and adding accessors for its labels.
    """

    images: np.ndarray
    y: dict
    layout: ClassVar[Layout]

    @classmethod
    def load(cls, cache_dir, split, data_cfg=None):
        """Open `{cache_dir}/{split}` (`load`); with the part's data config, a cache built
        with another one is refused in one `DataError` line."""
        config = None if data_cfg is None else cls.layout.settings(data_cfg)
        return cls(*load(Path(cache_dir) / split, cls.layout, config))

    @property
    def names(self):
        """What the labels index (keypoints, classes), as a tuple of strings."""
        return tuple(str(n) for n in self.y[self.layout.names])

    def _per_image(self):
        row = self.layout.images(self.y)[0]
        return {key for key, shape in self.layout.shapes.items() if shape and shape[0] == row}

    def first(self, count):
        """The split's first `count` images and their labels, as a cache of the same class."""
        rows = self._per_image()
        return type(self)(self.images[:count], {k: v[:count] if k in rows else v for k, v in self.y.items()})

    def take(self, indices):
        """The images and labels at `indices` (an integer array), as a cache (images copied)."""
        indices, rows = np.asarray(indices, dtype=np.int64), self._per_image()
        return type(self)(self.images[indices], {k: v[indices] if k in rows else v for k, v in self.y.items()})

    @classmethod
    def concatenate(cls, caches):
        """Several splits' images and labels as one cache, in order (the images are copied
        into memory). The splits must agree on the config (but its optional settings) and
        on every split-wide array, which is kept once; a per-image array that some lack
        is left out."""
        first = caches[0]
        rows, ignore = first._per_image(), cls.layout.optional_settings
        for cache in caches[1:]:
            if _content_config(cache.y, ignore) != _content_config(first.y, ignore):
                raise ValueError("cannot concatenate caches with different 'config_json'")
            for key, value in first.y.items():
                if key not in rows and key not in META_KEYS and key in cache.y \
                        and not np.array_equal(cache.y[key], value):
                    raise ValueError(f"cannot concatenate caches with different '{key}'")
        y = {key: value for key, value in first.y.items() if key not in rows}
        y.update({key: np.concatenate([cache.y[key] for cache in caches])
                  for key in rows if all(key in cache.y for cache in caches)})
        return cls(np.concatenate([cache.images for cache in caches]), y)


def _content_config(y, ignore):
    """A cache's config without the settings that only add optional arrays."""
    return {key: value for key, value in json.loads(str(y["config_json"])).items() if key not in ignore}


def built_with(folder):
    """The settings the cache in `folder` was built with (its stored `config_json`), or
    None where there is no readable cache (its loading then says what is wrong)."""
    y_path = Path(folder) / Y_FILE
    try:
        with np.load(y_path, allow_pickle=False) as y:  # an .npz reads one member at a time
            return json.loads(str(y["config_json"])) if "config_json" in y.files else None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
