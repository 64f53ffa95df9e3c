"""Data I/O shared by every part: images, JSON fields, atomic cache writes.

Every write goes to a temporary name in the destination folder and is renamed into
place when complete, so an interrupted run never leaves a half-written file behind.
Every `.npy`/`.npz` read uses `allow_pickle=False`.
"""

import contextlib
import hashlib
import json
import math
import os
import re
import struct
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


# What `atomic_path` names its temporary files: "." + stem + "." + mkstemp's 8 random
# characters + ".tmp" + suffix. Only files of exactly this form are ever removed as stale.
_TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>\.[A-Za-z0-9]+)?$")


def is_temp_name(name):
    """Whether `name` is one of `atomic_path`'s temporary files."""
    return _TEMP_NAME.match(name) is not None


@contextlib.contextmanager
def exclusive_folder(folder, what):
    """Hold an exclusive lock on `folder` while the block writes into it, and first remove
    the temporary files a killed run left there (`atomic_path`'s naming only, this folder
    only; a killed cache write leaves one as large as the cache). Yields their names.

    The lock is what makes the removal safe: a temporary file in a folder that no live
    process holds can only be a dead run's. It is `flock` on the folder itself (no lock
    file to leave behind), which the kernel releases when the process dies, even by
    SIGKILL. Where there is no `flock` (Windows, some network file systems) nothing is
    locked and nothing removed. A second process writing the same folder meanwhile gets
    a `DataError` instead of mixing its files with the first one's.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = _lock(folder, what)
    try:
        yield remove_temps(folder) if fd is not None else []
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def remove_temps(folder):
    """Remove `atomic_path`'s temporary files from `folder` (not below it); their names.
    Only for a folder this process holds by `exclusive_folder` (or one inside it)."""
    removed = []
    for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else ():
        if is_temp_name(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def _lock(folder, what):
    """An open descriptor of `folder` holding its exclusive flock, or None where there is no flock."""
    try:
        import fcntl
        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        raise DataError(f"another process is writing {what} in this folder (wait for it, or stop it)",
                        folder) from None
    except OSError:  # no flock on this file system: do not guess which temporary files are dead
        os.close(fd)
        return None


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
    """Read a JSON file; a missing file or bad JSON raises `DataError` naming the file.
    A UTF-8 byte-order mark (Windows editors write one) is skipped."""
    path = Path(path)
    if not is_file(path):
        raise DataError("file not found", path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:  # RecursionError: [[[[...]]]]
        raise DataError(f"not valid JSON ({str(err) or 'nested too deeply'})", path) from None


def is_file(path, source=None, where=""):
    """`Path(path).is_file()`, except that a name the system refuses to look up (longer
    than the file system allows: Errno 36) raises `DataError` naming `source` (the label
    file that gave the name; default the path itself) instead of an OSError traceback."""
    try:
        return Path(path).is_file()
    except OSError as err:
        name = Path(path).name
        shown = name if len(name) <= 60 else f"{name[:40]}...{name[-12:]} ({len(name)} characters)"
        raise DataError(f"{where}cannot look up file '{shown}' ({err.strerror or err})",
                        source if source is not None else Path(path).parent) from None


def is_finite_number(value):
    """Whether a JSON value is a finite number (not a boolean; not an integer beyond float64,
    10**400, for which math.isfinite raises OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def json_numbers(value):
    """`value` as a float64 array when it is a JSON number or nested lists of them (not
    strings, not booleans: numpy would turn "1" and true into 1.0), else None; ragged lists
    and numbers beyond float64 give None too."""
    def numeric(v):
        if isinstance(v, list):
            return all(numeric(item) for item in v)
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    try:
        if not numeric(value):
            return None
        return np.asarray(value, dtype=np.float64)
    except (ValueError, OverflowError, RecursionError):  # ragged lists, an int beyond float64, [[[[...]]]]
        return None


def require(record, field, path, where=""):
    """`record[field]`, or a `DataError` naming the file, the record and the field."""
    if not isinstance(record, dict) or field not in record:
        raise DataError(f"{where}missing field '{field}'", path)
    return record[field]


def split_files(data_dir, split, labels=None, images=None):
    """(label file, image folders searched in order) of one split.

    The default layout: `{data_dir}/{split}.json`, images in `images/{split}/`, then
    `images/`, then `data_dir`. `labels` (a file) and `images` (a folder) name them
    instead, for a data set laid out otherwise (`train_annotations.json` beside `train/`);
    `labels` alone: its images are looked up as in the default layout of its folder.
    The last folder holds the others: it is the data folder that the labels' file names
    may not leave (`find_image`).
    """
    label_path = Path(labels) if labels else Path(data_dir) / f"{split}.json"
    base = label_path.parent  # data_dir in the default layout
    folders = [Path(images)] if images else [base / "images" / split, base / "images", base]
    return label_path, folders


def find_image(folders, filename, label_path, where="", allow_outside=False):
    """The first `folder/filename` that is a file; else a `DataError` on `label_path`
    naming every folder searched. A name the system refuses to look up (too long) is a
    `DataError` on `label_path` too (`is_file`).

    `filename` comes from a labels file: one that leads outside the data folder, the last
    of `folders` (`split_files`: `data_dir`, or the folder the user named for images), is
    an `OutsideDataFolder` error unless `allow_outside` (`data_file`). Every place to look
    is checked before any is looked at, so a refused name never tells whether a file
    exists outside.
    """
    root = Path(folders[-1])
    candidates = [data_file(root, Path(os.path.relpath(folder, root), filename), label_path, where, allow_outside)
                  for folder in folders]
    for path in candidates:
        if is_file(path, label_path, where):
            return path
    searched = ", ".join(f"{folder}/" for folder in folders)
    raise DataError(f"{where}image '{filename}' not found in {searched}", label_path)


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
    if not is_file(path):
        raise DataError("image file not found", path)
    try:
        # Opening parses only the header; a damaged one can fail in more ways than decoding
        # (a PNG header of 12 bytes instead of 13 is a ValueError, a short field a struct.error).
        img = Image.open(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error,
            Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image ({err.__class__.__name__}: {err})", path) from None
    try:
        with img:
            yield img
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image ({err.__class__.__name__}: {err})", path) from None


def image_size(path):
    """(width, height) of an image file from its header, without decoding it; a file that
    is not a readable image raises `DataError` naming it."""
    with open_image(path) as img:
        return img.size


def to_rgb(img):
    """A decoded PIL image as an RGB PIL image. Grayscale is replicated, alpha dropped,
    palettes applied, CMYK converted. 16-bit (and 32-bit integer) grayscale keeps its top
    8 bits, as OpenCV does: Pillow's own conversion clips every value above 255 to white.
    EXIF orientation is not applied: the pixels are read as stored, the frame the labels
    of SPEED, COCO and DOTA are in."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        wide = np.asarray(img).astype(np.int64)
        img = Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8))
    return img.convert("RGB")


def read_image_rgb(path):
    """Read an image file as a (H, W, 3) uint8 RGB array (`to_rgb`)."""
    with open_image(path) as img:
        img.load()
        return np.asarray(to_rgb(img))


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


class OutsideDataFolder(DataError):
    """A file name from a labels file that leads outside the data folder (`data_file`):
    a `DataError` that a `--skip-bad` run lists without reading anything in its place."""


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
        raise OutsideDataFolder(f"{where}the file name leads outside the data folder {data_dir} (an absolute path "
                                "or '..'); --allow-outside reads it", label_path)
    return Path(data_dir) / relative
