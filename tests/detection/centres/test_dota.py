import numpy as np
import pytest

from common.errors import DataError
from detection.centres.dota import find_dota_pairs, polygon_centroid, read_dota_labels, write_dota_labels

LABELS = """imagesource:GoogleEarth
gsd:0.146343590398
10 10 30 10 30 20 10 20 small-vehicle 0
0 0 4 0 4 4 0 4 storage-tank 1
100.5 200 140.5 200 140.5 260 100.5 260 container-crane
"""


def test_reads_header_objects_centroids_and_sizes(tmp_path):
    path = tmp_path / "P0001.txt"
    path.write_text(LABELS)
    labels = read_dota_labels(path)
    assert labels.header == {"imagesource": "GoogleEarth", "gsd": pytest.approx(0.146343590398)}
    np.testing.assert_allclose(labels.centres, [[20, 15], [2, 2], [120.5, 230]])
    assert list(labels.categories) == ["small-vehicle", "storage-tank", "container-crane"]
    assert list(labels.difficult) == [False, True, False]  # a missing difficult field reads as 0
    np.testing.assert_allclose(labels.sizes, [20, 4, 60])


def test_centroid_is_the_area_centroid_not_the_vertex_mean():
    # A trapezoid (0,0) (6,0) (4,3) (2,3): the area centroid is at y = 3 (2*2 + 6) / (3 (2 + 6)) = 1.25,
    # the vertex mean at y = 1.5.
    centre = polygon_centroid(np.array([[[0, 0], [6, 0], [4, 3], [2, 3]]], float))
    np.testing.assert_allclose(centre, [[3.0, 1.25]])
    # Clockwise order gives the same centroid; a degenerate (zero-area) polygon its vertex mean.
    np.testing.assert_allclose(polygon_centroid(np.array([[[2, 3], [4, 3], [6, 0], [0, 0]]], float)), [[3.0, 1.25]])
    np.testing.assert_allclose(polygon_centroid(np.array([[[0, 0], [2, 0], [4, 0], [6, 0]]], float)), [[3.0, 0.0]])


@pytest.mark.parametrize("line, message", [
    ("10 10 30 10 30 20 small-vehicle 0", "line 3: expected 'x1 y1"),
    ("10 10 30 10 30 20 10 x small-vehicle 0", "line 3: the 8 corner coordinates must be numbers"),
    ("10 10 30 10 30 20 10 nan small-vehicle 0", "line 3: corner coordinates must be finite"),
    ("10 10 30 10 30 20 10 20 spaceship 0", "line 3: unknown category 'spaceship'"),
    ("10 10 30 10 30 20 10 20 plane 2", "line 3: difficult must be 0 or 1"),
    # Finite in float64 but not in the float32 caches (and the centroid overflows).
    ("1e308 10 -1e308 10 1e308 30 10 30 plane 0", "line 3: corner coordinates must be float32 numbers"),
])
def test_malformed_lines_name_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"imagesource:x\ngsd:1\n{line}\n")
    with pytest.raises(DataError, match=message) as info:
        read_dota_labels(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_write_read_round_trip_and_folder_pairs(tmp_path):
    polygons = np.array([[[1.25, 2], [5, 2], [5, 7.5], [1.25, 7.5]]])
    write_dota_labels(tmp_path / "labelTxt" / "a.txt", polygons, ["plane"], gsd=0.5)
    labels = read_dota_labels(tmp_path / "labelTxt" / "a.txt")
    np.testing.assert_allclose(labels.polygons, polygons)
    assert labels.header["gsd"] == 0.5
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")
    assert [(i.name, l.name) for i, l in find_dota_pairs(tmp_path)] == [("a.png", "a.txt")]
    (tmp_path / "images" / "b.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="no label file for image b.jpg"):
        find_dota_pairs(tmp_path)
    (tmp_path / "images" / "b.jpg").unlink()
    (tmp_path / "labelTxt" / "c.txt").write_text("")
    with pytest.raises(DataError, match="label file without an image"):
        find_dota_pairs(tmp_path)


@pytest.mark.parametrize("gsd", ["-3", "0", "nan", "inf", "null", ""])
def test_a_gsd_that_is_not_a_positive_number_is_unknown(tmp_path, gsd):
    path = tmp_path / "odd.txt"
    path.write_text(f"imagesource:x\ngsd:{gsd}\n10 10 30 10 30 20 10 20 plane 0\n")
    assert read_dota_labels(path).header["gsd"] is None
    path.write_text("gsd:0.12\n")
    assert read_dota_labels(path).header["gsd"] == 0.12


@pytest.mark.parametrize("line, number", [
    ("5000 5000 5040 5000 5040 5030 5000 5030 plane 0", 2),  # centre (5020, 5015)
    ("-500 -500 -460 -500 -460 -470 -500 -470 plane 0", 2),  # centre (-480, -485)
    ("200 10 240 10 240 30 200 30 plane 0", 2),  # centre x 220, just past the 219.5 px right edge
])
def test_objects_whose_centre_is_outside_the_image_are_left_out(tmp_path, line, number):
    # Real DOTA-v1.5 files hold a few (e.g. planes at x ~ 10,900 in a 4,033 px wide image).
    path = tmp_path / "P1.txt"
    path.write_text(f"10 10 30 10 30 20 10 20 plane 0\n{line}\n")
    labels = read_dota_labels(path, image_size=(219.5, 200))
    np.testing.assert_allclose(labels.centres, [[20, 15]])
    assert list(labels.categories) == ["plane"] and labels.header["outside_lines"] == [number]
    assert len(read_dota_labels(path).centres) == 2  # without an image size nothing is left out


def test_a_polygon_partly_outside_the_image_is_legal(tmp_path):
    # Real DOTA boxes stick out of the image at its edges; only the centre has to be inside,
    # and a centre on the edge itself counts as inside.
    path = tmp_path / "P1.txt"
    path.write_text("-10 10 10 10 10 30 -10 30 plane 0\n210 190 230 190 230 210 210 210 ship 0\n")
    labels = read_dota_labels(path, image_size=(220, 200))
    np.testing.assert_allclose(labels.centres, [[0, 20], [220, 200]])


def test_a_label_file_that_is_a_folder_is_one_line_error(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")
    (tmp_path / "labelTxt" / "a.txt").mkdir(parents=True)
    with pytest.raises(DataError, match="a.txt: not a regular file") as info:
        find_dota_pairs(tmp_path)
    assert str(tmp_path / "labelTxt" / "a.txt") in str(info.value)
    with pytest.raises(DataError, match="a.txt: is a folder, not a label file"):
        read_dota_labels(tmp_path / "labelTxt" / "a.txt")
