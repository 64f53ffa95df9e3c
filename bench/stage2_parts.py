"""The stage-2 accuracy benchmark's data: renders and caches, in parts, optionally in the background.

`bench/stage2_accuracy.py` imports this module; run as a script it is the background
child of `stage2_accuracy.py --part-images`, which renders and preprocesses the training
parts after the first while the model trains:

    python bench/stage2_parts.py --work-dir runs/bench --train-images 50000 --part-images 5000 --from-part 1

and lists each finished part in `<work-dir>/parts_ready.json`. It imports numpy, Pillow and
the stage-2 data code only, no Keras: each process pool it starts re-imports this module
in every worker, which stays quick. It exits when its parent does.
"""

import argparse
import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np

from common.data_io import load_json, save_json
from stage2_visible_keypoints.mesh import load_obj
from common.parallel import default_workers
from stage2_visible_keypoints.config import DataConfig
from stage2_visible_keypoints.data import preprocess
from stage2_visible_keypoints.render import DEFAULT_MESH, RenderConfig, render_split

READY_FILE = "parts_ready.json"


def data_config(work_dir):
    """The stage-2 data config with the benchmark's renders and caches under `work_dir`."""
    work_dir = Path(work_dir)
    return dataclasses.replace(DataConfig(), data_dir=str(work_dir / "renders"), cache_dir=str(work_dir / "cache"))


def train_parts(train_images, part_images=0):
    """[(split, images)] of the training renders: "train", then with `part_images` the
    parts "train_part2", "train_part3", ... of that many (the split's name seeds its images)."""
    size = part_images or train_images
    counts = [min(size, train_images - start) for start in range(0, train_images, size)]
    return [("train" if k == 0 else f"train_part{k + 1}", count) for k, count in enumerate(counts)]


def render_if_missing(renders, split, num_images, seed, workers, progress=True):
    """Render a split unless one with the same size, seed and mesh is already there."""
    done = renders / f"render_config_{split}.json"  # written last by render_split
    mesh = renders / "mesh.obj"
    same_mesh = mesh.is_file() and np.array_equal(load_obj(mesh).vertices, load_obj(DEFAULT_MESH).vertices)
    if (renders / f"{split}.json").is_file() and done.is_file() and same_mesh:
        previous = load_json(done)
        if (previous.get("num_images"), previous.get("seed")) == (num_images, seed):
            return False
    render_split(renders, RenderConfig(num_images=num_images, seed=seed), split=split, workers=workers,
                 progress=progress)
    return True


def prepare(data_cfg, splits, workers, progress=True, ready_file=None):
    """Render (unless there) and preprocess each (split, images, seed); with `ready_file`,
    list the finished splits in it after each one."""
    renders, done = Path(data_cfg.data_dir), []
    for split, count, seed in splits:
        if render_if_missing(renders, split, count, seed, workers, progress=progress):
            print(f"rendered {count} {split} images into {renders}", flush=True)
        print(preprocess(data_cfg, split, progress=progress, workers=workers), flush=True)
        done.append(split)
        if ready_file is not None:
            save_json(ready_file, done)


def _exit_with_parent(parent, interval=2.0):
    """End this process group once `parent` has gone (killed before it could stop us)."""
    while os.getppid() == parent:
        time.sleep(interval)
    os.killpg(0, signal.SIGTERM)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", required=True, help="renders/ and cache/ go here")
    parser.add_argument("--train-images", type=int, required=True, help="training renders in all parts")
    parser.add_argument("--part-images", type=int, required=True, help="renders per part")
    parser.add_argument("--from-part", type=int, default=1, help="first part to prepare, 0-based (%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the renders' seed (%(default)s)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="processes (%(default)s)")
    args = parser.parse_args(argv)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    parts = train_parts(args.train_images, args.part_images)[args.from_part:]
    prepare(data_config(args.work_dir), [(split, count, args.seed) for split, count in parts], args.workers,
            progress=False, ready_file=Path(args.work_dir) / READY_FILE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
