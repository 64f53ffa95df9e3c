"""common.data_io: file_hash (a known SHA-256 prefix) and image_paths."""

import pytest

from common.data_io import file_hash, image_paths
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
