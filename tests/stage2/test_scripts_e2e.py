"""End to end: render -> preprocess_vis -> train_vis -> use_vis on a few tiny images,
under TensorFlow and under JAX with TensorFlow blocked."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import yaml

from common.layers import SoftArgMax
from stage2_visible_keypoints.camera import Camera, save_camera_json
from stage2_visible_keypoints.mesh import Mesh, load_obj, save_obj
from stage2_visible_keypoints.predictor import KeypointPredictor
from stage2_visible_keypoints.render import RenderConfig, render_split
from tests.scripts import ROOT, check, run_script

pytestmark = pytest.mark.slow
S2 = ROOT / "stage2_visible_keypoints"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Tiny SPEED-style splits (320x200 camera) and a config with a 64x64 model input."""
    root = tmp_path_factory.mktemp("stage2")
    camera_json = root / "camera_small.json"
    save_camera_json(camera_json, Camera(fx=500.6, fy=500.6, cx=160, cy=100, width=320, height=200))
    for split, count, seed in (("train", 8, 1), ("test", 3, 2)):
        render_split(root / "renders", RenderConfig(num_images=count, seed=seed, camera_json=str(camera_json)), split)
    config = {
        "data": {"data_dir": str(root / "renders"), "cache_dir": str(root / "cache"), "canvas_size": [320, 180],
                 "crop_size": [160, 160], "input_size": [64, 64], "heatmap_size": [32, 32]},
        # 6 training images in 2 full batches: one batch shape, so the step is traced once.
        "train": {"output_dir": str(root / "model"), "epochs": 1, "batch_size": 3, "validation_split": 0.25},
        "use": {"output_dir": str(root / "predictions"), "max_overlays": 2},
        # The scripts do not depend on the encoder: the ResNet-18 option keeps these runs quick
        # (test_model.py builds, saves and reloads the default ResNet-50; `make demo` trains it).
        "model": {"backbone": "resnet18"},
    }
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    for split in ("train", "test"):
        check(run_script(S2 / "preprocess_vis.py", "--config", config_path, "--split", split, "--quiet"))
    return root, config_path


@pytest.fixture(scope="module")
def train_run(workspace):
    """train_vis.py on the workspace, once per backend in this module, so that any test
    needing a trained model runs alone: `train_run(backend)` -> (model_dir, train_vis.py's output)."""
    root, config_path = workspace
    runs = {}

    def trained(backend):
        if backend not in runs:
            model_dir = root / f"model_{backend}"
            runs[backend] = model_dir, check(run_script(
                S2 / "train_vis.py", "--config", config_path, "--output-dir", model_dir, "--quiet",
                backend=backend, block_tensorflow=backend == "jax"))
        return runs[backend]

    return trained


def test_preprocess_reuses_an_unchanged_cache(workspace):
    root, config_path = workspace
    out = check(run_script(S2 / "preprocess_vis.py", "--config", config_path, "--split", "train", "--quiet"))
    assert "cache reused" in out.stdout
    out = check(run_script(S2 / "preprocess_vis.py", "--config", config_path, "--split", "train", "--quiet",
                           "--cache-dir", root / "cache_sigma3", "--set", "data.sigma=3"))
    assert "cache written" in out.stdout
    # A stale cache is rebuilt, and the one line says why.
    out = check(run_script(S2 / "preprocess_vis.py", "--config", config_path, "--split", "train", "--quiet",
                           "--cache-dir", root / "cache_sigma3", "--set", "data.sigma=4"))
    assert (f"rebuilding the cache: {root / 'cache_sigma3' / 'train' / 'Y_data.npz'}: cache was built with another "
            "config: sigma=3.0 (config: 4.0)\n") in out.stdout and "cache written" in out.stdout


@pytest.mark.parametrize("backend, block", [("tensorflow", False), ("jax", True)], ids=["tensorflow", "jax-no-tf"])
def test_train_then_use(workspace, train_run, backend, block):
    root, config_path = workspace
    (model_dir, out), pred_dir = train_run(backend), root / f"pred_{backend}"
    assert f"{backend} backend" in out.stdout
    for name in ("best.keras", "model.keras", "config.json", "keypoint_names.json", "history.csv",
                 "plots/loss_curves.png"):
        assert (model_dir / name).is_file(), name
    assert (model_dir / "logs").is_dir() == (backend == "tensorflow")  # TensorBoard needs TensorFlow

    used = check(run_script(S2 / "use_vis.py", "--config", config_path, "--model", model_dir / "best.keras",
                            "--output-dir", pred_dir, "--quiet", backend=backend, block_tensorflow=block))
    summary = json.loads((pred_dir / "evaluation_summary.json").read_text())
    visible = np.load(root / "cache" / "test" / "Y_data.npz")["visible"]
    assert summary["counts"] == {"images": 3, "keypoints_per_image": visible.shape[1],
                                 "visible_keypoints": int(visible.sum())}
    for frame in ("input_frame", "original_frame", "input_frame_argmax_refine"):
        assert set(summary[frame]["pck"]) == {"2", "5", "10"}
    # The errors are those of the per-image records (keypoints rounded to 0.001 px) against the cache.
    y = np.load(root / "cache" / "test" / "Y_data.npz")
    records = [json.loads((pred_dir / "per_image" / f"{name}.json").read_text()) for name in y["filenames"]]
    pred = np.array([record["keypoints_input"] for record in records])
    truth = y["xy_norm"] * 64.0
    own = np.linalg.norm(pred - truth, axis=-1)  # (N, K)
    assert summary["input_frame"]["euclidean"]["mean"] == pytest.approx(own[visible].mean(), abs=2e-3)
    # Wrong keypoint: visible, more than 2 px off, and nearer another keypoint's truth than its own.
    to_other = np.linalg.norm(pred[:, :, None] - truth[:, None], axis=-1)
    to_other[:, np.arange(truth.shape[1]), np.arange(truth.shape[1])] = np.inf
    expected_wrong = int((visible & (own > 2.0) & (to_other.min(axis=-1) < own)).sum())
    # Original-pixel errors are input-frame errors / 0.36: letterbox 320x200 -> 288x180 (x0.9), crop 160 -> 64 (x0.4).
    ratio = summary["original_frame"]["euclidean"]["mean"] / summary["input_frame"]["euclidean"]["mean"]
    assert ratio == pytest.approx(1 / 0.36, rel=1e-6)
    assert {"precision", "recall"} <= set(summary["visibility"])
    wrong = summary["input_frame_wrong_keypoint"]
    assert (wrong["count"], wrong["wrong"]) == (int(visible.sum()), expected_wrong)
    assert "on another keypoint:" in used.stdout and (pred_dir / "plots" / "wrong_keypoints.png").is_file()
    for folder in ("overlays", "heatmaps", "original_overlays"):
        assert len(list((pred_dir / folder).iterdir())) == 2, folder
    assert len(list((pred_dir / "per_image").glob("*.json"))) == 3
    # Pose by PnP: the renders carry camera.json and mesh.obj. From the true keypoints it
    # is exact, which checks the camera, the 3-D keypoints and the conventions together.
    assert summary["pose"]["images"] == 3 and "pose (PnP on" in used.stdout
    oracle = summary["pose_from_true_keypoints"]
    assert oracle["solved"] == 3 and oracle["rotation_deg"]["mean"] < 1e-3 and oracle["translation_m"]["mean"] < 1e-5
    assert (pred_dir / "plots" / "pose_errors.png").is_file()
    found = json.loads((pred_dir / "poses.json").read_text())
    assert len(found) == summary["pose"]["solved"]
    # An image has a pose in its record exactly when it is in poses.json.
    assert sorted(record["filename"] for record in records if record["pose"] is not None) == sorted(
        record["filename"] for record in found)
    for record in found:  # the label layout, and the same pose as the image's own record
        image = json.loads((pred_dir / "per_image" / f"{record['filename']}.json").read_text())
        np.testing.assert_allclose(record["q_vbs2tango"], image["pose"]["q_vbs2tango"], atol=1e-6)
        assert len(record["r_Vo2To_vbs_true"]) == 3
    # score_poses.py on poses.json and the labels gives the summary's pose errors; the
    # labels against themselves score zero on every image.
    check(run_script(S2 / "score_poses.py", "--pred", root / "renders" / "test.json", "--labels",
                     root / "renders" / "test.json", "--output-dir", pred_dir))
    scores = json.loads((pred_dir / "test_scores.json").read_text())
    assert scores["solved"] == 3 and scores["speed_score"]["mean"] < 1e-6
    check(run_script(S2 / "score_poses.py", "--pred", pred_dir / "poses.json", "--labels",
                     root / "renders" / "test.json"))
    scores = json.loads((pred_dir / "poses_scores.json").read_text())
    # An untrained model may find no pose; test_use_with_the_true_keypoints_finds_every_pose
    # compares the errors on poses that are found.
    assert (scores["images"], scores["solved"]) == (3, summary["pose"]["solved"])


class TrueKeypointsModel:
    """Stands in for a trained model: the cache's true keypoints (confidence 1 where
    visible in the original image, else 0) for the cache's images, which it must be given
    first, in cache order; an image seen again (e.g. read from the folder) gets the
    keypoints of the nearest image seen."""

    def __init__(self, xy_norm, visible, heatmap_hw):
        self.xy_norm, self.visible, self.seen = xy_norm.astype(np.float32), visible, []
        # Only the decoder layer's settings and output shape are read from the model.
        maps = keras.Input((*heatmap_hw, xy_norm.shape[1]))
        self.model = keras.Model(maps, SoftArgMax(name="keypoints")(maps))

    def get_layer(self, name):
        return self.model.get_layer(name)
    def predict_on_batch(self, batch):
        batch = np.asarray(batch, np.float32)
        if len(self.seen) < len(self.xy_norm):
            self.seen += list(batch)
        distance = np.abs(batch[:, None] - np.array(self.seen)[None]).mean(axis=(2, 3, 4))
        assert (distance.min(axis=1) < 1.0).all(), distance  # the same preprocessing: the same pixels
        index = distance.argmin(axis=1)
        height, width = self.get_layer("keypoints").input.shape[1:3]
        return {"keypoints": self.xy_norm[index], "confidence": self.visible[index].astype(np.float32),
                "heatmap_logits": np.full((len(batch), height, width, self.xy_norm.shape[1]), -4.0, np.float32)}


def test_use_with_the_true_keypoints_finds_every_pose(workspace, tmp_path, monkeypatch):
    # The pose path of use() (PnP, poses.json, the pose summary, score_poses) on known
    # keypoints: every pose is found and is the labelled one.
    from common.config import load_config
    from stage2_visible_keypoints import pipeline
    from stage2_visible_keypoints.config import Stage2Config
    from stage2_visible_keypoints.data import score_poses

    root, config_path = workspace
    cfg = load_config(Stage2Config, config_path)
    y = np.load(root / "cache" / "test" / "Y_data.npz")
    # Visible in the original image, not only in the 64x64 crop (9, 2 and 1 keypoints): a
    # stand-in can place keypoints outside the crop, and then every image has a pose.
    stand_in = TrueKeypointsModel(y["xy_norm"], y["visible_original"], heatmap_hw=(32, 32))
    monkeypatch.setattr(pipeline, "load_stage2_model", lambda path, input_size=None: stand_in)
    model_path = tmp_path / "model" / "best.keras"  # hashed into the summary, never loaded
    model_path.parent.mkdir()
    model_path.write_bytes(b"stand-in")
    (model_path.parent / "keypoint_names.json").write_text(json.dumps([str(n) for n in y["keypoint_names"]]))

    pred_dir = tmp_path / "pred"
    result = pipeline.use(dataclasses.replace(cfg, use=dataclasses.replace(cfg.use, output_dir=str(pred_dir))),
                          model_path, progress=False)
    summary = result["summary"]
    assert result["poses_found"] == 3 and summary["pose"]["solved"] == 3
    assert summary["input_frame"]["euclidean"]["mean"] == pytest.approx(0.0, abs=1e-4)
    assert summary["pose"]["rotation_deg"]["mean"] < 1e-2 and summary["pose"]["translation_m"]["mean"] < 1e-3
    labels = {record["filename"]: record for record in json.loads((root / "renders" / "test.json").read_text())}
    found = json.loads((pred_dir / "poses.json").read_text())
    assert sorted(record["filename"] for record in found) == sorted(labels)
    for record in found:  # the label layout, the image's own record, the labelled pose
        image = json.loads((pred_dir / "per_image" / f"{record['filename']}.json").read_text())
        np.testing.assert_allclose(record["q_vbs2tango"], image["pose"]["q_vbs2tango"], atol=1e-6)
        q, q_true = np.array(record["q_vbs2tango"]), np.array(labels[record["filename"]]["q_vbs2tango"])
        np.testing.assert_allclose(q * np.sign(q @ q_true), q_true, atol=1e-4)
        np.testing.assert_allclose(record["r_Vo2To_vbs_true"], labels[record["filename"]]["r_Vo2To_vbs_true"],
                                   atol=1e-3)
    # score_poses on poses.json and the labels gives the summary's pose errors.
    scores = score_poses(pred_dir / "poses.json", root / "renders" / "test.json")
    assert (scores["images"], scores["solved"]) == (3, 3)
    for key in ("rotation_deg", "translation_rel", "speed_score"):
        assert scores[key] == pytest.approx(summary["pose"][key], abs=1e-4), key

    # The same keypoints from the folder of images, with --camera and --mesh: the same poses.
    folder_cfg = dataclasses.replace(cfg, use=dataclasses.replace(
        cfg.use, output_dir=str(tmp_path / "pred_folder"), camera=str(root / "renders" / "camera.json"),
        mesh=str(root / "renders" / "mesh.obj")))
    result = pipeline.use(folder_cfg, model_path, images_dir=root / "renders" / "images" / "test", progress=False)
    assert result["poses_found"] == 3
    folder_found = json.loads((tmp_path / "pred_folder" / "poses.json").read_text())
    for record, folder_record in zip(sorted(found, key=str), sorted(folder_found, key=str)):
        assert record["filename"] == folder_record["filename"]
        np.testing.assert_allclose(folder_record["q_vbs2tango"], record["q_vbs2tango"], atol=1e-6)


def test_use_on_a_folder_of_images(workspace, train_run):
    root, config_path = workspace
    model = train_run("tensorflow")[0] / "best.keras"
    out_dir = root / "pred_folder"
    check(run_script(S2 / "use_vis.py", "--config", config_path, "--model", model, "--images",
                     root / "renders" / "images" / "test", "--output-dir", out_dir, "--quiet",
                     "--camera", root / "renders" / "camera.json", "--mesh", root / "renders" / "mesh.obj",
                     backend=keras.backend.backend()))  # the backend the predictor below runs on
    record = json.loads((out_dir / "per_image" / "img000001.jpg.json").read_text())
    assert np.array(record["keypoints_original"]).shape == (len(record["keypoint_names"]), 2)
    # None when too few keypoints are predicted visible; then the image is not in poses.json.
    found = {pose["filename"] for pose in json.loads((out_dir / "poses.json").read_text())}
    assert (record["pose"] is not None) == ("img000001.jpg" in found)
    assert record["keypoint_names"][0] == "body_000"  # named by the run's keypoint_names.json
    assert not (out_dir / "evaluation_summary.json").exists()

    # The Python API gives what use_vis.py wrote (JSON rounds to 3 decimals), with the
    # mesh's vertices in another order: the run's keypoint_names.json puts them back.
    mesh = load_obj(root / "renders" / "mesh.obj")
    order = np.roll(np.arange(len(mesh.vertices)), 5)
    rolled = root / "mesh_rolled.obj"
    save_obj(rolled, Mesh(mesh.vertices[order], np.argsort(order)[mesh.faces],
                          [mesh.vertex_names[k] for k in order]))
    predictor = KeypointPredictor.from_run(model.parent, camera=root / "renders" / "camera.json", mesh=rolled)
    np.testing.assert_allclose(predictor.object_model.keypoints_3d, mesh.vertices, atol=1e-9)
    images = sorted((root / "renders" / "images" / "test").iterdir())
    results = predictor.predict(images)
    assert len(results) == len(images) == 3
    # use.max_overlays = 2: the first two images' figures (drawn while the model ran on the third), no more.
    for folder, suffix in (("overlays", ".png"), ("heatmaps", ".png"), ("original_overlays", ".jpg")):
        assert sorted(p.name for p in (out_dir / folder).iterdir()) == [p.name + suffix for p in images[:2]], folder
    for path, result in zip(images, results):
        record = json.loads((out_dir / "per_image" / f"{path.name}.json").read_text())
        assert list(result.keypoint_names) == record["keypoint_names"]
        np.testing.assert_allclose(result.keypoints_original, record["keypoints_original"], atol=1e-3)
        np.testing.assert_allclose(result.confidence, record["confidence"], atol=1e-4)
        np.testing.assert_array_equal(result.visible_pred, record["visible_pred"])
        assert (result.pose is None) == (record["pose"] is None)
        if result.pose is not None:
            np.testing.assert_allclose(result.pose.q, record["pose"]["q_vbs2tango"], atol=1e-6)


def test_use_reads_what_the_run_was_trained_with(workspace, train_run):
    """No --config: the 64x64 input, the ResNet-18 backbone and the training settings
    come from the run's config.json, and the numbers are those with the config given."""
    root, config_path = workspace
    model = train_run("tensorflow")[0] / "best.keras"
    given_dir, out_dir = root / "pred_config_given", root / "pred_run_config"
    check(run_script(S2 / "use_vis.py", "--config", config_path, "--model", model, "--output-dir", given_dir,
                     "--quiet"))
    used = check(run_script(S2 / "use_vis.py", "--model", model, "--cache-dir", root / "cache", "--output-dir",
                            out_dir, "--quiet"))
    assert "trained with: backbone resnet18, input 64x64, SoftArgMax beta 15" in used.stdout
    summary = json.loads((out_dir / "evaluation_summary.json").read_text())
    assert summary["config"]["model"]["backbone"] == "resnet18" and summary["config"]["data"]["input_size"] == [64, 64]
    assert (summary["config"]["train"]["epochs"], summary["config"]["train"]["batch_size"]) == (1, 3)
    assert summary["model"]["run_config"] == str(model.parent / "config.json")
    given = json.loads((given_dir / "evaluation_summary.json").read_text())
    for key in ("input_frame", "original_frame", "input_frame_argmax_refine", "visibility"):
        assert summary[key] == given[key], key


def test_bad_input_is_one_line_naming_the_file(workspace, train_run, tmp_path):
    root, config_path = workspace
    # A corrupt image.
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    (data / "train.json").write_text(json.dumps([{"filename": "broken.jpg", "keypoints": [[1, 2]]}]))
    result = run_script(S2 / "preprocess_vis.py", "--config", config_path, "--data-dir", data,
                        "--cache-dir", tmp_path / "cache", "--quiet")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "broken.jpg" in result.stderr
    # A model used with a config that contradicts what it was trained with (its config.json).
    model = train_run("tensorflow")[0] / "best.keras"
    result = run_script(S2 / "use_vis.py", "--config", config_path, "--model", model, "--quiet",
                        "--set", "data.input_size=[128,128]", "--set", "data.heatmap_size=[64,64]")
    # One line, before Keras is imported (no TensorFlow start-up lines).
    assert result.returncode == 2 and result.stderr.strip() == (
        f"error: {model.parent / 'config.json'}: data.input_size=[128, 128] (--set data.input_size=[128,128]) "
        "contradicts the run, trained with data.input_size=[64, 64]; leave it out: it is read from the run")
    # A cache from another config.
    result = run_script(S2 / "train_vis.py", "--config", config_path, "--set", "data.sigma=3", "--quiet")
    assert result.returncode == 2
    assert "Y_data.npz" in result.stderr and "sigma" in result.stderr and "Traceback" not in result.stderr
    # A model path that is no model, and a cache folder that is a file.
    (tmp_path / "notes.keras").write_text("not a model")
    result = run_script(S2 / "use_vis.py", "--config", config_path, "--model", tmp_path / "notes.keras", "--quiet")
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'notes.keras'}: not a Keras model file (.keras, as train_vis.py writes)")
    result = run_script(S2 / "preprocess_vis.py", "--config", config_path, "--cache-dir", tmp_path / "notes.keras",
                        "--quiet")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'notes.keras' / 'train'}: Not a directory"


@pytest.mark.parametrize("script", ["render_vis.py", "preprocess_vis.py", "train_vis.py", "use_vis.py",
                                    "score_poses.py"])
def test_help_from_the_folder_and_as_a_module(script, tmp_path):
    # From its own folder, with no PYTHONPATH: `common` is found through the editable install
    # (`make install`), which must be this checkout's.
    where = check(run_script("-c", "import common; print(common.__file__)", cwd=tmp_path, pythonpath=False))
    if not where.stdout.strip().startswith(str(ROOT)):
        pytest.skip(f"the installed package is another checkout's ({where.stdout.strip()})")
    check(run_script(script, "--help", cwd=S2, pythonpath=False))
    module = f"stage2_visible_keypoints.{script[:-3]}"
    out = check(run_script("-m", module, "--help"))
    assert "usage" in out.stdout
