"""One cache for every part: a split's images and labels, written atomically, read memory-mapped.

`{cache_dir}/{split}/`
    X_data.npy   (N, H, W, C) uint8 images (or tiles), memory-mapped when read
    Y_data.npz   the part's arrays, uncompressed (so any of them can be memory-mapped),
                 plus config_hash, config_json (the settings that decide the content),
                 source_hash (the inputs it was built from) and x_crc32, x_crc_block
                 (the CRC-32 of each block of X's image bytes)

A part declares its arrays in a `Layout` and keeps its label reader; the rest is here.
`writing` streams the images into a temporary X and the labels into a temporary Y and
renames them only once both are complete, so an exception (or a kill) before then leaves
the previous cache as it was. Y is removed before X is renamed and renamed last: a Y
always describes the X beside it, and a folder without Y holds no cache. The free space
is checked first and the images' space reserved, so a full disk is one line, never a
SIGBUS; the folder is locked while it is written, and a killed write's temporary files
are removed by the next one.

`current` tells preprocessing whether a cache can be reused, and if not, why (one line);
`load` opens one for training or use, and refuses a missing, damaged or stale cache with
one `DataError` line naming the file and the command that rebuilds it. Both compare the
images with their checksums (`current` all of them, `load` up to `VERIFY_ALL_BYTES`), so a
cache whose content changed at the same size is rebuilt or refused.
"""

import contextlib
import dataclasses
import errno
import hashlib
import json
import math
import os
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from common.config import config_hash
from common.data_io import atomic_path, exclusive_folder, load_npz, save_npz
from common.errors import DataError

X_FILE, Y_FILE = "X_data.npy", "Y_data.npz"
META_KEYS = ("config_hash", "config_json", "source_hash", "x_crc32", "x_crc_block")


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


def source_hash(files=(), images=(), skip_bad=False):
    """Fingerprint of a cache's inputs: `files` (labels, side files; None for one that is
    absent) by name and content, `images` by name, size and modification time (reading
    every image again would cost as much as preprocessing them). skip_bad: a cache that
    may leave bad items out is not the same as one that may not."""
    digest = hashlib.sha256(b"skip-bad" if skip_bad else b"")
    for path in files:
        digest.update(b"-" if path is None else Path(path).name.encode() + b":" + Path(path).read_bytes())
    for path in images:
        stat = Path(path).stat()
        digest.update(f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


# Images are checksummed in blocks of this many bytes (CRC-32, as zip uses for Y's members).
CRC_BLOCK = 1 << 24
# `load` verifies every block of a cache up to this size and a sample of a larger one
# (reading many gigabytes before each training run would cost minutes); `current`, which
# preprocessing calls before reusing a cache, always verifies all of it.
VERIFY_ALL_BYTES = 1 << 30
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class CacheWriter:
    """Writes one split's X and Y under temporary names (see `writing`)."""

    def __init__(self, folder, x_tmp, y_tmp, config, source):
        self._folder, self._x_tmp, self._y_tmp = Path(folder), x_tmp, y_tmp
        self._meta = {"config_hash": np.array(config_hash(config)),
                      "config_json": np.array(json.dumps(config, default=str)), "source_hash": np.array(source)}
        self._written, self._skipped = set(), []

    def skipped(self, items):
        """The (path, reason) of the items left out as bad (`--skip-bad`), for `skipped.tsv`."""
        self._skipped = list(items or ())

    def images(self, shape, chunks, fewer=False):
        """Stream uint8 images into X_data.npy (memory does not grow with N): `chunks`
        yields (n, H, W, C) arrays whose rows, in order, make up `shape`. fewer: `shape`
        is an upper bound (bad items skipped); returns the number of rows written.

        Plain sequential writes into space reserved first, not a memory map: on a full
        disk a write through a memory map kills the process with SIGBUS and no message,
        where a write() returns ENOSPC, which becomes one `DataError` line here. The
        CRC-32 of every `CRC_BLOCK` bytes is kept for Y (`x_crc32`).
        """
        shape = tuple(int(n) for n in shape)
        nbytes = math.prod(shape)
        self._check_space(nbytes, "images")
        crcs, block_crc, block_fill = [], 0, 0
        with self._no_space("images", nbytes), open(self._x_tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape})
            f.flush()
            _reserve(f, f.tell() + nbytes)
            row = 0
            for chunk in chunks:
                # A single (H, W, C) image would broadcast over H rows without this check.
                if chunk.shape[1:] != shape[1:] or row + len(chunk) > shape[0]:
                    raise ValueError(f"images: chunk of shape {chunk.shape} at row {row} does not fit {shape}")
                data = memoryview(np.ascontiguousarray(chunk).astype(np.uint8, copy=False)).cast("B")
                f.write(data)
                while len(data):  # the CRC of each CRC_BLOCK bytes of image data, across chunks
                    take = min(len(data), CRC_BLOCK - block_fill)
                    block_crc, block_fill, data = zlib.crc32(data[:take], block_crc), block_fill + take, data[take:]
                    if block_fill == CRC_BLOCK:
                        crcs.append(block_crc)
                        block_crc, block_fill = 0, 0
                row += len(chunk)
            if fewer and not row:
                raise DataError("no image left to cache once the bad ones were skipped", self._folder)
            if row != shape[0] and not fewer:
                raise ValueError(f"images: {row} rows written, {shape[0]} expected")
            if row != shape[0]:  # the header's row count, in the space the first one took
                data_offset = f.tell() - row * math.prod(shape[1:])
                f.seek(0)
                f.write(_npy_header((row, *shape[1:]), data_offset))
                f.truncate(data_offset + row * math.prod(shape[1:]))
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it the cache
        self._meta.update(x_crc32=np.array(crcs + ([block_crc] if block_fill else []), np.uint32),
                          x_crc_block=np.int64(CRC_BLOCK))
        self._written.add("images")
        return row

    def labels(self, arrays, streamed=None):
        """Write Y_data.npz: `arrays` (name -> array) plus the config and source hashes and
        the images' checksums; `streamed` as in `common.data_io.save_npz`, for arrays larger
        than memory."""
        if "images" not in self._written:
            raise ValueError("write the images before the labels (Y holds their checksums)")
        nbytes = sum(np.asarray(a).nbytes for a in arrays.values()) + sum(
            math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype, _ in (streamed or {}).values())
        self._check_space(nbytes, "labels")
        with self._no_space("labels", nbytes):
            save_npz(self._y_tmp, streamed=streamed, **arrays, **self._meta)
            with open(self._y_tmp, "rb") as f:
                os.fsync(f.fileno())
        self._written.add("labels")

    def _check_space(self, nbytes, what):
        free = shutil.disk_usage(self._folder).free
        if nbytes > free:
            raise DataError(f"not enough disk space for the {what}: {_size(nbytes)} needed, {_size(free)} "
                            "free (the previous cache, if any, is kept)", self._folder)

    @contextlib.contextmanager
    def _no_space(self, what, nbytes):
        """A full disk (ENOSPC, or a quota) while writing becomes one `DataError` line."""
        try:
            yield
        except OSError as err:
            if err.errno not in NO_SPACE:
                raise
            free = shutil.disk_usage(self._folder).free
            raise DataError(f"disk full while writing the {what} ({_size(nbytes)} needed, {_size(free)} "
                            "free; the previous cache, if any, is kept)", self._folder) from None


def _npy_header(shape, length):
    """A version 1.0 .npy header of uint8 `shape`, padded with spaces to `length` bytes."""
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * (length - 10 - len(text) - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")


REPORT_FILE = "skipped.tsv"


def write_report(folder, skipped):
    """List the items a `--skip-bad` run left out in `{folder}/skipped.tsv` (path, tab,
    reason), or remove the list of an earlier run when none were. Returns its path or None."""
    path = Path(folder) / REPORT_FILE
    if not skipped:
        path.unlink(missing_ok=True)
        return None
    with atomic_path(path) as tmp:
        tmp.write_text("path\treason\n" + "".join(f"{p}\t{' '.join(str(r).split())}\n" for p, r in skipped))
    return path


def skipped_items(folder):
    """The number of items the cache in `folder` left out (`write_report`)."""
    path = Path(folder) / REPORT_FILE
    return max(len(path.read_text().splitlines()) - 1, 0) if path.is_file() else 0


def _reserve(f, size):
    """Allocate the file's blocks now, so a disk too full fails here (ENOSPC) and not when
    another process fills it halfway through; a file system that cannot preallocate is
    left to fail at the write that finds no space."""
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(f.fileno(), 0, size)
    except OSError as err:
        if err.errno in NO_SPACE:
            raise
    # EINVAL / EOPNOTSUPP: no preallocation here; the writes still report ENOSPC


def _size(nbytes):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


@contextlib.contextmanager
def writing(folder, config, source):
    """Yield a `CacheWriter` for the cache in `folder`; call its `images` then `labels`.

    config: the JSON-ready settings that decide the content (stored with their hash);
    source: `source_hash` of the inputs. Both files are written under temporary names and
    renamed into place only when both are complete; on an exception, a kill or a full
    disk the previous cache is left as it was. The folder is locked meanwhile, and the
    temporary files of a killed earlier write are removed first
    (`common.data_io.exclusive_folder`).
    """
    folder = Path(folder)
    y_path = folder / Y_FILE
    with exclusive_folder(folder, "a cache"):
        with atomic_path(y_path) as y_tmp, atomic_path(folder / X_FILE) as x_tmp:
            writer = CacheWriter(folder, x_tmp, y_tmp, config, source)
            yield writer
            if writer._written != {"images", "labels"}:
                raise ValueError(f"cache {folder}: both images and labels must be written")
            # Renamed in this order: X (leaving the block), then Y (leaving the outer one).
            # Without this unlink a kill between the two would leave the old Y beside new images.
            y_path.unlink(missing_ok=True)
        write_report(folder, writer._skipped)


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
    for key in ("config_hash", "config_json", "x_crc32", "x_crc_block",
                *(("source_hash",) if source is not None else ()), *layout.required):
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
    images = _open_images(folder / X_FILE, layout.images(y), dims)
    verify_all = source is not None  # preprocessing: all of it; training and use: `VERIFY_ALL_BYTES`
    _verify_images(folder / X_FILE, images, y["x_crc32"], int(y["x_crc_block"]), verify_all)
    _verify_members(y_path, [key for key in layout.mmap if key in y], verify_all)
    return images, y


def _verify_images(path, images, crcs, block, verify_all):
    """Compare the images' bytes with the CRC-32 of each `block` bytes stored when they
    were written: all blocks, or when `verify_all` is False and they hold more than
    `VERIFY_ALL_BYTES`, the first, the last and 14 between (a damaged region, a file
    zeroed or overwritten from some offset, is caught; a lone flipped byte may not be)."""
    data = images.reshape(-1)
    count = math.ceil(len(data) / block) if block > 0 else -1
    if count != len(crcs):
        raise DataError(f"holds {count} checksum blocks, {Y_FILE} has {len(crcs)} checksums", path)
    order = range(count)
    if not verify_all and len(data) > VERIFY_ALL_BYTES:
        order = sorted(set(np.linspace(0, count - 1, 16).round().astype(int).tolist()))
    for i in order:
        if zlib.crc32(data[i * block:(i + 1) * block]) != int(crcs[i]):
            raise DataError(f"content does not match its checksum (bytes {i * block}-{min((i + 1) * block, len(data))} "
                            "of the images changed after the cache was written: a damaged disk or file)", path)


def _verify_members(y_path, keys, verify_all):
    """The zip CRC-32 of memory-mapped Y members (read normally, members are checked by zipfile)."""
    try:
        with zipfile.ZipFile(y_path) as zf:
            for key in keys:
                info = zf.getinfo(f"{key}.npy")
                if verify_all or info.file_size <= VERIFY_ALL_BYTES:
                    with zf.open(info) as f:
                        while f.read(CRC_BLOCK):
                            pass
    except zipfile.BadZipFile as err:
        raise DataError(f"content does not match its checksum ({err})", y_path) from None


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
