"""pose_vis.py end to end on a tiny SPEED+-layout folder read in place: camera.json at the
top, synthetic/{train,validation}.json with images/, lightbox/ and sunlamp/ test folders,
labels holding poses only (as SPEED+'s do) and the keypoint model given as an OBJ file.

The two runs are untrained but saved as training saves them (best.keras, config.json,
keypoint_names.json / categories.json): the script's plumbing does not depend on the
weights, and test_pose_pipeline.py checks the numbers with exact stand-in models.
"""

import json
import shutil

import numpy as np
import pytest

from common.config import save_config
from common.data_io import load_json, save_json
from stage2_visible_keypoints.camera import Camera, save_camera_json
from stage2_visible_keypoints.data import read_poses
from stage2_visible_keypoints.pose_vis import main
from stage2_visible_keypoints.render import RenderConfig, render_split
from tests.scripts import ROOT, check, run_script

pytestmark = pytest.mark.slow
SMALL = Camera(fx=500.6, fy=500.6, cx=160, cy=100, width=320, height=200)


@pytest.fixture(scope="module")
def speedplus(tmp_path_factory):
    """speedplus/ with 2 + 1 synthetic frames and 3 frames in each of lightbox/ and sunlamp/."""
    root = tmp_path_factory.mktemp("pose_vis")
    save_camera_json(root / "small_camera.json", SMALL)
    renders = root / "renders"
    for split, count, seed in (("train", 2, 1), ("validation", 1, 2), ("lightbox", 3, 3), ("sunlamp", 3, 4)):
        render_split(renders, RenderConfig(num_images=count, seed=seed, camera_json=str(root / "small_camera.json"),
                                           scene="speed"), split, progress=False)
    plus = root / "speedplus"
    save_camera_json(plus / "camera.json", SMALL)
    for split, folder, label in (("train", "synthetic", "train"), ("validation", "synthetic", "validation"),
                                 ("lightbox", "lightbox", "test"), ("sunlamp", "sunlamp", "test")):
        (plus / folder / "images").mkdir(parents=True, exist_ok=True)
        records = load_json(renders / f"{split}.json")
        for record in records:
            shutil.copy(renders / "images" / split / record["filename"], plus / folder / "images")
        save_json(plus / folder / f"{label}.json", [
            {"filename": r["filename"], "q_vbs2tango_true": r["q_vbs2tango"], "r_Vo2To_vbs_true": r["r_Vo2To_vbs_true"]}
            for r in records])
    shutil.copy(renders / "mesh.obj", root / "keypoints.obj")  # the keypoint model, outside the data
    return root, plus


@pytest.fixture(scope="module")
def runs(speedplus):
    """An untrained stage-1 detector and stage-2 model (64x64 box crops), saved as runs."""
    import keras

    from detection.ssd.ssd import build_detector
    from detection.ssd.ssd_config import DetConfig
    from stage2_visible_keypoints.config import Stage2Config
    from stage2_visible_keypoints.mesh import load_obj
    from stage2_visible_keypoints.model import build_model

    root, _ = speedplus
    det = DetConfig()
    det.data.input_size, det.model.filters, det.model.head_filters = (64, 48), (4, 8, 8, 8), (8, 8, 8)
    det.model.anchor_sizes = ((8.0,), (16.0,), (32.0,))
    save_config(det, root / "stage1" / "config.json")
    build_detector(1, det.data, det.model, seed=0).save(root / "stage1" / "best.keras")
    save_json(root / "stage1" / "categories.json", {"names": ["spacecraft"], "ids": ["1"]})
    kp = Stage2Config()
    kp.data.input_size, kp.data.heatmap_size, kp.data.crop = (64, 64), (32, 32), "box"
    kp.model.backbone, kp.model.decoder_filters = "resnet18", (16, 16, 8, 8)
    names = load_obj(root / "keypoints.obj").vertex_names
    save_config(kp, root / "stage2" / "config.json")
    build_model(len(names), kp.data, kp.model, seed=0).save(root / "stage2" / "best.keras")
    save_json(root / "stage2" / "keypoint_names.json", list(names))
    keras.backend.clear_session()
    return root / "stage1", root / "stage2"


def test_speedplus_lightbox_folder_through_the_whole_pipeline_under_jax_without_tensorflow(speedplus, runs):
    root, plus = speedplus
    out = root / "out_lightbox"
    result = check(run_script(
        ROOT / "stage2_visible_keypoints" / "pose_vis.py", "--detector", runs[0], "--model", runs[1],
        "--data-dir", plus / "lightbox", "--split", "test", "--camera", plus / "camera.json",
        "--mesh", root / "keypoints.obj", "--score-threshold", "0", "--output-dir", out, "--quiet",
        backend="jax", block_tensorflow=True))
    assert "3 frames:" in result.stdout and "detection recall@0.5" in result.stdout
    frames = load_json(out / "frames.json")
    assert [f["filename"] for f in frames] == ["img000001.jpg", "img000002.jpg", "img000003.jpg"]
    # Score threshold 0: stage 1 always gives its best box, so every frame was cropped.
    assert all(f["status"] in ("pose", "no pose") and len(f["box"]) == 4 for f in frames)
    poses = read_poses(out / "poses.json")  # the SPEED label layout
    assert set(poses) == {f["filename"] for f in frames if f["status"] == "pose"}
    summary = load_json(out / "summary.json")
    assert summary["counts"]["frames"] == 3 and summary["evaluation"]["frames_with_object"] >= 1
    assert summary["evaluation"]["keypoints"]["unit"] == "original pixels"
    assert {"solved_fraction", "speed_score_all"} <= set(summary["evaluation"]["pose"])
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["img000001.jpg", "img000002.jpg",
                                                                   "img000003.jpg"]


def test_no_object_corrupt_frames_and_skip_bad(speedplus, runs, tmp_path, capsys):
    root, plus = speedplus
    data = tmp_path / "sunlamp"
    shutil.copytree(plus / "sunlamp", data)
    (data / "images" / "img000002.jpg").write_bytes(b"not a jpeg")
    args = ["--detector", str(runs[0]), "--model", str(runs[1]), "--data-dir", str(data), "--split", "test",
            "--camera", str(plus / "camera.json"), "--mesh", str(root / "keypoints.obj"), "--quiet"]
    from common.cli import run

    # A corrupt frame: one line naming it.
    assert run(main, args + ["--output-dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "img000002.jpg" in err and "\n" not in err
    # --skip-bad: skipped and listed; score threshold 1: stage 1 finds nothing, so
    # every frame is "no pose", not an error.
    assert run(main, args + ["--output-dir", str(tmp_path / "b"), "--skip-bad", "--score-threshold", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 with no object found" in out and "1 skipped" in out
    skipped = load_json(tmp_path / "b" / "skipped.json")
    assert len(skipped) == 1 and "img000002.jpg" in skipped[0]
    frames = load_json(tmp_path / "b" / "frames.json")
    assert [(f["filename"], f["status"]) for f in frames] == [("img000001.jpg", "no object"),
                                                              ("img000003.jpg", "no object")]
    assert load_json(tmp_path / "b" / "poses.json") == []
    assert load_json(tmp_path / "b" / "summary.json")["evaluation"]["object_found"] == 0.0
