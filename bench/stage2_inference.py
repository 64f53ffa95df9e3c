"""Stage-2 inference speed: the model's latency and throughput per batch size, and the pose step's.

    python bench/stage2_inference.py
    KERAS_BACKEND=jax python bench/stage2_inference.py --output-dir results/jax
    python bench/stage2_inference.py --model runs/demo/model/best.keras --batch-sizes 1,32

Builds the full-size ResNet-50 U-Net with the bundled mesh's 19 keypoints and random
weights (the time does not depend on them), or loads --model, and times
`model.predict_on_batch`, the call `use_vis.py` makes, on random uint8 128x128 images:
per batch size, --repeats calls after --warmup, as the median and P90 milliseconds per
batch and images/s at the median. Precision is the package's choice for the device
(`train.precision=auto`: float32 on a CPU). Then the pose step: `estimate_poses` (SQPnP
inside RANSAC with the 3 px threshold, then Levenberg-Marquardt; what `use_vis.py` runs per
image) on --poses views drawn as the renderer draws them, their visible keypoints
perturbed by Gaussian noise of the given mean error in the 128x128 input frame
(`bench/stage2_pose_sensitivity.py` draws them): ms per image. A model near the goal errs
by about 0.5 px; an untrained one by about 25 px, where RANSAC runs out its iterations.
Prints a table; writes --output-dir/stage2_inference.json (`results_io.write_result`: backend,
device, precision, core count, versions, commit).
"""

import argparse
import os
import time
from pathlib import Path

import keras
import numpy as np

from common.geometry import to_original
from common.training import set_precision
from stage2_visible_keypoints.camera import speed_camera
from stage2_visible_keypoints.config import DataConfig, ModelConfig
from stage2_visible_keypoints.data import ObjectModel
from stage2_visible_keypoints.mesh import load_obj
from stage2_visible_keypoints.model import build_model
from stage2_visible_keypoints.pipeline import estimate_poses
from stage2_visible_keypoints.render import DEFAULT_MESH
from results_io import cpu_model, device_name, write_result  # bench/ is on the path when run as a script
from stage2_pose_sensitivity import draw_views, perturb


def time_calls(call, warmup, repeats):
    """Seconds of each of `repeats` calls of `call()` after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return np.array(seconds)


def model_rows(model, batch_sizes, warmup, repeats, seed):
    height, width = model.input.shape[1:3]
    rng = np.random.default_rng(seed)
    rows = []
    for batch in batch_sizes:
        images = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
        seconds = time_calls(lambda: model.predict_on_batch(images), warmup, repeats)
        median = float(np.median(seconds))
        rows.append({"batch_size": batch, "ms_per_batch_median": 1000 * median,
                     "ms_per_batch_p90": 1000 * float(np.percentile(seconds, 90)),
                     "images_per_second": batch / median})
    return rows


def pose_rows(mean_levels, poses, ransac_px, seed):
    mesh, camera = load_obj(DEFAULT_MESH), speed_camera()
    rng = np.random.default_rng(seed)
    _, _, xy, visible, transforms = draw_views(mesh, camera, poses, rng)
    object_model = ObjectModel(camera, mesh.vertices, mesh.faces)
    rows = []
    for mean_px in mean_levels:
        original = to_original(perturb(xy, visible, mean_px, 0.0, rng), transforms)
        start = time.perf_counter()
        found = estimate_poses(original, visible, transforms, object_model, ransac_px)
        seconds = time.perf_counter() - start
        rows.append({"mean_px": mean_px, "ms_per_image": 1000 * seconds / poses,
                     "solved_fraction": float(found["found"].mean())})
    return rows, float(visible.sum(axis=1).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a .keras model (default: the full-size model, random weights)")
    parser.add_argument("--batch-sizes", default="1,8,32", help="comma-separated (%(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per batch size (%(default)s)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per batch size (%(default)s)")
    parser.add_argument("--poses", type=int, default=200, help="views for the pose step (%(default)s)")
    parser.add_argument("--mean-px", type=float, nargs="+", default=[0.5, 25.0],
                        help="keypoint error of the pose step's input, 128x128 input px (%(default)s)")
    parser.add_argument("--ransac-px", type=float, default=3.0, help="RANSAC threshold, input px (%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(%(default)s)")
    parser.add_argument("--output-dir", default="results", help="folder for stage2_inference.json (%(default)s)")
    args = parser.parse_args(argv)
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        parser.error(f"--batch-sizes must be comma-separated integers. Received: {args.batch_sizes!r}")
    if min(batch_sizes) < 1 or args.warmup < 0 or args.repeats < 1 or args.poses < 1:
        parser.error("--batch-sizes and --repeats and --poses must be >= 1, --warmup >= 0")

    policy = set_precision("auto")
    if args.model:
        model = keras.saving.load_model(args.model, safe_mode=True)
    else:
        model = build_model(len(load_obj(DEFAULT_MESH).vertices), DataConfig(), ModelConfig(), seed=args.seed)
    rows = model_rows(model, batch_sizes, args.warmup, args.repeats, args.seed)
    pose, visible_mean = pose_rows(args.mean_px, args.poses, args.ransac_px, args.seed)
    where = f"{keras.backend.backend()} backend, {policy}, {device_name()}, {os.cpu_count()} cores ({cpu_model()})"
    print(f"{model.name} ({model.count_params():,} parameters), {where}")
    print(f"{'batch':>8} {'ms/batch':>10} {'p90 ms':>10} {'img/s':>10}")
    for row in rows:
        print(f"{row['batch_size']:>8} {row['ms_per_batch_median']:>10.1f} {row['ms_per_batch_p90']:>10.1f} "
              f"{row['images_per_second']:>10.1f}")
    print(f"pose step (PnP, RANSAC {args.ransac_px} px) on {args.poses} views, {visible_mean:.1f} visible keypoints:")
    print(f"{'kp err px':>10} {'ms/image':>10} {'solved':>10}")
    for row in pose:
        print(f"{row['mean_px']:>10g} {row['ms_per_image']:>10.2f} {row['solved_fraction']:>10.3f}")
    path = write_result(Path(args.output_dir) / "stage2_inference.json", {
                         "model": model.name, "parameters": model.count_params(),
                         "units": {"ms_per_batch": "milliseconds per predict_on_batch call",
                                   "mean_px": "keypoint error fed to PnP, px in the 128x128 input frame"},
                         "model_rows": rows, "pose_rows": pose, "visible_keypoints_mean": visible_mean},
                        args=args, argv=argv)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
