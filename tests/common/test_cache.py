"""The one cache: round trip, memory maps, atomic writes, stale and damaged caches."""

import errno
import json
import os
import re

import numpy as np
import pytest

from common import cache
from common.config import config_hash
from common.errors import DataError

# A toy part: N images of 4x6 pixels, K keypoints, one optional per-image array.
LAYOUT = cache.Layout(
    rebuild="prep.py --split {split}",
    shapes={"xy": ("N", "K", 2), "names": ("K",), "size": (2,), "extra": ("N",)},
    images=lambda y: ("N", int(y["size"][1]), int(y["size"][0]), 3),
    settings=dict,  # the toy's data config is its settings
    names="names",
    required=("xy", "names", "size"),
    mmap=("xy",),
    finite=("xy",),
    optional_settings=("extra",),
)
CONFIG = {"size": [6, 4], "extra": False}


class ToyCache(cache.Cache):
    layout = LAYOUT


def toy_images(n, offset=0):
    return (np.arange(n * 4 * 6 * 3).reshape(n, 4, 6, 3) + offset).astype(np.uint8)


def toy_labels(n, k=2):
    return {"xy": np.arange(n * k * 2, dtype=np.float32).reshape(n, k, 2),
            "names": np.array([f"kp{i}" for i in range(k)]), "size": np.array([6, 4])}


def write(folder, n=3, config=CONFIG, source="src", offset=0, labels=None):
    images = toy_images(n, offset)
    with cache.writing(folder, config, source) as writer:
        writer.images(images.shape, (images[i:i + 2] for i in range(0, n, 2)))  # chunks of 2 + 1 rows
        writer.labels(toy_labels(n) if labels is None else labels)
    return images


def refusal(call):
    """The one-line message of the `DataError` that `call` raises."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_round_trip_memory_maps_and_stores_the_hashes(tmp_path):
    images = write(tmp_path / "train")
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["X_data.npy", "Y_data.npz"]  # no temporaries
    loaded, y = cache.load(tmp_path / "train", LAYOUT, CONFIG)
    assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
    np.testing.assert_array_equal(loaded, images)
    assert isinstance(y["xy"], np.memmap)  # a Y array named in `mmap`
    np.testing.assert_array_equal(y["xy"], toy_labels(3)["xy"])
    assert list(y["names"]) == ["kp0", "kp1"]
    assert str(y["config_hash"]) == config_hash(CONFIG) and str(y["source_hash"]) == "src"
    assert json.loads(str(y["config_json"])) == CONFIG
    # What preprocessing asks: current for the same config and source, else why not.
    assert cache.current(tmp_path / "train", LAYOUT, CONFIG, "src")[1] is None
    y, why = cache.current(tmp_path / "train", LAYOUT, CONFIG, "other")
    assert y is None and why.endswith("Y_data.npz: cache was built from other inputs (the labels or images changed)")
    assert cache.current(tmp_path / "nothing", LAYOUT, CONFIG, "src") == (None, None)  # no cache: nothing wrong


def test_an_exception_mid_write_leaves_the_previous_cache_intact(tmp_path):
    folder = tmp_path / "train"
    write(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def failing_chunks():
        yield toy_images(2, offset=7)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        with cache.writing(folder, {**CONFIG, "size": [6, 4]}, "new") as writer:
            writer.images((3, 4, 6, 3), failing_chunks())
    with pytest.raises(DataError, match="bad label"):  # an error while making the labels, after the images
        with cache.writing(folder, CONFIG, "new") as writer:
            writer.images((3, 4, 6, 3), iter([toy_images(3, offset=9)]))
            raise DataError("bad label")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # same files, same bytes, no temporaries
    assert cache.current(folder, LAYOUT, CONFIG, "src")[1] is None


def test_a_y_never_sits_beside_images_it_does_not_describe(tmp_path, monkeypatch):
    # Killed between the two renames (here: the rename of Y fails): new images, no Y.
    folder = tmp_path / "train"
    write(folder)
    rename = os.replace

    def replace(src, dst):
        if str(dst).endswith("Y_data.npz"):
            raise KeyboardInterrupt
        rename(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        write(folder, n=5, source="new")
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == ["X_data.npy"]
    assert np.load(folder / "X_data.npy").shape == (5, 4, 6, 3)
    assert "Y_data.npz: cache file not found" in cache.current(folder, LAYOUT, CONFIG, "src")[1]
    assert refusal(lambda: cache.load(folder, LAYOUT)).endswith(
        "Y_data.npz: cache file not found; to rebuild it, run prep.py --split train with the same --config/--set")


def test_writer_refuses_images_that_do_not_make_up_the_shape(tmp_path):
    with pytest.raises(ValueError, match=r"chunk of shape \(4, 6, 3\) at row 0 does not fit \(2, 4, 6, 3\)"):
        with cache.writing(tmp_path, CONFIG, "src") as writer:
            writer.images((2, 4, 6, 3), iter([toy_images(1)[0]]))  # one image, not a batch of one
    with pytest.raises(ValueError, match="1 rows written, 2 expected"):
        with cache.writing(tmp_path, CONFIG, "src") as writer:
            writer.images((2, 4, 6, 3), iter([toy_images(1)]))
    with pytest.raises(ValueError, match="both images and labels must be written"):
        with cache.writing(tmp_path, CONFIG, "src") as writer:
            writer.images((1, 4, 6, 3), iter([toy_images(1)]))
    assert list(tmp_path.iterdir()) == []


def test_a_stale_config_is_refused_in_one_line_naming_the_file_and_the_command(tmp_path):
    write(tmp_path / "val")
    message = refusal(lambda: cache.load(tmp_path / "val", LAYOUT, {**CONFIG, "size": [8, 4]}))
    assert message == (f"{tmp_path / 'val' / 'Y_data.npz'}: cache was built with another config: size=[6, 4] "
                       "(config: [8, 4]); to rebuild it, run prep.py --split val with the same --config/--set")
    # An optional setting alone does not matter to a reader; preprocessing rebuilds for it.
    cache.load(tmp_path / "val", LAYOUT, {**CONFIG, "extra": True})
    assert "extra=False (config: True)" in cache.current(tmp_path / "val", LAYOUT, {**CONFIG, "extra": True}, "src")[1]
    cache.load(tmp_path / "val", LAYOUT)  # no config: not checked


def test_check_config_ignores_only_what_it_is_told_to():
    built = {"sigma": 2.0, "cached": False, "old_key": 1}
    stored = {"config_hash": config_hash(built), "config_json": json.dumps(built)}
    cache.check_config(stored, dict(built), "c.npz")  # same config
    cache.check_config(stored, {**built, "cached": True}, "c.npz", ignore=("cached",))
    for wanted, named in (({**built, "cached": True}, "cached=False (config: True)"),
                          ({**built, "sigma": 3.0, "cached": True}, "sigma=2.0 (config: 3.0)"),
                          ({"sigma": 2.0, "cached": False}, "old_key=1 (config: None)"),  # a key the config lost
                          ({**built, "new_key": 5}, "new_key=None (config: 5)")):
        ignore = () if "cached=" in named else ("cached",)
        with pytest.raises(DataError, match=r"c\.npz: cache was built with another config: .*" + re.escape(named)):
            cache.check_config(stored, wanted, "c.npz", ignore=ignore)


def _damage_y(folder, **changes):
    with np.load(folder / "Y_data.npz", allow_pickle=False) as data:
        y = {key: data[key] for key in data.files}
    y.update(changes)
    np.savez(folder / "Y_data.npz", **{k: v for k, v in y.items() if v is not None})


DAMAGES = {
    "garbage Y": (lambda f: (f / "Y_data.npz").write_bytes(b"garbage"), "Y_data.npz: cannot read cache"),
    "empty X": (lambda f: (f / "X_data.npy").write_bytes(b""), "X_data.npy: cannot read cache"),
    "truncated X": (lambda f: (f / "X_data.npy").write_bytes((f / "X_data.npy").read_bytes()[:200]),
                    "X_data.npy: cannot read cache"),
    "X of other images": (lambda f: np.save(f / "X_data.npy", toy_images(2)),
                          "X_data.npy: holds (2, 4, 6, 3) uint8, expected (3, 4, 6, 3) uint8 to match Y_data.npz"),
    "X not uint8": (lambda f: np.save(f / "X_data.npy", toy_images(3).astype(np.float32)),
                    "expected (3, 4, 6, 3) uint8"),
    "missing array": (lambda f: _damage_y(f, names=None), "Y_data.npz: missing array 'names' (a stale or foreign"),
    "arrays that do not fit": (lambda f: _damage_y(f, names=np.array(["a", "b", "c"])),
                               "Y_data.npz: array 'names' has shape (3,), expected (2,)"),
    "optional array that does not fit": (lambda f: _damage_y(f, extra=np.zeros(4)),
                                         "array 'extra' has shape (4,), expected (3,)"),
    "NaN label": (lambda f: _damage_y(f, xy=np.full((3, 2, 2), np.nan, np.float32)),
                  "Y_data.npz: array 'xy' holds NaN or infinite values"),
    "missing X": (lambda f: (f / "X_data.npy").unlink(), "X_data.npy: cache file not found"),
    "X changed at the same size": (lambda f: _flip_byte(f / "X_data.npy", -1),
                                   "X_data.npy: content does not match its checksum (bytes 0-216 of the images"),
    "memory-mapped Y array changed at the same size": (
        lambda f: _flip_byte(f / "Y_data.npz", _find(f / "Y_data.npz", toy_labels(3)["xy"].tobytes()) + 5),
        "Y_data.npz: content does not match its checksum (Bad CRC-32 for file 'xy.npy')"),
    "cache without checksums": (lambda f: _damage_y(f, x_crc32=None), "Y_data.npz: missing array 'x_crc32'"),
}


def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _find(path, needle):
    offset = path.read_bytes().find(needle)
    assert offset > 0
    return offset


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_cache_is_refused_in_one_line_and_rebuilt_by_preprocessing(tmp_path, damage):
    folder = tmp_path / "train"
    write(folder)
    spoil, fragment = DAMAGES[damage]
    spoil(folder)
    message = refusal(lambda: cache.load(folder, LAYOUT, CONFIG))
    assert fragment in message and message.endswith("; to rebuild it, run prep.py --split train with the "
                                                    "same --config/--set")
    y, why = cache.current(folder, LAYOUT, CONFIG, "src")
    assert y is None and fragment in why  # preprocessing sees why, and rebuilds
    images = write(folder)
    np.testing.assert_array_equal(cache.load(folder, LAYOUT, CONFIG)[0], images)


def test_source_hash_reads_files_by_content_and_images_by_stamp(tmp_path):
    label, image = tmp_path / "train.json", tmp_path / "a.png"
    label.write_text("[1]")
    image.write_bytes(b"png")
    first = cache.source_hash([label, None], [image])
    label.write_text("[1]")  # the same bytes again
    assert cache.source_hash([label, None], [image]) == first
    assert cache.source_hash([label], [image]) != first  # a side file appeared or went
    label.write_text("[2]")
    assert cache.source_hash([label, None], [image]) != first
    label.write_text("[1]")
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.source_hash([label, None], [image]) != first


def test_cache_first_take_and_concatenate_pick_per_image_rows(tmp_path):
    write(tmp_path / "a")
    write(tmp_path / "b", n=2, offset=100, labels={**toy_labels(2), "extra": np.array([5, 6])})
    a, b = ToyCache.load(tmp_path, "a", CONFIG), ToyCache.load(tmp_path, "b", {**CONFIG, "extra": True})
    both = ToyCache.concatenate([a, b])
    assert isinstance(both, ToyCache) and len(both.images) == 5
    np.testing.assert_array_equal(both.images, np.concatenate([toy_images(3), toy_images(2, 100)]))
    np.testing.assert_array_equal(both.y["xy"], np.concatenate([toy_labels(3)["xy"], toy_labels(2)["xy"]]))
    assert both.names == ("kp0", "kp1")  # split-wide: kept once
    assert "extra" not in both.y  # a per-image array that one split lacks
    picked = both.take([4, 0])
    np.testing.assert_array_equal(picked.images, both.images[[4, 0]])
    np.testing.assert_array_equal(picked.y["xy"], both.y["xy"][[4, 0]])
    assert list(b.first(1).y["extra"]) == [5] and b.first(1).images.shape == (1, 4, 6, 3)
    with pytest.raises(ValueError, match="different 'names'"):
        ToyCache.concatenate([a, ToyCache(a.images, {**a.y, "names": np.array(["x", "y"])})])
    write(tmp_path / "c", config={**CONFIG, "size": [6, 5]}, labels={**toy_labels(3), "size": np.array([6, 4])})
    with pytest.raises(ValueError, match="different 'config_json'"):
        ToyCache.concatenate([a, ToyCache.load(tmp_path, "c")])


def test_checksums_span_chunks_and_a_large_cache_is_sampled_when_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CRC_BLOCK", 10)  # 216 bytes of images: blocks 0-9 ... 210-215
    folder = tmp_path / "train"
    images = write(folder)  # chunks of 144 and 72 bytes: blocks straddle them
    y = cache.load(folder, LAYOUT, CONFIG)[1]
    assert int(y["x_crc_block"]) == 10 and len(y["x_crc32"]) == 22
    _flip_byte(folder / "X_data.npy", 128 + 145)  # image byte 145: block 14 (the header is 128 bytes)
    assert "(bytes 140-150 of the images" in refusal(lambda: cache.load(folder, LAYOUT))
    _flip_byte(folder / "X_data.npy", 128 + 145)
    _flip_byte(folder / "X_data.npy", 128 + 25)  # block 2
    monkeypatch.setattr(cache, "VERIFY_ALL_BYTES", 100)  # "large": load checks 16 blocks spread over the 22
    np.testing.assert_array_equal(cache.load(folder, LAYOUT)[0][1:], images[1:])  # (block 2 is not one of them)
    assert "bytes 20-30" in cache.current(folder, LAYOUT, CONFIG, "src")[1]  # preprocessing checks all


def test_stale_temporaries_of_a_killed_write_are_removed_by_the_next_one(tmp_path):
    folder = tmp_path / "train"
    write(folder)
    stale = [".X_data.k1ll3d_x.tmp.npy", ".Y_data.abcd1234.tmp.npz"]  # atomic_path's names
    kept = [".X_data.npy", "X_data.tmp.npy", ".X_data.short.tmp.npy", "notes.txt"]  # not its names: not ours
    for name in stale + kept:
        (folder / name).write_bytes(b"x" * 10)
    write(folder, source="new")
    assert sorted(p.name for p in folder.iterdir()) == sorted(kept + ["X_data.npy", "Y_data.npz"])


def test_a_second_writer_of_the_same_folder_is_refused(tmp_path):
    from common.data_io import exclusive_folder

    folder = tmp_path / "train"
    write(folder)
    with exclusive_folder(folder, "a cache"):  # a running preprocess
        (folder / ".X_data.a1b2c3d4.tmp.npy").write_bytes(b"being written")
        message = refusal(lambda: write(folder, source="new"))
        assert message == f"{folder}: another process is writing a cache in this folder (wait for it, or stop it)"
        assert (folder / ".X_data.a1b2c3d4.tmp.npy").exists()  # a live writer's file is not touched
    assert cache.current(folder, LAYOUT, CONFIG, "src")[1] is None


class _FullDisk:
    """A file object (as `open` returns) whose writes fail with ENOSPC from byte `limit` on."""

    def __init__(self, path, mode, limit):
        self.file, self.limit, self.written = open(path, mode), limit, 0

    def write(self, data):
        if self.written + len(memoryview(data).cast("B")) > self.limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.written += len(memoryview(data).cast("B"))
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.mark.parametrize("limit", [0, 100, 128 + 100])  # in the header, in the images' first and second chunk
def test_a_full_disk_while_writing_is_one_line_and_keeps_the_previous_cache(tmp_path, monkeypatch, limit):
    folder = tmp_path / "train"
    images = write(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(cache, "open", lambda path, mode: _FullDisk(path, mode, limit), raising=False)
    message = refusal(lambda: write(folder, n=5, source="new"))
    assert message.startswith(f"{folder}: disk full while writing the images (360 B needed, ")
    assert message.endswith(" free; the previous cache, if any, is kept)")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no temporaries either
    np.testing.assert_array_equal(cache.load(folder, LAYOUT, CONFIG)[0], images)


def test_too_little_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    import collections
    import shutil

    folder = tmp_path / "train"
    write(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 300, 300))
    assert refusal(lambda: write(folder, n=5, source="new")) == (
        f"{folder}: not enough disk space for the images: 360 B needed, 300 B free (the previous cache, "
        "if any, is kept)")
    monkeypatch.setattr(os, "posix_fallocate", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")),
                        raising=False)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 0, 10**9))  # the check passes, space does not
    assert "disk full while writing the images" in refusal(lambda: write(folder, n=5, source="new"))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# Run inside a private 2 MiB tmpfs: a real full disk, as the kernel reports it.
_TMPFS_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
from common import cache
from common.errors import DataError
from tests.common.test_cache import LAYOUT

root = Path(sys.argv[1])
folder, config = root / "train", {"size": [100, 100], "extra": False}

def fill_the_disk():
    with open(root / "filler", "wb") as f:
        try:
            f.write(bytes(4 << 20))
        except OSError:
            pass

def put(n, pad=0, filled=False):
    def pads():  # the labels' last member, streamed
        yield np.zeros(pad // 2, np.uint8)
        if filled:  # another process takes the rest of the disk meanwhile
            fill_the_disk()
        yield np.zeros(pad - pad // 2, np.uint8)
    with cache.writing(folder, config, f"{n}") as writer:
        writer.images((n, 100, 100, 3), (np.full((1, 100, 100, 3), i, np.uint8) for i in range(n)))
        writer.labels({"xy": np.zeros((n, 2, 2), np.float32), "names": np.array(["a", "b"]),
                       "size": np.array([100, 100])}, streamed={"pad": ((pad,), np.uint8, pads())})

put(20)  # 600 KB
for case, kwargs in {"images too large": dict(n=60), "labels too large": dict(n=20, pad=1 << 20),
                     "disk filled meanwhile": dict(n=20, pad=200_000, filled=True)}.items():
    try:
        put(**kwargs)
        print(case, "WRITTEN")
    except DataError as err:
        print(case, "REFUSED", err)
    (root / "filler").unlink(missing_ok=True)
    images, y = cache.load(folder, LAYOUT, config)
    assert images.shape[0] == 20 and images[19, 0, 0, 0] == 19, case
    assert sorted(p.name for p in folder.iterdir()) == ["X_data.npy", "Y_data.npz"], case
"""


def test_a_real_full_disk_keeps_the_previous_cache(tmp_path):
    import shutil
    import subprocess
    import sys

    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
            capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (no user namespaces)")
    script = f"mount -t tmpfs -o size=2m tmpfs {disk} && exec {sys.executable} -c \"$SCRIPT\" {disk}"
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SCRIPT": _TMPFS_SCRIPT, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]  # SIGBUS (-7) before the fix
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"images too large REFUSED {disk}/train: not enough disk space for the "
                               "images: 1.7 MiB needed, "), lines
    assert lines[1].startswith("labels too large REFUSED") and "labels: 1.0 MiB needed" in lines[1], lines
    assert lines[2].startswith("disk filled meanwhile REFUSED") and "disk full while writing the labels" \
        in lines[2], lines
