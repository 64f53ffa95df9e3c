"""bench/results_io.py: every result JSON records the command, the device and the code it ran on."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))  # bench scripts import results_io as a sibling module

import results_io  # noqa: E402


def _git(path, *args):
    subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(path), "PATH": "/usr/bin:/bin"})


def test_git_state_records_the_commit_and_whether_tracked_files_changed(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-q", "-m", "one")
    commit = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()

    assert results_io.git_state(tmp_path) == {"commit": commit, "dirty": False}
    (tmp_path / "output.json").write_text("{}")  # an untracked output does not make the code dirty
    assert results_io.git_state(tmp_path) == {"commit": commit, "dirty": False}
    (tmp_path / "a.py").write_text("x = 2\n")
    assert results_io.git_state(tmp_path) == {"commit": commit, "dirty": True}


def test_git_state_is_none_outside_a_checkout(tmp_path):
    assert results_io.git_state(tmp_path) is None


def test_device_names_the_cpu_model_on_a_cpu():
    device = results_io.device_name()
    kind, _, name = device.partition(": ")
    assert kind in ("cpu", "gpu", "cuda", "rocm", "tpu") and name
    if kind == "cpu":
        assert name == results_io.cpu_model() and name.lower() != "cpu"


def test_write_result_adds_the_run_and_the_settings(tmp_path):
    class Args:
        pass

    args = Args()
    args.output_dir, args.samples = tmp_path, 3
    path = results_io.write_result(tmp_path / "r.json", {"rows": [1, 2]}, args=args, argv=["--samples", "3"])
    record = json.loads(path.read_text())

    assert list(record) == ["run", "settings", "rows"]
    assert record["rows"] == [1, 2] and record["settings"] == {"output_dir": str(tmp_path), "samples": 3}
    run = record["run"]
    # In-process call: the command names the calling file with the argv main() got.
    assert run["command"] == "python tests/test_bench_results.py --samples 3"
    assert run["backend"] == keras.backend.backend() and run["device"] == results_io.device_name()
    assert run["precision"] == keras.config.dtype_policy().name
    assert run["cpu_count"] >= 1 and 1 <= run["cpus_usable"] <= run["cpu_count"]
    assert run["packages"]["keras"] == keras.__version__ and run["packages"]["numpy"]
    assert run["git"] == results_io.git_state()  # this checkout's commit, or None in an exported tree


def test_write_result_settings_win_over_args_and_clashing_keys_are_refused(tmp_path):
    path = results_io.write_result(tmp_path / "r.json", {"x": 1}, settings={"config": {"a": 1}})
    assert json.loads(path.read_text())["settings"] == {"config": {"a": 1}}
    with pytest.raises(ValueError, match="run"):
        results_io.write_result(tmp_path / "r.json", {"run": 1})
    with pytest.raises(ValueError, match="settings"):
        results_io.write_result(tmp_path / "r.json", {"settings": 1}, settings={})


def test_write_result_is_atomic(tmp_path):
    path = tmp_path / "r.json"
    results_io.write_result(path, {"version": 1})
    with pytest.raises(TypeError, match="not JSON serialisable"):  # fails half-way through the dump
        results_io.write_result(path, {"version": 2, "rows": [1, object()]})
    # The earlier file is whole and nothing half-written is left beside it.
    assert json.loads(path.read_text())["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_bench_script_writes_its_file_into_output_dir(tmp_path):
    import softargmax_bias

    softargmax_bias.main(["--sizes", "16", "--peaks", "1", "--noise", "0", "--samples", "4",
                          "--output-dir", str(tmp_path)])
    record = json.loads((tmp_path / "softargmax_bias.json").read_text())
    assert record["run"]["command"].startswith("python bench/softargmax_bias.py --sizes 16")
    assert record["settings"]["samples"] == 4 and len(record["rows"]) == 3  # one cell, three decoders


def test_the_curve_figure_draws_every_row_and_refuses_a_file_without_rows(tmp_path, capsys):
    import plot_accuracy_curve

    rows = [{"images_seen": n, "euclidean_mean_px": 30.0 / n, "euclidean_median_px": 20.0 / n, "train_loss": 1.0 / n,
             "pck": {"2": 0.1 * n, "5": 0.15 * n, "10": 0.2 * n}} for n in (1, 2, 3)]
    source = tmp_path / "run.json"
    source.write_text(json.dumps({"rows": rows}))
    assert plot_accuracy_curve.main([str(source)]) == 0
    assert (tmp_path / "run_curve.png").stat().st_size > 1000

    source.write_text(json.dumps({"rows": []}))
    from common import cli

    assert cli.run(plot_accuracy_curve.main, [str(source)]) == 2
    assert "run.json" in capsys.readouterr().err
