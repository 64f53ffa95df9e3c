"""ISBI 2015 cephalometric reader, on fixtures written here."""

import numpy as np
import pytest

from common.errors import DataError
from baselines.cephalometric import LANDMARK_NAMES, PIXEL_SPACING_MM, read_isbi2015, read_landmark_file


def _write(path, xy, extra=("1", "2")):
    path.write_text("\n".join([f"{x},{y}" for x, y in xy] + list(extra)) + "\n")
    return path


def test_reads_19_lines_ignores_the_rest_and_matches_images(tmp_path):
    rng = np.random.default_rng(0)
    xy = {stem: rng.integers(0, 1900, (19, 2)) for stem in ("001", "002")}
    notes, images = tmp_path / "400_senior", tmp_path / "images"
    notes.mkdir(), images.mkdir()
    for stem, points in xy.items():
        _write(notes / f"{stem}.txt", points)
        (images / f"{stem}.bmp").write_bytes(b"BM")
    data = read_isbi2015(notes, images)
    assert data["ids"] == ["001", "002"]
    np.testing.assert_array_equal(data["xy"], np.stack([xy["001"], xy["002"]]).astype(np.float32))
    assert data["spacing_mm"] == PIXEL_SPACING_MM == 0.1
    assert data["keypoint_names"] == list(LANDMARK_NAMES) and len(LANDMARK_NAMES) == 19
    assert data["image_paths"][1].endswith("002.bmp")
    (images / "002.jpg").write_bytes(b"")  # a lossy copy beside the original: the .bmp is still read
    assert read_isbi2015(notes, images)["image_paths"][1].endswith("002.bmp")
    assert read_isbi2015(notes)["image_paths"] == [None, None]


def test_bad_files_name_the_file_and_line(tmp_path):
    short = _write(tmp_path / "short.txt", [(1, 2)] * 18, extra=())
    with pytest.raises(DataError, match=r"short.txt: has 18 lines"):
        read_landmark_file(short)
    lines = [(1, 2)] * 19
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join([f"{x},{y}" for x, y in lines[:4]] + ["12;34"] + ["1,2"] * 14))
    with pytest.raises(DataError, match=r"bad.txt: line 5: expected 'x,y', got '12;34'"):
        read_landmark_file(bad)
    nan = tmp_path / "nan.txt"
    nan.write_text("\n".join(["nan,3"] + ["1,2"] * 18))
    with pytest.raises(DataError, match="line 1: landmark sella must be finite"):
        read_landmark_file(nan)
    folder = tmp_path / "notes"
    folder.mkdir()
    _write(folder / "007.txt", lines)
    with pytest.raises(DataError, match="no image named 007.bmp"):
        read_isbi2015(folder, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no landmark files"):
        read_isbi2015(tmp_path / "empty")
