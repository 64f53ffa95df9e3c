"""train.distribution (common.distribute): several devices give one device's trajectory on
the same global batch, under TensorFlow (MirroredStrategy over two logical CPUs) and JAX
(DataParallel over two host devices); two JAX processes on 127.0.0.1 (gloo collectives) end
with the same weights as one device, after one of them was killed and both restarted."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from common import distribute
from common.config import TrainingConfig
from common.errors import DataError
from tests.scripts import BLOCK_TENSORFLOW, ROOT

DRIVER = ROOT / "tests" / "common" / "distributed_driver.py"
# One device with a global batch of 8 at rate 0.02, and two replicas of 4 at 0.01 per replica
# (the linear rule doubles it): the same maths if batches are split and gradients summed right.
ONE, TWO = "none:8:0.02", "data_parallel:4:0.01"


def _environment(backend, **extra):
    env = {key: value for key, value in os.environ.items() if not key.startswith("KERAS_DISTRIBUTION_")}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT), **extra)
    return env


def _runs(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _command(backend):
    # Under JAX as on the GPU machine: TensorFlow unimportable (and not loaded: a quicker start).
    return [sys.executable] + (["-c", BLOCK_TENSORFLOW] if backend == "jax" else []) + [str(DRIVER)]


def _drive(tmp_path, backend, *specs, **env):
    out = subprocess.run(_command(backend) + [str(tmp_path), *specs], env=_environment(backend, **env),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return _runs(out.stdout)


def _assert_same_run(one, two):
    assert one["global_batch"] == two["global_batch"] == 8
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert two["distribution"]["learning_rate_factor"] == 2.0
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory):
    """One device and DataParallel over two host devices, in one JAX process."""
    return _drive(tmp_path_factory.mktemp("jax"), "jax", ONE, TWO,
                  XLA_FLAGS="--xla_force_host_platform_device_count=2")


def test_mirrored_strategy_on_two_logical_cpus_follows_one_device(tmp_path):
    one, two = _drive(tmp_path, "tensorflow", ONE, TWO)
    _assert_same_run(one, two)
    assert len(one["losses"]) == 4  # 2 epochs of 2 steps


def test_jax_data_parallel_on_two_devices_follows_one_device(jax_runs):
    one, two = jax_runs
    _assert_same_run(one, two)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes(tmp_path, **env):
    """Two JAX processes of one multi_process run (one CPU device each) on a free loopback port."""
    address = f"127.0.0.1:{_free_port()}"
    return [subprocess.Popen(_command("jax") + [str(tmp_path), "multi_process:4:0.01"],
                             env=_environment("jax", KERAS_DISTRIBUTION_JOB_ADDRESSES=address,
                                              KERAS_DISTRIBUTION_NUM_PROCESSES="2",
                                              KERAS_DISTRIBUTION_PROCESS_ID=str(i), **env),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]


def test_two_processes_resume_after_one_is_killed_and_end_as_one_device(tmp_path, jax_runs):
    # Process 1 dies as epoch 2 begins; process 0, left waiting in a collective, is stopped.
    first = _processes(tmp_path, DIE_IN_PROCESS="1", DIE_AT_EPOCH="1")
    try:
        assert first[1].wait(timeout=240) == 3, first[1].stderr.read()[-3000:]
        time.sleep(1)
    finally:
        for process in first:
            process.kill()
            process.communicate()
    state = json.loads((tmp_path / "0" / "backup" / "state.json").read_text())
    assert state["epoch"] == 1 and not (tmp_path / "0" / "model.keras").exists()

    second = _processes(tmp_path)
    runs = []
    for process in second:
        stdout, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr[-3000:]
        runs += _runs(stdout)
    assert [run["process"] for run in runs] == [0, 1]
    assert [run["epochs_run"] for run in runs] == [1, 1]  # both resumed after epoch 1
    assert runs[0]["distribution"] == {"mode": "multi_process", "replicas": 2, "processes": 2, "global_batch": 8,
                                       "learning_rate_factor": 2.0}
    for a, b in zip(runs[0]["weights"], runs[1]["weights"]):
        np.testing.assert_array_equal(a, b)
    one = jax_runs[0]  # two processes reading half a batch each = one device reading all of it
    for a, b in zip(one["weights"], runs[0]["weights"]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    # Process 0 alone wrote the run's files; the finished run left no backup.
    assert (tmp_path / "0" / "model.keras").is_file() and not (tmp_path / "0" / "backup").exists()
    assert len((tmp_path / "0" / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs


def test_learning_rate_rules():
    assert distribute.learning_rate_factor("linear", 8) == 8.0
    assert distribute.learning_rate_factor("sqrt", 4) == 2.0
    assert distribute.learning_rate_factor("none", 8) == 1.0
    with pytest.raises(ValueError, match="distribution must be none|data_parallel|multi_process"):
        TrainingConfig(distribution="mirrored")


def test_each_process_reads_its_own_rows_of_every_global_batch(monkeypatch):
    from common.training import ArrayBatches

    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    targets = {"kp": np.arange(10, dtype=np.float32)}
    rows = []
    for index in range(2):  # 2 processes x 1 device, 2 images per replica: global batches of 4
        monkeypatch.setattr(distribute, "_current", distribute.Replicas("multi_process", 2, 2, index, 2))
        batches = ArrayBatches(images, targets, np.arange(10), batch_size=2, shuffle=True, seed=5)
        rows.append([batches[i][1]["kp"].tolist() for i in range(len(batches))])
    # 10 images: 2 batches of 4 and a last of 2 (a multiple of the 2 replicas), halves per process
    assert [len(b) for b in rows[0]] == [2, 2, 1] and [len(b) for b in rows[1]] == [2, 2, 1]
    seen = sorted(sum(rows[0] + rows[1], []))
    assert seen == list(range(10))


def test_multi_process_under_tensorflow_names_the_upstream_issue():
    pytest.importorskip("tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow backend only")
    with pytest.raises(DataError, match=r"keras-team/keras#20585.*KERAS_BACKEND=jax"):
        with distribute.scope(TrainingConfig(distribution="multi_process")):
            pass


@dataclasses.dataclass
class _Config:
    train: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)


def test_peer_flags_reach_keras_distribution_initialize(monkeypatch):
    import argparse

    from common import cli

    parser = argparse.ArgumentParser()
    shortcuts = cli.add_training_arguments(parser)
    args = parser.parse_args(["--distribution", "multi_process", "--coordinator", "10.0.0.1:1234",
                              "--num-processes", "2", "--process-id", "1"])
    monkeypatch.setattr(distribute, "_peers", {})
    cfg = cli.config_from_args(_Config, args, shortcuts)
    assert cfg.train.distribution == "multi_process"
    assert distribute._peers == {"job_addresses": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
