"""Full-frame pose benchmark: fixed centre crop vs stage-1 crop vs true-box crop.

    nice -n 10 python bench/pose_pipeline.py                     # the documented run
    python bench/pose_pipeline.py --train-images 24 --test-images 8 --det-epochs 1 --kp-epochs 1  # smoke test

Renders SPEED-like frames (`render_vis.py --scene speed`: 3-40 m, the object anywhere in
the 1920x1200 frame) into --work-dir/renders: --train-images for training, --test-images
held out (another seed and split). Trains, on this machine's CPU, with the budgets given:
stage 1 (configs/stage1_speed.yaml, the one-class anchor SSD, on train_boxes.json),
stage 2 on box crops (configs/stage2_speed.yaml: crops of the true boxes jittered as
stage 1 errs) and stage 2 on the fixed centre crop (the same config with data.crop:
centre, on the same renders). Then runs `PosePipeline` on the held-out frames three
ways and prints one table: object found, keypoint mean / median error in original px,
median rotation error, mean SPEED score (solved poses; and over all frames with an
unsolved one counted as pi + 1), poses solved. Writes --output-dir/pose_pipeline.json
(`results_io.write_result`). Finished trainings are reused (--retrain trains afresh).
"""

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

from common import cli
from common.config import load_config, to_dict
from common.data_io import load_json
from results_io import write_result  # bench/ is on the path when run as a script


def _render_if_missing(out_dir, split, count, seed, workers, progress):
    from stage2_visible_keypoints.render import RenderConfig, render_split

    path = out_dir / f"{split}.json"
    if path.is_file() and (out_dir / f"render_config_{split}.json").is_file() and len(load_json(path)) == count:
        return
    render_split(out_dir, RenderConfig(num_images=count, seed=seed, scene="speed"), split=split, workers=workers,
                 progress=progress)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="runs/pose_bench", help="renders, caches, runs (%(default)s)")
    parser.add_argument("--train-images", type=int, default=800, help="%(default)s")
    parser.add_argument("--test-images", type=int, default=500, help="%(default)s")
    parser.add_argument("--det-epochs", type=int, default=12, help="stage-1 epochs (%(default)s)")
    parser.add_argument("--kp-epochs", type=int, default=8, help="stage-2 epochs, each model (%(default)s)")
    cli.add_seed(parser, "render seed (the test split adds 1)")
    cli.add_workers(parser, "render / preprocess processes", default=2)
    parser.add_argument("--retrain", action="store_true", help="train afresh even where a finished run exists")
    parser.add_argument("--output-dir", default="bench/results/pose_pipeline", help="folder for pose_pipeline.json")
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    progress = not args.quiet
    import keras  # after parsing: --help starts at once

    from detection.ssd import box_cache
    from detection.ssd import ssd_pipeline
    from detection.ssd.ssd_config import DetConfig
    from stage2_visible_keypoints import data as kp_data
    from stage2_visible_keypoints import pipeline as kp_pipeline
    from stage2_visible_keypoints.config import Stage2Config
    from stage2_visible_keypoints.pose_pipeline import PosePipeline, evaluate_frames, read_frame
    from tqdm import tqdm

    work = Path(args.work_dir)
    renders = work / "renders"
    # Configs first: a bad one fails before minutes of rendering.
    det_cfg = load_config(DetConfig, "configs/stage1_speed.yaml", [
        f"data.data_dir={renders}", f"data.cache_dir={work / 'stage1_cache'}", f"train.output_dir={work / 'stage1'}",
        f"train.epochs={args.det_epochs}"])
    kp_cfgs = {crop: load_config(Stage2Config, "configs/stage2_speed.yaml", [
        f"data.data_dir={renders}", f"data.cache_dir={work / ('cache_' + crop)}", f"data.crop={crop}",
        f"train.output_dir={work / ('stage2_' + crop)}", f"train.epochs={args.kp_epochs}"]) for crop in ("box", "centre")}
    _render_if_missing(renders, "train", args.train_images, args.seed, args.workers, progress)
    _render_if_missing(renders, "test", args.test_images, args.seed + 1, args.workers, progress)

    timings = {}

    def trained(run_dir, train):
        if (run_dir / "best.keras").is_file() and not args.retrain:
            return load_json(run_dir / "training_summary.json") if (run_dir / "training_summary.json").is_file() \
                else None
        if run_dir.exists():
            shutil.rmtree(run_dir)
        start = time.perf_counter()
        summary = train()
        timings[run_dir.name] = round((time.perf_counter() - start) / 60, 2)
        from common.data_io import save_json

        keep = {k: summary[k] for k in ("epochs_run", "train_images", "images_per_second", "seconds") if k in summary}
        save_json(run_dir / "training_summary.json", keep)
        return keep

    box_cache.preprocess(det_cfg.data, "train_boxes", progress=progress, workers=args.workers)
    det_summary = trained(work / "stage1", lambda: ssd_pipeline.train_from_cache(det_cfg, "train_boxes", progress))

    kp_runs, kp_summaries = {}, {}
    for crop, cfg in kp_cfgs.items():
        kp_data.preprocess(cfg.data, "train", progress=progress, workers=args.workers)
        kp_summaries[crop] = trained(work / f"stage2_{crop}",
                                     lambda cfg=cfg: kp_pipeline.train_from_cache(cfg, "train", progress))
        kp_runs[crop] = work / f"stage2_{crop}"

    annotations = kp_data.load_annotations(renders, "test")
    camera, mesh = renders / "camera.json", renders / "mesh.obj"
    present = np.array([record.get("bbox") is not None for record in load_json(renders / "test.json")])
    frames = list(annotations.image_paths)  # read chunk by chunk: 500 decoded frames would take 3.5 GB
    variants = {
        "fixed centre crop": (None, kp_runs["centre"], None),
        "stage-1 crop": (work / "stage1", kp_runs["box"], None),
        "true-box crop (ceiling)": (None, kp_runs["box"], annotations.boxes),
    }
    pipelines = {name: PosePipeline.from_runs(detector, keypoint_run, camera, mesh)
                 for name, (detector, keypoint_run, _) in variants.items()}
    results = {name: [] for name in variants}
    seconds = dict.fromkeys(variants, 0.0)
    chunk = 32
    # Each chunk of frames is decoded once for the three pipelines (a 1920x1200 decode costs
    # more than a model call here).
    for start in tqdm(range(0, len(frames), chunk), desc="pose", unit="chunk", disable=not progress):
        arrays = [read_frame(path, start + i) for i, path in enumerate(frames[start:start + chunk])]
        for name, (_, _, boxes) in variants.items():
            begin = time.perf_counter()
            results[name] += pipelines[name].predict(arrays, boxes=None if boxes is None
                                                     else boxes[start:start + chunk])
            seconds[name] += time.perf_counter() - begin
    rows, summaries = [], {}
    for name in variants:
        summary = evaluate_frames(results[name], annotations, present)
        if variants[name][2] is not None:  # the true boxes were given: their "detection" is 1 by construction
            summary.pop("detection", None)
        summary["model_seconds_per_frame"] = seconds[name] / len(frames)
        summaries[name] = summary
        pose = summary["pose"]
        rows.append((name, summary["object_found"], summary["keypoints"]["mean"], summary["keypoints"]["median"],
                     pose["rotation_deg"]["median"], pose["speed_score"]["mean"], pose["speed_score_all"]["mean"],
                     pose["solved_fraction"], summary.get("detection", {}).get("recall50")))

    header = ("crop", "object found", "kp mean px", "kp median px", "rot median deg", "SPEED (solved)",
              "SPEED (all)", "solved", "det recall@0.5")
    print(f"\n{len(frames)} held-out SPEED-like frames (1920x1200, 3-40 m); backend {keras.backend.backend()}, "
          f"{os.cpu_count()} CPU cores")
    print(" | ".join(header))
    for row in rows:
        print(" | ".join([row[0]] + ["n/a" if v is None else f"{v:.3f}" for v in row[1:]]))
    fixed, stage1, ceiling = (summaries[n]["pose"]["speed_score_all"]["mean"] for n in variants)  # variants' order
    bar = {"stage1_beats_fixed": stage1 < fixed, "stage1_over_true_box": stage1 / ceiling,
           "within_20_percent_of_true_box": stage1 <= 1.2 * ceiling,
           "score": "mean SPEED score over all frames, unsolved = pi + 1"}
    print(f"bar: stage-1 crop beats the fixed crop: {bar['stage1_beats_fixed']}; stage-1 / true-box SPEED score "
          f"{bar['stage1_over_true_box']:.3f} (<= 1.2: {bar['within_20_percent_of_true_box']})")
    budget = {"train_images": args.train_images, "stage1_epochs": args.det_epochs, "stage2_epochs_each": args.kp_epochs,
              "train_minutes": timings, "stage1": det_summary, "stage2": kp_summaries}
    trained_minutes = {name: round(s["seconds"] / 60, 1) for name, s in
                       (("stage1", det_summary), *(("stage2_" + c, kp_summaries[c]) for c in kp_summaries)) if s}
    print(f"budget: {args.train_images} training renders; stage 1 {args.det_epochs} epochs, each stage 2 "
          f"{args.kp_epochs} epochs; training minutes {trained_minutes}")
    path = write_result(Path(args.output_dir) / "pose_pipeline.json", {
        "test_frames": len(frames), "table": [dict(zip(header, row)) for row in rows], "bar": bar,
        "budget": budget, "variants": summaries, "load_average_at_end": os.getloadavg()},
        settings={"args": vars(args), "stage1": to_dict(det_cfg),
                  "stage2": {crop: to_dict(cfg) for crop, cfg in kp_cfgs.items()}}, argv=argv)
    print(f"written: {path}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
