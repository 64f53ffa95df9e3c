"""The reader defects found by trying (issue 23) and by fuzzing (bench/fuzz.py), one test each.

Each input once ended in a traceback, a RuntimeWarning or a wrong result; now it is one
DataError naming the file and the field, or read correctly.
"""

import json
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from baselines.cephalometric import read_landmark_file
from baselines.data import _read_gray, read_annotations
from common.data_io import image_size, load_json, read_image_rgb
from common.errors import DataError
from common.geometry import warp_image_file
from detection.centres.dota import read_dota_labels
from detection.ssd.coco import load_coco
from stage2_visible_keypoints.camera import load_camera_json
from stage2_visible_keypoints.data import load_annotations, read_poses
from stage2_visible_keypoints.mesh import load_obj
from tests.fuzz_strategies import CAMERA, CUBE_OBJ, image_encodings, png_declaring


def raises(fn, *fragments):
    """fn() raises DataError, with every fragment in its message, and no RuntimeWarning on the way."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(DataError) as err:
            fn()
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.fixture
def stage2(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (32, 24)).save(tmp_path / "images" / "a.png")

    def write(**fields):
        record = {"filename": "a.png", "keypoints": [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], **fields}
        (tmp_path / "train.json").write_text(json.dumps([record]))
        return lambda: load_annotations(tmp_path, "train")
    return write


def test_stage2_visible_with_a_nested_list_is_one_line(stage2):
    raises(stage2(visible=[True, [True], False]), "train.json", "record 0 (a.png)", "'visible'", "3 booleans")
    raises(stage2(visible=["1", True, False]), "'visible'")  # numpy would read "1" as a flag
    # A valid one still reads, 0/1 included.
    assert stage2(visible=[1, True, False])().visible.tolist() == [[True, True, False]]


def test_a_300_character_file_name_is_one_line(stage2):
    message = raises(stage2(filename="x" * 300 + ".png"), "train.json", "cannot look up file", "304 characters")
    assert "Errno" not in message or "File name too long" in message


def test_pose_values_that_overflow_are_refused(stage2, tmp_path):
    (tmp_path / "camera.json").write_text(json.dumps(CAMERA))
    (tmp_path / "mesh.obj").write_text(CUBE_OBJ)
    (tmp_path / "train.json").write_text(json.dumps([{"filename": "a.png", "q_vbs2tango": [1, 0, 0, 0],
                                                      "r_Vo2To_vbs_true": [0, 0, 1e301]}]))
    raises(lambda: load_annotations(tmp_path, "train"), "train.json", "'r_Vo2To_vbs_true'", "beyond 1e+09")
    (tmp_path / "train.json").write_text(json.dumps([{"filename": "a.png", "q_vbs2tango": [1e-200, 0, 0, 0],
                                                      "r_Vo2To_vbs_true": [0, 0, 10]}]))
    raises(lambda: read_poses(tmp_path / "train.json"), "'q_vbs2tango'", "not a rotation")


@pytest.mark.parametrize("change, field", [
    ({"cameraMatrix": [["30", 0, 16], [0, 30, 12], [0, 0, 1]]}, "'cameraMatrix'"),
    ({"distCoeffs": [True, False]}, "'distCoeffs'"),
    ({"ccx": 1e308}, "'ccx'"),
    ({"cameraMatrix": [[30, 0, 1e308], [0, 30, 12], [0, 0, 1]]}, "(cx)"),
    ({"fx": 1.0, "ppx": 1e-300}, "'fx / ppx'"),
    ({"distCoeffs": [1e308]}, "'distCoeffs'"),
    ({"Nu": 1e308}, "'Nu'"),
])
def test_camera_values_numpy_would_accept_are_refused(tmp_path, change, field):
    (tmp_path / "camera.json").write_text(json.dumps({**CAMERA, **change}))
    raises(lambda: load_camera_json(tmp_path / "camera.json"), "camera.json", field)


@pytest.mark.parametrize("text, fragment", [
    ("# name ² a\nv 0 0 0\nv 1 0 0\n", "line 1: expected '# name <index 1..V> <name>'"),
    ("v 1 1 1\nv 1 1 1\nv 1 1 1\nf 1 2 3\n", "all 3 vertices lie at the same point"),
    ("v 1e308 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\n", "line 1: a coordinate beyond 1e+09"),
])
def test_mesh_defects_are_one_line(tmp_path, text, fragment):
    (tmp_path / "mesh.obj").write_text(text)
    raises(lambda: load_obj(tmp_path / "mesh.obj"), "mesh.obj", fragment)


def test_text_files_with_a_byte_order_mark_are_read(tmp_path):
    bom = "\ufeff"
    (tmp_path / "a.txt").write_text(bom + "imagesource:GoogleEarth\ngsd:0.1\n1 1 5 1 5 5 1 5 plane 0\n")
    np.testing.assert_allclose(read_dota_labels(tmp_path / "a.txt").centres, [[3.0, 3.0]])
    (tmp_path / "x.json").write_text(bom + '{"a": 1}')
    assert load_json(tmp_path / "x.json") == {"a": 1}
    (tmp_path / "m.obj").write_text(bom + CUBE_OBJ)
    assert load_obj(tmp_path / "m.obj").vertex_names[0] == "c0"
    (tmp_path / "001.txt").write_text(bom + "\n".join(f"{i},{i}" for i in range(19)))
    assert read_landmark_file(tmp_path / "001.txt")[0].tolist() == [0.0, 0.0]


def test_landmark_beyond_float32_is_refused(tmp_path):
    (tmp_path / "001.txt").write_text("1e308,2\n" + "1,1\n" * 18)
    raises(lambda: read_landmark_file(tmp_path / "001.txt"), "001.txt", "line 1", "landmark sella")


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d.__setitem__("images", 9), "field 'images' must be a list"),
    (lambda d: d["images"][0].__setitem__("id", [1]), "images[0]: field 'id' must be an integer"),
    (lambda d: d["annotations"][0].__setitem__("image_id", {"a": 1}), "annotations[0]: field 'image_id'"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, "3"), "must hold numbers"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, 1e300), "beyond 1e+09"),
])
def test_coco_keypoints_of_the_wrong_type_are_one_line(tmp_path, change, fragment):
    data = {"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"keypoints": ["p"]}],
            "annotations": [{"image_id": 1, "keypoints": [3, 4, 2]}]}
    change(data)
    (tmp_path / "k.json").write_text(json.dumps(data))
    raises(lambda: read_annotations(tmp_path / "k.json"), "k.json", fragment)


def test_images_declaring_a_huge_or_zero_size_are_one_line(tmp_path):
    for name, data in (("bomb.png", png_declaring(200_000, 200_000)), ("zero.png", png_declaring(0, 0))):
        (tmp_path / name).write_bytes(data)
        for read in (image_size, read_image_rgb, lambda p: _read_gray((p, 16)),
                     lambda p: warp_image_file(p, (32, 24), (32, 24), (32, 24))):
            raises(lambda: read(tmp_path / name), name)
    # Header-only readers of the labels refuse the bomb as well (a DecompressionBombError traceback before).
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png_declaring(200_000, 200_000))
    (tmp_path / "c.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [],
                                                 "categories": [{"id": 1}]}))
    raises(lambda: load_coco(tmp_path / "c.json", tmp_path), "a.png", "DecompressionBombError")


def test_16_bit_images_keep_their_top_8_bits_in_every_reader(tmp_path):
    data, suffix, expected, _ = image_encodings()["png_16bit"]
    path = tmp_path / f"wide{suffix}"
    path.write_bytes(data)
    np.testing.assert_array_equal(read_image_rgb(path), expected)  # Pillow alone gives 255 for all but 0
    np.testing.assert_array_equal(warp_image_file(path, (32, 24), (32, 24), (32, 24))[0], expected)
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), expected[..., 0])  # as OpenCV reads it


def test_exif_orientation_is_ignored_by_every_reader(tmp_path):
    data, suffix, expected, tol = image_encodings()["jpeg_exif_rotated"]
    path = tmp_path / f"turned{suffix}"
    path.write_bytes(data)
    height, width = expected.shape[:2]
    assert image_size(path) == (width, height)
    assert np.abs(read_image_rgb(path).astype(int) - expected).max() <= tol
    image, size = _read_gray((path, 16))  # OpenCV applied the orientation before: 24x32, the labels 32x24
    assert size == (width, height)


def test_a_damaged_image_header_is_one_line(tmp_path):
    data = bytearray(image_encodings()["png_1bit"][0])
    data[11] = 12  # the IHDR chunk's length: 12 instead of 13 (Pillow raised ValueError: Truncated IHDR chunk)
    (tmp_path / "a.png").write_bytes(bytes(data))
    for read in (image_size, read_image_rgb, lambda p: warp_image_file(p, (32, 24), (32, 24), (32, 24))):
        raises(lambda: read(tmp_path / "a.png"), "a.png", "cannot read image")


@pytest.mark.parametrize("override", ["train.learning_rate=" + "9" * 400, "train.epochs=.inf"])
def test_config_values_beyond_float64_are_one_line(override):
    from common.config import load_config
    from stage2_visible_keypoints.config import Stage2Config

    raises(lambda: load_config(Stage2Config, None, [override]), "--set train.")
