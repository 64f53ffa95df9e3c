import numpy as np
import pytest

from common.errors import DataError
from detection.dota import find_dota_pairs, polygon_centroid, read_dota_labels, write_dota_labels

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
