"""Run by tests/common/test_distribute_parts.py: each part's own trainer (its train_*.py
`main`, with the flags a user gives) on the test's tiny cache, as one process of a
two-process multi_process run or alone, recording per part the final weights and the cache
rows each training batch read. One process trains every part given (one start-up).

    python parts_driver.py WORK OUT one|multi_process:HOST:PORT:PROCESS_ID PART...

WORK/PART/config.yaml is the part's config (train.batch_size and learning_rate per replica);
alone, both are twice that: the global batch of two processes and its rate. Writes OUT/PART/ (the run) and
OUT/records/PART_P.npz (weights w0, w1, ..., before training i0, i1, ..., and rows of batch i as b0, b1, ...; P: the
process).
"""

import sys
from pathlib import Path

import numpy as np

import common.training as training

SCRIPTS = {"stage2": "stage2_visible_keypoints.train_vis", "ssd": "detection.ssd.train_det",
           "centres": "detection.centres.train_centres", "baselines": "baselines.train_base"}
record = {}


def _recorded_train(model, *args, **kwargs):
    record["initial"] = [np.asarray(w) for w in model.get_weights()]
    summary = _train(model, *args, **kwargs)
    record["weights"] = [np.asarray(w) for w in model.get_weights()]
    return summary


def _recorded_batch_indices(self, index):
    rows = _indices(self, index)
    if self.shuffle:  # the training batches (validation is read in order); an index read twice keeps one entry
        record.setdefault("batches", {})[index] = rows
    return rows


# Before a part's pipeline is imported (its `from common.training import train` takes this one).
_train, training.train = training.train, _recorded_train
_indices, training.ArrayBatches.batch_indices = training.ArrayBatches.batch_indices, _recorded_batch_indices


def main(work, out, mode, parts):
    import importlib

    import yaml

    from common import cli

    if mode == "one":
        flags, process = [], 0
    else:
        _, host, port, process = mode.split(":")
        flags = ["--distribution", "multi_process", "--coordinator", f"{host}:{port}", "--num-processes", "2",
                 "--process-id", process]
    for part in parts:
        config = Path(work) / part / "config.yaml"
        train = yaml.safe_load(config.read_text())["train"]
        replicas = 1 if flags else 2  # alone: the global batch and rate of two (train.lr_scaling: linear)
        argv = ["--config", str(config), "--output-dir", str(Path(out) / part), "--quiet", *flags,
                "--batch-size", str(replicas * train["batch_size"]),
                "--learning-rate", str(replicas * train["learning_rate"])]
        record.clear()
        code = cli.run(importlib.import_module(SCRIPTS[part]).main, argv)
        if code:
            return code
        arrays = {f"w{i}": w for i, w in enumerate(record["weights"])}
        arrays.update({f"i{i}": w for i, w in enumerate(record["initial"])})
        arrays.update({f"b{i}": rows for i, rows in record["batches"].items()})
        (Path(out) / "records").mkdir(parents=True, exist_ok=True)
        np.savez(Path(out) / "records" / f"{part}_{process}.npz", **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
