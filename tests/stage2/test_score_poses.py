"""score_poses.py: SPEED errors of a poses file against labels, on hand-made poses."""

import json

import numpy as np
import pytest

from common.errors import DataError
from stage2_visible_keypoints.camera import dcm2quat, quat2dcm
from stage2_visible_keypoints.data import score_poses
from tests.scripts import ROOT, check, run_script

Q = np.array([0.8, 0.1, -0.5, 0.3]) / np.linalg.norm([0.8, 0.1, -0.5, 0.3])


def _turned(q, degrees):
    """q followed by a turn of `degrees` about the body z axis."""
    a = np.radians(degrees)
    turn = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return dcm2quat(quat2dcm(q) @ turn)


def _write(path, records, q_field="q_vbs2tango"):
    path.write_text(json.dumps([{"filename": f, q_field: list(q), "r_Vo2To_vbs_true": list(r)}
                                for f, q, r in records]))
    return path


@pytest.fixture
def files(tmp_path):
    labels = _write(tmp_path / "test.json", [("a.jpg", Q, [0.0, 0.0, 10.0]), ("b.jpg", Q, [1.0, 0.0, 20.0]),
                                            ("c.jpg", Q, [0.0, 0.0, 5.0])], q_field="q_vbs2tango_true")  # SPEED+
    # a: turned 10 deg, 0.1 m off at 10 m; b: exact, and -q (the same rotation); c: no pose; d: not labelled.
    pred = _write(tmp_path / "poses.json", [("a.jpg", _turned(Q, 10.0), [0.1, 0.0, 10.0]),
                                            ("b.jpg", -Q, [1.0, 0.0, 20.0]), ("d.jpg", Q, [0.0, 0.0, 1.0])])
    return pred, labels


def test_errors_are_the_speed_metric_over_the_solved_images(files):
    summary = score_poses(*files)
    assert (summary["images"], summary["solved"], summary["predicted_not_labelled"]) == (3, 2, 1)
    assert summary["solved_fraction"] == pytest.approx(2 / 3)
    assert summary["rotation_deg"]["mean"] == pytest.approx(5.0, abs=1e-6)  # (10 + 0) / 2
    assert summary["translation_m"]["mean"] == pytest.approx(0.05)
    assert summary["translation_rel"]["mean"] == pytest.approx(0.005)  # (0.1 / 10 + 0) / 2
    assert summary["speed_score"]["mean"] == pytest.approx((np.radians(10.0) + 0.01) / 2, abs=1e-8)


def test_the_script_prints_and_writes_the_scores(files, tmp_path):
    pred, labels = files
    out = check(run_script(ROOT / "stage2_visible_keypoints" / "score_poses.py", "--pred", pred, "--labels", labels))
    assert "2 of 3 labelled images have a pose (1 predicted images are not labelled)" in out.stdout
    assert "SPEED score" in out.stdout
    written = json.loads((tmp_path / "poses_scores.json").read_text())
    assert written["speed_score"]["mean"] == pytest.approx((np.radians(10.0) + 0.01) / 2, abs=1e-8)


def test_bad_files_are_one_line_errors(files, tmp_path):
    pred, labels = files
    records = json.loads(pred.read_text())
    del records[1]["r_Vo2To_vbs_true"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"bad.json: record 1 \(b.jpg\): .*r_Vo2To_vbs_true"):
        score_poses(bad, labels)
    records[1] = {"filename": "a.jpg", "q_vbs2tango": list(Q), "r_Vo2To_vbs_true": [0, 0, 1]}
    bad.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"record 1 \(a.jpg\): the file name appears twice"):
        score_poses(bad, labels)
    records = [{"filename": "a.jpg", "q_vbs2tango": [1, 0, 0], "r_Vo2To_vbs_true": [0, 0, 1]}]
    bad.write_text(json.dumps(records))
    with pytest.raises(DataError, match="field 'q_vbs2tango' must be 4 finite numbers"):
        score_poses(bad, labels)
    bad.write_text(json.dumps([["a.jpg"]]))
    with pytest.raises(DataError, match="record 0: expected a JSON object"):
        score_poses(bad, labels)
    bad.write_text(json.dumps([{"filename": None, "q_vbs2tango": list(Q), "r_Vo2To_vbs_true": [0, 0, 1]}]))
    with pytest.raises(DataError, match="record 0: field 'filename' must be a non-empty string"):
        score_poses(bad, labels)
    zero = _write(tmp_path / "zero.json", [("a.jpg", Q, [0.0, 0.0, 0.0])])
    with pytest.raises(DataError, match="zero.json: a.jpg: field 'r_Vo2To_vbs_true' is zero"):
        score_poses(pred, zero)
    other = _write(tmp_path / "other.json", [("z.jpg", Q, [0.0, 0.0, 1.0])])
    with pytest.raises(DataError, match="no predicted file name is in the labels"):
        score_poses(other, labels)
    assert score_poses(_write(tmp_path / "none.json", []), labels)["solved"] == 0  # nothing solved: not an error
    out = run_script(ROOT / "stage2_visible_keypoints" / "score_poses.py", "--pred", other, "--labels", labels)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "other.json" in out.stderr
