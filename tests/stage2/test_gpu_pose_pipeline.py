"""bench/gpu_pose_pipeline.sh calls bench/pose_pipeline.py with flags it has: the script runs
here with a Python that only records its arguments, and each recorded call goes through the
benchmark's own parser and configs (a renamed flag or a config key that does not exist fails)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))  # the bench scripts import their siblings by name

import pose_pipeline  # noqa: E402

RECORDER = """
import json, sys
with open(sys.argv[0] + ".calls", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def _recorded_calls(tmp_path, **env):
    recorder = tmp_path / "record.py"
    recorder.write_text(RECORDER)
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("TRAIN_", "TEST_"))}
    environment.update(PYTHON=f"{sys.executable} {recorder}", OUT=str(tmp_path / "out"),
                       WORK=str(tmp_path / "work"), **env)
    result = subprocess.run(["bash", "bench/gpu_pose_pipeline.sh"], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [json.loads(line) for line in Path(f"{recorder}.calls").read_text().splitlines()]
    return [call[1:] for call in calls if call[0] == "bench/pose_pipeline.py"]


def test_the_gpu_script_calls_the_benchmark_with_its_flags(tmp_path, monkeypatch):
    calls = _recorded_calls(tmp_path, DEADLINE="560")
    monkeypatch.chdir(ROOT)  # the benchmark reads configs/ from the repo root
    steps = {}
    for argv in calls:
        args = pose_pipeline.build_parser().parse_args(argv)  # exits on an unknown flag
        det_cfg, kp_cfgs = pose_pipeline.configs(args)  # raises on a key the configs lack
        steps[args.only] = (args, det_cfg, kp_cfgs)
    assert sorted(steps) == sorted(pose_pipeline.STEPS)

    args, det_cfg, kp_cfgs = steps["stage2_box"]
    assert args.train_images == 6000 and args.test_images == 500 and args.workers == os.cpu_count()
    # Mixed precision and the budgets reach the configs the trainings use.
    for cfg in (det_cfg, *kp_cfgs.values()):
        assert cfg.train.precision == "mixed_bfloat16" and cfg.train.lr_schedule == "cosine"
        assert 0 < cfg.train.budget_minutes * 60 < 560 and cfg.train.budget_images > 0
    assert kp_cfgs["box"].data.crop == "box" and kp_cfgs["centre"].data.crop == "centre"
    assert kp_cfgs["box"].train.batch_size == 128 and det_cfg.train.batch_size == 64
    evaluate = steps["evaluate"][0]
    assert 0 < evaluate.eval_minutes * 60 < 560 and evaluate.figures > 0
    # Training leaves the evaluation its share (EVAL_SECONDS, 100 s by default).
    assert det_cfg.train.budget_minutes * 60 <= 560 - 100


def test_a_shorter_deadline_shortens_the_budgets(tmp_path):
    def minutes(deadline):
        calls = _recorded_calls(tmp_path / deadline, DEADLINE=deadline)
        return [pose_pipeline.build_parser().parse_args(argv).kp_minutes for argv in calls if "stage2_box" in argv][0]

    (tmp_path / "300").mkdir(), (tmp_path / "560").mkdir()
    assert minutes("300") < minutes("560")
