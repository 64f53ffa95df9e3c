"""Stage-2 data: SPEED-style labels, pose-only records, bad input, the cache and its reuse.

Sizes are tiny: 320x200 images on a 320x180 canvas, a 160x160 crop and a 64x64 input
(32x32 heatmaps). Hand-computed transform for that pipeline (see test_geometry.py):
scale 0.9 -> 288x180, pad x 16, crop at (80, 10), factor 0.4, so
    xy_input = 0.36 * xy_original + (-25.6, -4.0).
"""

import dataclasses
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.errors import DataError
from common.geometry import to_input, to_original
import stage2_visible_keypoints.data as data_module
from stage2_visible_keypoints.camera import Camera, body_to_camera, load_camera_json, project_points, save_camera_json
from stage2_visible_keypoints.config import DataConfig
from stage2_visible_keypoints.data import (
    Cache,
    FolderStream,
    load_annotations,
    load_cache,
    preprocess,
    preprocess_folder,
)
from stage2_visible_keypoints.mesh import Mesh, load_obj, save_obj, visible_vertices
from stage2_visible_keypoints.render import RenderConfig, render_split

W, H = 320, 200
TRANSFORM = np.array([0.36, 0.36, -25.6, -4.0])
NAMES = ["nose", "tip", "edge", "hidden"]
Y_KEYS = {"xy_norm", "visible", "xy_original", "visible_original", "transforms", "image_sizes", "filenames", "image_paths",
          "keypoint_names", "input_size", "heatmap_size", "sigma", "config_hash", "config_json", "source_hash",
          "x_crc32", "x_crc_block"}


def keypoints_for(i):
    """(K=4, 2) xy_original of image i.

    0: lands on input pixel (33 + 2i, 33), the centre of heatmap pixel (16 + i, 16);
    1: input (10.4, 14.0); 2: inside the image but left of the crop (input x = -22);
    3: inside the crop but marked invisible.
    """
    return [[(33 + 2 * i + 25.6) / 0.36, 37 / 0.36], [100.0, 50.0], [10.0, 100.0], [200.0, 150.0]]


def grey(i):
    return 40 * (i + 1)


def write_labels(data_dir, records, split="train"):
    path = Path(data_dir) / f"{split}.json"
    path.write_text(json.dumps(records))
    return path


def write_split(data_dir, n=3, split="train", image_dir=None, names=NAMES, fmt="png"):
    """N flat grey 320x200 images (grey 40 * (i + 1)) and `{split}.json`; returns the records."""
    data_dir = Path(data_dir)
    folder = data_dir / ("images/" + split if image_dir is None else image_dir)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        filename = f"img{i:03d}.{fmt}"
        Image.new("RGB", (W, H), (grey(i),) * 3).save(folder / filename)
        records.append({"filename": filename, "keypoints": keypoints_for(i), "visible": [True, True, True, False]})
    write_labels(data_dir, records, split)
    if names is not None:
        (data_dir / "keypoint_names.json").write_text(json.dumps(names))
    return records


def small_config(tmp_path, **overrides):
    values = dict(data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), canvas_size=(320, 180),
                  crop_size=(160, 160), input_size=(64, 64), heatmap_size=(32, 32), sigma=1.0)
    return DataConfig(**{**values, **overrides})


@pytest.fixture
def data_dir(tmp_path):
    write_split(tmp_path / "data")
    return tmp_path / "data"


def expect_error(call, *fragments):
    """Run `call`, expect a DataError whose message holds every fragment; return the message."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ---------------------------------------------------------------- load_annotations


def test_load_annotations_happy_path(data_dir):
    ann = load_annotations(data_dir, "train")
    assert ann.label_path == data_dir / "train.json"
    assert ann.keypoint_names == tuple(NAMES)
    assert ann.image_paths == [data_dir / "images" / "train" / f"img{i:03d}.png" for i in range(3)]
    np.testing.assert_array_equal(ann.xy_original, [keypoints_for(i) for i in range(3)])
    np.testing.assert_array_equal(ann.visible, [[True, True, True, False]] * 3)
    np.testing.assert_array_equal(ann.image_sizes, [[320, 200]] * 3)


def test_images_in_flat_folder_default_names_and_default_visibility(tmp_path):
    records = write_split(tmp_path, n=2, image_dir="images", names=None)
    for record in records:
        del record["visible"]
    records[1]["keypoints"][3] = [320.0, 10.0]  # x == width: outside, so not visible
    write_labels(tmp_path, records)
    ann = load_annotations(tmp_path, "train")
    assert ann.image_paths == [tmp_path / "images" / "img000.png", tmp_path / "images" / "img001.png"]
    assert ann.keypoint_names == ("kp00", "kp01", "kp02", "kp03")
    # Without "visible", a keypoint is visible when it lies inside the image.
    np.testing.assert_array_equal(ann.visible, [[True] * 4, [True, True, True, False]])


def test_split_folder_is_searched_before_flat_folder(tmp_path):
    write_split(tmp_path, n=1)
    Image.new("RGB", (10, 10)).save(tmp_path / "images" / "img000.png")  # a decoy of another size
    assert load_annotations(tmp_path, "train").image_paths == [tmp_path / "images" / "train" / "img000.png"]


# ---------------------------------------------------------------- pose-only records

SMALL = Camera(fx=3003.4129 / 6, fy=3003.4129 / 6, cx=160.0, cy=100.0, width=W, height=H)


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """Three plain 320x200 renders (jpg) with camera.json, mesh.obj and keypoint_names.json."""
    root = tmp_path_factory.mktemp("renders")
    save_camera_json(root / "small_camera.json", SMALL)
    config = RenderConfig(num_images=3, seed=3, camera_json=str(root / "small_camera.json"), max_offset_px=20.0,
                          backgrounds={"stars": 1.0}, blur_prob=0.0, noise_std=0.0)
    render_split(root / "data", config, split="val")
    return root / "data"


@pytest.fixture
def pose_only(renders, tmp_path):
    """A copy of the renders whose records hold poses only, as real SPEED labels do."""
    data_dir = tmp_path / "data"
    shutil.copytree(renders, data_dir)
    records = json.loads((data_dir / "val.json").read_text())
    write_labels(data_dir, [{k: v for k, v in r.items() if k not in ("keypoints", "visible")} for r in records],
                 "val")
    return data_dir, records


def test_pose_only_records_are_projected_and_ray_cast(pose_only):
    data_dir, records = pose_only
    ann = load_annotations(data_dir, "val")
    camera, mesh = load_camera_json(data_dir / "camera.json"), load_obj(data_dir / "mesh.obj")
    assert camera == SMALL and ann.keypoint_names == mesh.vertex_names
    for i, record in enumerate(records):
        points_cam = body_to_camera(mesh.vertices, record["q_vbs2tango"], record["r_Vo2To_vbs_true"])
        np.testing.assert_allclose(ann.xy_original[i], project_points(points_cam, camera), rtol=0, atol=1e-9)
        np.testing.assert_array_equal(ann.visible[i], visible_vertices(mesh, points_cam, camera))
        # ... and agree with the keypoints the renderer wrote.
        np.testing.assert_allclose(ann.xy_original[i], record["keypoints"], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(ann.visible[i], record["visible"])
    assert 0 < ann.visible.mean() < 1  # some keypoints hidden by the body, so ray casting matters


def test_pose_only_accepts_speed_plus_quaternion_field(pose_only):
    data_dir, records = pose_only
    plus = [{"filename": r["filename"], "q_vbs2tango_true": r["q_vbs2tango"],
             "r_Vo2To_vbs_true": r["r_Vo2To_vbs_true"]} for r in records]
    write_labels(data_dir, plus, "val")
    np.testing.assert_allclose(load_annotations(data_dir, "val").xy_original, [r["keypoints"] for r in records],
                               atol=1e-6)


def test_speed_plus_layout_camera_beside_the_domain_folders(pose_only, tmp_path):
    # SPEED+: speedplus/camera.json, speedplus/synthetic/{train,validation}.json, synthetic/images/.
    data_dir, records = pose_only
    root = tmp_path / "speedplus"
    shutil.copytree(data_dir, root / "synthetic")
    for name in ("camera.json", "mesh.obj", "keypoint_names.json"):
        (root / "synthetic" / name).rename(root / name)
    plus = [{"filename": r["filename"], "q_vbs2tango_true": r["q_vbs2tango"],
             "r_Vo2To_vbs_true": r["r_Vo2To_vbs_true"]} for r in records]
    write_labels(root / "synthetic", plus, "val")
    ann = load_annotations(root / "synthetic", "val")
    np.testing.assert_allclose(ann.xy_original, [r["keypoints"] for r in records], atol=1e-6)
    assert ann.object_model.camera == SMALL
    # The folder's own camera file wins over the parent's.
    save_camera_json(root / "synthetic" / "camera.json", Camera(fx=400.0, fy=400.0, cx=160.0, cy=100.0,
                                                                width=W, height=H))
    assert load_annotations(root / "synthetic", "val").object_model.camera.fx == 400.0


@pytest.mark.parametrize("missing", ["mesh.obj", "camera.json"])
def test_pose_only_without_mesh_or_camera(pose_only, missing):
    data_dir, _ = pose_only
    (data_dir / missing).unlink()
    expect_error(lambda: load_annotations(data_dir, "val"), "val.json", missing)


def test_pose_only_bad_pose_fields(pose_only):
    data_dir, records = pose_only
    bad = [{"filename": r["filename"], "q_vbs2tango": r["q_vbs2tango"], "r_Vo2To_vbs_true": r["r_Vo2To_vbs_true"]}
           for r in records]
    bad[2]["q_vbs2tango"] = [1.0, 0.0, 0.0]
    write_labels(data_dir, bad, "val")
    expect_error(lambda: load_annotations(data_dir, "val"), "val.json", "record 2", "'q_vbs2tango'")
    del bad[2]["q_vbs2tango"]
    write_labels(data_dir, bad, "val")
    expect_error(lambda: load_annotations(data_dir, "val"), "val.json", "record 2", "missing field 'q_vbs2tango'")


@pytest.mark.parametrize("value", [["1", "0", "0", "0"], [True, False, False, False]])
def test_pose_numbers_must_be_json_numbers(pose_only, value):
    data_dir, records = pose_only
    bad = [{"filename": r["filename"], "q_vbs2tango": r["q_vbs2tango"], "r_Vo2To_vbs_true": r["r_Vo2To_vbs_true"]}
           for r in records]
    bad[1]["q_vbs2tango"] = value
    write_labels(data_dir, bad, "val")
    expect_error(lambda: load_annotations(data_dir, "val"), "val.json", "record 1", "'q_vbs2tango' must be 4 finite")


def test_camera_of_another_size_than_the_images(pose_only):
    data_dir, _ = pose_only
    save_camera_json(data_dir / "camera.json", dataclasses.replace(SMALL, width=2 * W, height=2 * H))
    expect_error(lambda: load_annotations(data_dir, "val"), "img000001.jpg", "image is 320x200",
                 "camera.json) is 640x400")


# ---------------------------------------------------------------- bad input


def test_duplicate_file_names(data_dir):
    records = json.loads((data_dir / "train.json").read_text())
    records[2]["filename"] = records[0]["filename"]
    write_labels(data_dir, records)
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "record 2 (img000.png)",
                 "appears twice (first in record 0)")


def test_hidden_keypoint_too_far_to_be_a_position(data_dir, tmp_path):
    records = json.loads((data_dir / "train.json").read_text())
    records[1]["keypoints"][3] = [1e308, 5.0]  # hidden, so outside the image is allowed, but not this far
    write_labels(data_dir, records)
    expect_error(lambda: preprocess(small_config(tmp_path), "train", progress=False), "train.json",
                 "record 1 (img001.png)", "'keypoints' holds a coordinate beyond 1e+09 px")
    assert not (tmp_path / "cache" / "train").exists()  # refused before any image is read
    records[1]["keypoints"][3] = [-9e8, 5.0]  # far, but a position
    write_labels(data_dir, records)
    assert load_annotations(data_dir, "train").xy_original[1, 3, 0] == -9e8


def test_keypoint_labels_with_a_camera_of_another_size_are_kept(data_dir):
    # The camera only matters to poses: keypoint labels are read whatever camera.json says
    # (the pose step refuses the mismatch when it runs).
    save_camera_json(data_dir / "camera.json", SMALL)
    Image.new("RGB", (2 * W, 2 * H)).save(data_dir / "images" / "train" / "img001.png")
    assert load_annotations(data_dir, "train").image_sizes.tolist() == [[W, H], [2 * W, 2 * H], [W, H]]


def test_corrupt_image_fails_at_load_time_naming_the_image(tmp_path):
    write_split(tmp_path / "data", fmt="jpg")
    (tmp_path / "data" / "images" / "train" / "img001.jpg").write_bytes(b"not a jpeg at all" * 10)
    cfg = small_config(tmp_path)
    expect_error(lambda: load_annotations(cfg.data_dir, "train"), "img001.jpg", "cannot read image")
    expect_error(lambda: preprocess(cfg, "train", progress=False), "img001.jpg", "cannot read image")
    assert not (tmp_path / "cache" / "train").exists()


def test_truncated_image_fails_at_preprocess_time_naming_the_image(tmp_path):
    write_split(tmp_path / "data", fmt="jpg")
    path = tmp_path / "data" / "images" / "train" / "img002.jpg"
    noisy = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    cfg = small_config(tmp_path)
    load_annotations(cfg.data_dir, "train")  # the header is intact: labels load
    expect_error(lambda: preprocess(cfg, "train", progress=False), "img002.jpg", "truncated")
    cache = tmp_path / "cache" / "train"
    assert not (cache / "X_data.npy").exists() and not (cache / "Y_data.npz").exists()
    assert not [p.name for p in cache.iterdir() if p.name.startswith(".")]  # temp file removed


def test_missing_filename(data_dir):
    records = json.loads((data_dir / "train.json").read_text())
    del records[1]["filename"]
    write_labels(data_dir, records)
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "record 1", "'filename'")


def test_record_that_is_not_an_object(data_dir):
    write_labels(data_dir, ["img000.png"])
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "record 0", "'filename'")


def test_missing_image_file(data_dir):
    (data_dir / "images" / "train" / "img002.png").unlink()
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "record 2", "img002.png", "not found")


def test_keypoints_of_wrong_length(data_dir):
    records = json.loads((data_dir / "train.json").read_text())
    records[1]["keypoints"] = records[1]["keypoints"][:-1]
    records[1]["visible"] = records[1]["visible"][:-1]
    write_labels(data_dir, records)
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "record 1 (img001.png)",
                 "'keypoints'", "3 entries, expected 4")


def test_keypoints_of_different_length_without_names(tmp_path):
    records = write_split(tmp_path, names=None)
    records[2]["keypoints"].append([1.0, 1.0])
    records[2]["visible"].append(True)
    write_labels(tmp_path, records)
    expect_error(lambda: load_annotations(tmp_path, "train"), "record 2", "'keypoints'", "5 entries, expected 4")


@pytest.mark.parametrize("keypoints, fragment", [
    ([[1.0, 2.0, 3.0]] * 4, "shape (K, 2)"),
    ([[1.0, "x"]] * 4, "list of [x, y] numbers"),
    ([["12.5", "3"]] * 4, "list of [x, y] numbers"),  # numbers as strings: numpy would take them
    ([[True, True]] * 4, "list of [x, y] numbers"),  # booleans: numpy would make them 1.0
    ([[1.0, 2.0], [3.0]], "list of [x, y] numbers"),
    (None, "list of [x, y] numbers"),
])
def test_keypoints_of_wrong_form(data_dir, keypoints, fragment):
    records = json.loads((data_dir / "train.json").read_text())
    records[0]["keypoints"] = keypoints
    write_labels(data_dir, records)
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "record 0", "'keypoints'", fragment)


def test_nan_in_keypoints(data_dir):
    records = json.loads((data_dir / "train.json").read_text())
    records[2]["keypoints"][1] = [float("nan"), 5.0]
    (data_dir / "train.json").write_text(json.dumps(records))  # writes the NaN token, which json reads back
    assert "NaN" in (data_dir / "train.json").read_text()
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "record 2", "'keypoints'", "NaN")


def test_visible_keypoint_outside_the_image(data_dir):
    records = json.loads((data_dir / "train.json").read_text())
    records[1]["keypoints"][2] = [321.0, 10.0]
    write_labels(data_dir, records)
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "record 1 (img001.png)",
                 "keypoint 2 is marked visible", "(321.0, 10.0)", "320x200")
    records[1]["visible"][2] = False  # the same point marked invisible is fine
    write_labels(data_dir, records)
    assert not load_annotations(data_dir, "train").visible[1, 2]


@pytest.mark.parametrize("visible", [[True, True, True], [True] * 5, ["yes"] * 4, [0.5] * 4])
def test_visible_of_wrong_length_or_type(data_dir, visible):
    records = json.loads((data_dir / "train.json").read_text())
    records[0]["visible"] = visible
    write_labels(data_dir, records)
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "record 0", "'visible'", "4 booleans")


@pytest.mark.parametrize("content", ['{"filename": "img000.png"}', "[]", '"train"'])
def test_label_file_not_a_non_empty_list(data_dir, content):
    (data_dir / "train.json").write_text(content)
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "non-empty JSON list")


def test_invalid_json_and_missing_label_file(data_dir):
    (data_dir / "train.json").write_text('[{"filename": "img000.png",')
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "not valid JSON")
    expect_error(lambda: load_annotations(data_dir, "test"), "test.json", "not found")


def test_bad_keypoint_names_file(data_dir):
    (data_dir / "keypoint_names.json").write_text('{"a": 1}')
    expect_error(lambda: load_annotations(data_dir, "train"), "keypoint_names.json", "list of keypoint names")


# ---------------------------------------------------------------- preprocess


def test_preprocess_writes_the_documented_cache(data_dir, tmp_path):
    cfg = small_config(tmp_path)
    summary = preprocess(cfg, "train", progress=False)
    cache = tmp_path / "cache" / "train"
    assert summary["reused"] is False and summary["cache"] == str(cache)
    assert summary["poses"] is False and summary["keypoints_3d"] is False  # keypoints only, no camera or mesh
    assert (summary["images"], summary["keypoints"]) == (3, 4)
    assert summary["visible_fraction"] == 0.5  # keypoints 0 and 1 of every image
    assert sorted(p.name for p in cache.iterdir()) == ["X_data.npy", "Y_data.npz"]  # no temp files

    images = np.load(cache / "X_data.npy", allow_pickle=False)
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8
    for i in range(3):  # flat images stay flat (the 288x180 letterbox covers the whole crop)
        assert np.all(images[i] == grey(i))

    with np.load(cache / "Y_data.npz", allow_pickle=False) as data:
        y = {key: data[key] for key in data.files}
    assert set(y) == Y_KEYS
    np.testing.assert_allclose(y["transforms"], [TRANSFORM] * 3, rtol=0, atol=1e-12)
    assert y["xy_norm"].dtype == np.float32 and y["xy_norm"].shape == (3, 4, 2)
    np.testing.assert_allclose(y["xy_norm"] * 64, to_input(y["xy_original"], y["transforms"]), atol=1e-4)
    np.testing.assert_allclose(y["xy_norm"][:, 0] * 64, [[33, 33], [35, 33], [37, 33]], atol=1e-4)
    np.testing.assert_allclose(y["xy_norm"][:, 2] * 64, [[-22, 32]] * 3, atol=1e-4)
    # Keypoint 2 is visible in the original but falls left of the crop.
    np.testing.assert_array_equal(y["visible_original"], [[True, True, True, False]] * 3)
    np.testing.assert_array_equal(y["visible"], [[True, True, False, False]] * 3)
    np.testing.assert_array_equal(y["xy_original"], [keypoints_for(i) for i in range(3)])
    np.testing.assert_array_equal(y["image_sizes"], [[320, 200]] * 3)
    assert y["filenames"].tolist() == ["img000.png", "img001.png", "img002.png"]
    assert y["keypoint_names"].tolist() == NAMES
    assert y["input_size"].tolist() == [64, 64] and y["heatmap_size"].tolist() == [32, 32]
    assert float(y["sigma"]) == 1.0
    assert json.loads(str(y["config_json"]))["crop_size"] == [160, 160]


def test_preprocess_rendered_jpgs(renders, tmp_path):
    cfg = small_config(tmp_path, data_dir=str(renders))
    assert preprocess(cfg, "val", progress=False)["images"] == 3
    cache = load_cache(cfg.cache_dir, "val", cfg)
    records = json.loads((renders / "val.json").read_text())
    xy_input = to_input(np.array([r["keypoints"] for r in records]), TRANSFORM)
    np.testing.assert_allclose(cache.y["xy_norm"] * 64, xy_input, atol=1e-4)
    inside_input = np.all((xy_input >= 0) & (xy_input < 64), axis=-1)
    np.testing.assert_array_equal(cache.y["visible"], np.array([r["visible"] for r in records]) & inside_input)
    assert cache.images.max() > 0  # something was drawn


def test_cache_carries_the_poses_camera_and_3d_keypoints(renders, tmp_path):
    cfg = small_config(tmp_path, data_dir=str(renders))
    summary = preprocess(cfg, "val", progress=False)
    assert summary["poses"] and summary["keypoints_3d"]
    assert preprocess(cfg, "val", progress=False)["keypoints_3d"]  # a reused cache says the same
    y = load_cache(cfg.cache_dir, "val", cfg).y
    records = json.loads((renders / "val.json").read_text())
    mesh = load_obj(renders / "mesh.obj")
    np.testing.assert_array_equal(y["pose_q"], [r["q_vbs2tango"] for r in records])
    np.testing.assert_array_equal(y["pose_r"], [r["r_Vo2To_vbs_true"] for r in records])
    assert Camera.from_array(y["camera"]) == SMALL
    np.testing.assert_array_equal(y["keypoints_3d"], mesh.vertices)
    np.testing.assert_array_equal(y["mesh_faces"], mesh.faces)


def test_3d_keypoints_follow_the_keypoint_order_not_the_mesh_order(pose_only):
    data_dir, records = pose_only
    mesh = load_obj(data_dir / "mesh.obj")
    names = list(np.roll(mesh.vertex_names, 3))  # a rotation is not its own inverse (a reversal would be)
    order = [mesh.vertex_names.index(name) for name in names]
    (data_dir / "keypoint_names.json").write_text(json.dumps(names))
    ann = load_annotations(data_dir, "val")  # pose-only records: projected in the names' order
    model = ann.object_model
    np.testing.assert_array_equal(model.keypoints_3d, mesh.vertices[order])
    np.testing.assert_array_equal(model.keypoints_3d[model.faces], mesh.vertices[mesh.faces])  # same triangles
    for i, record in enumerate(records):
        np.testing.assert_allclose(ann.xy_original[i], np.array(record["keypoints"])[order], atol=1e-6)
        np.testing.assert_array_equal(ann.visible[i], np.array(record["visible"])[order])
        points = body_to_camera(model.keypoints_3d, record["q_vbs2tango"], record["r_Vo2To_vbs_true"])
        np.testing.assert_allclose(project_points(points, model.camera), ann.xy_original[i], atol=1e-9)
    # Keypoints given in the names' order: the 3-D keypoints follow the same order.
    write_labels(data_dir, [{**r, "keypoints": np.array(r["keypoints"])[order].tolist(),
                             "visible": np.array(r["visible"])[order].tolist()} for r in records], "val")
    np.testing.assert_array_equal(load_annotations(data_dir, "val").object_model.keypoints_3d, mesh.vertices[order])
    # A mesh whose vertices are not the keypoints gives no 3-D model (and no pose).
    (data_dir / "keypoint_names.json").write_text(json.dumps(names[:-1] + ["other"]))
    assert load_annotations(data_dir, "val").object_model is None


def test_repeated_keypoint_names(pose_only):
    data_dir, _ = pose_only
    names = load_obj(data_dir / "mesh.obj").vertex_names
    (data_dir / "keypoint_names.json").write_text(json.dumps([names[0], *names[:-1]]))
    expect_error(lambda: load_annotations(data_dir, "val"), "keypoint_names.json", "unique", names[0])


def test_poses_beside_keypoints_are_checked_and_kept_only_when_complete(data_dir):
    records = json.loads((data_dir / "train.json").read_text())
    for i, record in enumerate(records):
        record.update(q_vbs2tango=[1.0, 0.0, 0.0, 0.0], r_Vo2To_vbs_true=[0.0, 0.0, 5.0 + i])
    write_labels(data_dir, records)
    ann = load_annotations(data_dir, "train")
    np.testing.assert_array_equal(ann.pose_r[:, 2], [5.0, 6.0, 7.0])
    del records[1]["q_vbs2tango"], records[1]["r_Vo2To_vbs_true"]
    write_labels(data_dir, records)
    assert load_annotations(data_dir, "train").pose_q is None  # a pose is optional beside keypoints
    records[2]["r_Vo2To_vbs_true"] = [0.0, float("nan"), 5.0]
    write_labels(data_dir, records)
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "record 2", "'r_Vo2To_vbs_true'")
    records[2]["r_Vo2To_vbs_true"], records[2]["q_vbs2tango"] = [0.0, 0.0, 5.0], [0.0] * 4
    write_labels(data_dir, records)
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "record 2", "zero quaternion")


def _mtimes(cache):
    return {name: (cache / name).stat().st_mtime_ns for name in ("X_data.npy", "Y_data.npz")}


def test_second_run_reuses_the_cache(data_dir, tmp_path):
    cfg = small_config(tmp_path)
    preprocess(cfg, "train", progress=False)
    cache = tmp_path / "cache" / "train"
    before = _mtimes(cache)
    summary = preprocess(cfg, "train", progress=False)
    assert summary["reused"] is True and summary["images"] == 3 and summary["visible_fraction"] == 0.5
    assert _mtimes(cache) == before
    # The label file is hashed by content: rewriting the same bytes keeps the cache.
    label = data_dir / "train.json"
    label.write_bytes(label.read_bytes())
    assert preprocess(cfg, "train", progress=False)["reused"] is True


@pytest.mark.parametrize("override", [{"sigma": 2.0}, {"crop_size": (180, 180)}, {"cache_heatmaps": True}])
def test_a_changed_config_rebuilds_the_cache(data_dir, tmp_path, override):
    preprocess(small_config(tmp_path), "train", progress=False)
    cfg = small_config(tmp_path, **override)
    assert preprocess(cfg, "train", progress=False)["reused"] is False
    load_cache(cfg.cache_dir, "train", cfg)  # now matches the new config
    assert preprocess(cfg, "train", progress=False)["reused"] is True


def test_changed_sources_rebuild_the_cache(data_dir, tmp_path):
    cfg = small_config(tmp_path)
    preprocess(cfg, "train", progress=False)
    # A modified label file.
    records = json.loads((data_dir / "train.json").read_text())
    records[0]["keypoints"][1] = [110.0, 50.0]
    write_labels(data_dir, records)
    assert preprocess(cfg, "train", progress=False)["reused"] is False
    y = load_cache(cfg.cache_dir, "train", cfg).y
    np.testing.assert_allclose(y["xy_norm"][0, 1] * 64, [110 * 0.36 - 25.6, 14.0], atol=1e-4)
    # A touched image (new mtime).
    image = data_dir / "images" / "train" / "img001.png"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert preprocess(cfg, "train", progress=False)["reused"] is False
    # Renamed keypoints (keypoint_names.json is not the label file, but the cache stores the names).
    (data_dir / "keypoint_names.json").write_text(json.dumps(["a", "b", "c", "d"]))
    assert preprocess(cfg, "train", progress=False)["reused"] is False
    assert load_cache(cfg.cache_dir, "train", cfg).keypoint_names == ("a", "b", "c", "d")
    assert preprocess(cfg, "train", progress=False)["reused"] is True


def test_pose_only_cache_follows_camera_changes(pose_only, tmp_path):
    data_dir, _ = pose_only
    cfg = small_config(tmp_path, data_dir=str(data_dir))
    preprocess(cfg, "val", progress=False)
    before = load_cache(cfg.cache_dir, "val", cfg).y["xy_original"]
    shifted = Camera(fx=SMALL.fx, fy=SMALL.fy, cx=SMALL.cx + 4.0, cy=SMALL.cy, width=W, height=H)
    save_camera_json(data_dir / "camera.json", shifted)
    assert preprocess(cfg, "val", progress=False)["reused"] is False
    after = load_cache(cfg.cache_dir, "val", cfg).y["xy_original"]
    np.testing.assert_allclose(after[..., 0] - before[..., 0], 4.0, atol=1e-9)


def test_cached_heatmaps(data_dir, tmp_path):
    cfg = small_config(tmp_path, cache_heatmaps=True)
    preprocess(cfg, "train", progress=False)
    y = load_cache(cfg.cache_dir, "train", cfg).y
    heatmaps = y["heatmaps"]
    assert heatmaps.shape == (3, 32, 32, 4) and heatmaps.dtype == np.float16
    # Keypoint 0 of image i sits on the centre of heatmap pixel (x=16 + i, y=16): peak 1 there.
    for i in range(3):
        assert heatmaps[i, 16, 16 + i, 0] == 1.0
        assert np.unravel_index(np.argmax(heatmaps[i, ..., 0]), (32, 32)) == (16, 16 + i)
    # Every visible map is exp(-d^2 / (2 sigma^2)) around xy_heatmap (pixel centres at j + 0.5).
    ys, xs = np.indices((32, 32)) + 0.5
    xy_heatmap = y["xy_norm"].astype(np.float64) * 32
    for i in range(3):
        for k in range(2):
            x, yy = xy_heatmap[i, k]
            expected = np.exp(-((xs - x) ** 2 + (ys - yy) ** 2) / 2.0)
            np.testing.assert_allclose(heatmaps[i, ..., k].astype(np.float64), expected, atol=2e-3)
    # Keypoint 2 (outside the crop) and 3 (invisible) get empty maps.
    assert not heatmaps[..., 2:].any()


def test_cached_heatmaps_non_square(data_dir, tmp_path):
    """A 96x64 input: heatmaps 48 wide x 32 high, stored (N, 32, 48, K), each peak at (col x, row y)."""
    cfg = small_config(tmp_path, crop_size=(240, 160), input_size=(96, 64), heatmap_size=(48, 32), cache_heatmaps=True)
    preprocess(cfg, "train", progress=False)
    y = load_cache(cfg.cache_dir, "train", cfg).y
    assert y["heatmaps"].shape == (3, 32, 48, 4) and y["heatmap_size"].tolist() == [48, 32]
    ys, xs = np.indices((32, 48)) + 0.5
    xy_heatmap = y["xy_norm"].astype(np.float64) * (48, 32)
    # Keypoints 0 and 1 are visible and off the diagonal, so a swapped x and y would not match.
    assert y["visible"][:, :2].all() and (np.abs(xy_heatmap[:, :2, 0] - xy_heatmap[:, :2, 1]) > 1).all()
    for i in range(3):
        for k in range(2):
            x, yy = xy_heatmap[i, k]
            expected = np.exp(-((xs - x) ** 2 + (ys - yy) ** 2) / 2.0)
            np.testing.assert_allclose(y["heatmaps"][i, ..., k].astype(np.float64), expected, atol=2e-3)


# ---------------------------------------------------------------- load_cache


def test_load_cache_matching_config(data_dir, tmp_path):
    cfg = small_config(tmp_path)
    preprocess(cfg, "train", progress=False)
    cache = load_cache(cfg.cache_dir, "train", cfg)
    assert cache.images.shape == (3, 64, 64, 3) and cache.images.dtype == np.uint8
    assert isinstance(cache.images, np.memmap)
    assert cache.keypoint_names == tuple(NAMES)
    assert "heatmaps" not in cache.y
    assert np.all(cache.images[2] == grey(2))


def test_concatenated_and_taken_caches_keep_each_images_labels(data_dir, tmp_path):
    cfg = small_config(tmp_path)
    preprocess(cfg, "train", progress=False)
    cache = load_cache(cfg.cache_dir, "train", cfg)
    both = Cache.concatenate([cache, cache.first(2)])
    assert both.images.shape == (5, 64, 64, 3) and not isinstance(both.images, np.memmap)
    assert [int(both.images[i, 32, 32, 0]) for i in range(5)] == [grey(i) for i in (0, 1, 2, 0, 1)]
    np.testing.assert_array_equal(both.y["xy_norm"], np.concatenate([cache.y["xy_norm"], cache.y["xy_norm"][:2]]))
    assert list(both.y["filenames"]) == [*cache.y["filenames"], *cache.y["filenames"][:2]]
    assert both.keypoint_names == tuple(NAMES) and both.y["sigma"] == cache.y["sigma"]  # split-wide: kept once
    picked = both.take([4, 0])
    assert [int(picked.images[i, 32, 32, 0]) for i in range(2)] == [grey(1), grey(0)]
    assert list(picked.y["filenames"]) == [cache.y["filenames"][1], cache.y["filenames"][0]]
    other = Cache(cache.images, {**cache.y, "keypoint_names": np.array(NAMES[::-1])})
    with pytest.raises(ValueError, match="different 'keypoint_names'"):
        Cache.concatenate([cache, other])
    # A cache with heatmaps joins one without (they are left out); one with another sigma does not.
    heat_cfg = small_config(tmp_path, cache_dir=str(tmp_path / "heat"), cache_heatmaps=True)
    preprocess(heat_cfg, "train", progress=False)
    heat = load_cache(heat_cfg.cache_dir, "train")
    assert "heatmaps" not in Cache.concatenate([cache, heat]).y
    assert Cache.concatenate([heat, heat]).y["heatmaps"].shape == (6, 32, 32, 4)
    sigma_cfg = small_config(tmp_path, cache_dir=str(tmp_path / "sigma"), sigma=1.5)
    preprocess(sigma_cfg, "train", progress=False)
    with pytest.raises(ValueError, match="different 'config_json'"):
        Cache.concatenate([cache, load_cache(sigma_cfg.cache_dir, "train")])


def test_load_cache_built_with_another_config(data_dir, tmp_path):
    cfg = small_config(tmp_path)
    preprocess(cfg, "train", progress=False)
    other = small_config(tmp_path, sigma=1.5)
    expect_error(lambda: load_cache(cfg.cache_dir, "train", other), "Y_data.npz", "another config",
                 "sigma=1.0 (config: 1.5)")
    message = expect_error(lambda: load_cache(cfg.cache_dir, "train", small_config(tmp_path, crop_size=(170, 160))),
                           "Y_data.npz", "crop_size=[160, 160] (config: [170, 160])")
    assert "sigma" not in message  # only the differing field is listed
    assert load_cache(cfg.cache_dir, "train").images.shape[0] == 3  # without a config: no check


def test_load_cache_with_or_without_cached_heatmaps(data_dir, tmp_path):
    # Whether the heatmaps were cached does not matter to training (it builds them when absent).
    plain, heat = small_config(tmp_path), small_config(tmp_path, cache_dir=str(tmp_path / "heat"), cache_heatmaps=True)
    preprocess(plain, "train", progress=False)
    preprocess(heat, "train", progress=False)
    assert "heatmaps" not in load_cache(plain.cache_dir, "train", heat).y
    heatmaps = load_cache(heat.cache_dir, "train", plain).y["heatmaps"]
    assert isinstance(heatmaps, np.memmap) and heatmaps.shape == (3, 32, 32, 4)
    # Any other difference is still refused, named beside the heatmap flag.
    expect_error(lambda: load_cache(heat.cache_dir, "train", small_config(tmp_path, sigma=1.5)),
                 "Y_data.npz", "sigma=1.0 (config: 1.5)", "cache_heatmaps=True (config: False)")


def test_load_cache_x_of_wrong_shape(data_dir, tmp_path):
    cfg = small_config(tmp_path)
    preprocess(cfg, "train", progress=False)
    np.save(tmp_path / "cache" / "train" / "X_data.npy", np.zeros((2, 64, 64, 3), np.uint8))
    expect_error(lambda: load_cache(cfg.cache_dir, "train", cfg), "X_data.npy", "(2, 64, 64, 3)",
                 "expected (3, 64, 64, 3) uint8")
    # preprocess notices the stale images and rebuilds them.
    assert preprocess(cfg, "train", progress=False)["reused"] is False
    assert load_cache(cfg.cache_dir, "train", cfg).images.shape == (3, 64, 64, 3)


def test_load_cache_missing_files(data_dir, tmp_path):
    cfg = small_config(tmp_path)
    expect_error(lambda: load_cache(cfg.cache_dir, "train", cfg), "Y_data.npz", "not found")
    preprocess(cfg, "train", progress=False)
    (tmp_path / "cache" / "train" / "X_data.npy").unlink()
    expect_error(lambda: load_cache(cfg.cache_dir, "train", cfg), "X_data.npy", "not found")
    preprocess(cfg, "train", progress=False)
    (tmp_path / "cache" / "train" / "Y_data.npz").unlink()
    expect_error(lambda: load_cache(cfg.cache_dir, "train", cfg), "Y_data.npz", "not found")


def test_load_cache_garbage_y(data_dir, tmp_path):
    cfg = small_config(tmp_path)
    preprocess(cfg, "train", progress=False)
    (tmp_path / "cache" / "train" / "Y_data.npz").write_bytes(b"garbage")
    expect_error(lambda: load_cache(cfg.cache_dir, "train", cfg), "Y_data.npz", "cannot read cache")
    assert preprocess(cfg, "train", progress=False)["reused"] is False  # and preprocess repairs it


@pytest.mark.parametrize("name", ["Y_data.npz", "X_data.npy"])
def test_load_cache_empty_file(data_dir, tmp_path, name):
    cfg = small_config(tmp_path)
    preprocess(cfg, "train", progress=False)
    (tmp_path / "cache" / "train" / name).write_bytes(b"")
    expect_error(lambda: load_cache(cfg.cache_dir, "train", cfg), name, "cannot read cache")
    assert preprocess(cfg, "train", progress=False)["reused"] is False  # and preprocess repairs it


def test_load_cache_arrays_that_do_not_fit_together(data_dir, tmp_path):
    cfg = small_config(tmp_path)
    preprocess(cfg, "train", progress=False)
    path = tmp_path / "cache" / "train" / "Y_data.npz"
    with np.load(path, allow_pickle=False) as data:
        y = {key: data[key] for key in data.files}
    np.savez(path, **{**y, "transforms": np.zeros((3, 1, 0))})
    expect_error(lambda: load_cache(cfg.cache_dir, "train", cfg), "Y_data.npz", "'transforms' has shape (3, 1, 0)",
                 "expected (3, 4)")
    np.savez(path, **{**y, "keypoint_names": np.array(["a", "b"])})
    expect_error(lambda: load_cache(cfg.cache_dir, "train", cfg), "'keypoint_names' has shape (2,)", "expected (4,)")


# ---------------------------------------------------------------- preprocess_folder


def test_preprocess_folder(tmp_path):
    Image.new("RGB", (320, 200), (90, 90, 90)).save(tmp_path / "landscape.png")
    Image.new("RGB", (200, 320), (200, 200, 200)).save(tmp_path / "portrait.png")
    cfg = small_config(tmp_path)
    images, transforms, sizes = preprocess_folder([tmp_path / "landscape.png", tmp_path / "portrait.png"], cfg)
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8
    assert transforms.shape == (2, 4)
    np.testing.assert_array_equal(sizes, [[320, 200], [200, 320]])
    np.testing.assert_allclose(transforms[0], TRANSFORM, atol=1e-12)
    # 200x320 -> scale 180/320 = 0.5625 -> round(112.5) = 112 x 180, pad x 104, offset (24, -10),
    # factor 0.4: the image covers input x in [9.6, 9.6 + 112 * 0.4) = [9.6, 54.4).
    np.testing.assert_allclose(transforms[1], [112 / 200 * 0.4, 0.4 * 180 / 320, 9.6, -4.0], atol=1e-12)
    assert np.all(images[0] == 90)
    assert np.all(images[1][:, :9] == 0) and np.all(images[1][:, 10:54] == 200) and np.all(images[1][:, 55:] == 0)
    expect_error(lambda: preprocess_folder([tmp_path / "nope.png"], cfg), "nope.png", "not found")


def test_folder_stream_gives_preprocess_folder_in_batches(tmp_path, monkeypatch):
    """use_vis.py --images: threads decode ahead, in batches (the last one short), the same
    images and transforms as the whole-folder path; the figures' first images are kept."""
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(320, 200), (200, 320), (300, 300), (320, 200), (640, 400)]):
        paths.append(tmp_path / f"im{i}.jpg")
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(paths[-1])
    cfg = small_config(tmp_path)
    images, transforms, sizes = preprocess_folder(paths, cfg)
    stream = FolderStream(paths, cfg, batch_size=2, keep=3, workers=2, ahead=1)
    priorities, warp = set(), data_module.warp_image_file

    def warp_and_note(*args):  # the decoding threads yield to the model (common.parallel.beside_the_model)
        priorities.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return warp(*args)

    monkeypatch.setattr(data_module, "warp_image_file", warp_and_note)
    np.testing.assert_array_equal(stream.sizes, sizes)  # from the headers, before any decoding
    assert stream.transforms is None and len(stream) == 5
    batches = list(stream)
    assert [len(b) for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(batches), images)
    np.testing.assert_allclose(stream.transforms, transforms, atol=1e-12)
    np.testing.assert_array_equal(np.stack(stream.kept), images[:3])
    assert stream.decode_seconds > 0
    if sys.platform.startswith("linux"):
        assert priorities == {min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)}
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    expect_error(lambda: FolderStream(paths + [tmp_path / "bad.jpg"], cfg, 2), "bad.jpg", "cannot read image")


def test_parallel_preprocess_matches_serial(tmp_path):
    camera = tmp_path / "camera.json"
    save_camera_json(camera, Camera(fx=500.6, fy=500.6, cx=160, cy=100, width=320, height=200))
    render_split(tmp_path / "renders", RenderConfig(num_images=3, seed=4, camera_json=str(camera)), "train",
                 progress=False)
    base = dataclasses.replace(DataConfig(), data_dir=str(tmp_path / "renders"), canvas_size=(320, 180),
                               crop_size=(160, 160), input_size=(64, 64), heatmap_size=(32, 32))
    for workers, cache in ((1, "serial"), (2, "parallel")):
        preprocess(dataclasses.replace(base, cache_dir=str(tmp_path / cache)), "train", progress=False,
                   workers=workers)
    np.testing.assert_array_equal(np.load(tmp_path / "serial" / "train" / "X_data.npy"),
                                  np.load(tmp_path / "parallel" / "train" / "X_data.npy"))


def test_visible_flags_must_be_booleans_or_0_1(tmp_path):
    records = write_split(tmp_path, n=1)
    records[0]["visible"] = [2, 1, 1, 0]  # COCO's 2 = visible, 1 = occluded: ambiguous here
    write_labels(tmp_path, records)
    with pytest.raises(DataError, match=r"record 0 \(img000.png\): field 'visible' must be 4 booleans \(or 0/1\)"):
        load_annotations(tmp_path, "train")
    records[0]["visible"] = [1, 1, 1, 0]
    write_labels(tmp_path, records)
    assert load_annotations(tmp_path, "train").visible.tolist() == [[True, True, True, False]]


def test_preprocess_warns_about_the_data_folders_own_symmetric_mesh(data_dir, tmp_path, capsys):
    # A square of the four keypoints: 90- and 180-degree turns map it onto itself. render_vis.py warned
    # for the meshes it rendered; preprocessing a folder that brings its own said nothing.
    square = [[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]]
    save_obj(data_dir / "mesh.obj", Mesh(square, [[0, 1, 2], [0, 2, 3]], NAMES))
    cfg = small_config(tmp_path)
    with pytest.warns(UserWarning, match=r"mesh.obj: keypoint identities are ambiguous: the mesh maps onto itself"):
        preprocess(cfg, "train", progress=False)
    from stage2_visible_keypoints.preprocess_vis import main

    args = ["--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"), "--quiet",
            *[f"--set=data.{key}={json.dumps(getattr(cfg, key))}" for key in
              ("canvas_size", "crop_size", "input_size", "heatmap_size", "sigma")]]
    assert main(args) is None
    assert capsys.readouterr().err == (f"warning: {data_dir / 'mesh.obj'}: keypoint identities are ambiguous: the mesh "
                                       "maps onto itself under a 180-degree rotation (exactly; tolerance 0.071 m = 5% "
                                       "of its radius); if so, declare data.interchangeable: [['nose', 'edge'], "
                                       "['tip', 'hidden']]\n")


@pytest.mark.parametrize("name", ["../../secret.png", "../../missing.png", "ABSOLUTE"])
def test_an_image_name_leading_outside_the_data_folder_is_refused(data_dir, tmp_path, name):
    # An existing file outside and a missing one get the same line: nothing is looked up.
    Image.new("RGB", (W, H)).save(tmp_path / "secret.png")
    name = str(tmp_path / "secret.png") if name == "ABSOLUTE" else name
    records = json.loads((data_dir / "train.json").read_text())
    records[1]["filename"] = name
    write_labels(data_dir, records)
    expect_error(lambda: preprocess(small_config(tmp_path), "train", progress=False),
                 f"train.json: record 1 ({name}): the file name leads outside the data folder {data_dir}")
    assert not (tmp_path / "cache").exists()
    if "missing" not in name:  # allowed, the file is read and its path kept
        summary = preprocess(small_config(tmp_path), "train", progress=False, allow_outside=True)
        assert summary["images"] == 3
        paths = load_cache(tmp_path / "cache", "train").y["image_paths"]
        assert str(paths[1]) == str((tmp_path / "secret.png").resolve())


def test_skip_bad_leaves_out_bad_records_and_images_and_lists_them(tmp_path, capsys):
    from stage2_visible_keypoints import preprocess_vis

    data = tmp_path / "data"
    records = write_split(data, n=5)
    images = data / "images" / "train"
    (images / "img001.png").write_bytes((images / "img001.png").read_bytes()[:200])  # header fine, pixels cut off
    records[2]["keypoints"] = "nowhere"
    (images / "img003.png").unlink()
    write_labels(data, records)
    cfg = small_config(tmp_path)
    expect_error(lambda: preprocess(cfg, "train", progress=False), "record 2 (img002.png): field 'keypoints'")
    args = ["--data-dir", str(data), "--cache-dir", cfg.cache_dir, "--quiet", "--skip-bad"] + [
        arg for key in ("canvas_size=[320,180]", "crop_size=[160,160]", "input_size=[64,64]", "heatmap_size=[32,32]")
        for arg in ("--set", f"data.{key}")]
    assert preprocess_vis.main(args) is None
    report = tmp_path / "cache" / "train" / "skipped.tsv"
    assert f"skipped 3 bad item(s), listed in {report}" in capsys.readouterr().out
    rows = [line.split("\t") for line in report.read_text().splitlines()]
    assert rows[0] == ["path", "reason"] and len(rows) == 4
    assert rows[1][0] == str(data / "train.json") and rows[1][1].startswith("record 2 (img002.png): field 'keypoints'")
    assert rows[2][0] == str(data / "train.json") and "record 3 (img003.png)" in rows[2][1]
    assert rows[3][0] == str(images / "img001.png") and rows[3][1].startswith("cannot read image")
    loaded = load_cache(cfg.cache_dir, "train")
    assert list(loaded.y["filenames"]) == ["img000.png", "img004.png"]
    assert [int(image[0, 0, 0]) for image in loaded.images] == [grey(0), grey(4)]
    np.testing.assert_allclose(loaded.y["xy_norm"][1] * 64, to_input(np.array(keypoints_for(4)), TRANSFORM), atol=1e-4)
    (images / "img001.png").write_bytes(b"")
    records[2]["keypoints"] = keypoints_for(2)
    del records[3]
    write_labels(data, records)
    Image.new("RGB", (W, H), (grey(1),) * 3).save(images / "img001.png")
    preprocess_vis.main(args)  # nothing bad any more: the list goes
    assert not report.exists() and len(load_cache(cfg.cache_dir, "train").images) == 4


# ---------------------------------------------------------------- crops around the object's box


def test_box_crop_cache_maps_keypoints_back_to_original_pixels_exactly(renders, tmp_path):
    # data.crop: box: each image is cut around its labelled box (jittered), the crop's
    # transform is stored, and the stored keypoints go back to the labels exactly.
    cfg = DataConfig(data_dir=str(renders), cache_dir=str(tmp_path / "cache"), canvas_size=(320, 180),
                     crop_size=(160, 160), input_size=(64, 64), heatmap_size=(32, 32), crop="box",
                     box_margin=1.25, box_jitter=(0.2, 0.1))
    preprocess(cfg, "val", progress=False)
    y = load_cache(tmp_path / "cache", "val", cfg).y
    ann = load_annotations(renders, "val")
    records = json.loads((renders / "val.json").read_text())
    np.testing.assert_allclose(ann.boxes, [r["bbox"] for r in records])
    xy_input = y["xy_norm"].astype(np.float64) * 64
    np.testing.assert_allclose(to_original(xy_input, y["transforms"]), ann.xy_original, atol=1e-3)  # float32 xy_norm
    for transform, box in zip(y["transforms"], ann.boxes):
        assert transform[0] == transform[1]  # square crop, square input
        side = 64 / transform[0]
        longer = max(box[2] - box[0], box[3] - box[1])
        assert 1.25 * 0.8 * longer - 1e-9 <= side <= 1.25 * 1.2 * longer + 1e-9  # the jitter's scale
        assert side != pytest.approx(1.25 * longer)  # ... and it was jittered
        # The box centre lands near the input centre (shift <= 0.1 of the box size).
        centre = to_input(((box[:2] + box[2:]) / 2)[None], transform)[0]
        assert np.all(np.abs(centre - 32) <= 0.1 * (box[2:] - box[:2]) * transform[:2] + 1e-9)
    # The centre-crop cache of the same data keeps its old settings (and so its hash).
    assert "crop" not in json.loads(str(load_cache(*_centre_cache(renders, tmp_path)).y["config_json"]))


def _centre_cache(renders, tmp_path):
    cfg = DataConfig(data_dir=str(renders), cache_dir=str(tmp_path / "centre"), canvas_size=(320, 180),
                     crop_size=(160, 160), input_size=(64, 64), heatmap_size=(32, 32))
    preprocess(cfg, "val", progress=False)
    return tmp_path / "centre", "val", cfg


def test_bad_bbox_field(data_dir):
    records = json.loads((data_dir / "train.json").read_text())
    records[1]["bbox"] = [10, 10, 5, 20]
    write_labels(data_dir, records)
    expect_error(lambda: load_annotations(data_dir, "train"), "train.json", "record 1", "'bbox'")
