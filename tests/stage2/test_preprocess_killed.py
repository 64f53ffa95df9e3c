"""SIGKILL of preprocess_vis.py --workers 2 at a random point of its run: the previous
cache stays readable, no process or temporary file outlives it, and a rerun writes the
arrays an uninterrupted run writes."""

import dataclasses
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data_io import is_temp_name
from stage2_visible_keypoints.data import load_cache, preprocess
from tests.common.test_parallel import living_in_group, wait_until_gone
from tests.scripts import BLOCK_TENSORFLOW, ROOT
from tests.stage2.test_data import keypoints_for, small_config, write_labels

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
COUNT = 160


def _data(folder):
    rng = np.random.default_rng(0)
    (folder / "images/train").mkdir(parents=True)
    records = []
    for i in range(COUNT):  # 8x5 random blocks, enlarged to 320x200: distinct images, small PNGs
        blocks = rng.integers(0, 256, (5, 8, 3), dtype=np.uint8)
        Image.fromarray(blocks).resize((320, 200), Image.NEAREST).save(folder / f"images/train/img{i:03d}.png")
        records.append({"filename": f"img{i:03d}.png", "keypoints": keypoints_for(i % 3),
                        "visible": [True, True, True, False]})
    write_labels(folder, records)


def test_a_killed_preprocess_leaves_no_process_no_temporary_and_reruns_to_the_same_cache(tmp_path):
    _data(tmp_path / "data")
    cfg = small_config(tmp_path)
    preprocess(dataclasses.replace(cfg, sigma=2.0), "train", progress=False)  # the previous cache (another sigma)
    previous = np.array(load_cache(cfg.cache_dir, "train").images)
    expected_cfg = dataclasses.replace(cfg, cache_dir=str(tmp_path / "uninterrupted"))
    preprocess(expected_cfg, "train", progress=False)
    settings = [f"data.{key}={value}" for key, value in (("canvas_size", "[320,180]"), ("crop_size", "[160,160]"),
                                                          ("input_size", "[64,64]"), ("heatmap_size", "[32,32]"),
                                                          ("sigma", 1.0))]
    command = [sys.executable, "-c", BLOCK_TENSORFLOW, str(ROOT / "stage2_visible_keypoints/preprocess_vis.py"),
               "--data-dir", cfg.data_dir, "--cache-dir", cfg.cache_dir, "--workers", "2",
               *(arg for setting in settings for arg in ("--set", setting))]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    target = random.Random().randint(1, COUNT - 20)  # the image count at which it is killed
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        seen, text = 0, b""
        while seen < target:  # the progress bar says how far it got
            data = os.read(proc.stderr.fileno(), 4096)
            assert data, f"it ended before image {target}: {text[-2000:]!r}"
            text += data
            counts = re.findall(rb"(\d+)/%d" % COUNT, text)
            seen = int(counts[-1]) if counts else 0
        # The parent and at least one worker (on a loaded machine the pool's second worker may
        # not have started yet: it is started when work is queued for it).
        deadline = time.monotonic() + 60
        while len(living_in_group(proc.pid)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(living_in_group(proc.pid)) >= 2, "no worker to outlive it"
        proc.kill()
        proc.wait()
        assert wait_until_gone(proc.pid) == [], f"processes left after a kill at image {seen}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    folder = Path(cfg.cache_dir) / "train"
    np.testing.assert_array_equal(load_cache(cfg.cache_dir, "train").images, previous)  # still readable, unchanged
    assert [p.name for p in folder.iterdir() if is_temp_name(p.name)], "the kill left no temporary: too late?"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "rebuilding the cache: " in rerun.stdout and "sigma=2.0 (config: 1.0)" in rerun.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["X_data.npy", "Y_data.npz"]  # the temporary went
    got, want = (load_cache(c, "train", expected_cfg) for c in (cfg.cache_dir, expected_cfg.cache_dir))
    np.testing.assert_array_equal(got.images, want.images)
    assert sorted(got.y) == sorted(want.y)
    for key in want.y:
        np.testing.assert_array_equal(got.y[key], want.y[key], err_msg=key)
