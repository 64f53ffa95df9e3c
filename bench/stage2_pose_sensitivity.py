"""How keypoint errors become pose errors: PnP on perturbed true keypoints, no model.

    python bench/stage2_pose_sensitivity.py
    python bench/stage2_pose_sensitivity.py --poses 2000 --mean-px 0 0.5 1 --wrong 0 0.1

Draws --poses poses as the stage-2 renderer does (uniform rotation, 9-16 m, the body
origin within 150 px of the principal point; the SPEED camera, the bundled mesh or
--mesh), projects the keypoints and ray-casts their visibility, and maps them into the
128x128 input frame of the default preprocessing (1920x1080 canvas, 1000x1000 crop).
Each cell then perturbs the keypoints visible in that frame as a model would err:
Gaussian noise whose mean Euclidean error is --mean-px input pixels (sigma per axis =
mean / sqrt(pi / 2)), and a --wrong fraction of them moved onto another visible keypoint's
true position (identity errors). The pose is solved from those keypoints, mapped back to
original pixels, exactly as `use_vis.py` does (`stage2_visible_keypoints.pose.solve_pnp`, SQPnP + LM
refinement), with RANSAC (--ransac-px input pixels) and without, and compared with the
true pose: median and mean rotation error (degrees), median relative translation error,
mean SPEED score (rotation in radians + translation error / distance), and the fraction
of poses found ("kp err px" in the table: the measured mean keypoint error, wrong
keypoints included). It answers what keypoint accuracy a pose target needs (the stage-2 goal,
0.5 px mean, against the 25 px of the demo model). Prints a table; writes
--output-dir/stage2_pose_sensitivity.json.
"""

import argparse
import math
import time
from pathlib import Path

import numpy as np

from common.geometry import inside, letterbox_crop_transform, to_input, to_original
from stage2_visible_keypoints.camera import body_to_camera, project_points, speed_camera
from stage2_visible_keypoints.config import DataConfig
from stage2_visible_keypoints.data import ObjectModel
from stage2_visible_keypoints.mesh import load_obj, visible_vertices
from stage2_visible_keypoints.pose import pose_error_summary
from stage2_visible_keypoints.predictor import estimate_poses
from stage2_visible_keypoints.render import DEFAULT_MESH, RenderConfig, sample_pose
from results_io import write_result  # bench/ is on the path when run as a script


def draw_views(mesh, camera, count, rng):
    """count poses with their input-frame keypoints (N, K, 2), visibility (N, K) and the
    original -> input transform of a camera-sized image, one row per view (N, 4)."""
    data = DataConfig()
    transform, _ = letterbox_crop_transform((camera.width, camera.height), data.canvas_size, data.crop_size,
                                            data.input_size)
    render = RenderConfig()
    q, r, xy, visible = [], [], [], []
    for _ in range(count):
        q_i, r_i = sample_pose(rng, camera, render)
        points = body_to_camera(mesh.vertices, q_i, r_i)
        xy_input = to_input(project_points(points, camera), transform)
        q.append(q_i)
        r.append(r_i)
        xy.append(xy_input)
        visible.append(visible_vertices(mesh, points, camera) & inside(xy_input, data.input_size))
    return np.array(q), np.array(r), np.array(xy), np.array(visible), np.tile(transform, (count, 1))


def perturb(xy, visible, mean_px, wrong, rng):
    """Gaussian noise of mean Euclidean error `mean_px` on every keypoint, then a `wrong`
    fraction of the visible ones moved onto another visible keypoint's true position."""
    noisy = xy + rng.normal(0.0, mean_px / math.sqrt(math.pi / 2), size=xy.shape)
    for i in range(len(xy)):
        index = np.flatnonzero(visible[i])
        if len(index) < 2:
            continue
        for k in index[rng.random(len(index)) < wrong]:
            noisy[i, k] = xy[i, rng.choice(index[index != k])]
    return noisy


def run(mesh, camera, poses, mean_levels, wrong_levels, ransac_px, seed):
    rng = np.random.default_rng(seed)
    q, r, xy, visible, transforms = draw_views(mesh, camera, poses, rng)
    model = ObjectModel(camera, mesh.vertices, mesh.faces)
    rows = []
    for wrong in wrong_levels:
        for mean_px in mean_levels:
            noisy = perturb(xy, visible, mean_px, wrong, rng)
            errors = np.linalg.norm(noisy - xy, axis=-1)[visible]
            original = to_original(noisy, transforms)
            for ransac in (True, False):
                found = estimate_poses(original, visible, transforms, model, ransac_px if ransac else None)
                summary = pose_error_summary(found["q"], found["r"], q, r)
                rows.append({"mean_px": mean_px, "measured_mean_px": float(errors.mean()), "wrong": wrong,
                             "ransac": ransac, "solved_fraction": summary["solved_fraction"],
                             "rotation_deg_median": summary["rotation_deg"]["median"],
                             "rotation_deg_mean": summary["rotation_deg"]["mean"],
                             "translation_rel_median": summary["translation_rel"]["median"],
                             "speed_score_mean": summary["speed_score"]["mean"],
                             "speed_score_median": summary["speed_score"]["median"]})
    return rows, float(visible.sum(axis=1).mean())


def format_table(rows):
    head = ("noise px", "wrong", "kp err px", "RANSAC", "solved", "rot med deg", "rot mean deg", "t rel med",
            "SPEED mean", "SPEED med")
    lines = [" ".join(f"{h:>12}" for h in head)]
    for row in rows:
        values = (row["mean_px"], row["wrong"], row["measured_mean_px"], "yes" if row["ransac"] else "no",
                  row["solved_fraction"],
                  row["rotation_deg_median"], row["rotation_deg_mean"], row["translation_rel_median"],
                  row["speed_score_mean"], row["speed_score_median"])
        lines.append(" ".join(f"{'-':>12}" if v is None else f"{v:>12}" if isinstance(v, str) else f"{v:>12.4g}"
                              for v in values))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--poses", type=int, default=1000, help="poses per cell (%(default)s)")
    parser.add_argument("--mean-px", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 25.0],
                        help="mean Euclidean keypoint error, 128x128 input px (%(default)s)")
    parser.add_argument("--wrong", type=float, nargs="+", default=[0.0, 0.05, 0.15],
                        help="fraction of visible keypoints put on another keypoint (%(default)s)")
    parser.add_argument("--ransac-px", type=float, default=3.0, help="RANSAC threshold, input px (%(default)s)")
    parser.add_argument("--mesh", help="OBJ whose vertices are the keypoints (default: the bundled spacecraft)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (%(default)s)")
    parser.add_argument("--output-dir", default="results", help="folder for stage2_pose_sensitivity.json (%(default)s)")
    args = parser.parse_args(argv)
    if args.poses < 1 or min(args.mean_px) < 0 or not all(0 <= w <= 1 for w in args.wrong) or args.ransac_px <= 0:
        parser.error("--poses must be >= 1, --mean-px >= 0, --wrong in [0, 1] and --ransac-px > 0")

    start = time.perf_counter()
    mesh, camera = load_obj(args.mesh or DEFAULT_MESH), speed_camera()
    rows, visible_mean = run(mesh, camera, args.poses, args.mean_px, args.wrong, args.ransac_px, args.seed)
    seconds = time.perf_counter() - start
    print(f"pose error from perturbed keypoints: {args.poses} poses per cell, {visible_mean:.1f} of "
          f"{len(mesh.vertices)} keypoints visible on average, SPEED camera, {seconds:.1f} s")
    print(format_table(rows))
    result = {"seconds": round(seconds, 2), "visible_keypoints_mean": visible_mean,
              "units": {"mean_px": "Euclidean, px in the 128x128 input frame", "rotation_deg": "degrees",
                        "translation_rel": "error / distance", "speed_score": "rotation (rad) + translation_rel"},
              "rows": rows}
    path = write_result(Path(args.output_dir) / "stage2_pose_sensitivity.json", result, args=args, argv=argv)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
