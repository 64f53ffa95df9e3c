"""Data I/O shared by every part: images, JSON fields, atomic cache writes.

Every write goes to a temporary name in the destination folder and is renamed into
place when complete, so an interrupted run never leaves a half-written file behind.
Every `.npy`/`.npz` read uses `allow_pickle=False`.
"""

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.errors import DataError


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` if the block succeeds.

    The temporary name keeps the suffix of `path` (numpy and PIL pick formats by it).
    On an exception the temporary file is removed and `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_json(path, obj):
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_json(path):
    """Read a JSON file; a missing file or bad JSON raises `DataError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"not valid JSON ({err})", path) from None


def require(record, field, path, where=""):
    """`record[field]`, or a `DataError` naming the file, the record and the field."""
    if not isinstance(record, dict) or field not in record:
        raise DataError(f"{where}missing field '{field}'", path)
    return record[field]


def image_paths(source):
    """The image files of a folder (sorted), or the one image file `source`."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError("no such image file or folder", source)
    paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError("no images (.jpg, .png, ...) in folder", source)
    return paths


@contextlib.contextmanager
def open_image(path):
    """`PIL.Image.open(path)` for decoding in the block; a missing file, or one that fails
    to open or decode there, raises `DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError("image file not found", path)
    try:
        with Image.open(path) as img:
            yield img
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image ({err.__class__.__name__}: {err})", path) from None


def read_image_rgb(path):
    """Read an image file as a (H, W, 3) uint8 RGB array (grayscale is replicated)."""
    with open_image(path) as img:
        img.load()
        return np.asarray(img.convert("RGB"))


def save_image(path, array):
    """Write a uint8 (H, W) or (H, W, 3) array as an image, atomically (format from suffix)."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(array, dtype=np.uint8)).save(tmp, quality=95)


def load_npz(path, required=(), mmap=()):
    """Load an `.npz` without pickles into a dict; missing keys raise `DataError`.

    mmap: keys to memory-map instead of reading (members `save_npz` stored uncompressed,
    as it stores all), so that a large array such as cached heatmaps costs no memory.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("cache file not found", path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: _npz_member_memmap(path, data.zip, key) if key in mmap else data[key]
                      for key in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:  # EOFError: an empty file
        raise DataError(f"cannot read cache ({err or type(err).__name__})", path) from None
    for key in required:
        if key not in arrays:
            raise DataError(f"missing array '{key}' (stale or foreign cache; re-run preprocessing)", path)
    return arrays


def save_npz(path, streamed=None, **arrays):
    """Write arrays to an uncompressed `.npz` (as `np.savez` does), atomically.

    streamed: optional {name: (shape, dtype, chunks)}, members written chunk by chunk, so
    that an array larger than memory never exists whole: `chunks` yields arrays of that
    dtype whose rows, in order, make up `shape`. Read back with `np.load` like any other.
    """
    both = set(arrays) & set(streamed or {})
    if both:
        raise ValueError(f"arrays given both whole and streamed: {sorted(both)}")
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
        for name, (shape, dtype, chunks) in (streamed or {}).items():
            shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(f, header)
                rows = 0
                for chunk in chunks:
                    chunk = np.ascontiguousarray(chunk, dtype=dtype)
                    if chunk.shape[1:] != shape[1:]:
                        raise ValueError(f"'{name}': chunk of shape {chunk.shape}, rows of {shape[1:]} expected")
                    f.write(chunk.tobytes())
                    rows += len(chunk)
                if rows != shape[0]:
                    raise ValueError(f"'{name}': {rows} rows written, {shape[0]} expected")


def _npz_member_memmap(path, zf, key):
    """A read-only memory map of member `key` of an uncompressed `.npz` (open as `zf`)."""
    info = zf.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"member '{key}' is compressed and cannot be memory-mapped")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the local file header; names and extra fields follow it
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"member '{key}': bad local header")
        f.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little")
               + int.from_bytes(local[28:30], "little"))
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        version = np.lib.format.read_magic(f)
        if version not in readers:
            raise ValueError(f"member '{key}': .npy format {version} is not supported")
        shape, fortran_order, dtype = readers[version](f)
        if dtype.hasobject:
            raise ValueError(f"member '{key}' holds Python objects")
        offset = f.tell()
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran_order else "C")


def file_hash(path, length=16):
    """The first `length` hex digits of a file's SHA-256 (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def data_file(data_dir, relative, label_path, where="", allow_outside=False):
    """`data_dir / relative` for a file named by a labels file (`relative` holds the name
    read there, e.g. Path("images", split, filename)).

    A name that leads outside `data_dir` (an absolute path, or '..' past its top) is a
    `DataError` naming `label_path` and the record (`where`), raised before anything is
    looked up, so that what it says never tells whether a file exists outside. The check is
    on the name as written: a symlink the user put in the folder (images/ on another disk)
    is followed. allow_outside: read such names anyway (the scripts' --allow-outside).
    """
    relative = os.path.normpath(relative)
    if not allow_outside and (os.path.isabs(relative) or relative == os.pardir
                              or relative.startswith(os.pardir + os.sep)):
        raise DataError(f"{where}the file name leads outside the data folder {data_dir} (an absolute path or "
                        "'..'); --allow-outside reads it", label_path)
    return Path(data_dir) / relative
