"""Interchangeable keypoints in stage 2 (issue 25): the pose step tries the allowed
assignments, mesh symmetries name their groups, evaluation adds matched figures, and a
model compiled with groups saves and loads in safe mode."""

import dataclasses

import keras
import numpy as np
import pytest

from common.errors import DataError
from common.losses import InterchangeableLoss
from stage2_visible_keypoints.camera import body_to_camera, project_points, speed_camera
from stage2_visible_keypoints.config import Stage2Config
from stage2_visible_keypoints.mesh import Mesh, symmetry_warnings
from stage2_visible_keypoints.pose import pose_errors, solve_pnp, solve_pnp_groups

BOX = [[x, y, z] for x in (-0.5, 0.5) for y in (-0.4, 0.4) for z in (-0.3, 0.3)]
POINTS = np.array(BOX + [[0.9, 0.1, 0.2], [-0.7, 0.3, 0.0], [0.2, -0.6, 0.5], [0.0, 0.0, 0.9]])
Q = np.array([0.7, 0.2, -0.5, 0.3]) / np.linalg.norm([0.7, 0.2, -0.5, 0.3])
R = np.array([0.3, -0.2, 9.0])


def test_pose_step_tries_the_allowed_assignments_and_keeps_the_best_reprojection():
    camera = speed_camera()
    xy = project_points(body_to_camera(POINTS, Q, R), camera)
    xy[[3, 11]] = xy[[11, 3]]  # the model named two interchangeable keypoints the other way round
    plain = solve_pnp(POINTS, xy, camera)
    assert plain.reprojection_px > 1.0 and pose_errors(plain.q, plain.r, Q, R)["rotation_deg"] > 1.0
    best = solve_pnp_groups(POINTS, xy, camera, groups=[(3, 11), (0, 1, 2)])  # 2 x 6 assignments
    errors = pose_errors(best.q, best.r, Q, R)
    assert errors["rotation_deg"] < 1e-6 and best.reprojection_px < 1e-6
    assert best.assignment.tolist() == [0, 1, 2, 11, 4, 5, 6, 7, 8, 9, 10, 3]
    # Without groups it is solve_pnp, the identity assignment.
    same = solve_pnp_groups(POINTS, xy, camera)
    assert same.reprojection_px == pytest.approx(plain.reprojection_px) and same.assignment.tolist() == list(range(12))


def test_a_mesh_symmetry_names_the_groups_to_declare():
    mesh = Mesh(BOX, [[0, 1, 2]], [f"corner_{i}" for i in range(8)])
    (message,) = symmetry_warnings(mesh)
    assert "declare data.interchangeable: [[" in message
    groups = eval(message.split("data.interchangeable: ")[1])  # noqa: S307 (our own message, a list literal)
    # A 180-degree turn of a box pairs its 8 corners.
    assert sorted(len(g) for g in groups) == [2, 2, 2, 2] and sorted(sum(groups, [])) == sorted(mesh.vertex_names)


def test_evaluation_reports_matched_beside_raw_figures():
    from stage2_visible_keypoints.pipeline import evaluate

    cfg = Stage2Config()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, interchangeable=(("a", "b"),)))
    truth = np.array([[[0.25, 0.5], [0.75, 0.5], [0.5, 0.25]]])  # 128 x 128 input: (32, 64), (96, 64), (64, 32)
    pred = truth[:, [1, 0, 2]]
    y = {"xy_norm": truth, "visible": np.ones((1, 3), bool), "transforms": np.array([[0.5, 0.5, 0.0, 0.0]]),
         "xy_original": truth * 256}
    logits = np.full((1, 64, 64, 3), -5.0, np.float32)
    summary = evaluate(pred, np.ones((1, 3)), logits, y, cfg, ["a", "b", "c"])
    assert summary["input_frame"]["euclidean"]["mean"] == pytest.approx(128 / 3)  # 64 px on two of three
    assert summary["matched"]["input_frame"]["euclidean"]["mean"] == pytest.approx(0.0)
    assert summary["matched"]["original_frame"]["euclidean"]["mean"] == pytest.approx(0.0)
    assert summary["matched"]["groups"] == [["a", "b"]]
    with pytest.raises(DataError, match="no keypoint named 'a'"):
        evaluate(pred, np.ones((1, 3)), logits, y, cfg, ["x", "b", "c"])


def test_a_model_compiled_with_groups_saves_and_loads_in_safe_mode(tmp_path):
    from stage2_visible_keypoints.model import compile_model

    # A stand-in with the stage-2 outputs (the ResNet would cost seconds): compile_model only names them.
    data = dataclasses.replace(Stage2Config().data, input_size=(32, 32), heatmap_size=(16, 16))
    images = keras.Input((16, 16, 1))
    logits = keras.layers.Conv2D(3, 1, name="heatmap_logits")(images)
    pooled = keras.layers.Flatten()(keras.layers.GlobalAveragePooling2D()(logits))
    outputs = {"heatmap_logits": logits, "keypoints": keras.layers.Reshape((3, 2), name="keypoints")(
        keras.layers.Dense(6)(pooled)), "confidence": keras.layers.Dense(3, name="confidence")(pooled)}
    model = compile_model(keras.Model(images, outputs), data, Stage2Config().train, keras.optimizers.Adam(1e-3),
                          jit_compile=False, groups=[(0, 2)])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    losses = loaded.loss if isinstance(loaded.loss, dict) else dict(zip(loaded.output_names, loaded.loss))
    restored = [loss for loss in losses.values() if isinstance(loss, InterchangeableLoss)]
    assert len(restored) == 2 and all(loss.groups == ((0, 2),) for loss in restored)
