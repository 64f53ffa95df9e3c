"""common.data_io: file_hash (a known SHA-256 prefix), image_paths, and `.npz` files
with members streamed in and memory-mapped out."""

import zipfile
from pathlib import Path

import numpy as np
import pytest

from common.data_io import file_hash, image_paths, load_npz, save_npz
from common.errors import DataError


def test_file_hash_known_value(tmp_path):
    path = tmp_path / "abc.txt"
    path.write_bytes(b"abc")
    assert file_hash(path) == "ba7816bf8f01cfea"  # sha256("abc")


def test_image_paths_takes_a_folder_or_one_file(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert image_paths(tmp_path) == [tmp_path / "a.JPG", tmp_path / "b.png"]
    assert image_paths(tmp_path / "b.png") == [tmp_path / "b.png"]
    with pytest.raises(DataError, match="missing: no such image file or folder"):
        image_paths(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no images \(.jpg, .png, ...\) in folder"):
        image_paths(tmp_path / "empty")


def test_streamed_npz_member_round_trips_and_memory_maps(tmp_path):
    path = tmp_path / "y.npz"
    big = np.arange(7 * 3 * 2, dtype=np.float16).reshape(7, 3, 2)
    chunks = (big[i:i + 3] for i in range(0, 7, 3))  # rows 3 + 3 + 1
    save_npz(path, streamed={"big": (big.shape, np.float16, chunks)}, xy=np.eye(2), names=np.array(["a", "bc"]))
    with np.load(path, allow_pickle=False) as data:  # a plain .npz to numpy
        assert sorted(data.files) == ["big", "names", "xy"]
        np.testing.assert_array_equal(data["big"], big)
    y = load_npz(path, required=("xy",), mmap=("big",))
    assert isinstance(y["big"], np.memmap) and not y["big"].flags.writeable
    assert y["big"].dtype == np.float16 and y["big"].shape == (7, 3, 2)
    np.testing.assert_array_equal(y["big"], big)
    np.testing.assert_array_equal(y["xy"], np.eye(2))
    assert list(y["names"]) == ["a", "bc"]
    # np.savez's own files memory-map too (uncompressed members).
    np.savez(tmp_path / "plain.npz", a=np.arange(5), b=np.ones((2, 2)))
    y = load_npz(tmp_path / "plain.npz", mmap=("b",))
    assert isinstance(y["b"], np.memmap) and y["b"].sum() == 4 and list(y["a"]) == [0, 1, 2, 3, 4]


def test_streamed_npz_refuses_wrong_rows_and_leaves_no_file(tmp_path):
    path = tmp_path / "y.npz"
    with pytest.raises(ValueError, match="'big': 4 rows written, 5 expected"):
        save_npz(path, streamed={"big": ((5, 2), np.float32, iter([np.zeros((4, 2))]))})
    with pytest.raises(ValueError, match=r"'big': chunk of shape \(2, 3\), rows of \(2,\) expected"):
        save_npz(path, streamed={"big": ((2, 2), np.float32, iter([np.zeros((2, 3))]))})
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone, nothing was renamed


def test_compressed_member_cannot_be_memory_mapped(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", a=np.arange(3))
    with pytest.raises(DataError, match="c.npz: cannot read cache .*'a' is compressed"):
        load_npz(tmp_path / "c.npz", mmap=("a",))
    assert list(load_npz(tmp_path / "c.npz")["a"]) == [0, 1, 2]
    with zipfile.ZipFile(tmp_path / "c.npz") as zf:
        assert zf.getinfo("a.npy").compress_type == zipfile.ZIP_DEFLATED


def test_data_file_keeps_label_named_files_inside_the_data_folder(tmp_path):
    from common.data_io import data_file

    assert data_file(tmp_path, Path("images", "a", "../b.png"), "l.json") == tmp_path / "images" / "b.png"
    for name in ("../../x.jpg", "/etc/hostname", "a/../../../x.jpg", "../.."):
        with pytest.raises(DataError) as info:
            data_file(tmp_path, Path("images", name), tmp_path / "l.json", "record 3 (x): ")
        assert str(info.value) == (f"{tmp_path / 'l.json'}: record 3 (x): the file name leads outside the data "
                                   f"folder {tmp_path} (an absolute path or '..'); --allow-outside reads it")
    assert data_file(tmp_path, Path("images", "/etc/hostname"), "l.json", allow_outside=True) == Path("/etc/hostname")


def test_find_image_keeps_names_inside_the_data_folder_or_the_images_folder_given(tmp_path):
    from common.data_io import find_image, split_files

    data, photos = tmp_path / "data", tmp_path / "photos"
    (data / "images").mkdir(parents=True)
    photos.mkdir()
    for path in (data / "images" / "a.png", data / "b.png", photos / "c.png", tmp_path / "secret.png"):
        path.write_bytes(b"x")
    label_path, folders = split_files(data, "train")
    # Searched in order; '..' that stays inside every folder searched is followed.
    assert find_image(folders, "a.png", label_path) == data / "images" / "a.png"
    assert find_image(folders, "x/../b.png", label_path) == data / "b.png"
    with pytest.raises(DataError, match=rf"leads outside the data folder {data} "):
        find_image(folders, "../secret.png", label_path, "record 0: ")
    # --images: the folder the user named is the data folder; the default one is not searched.
    label_path, folders = split_files(data, "train", data / "train.json", photos)
    assert find_image(folders, "c.png", label_path) == photos / "c.png"
    for name in ("../secret.png", "../data/b.png", str(photos / "c.png")):
        with pytest.raises(DataError, match=rf"{label_path}: record 0: the file name leads outside the data folder "
                                            rf"{photos} "):
            find_image(folders, name, label_path, "record 0: ")
    assert find_image(folders, "../secret.png", label_path, allow_outside=True).resolve() == tmp_path / "secret.png"
