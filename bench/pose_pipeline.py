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

The GPU run (bench/gpu_pose_pipeline.sh) splits this into steps with --only: prepare
(renders and the three caches), stage1 / stage2_box / stage2_centre (one training each,
so the three can share one GPU at once), evaluate (the table, from the runs that exist:
one that never finished an epoch is left out and named). Budgets: --det-minutes /
--kp-minutes stop a training at the first epoch that ends past them (train.budget_minutes),
--det-images / --kp-images set its length in images (train.budget_images, which a cosine
rate follows), --epoch-images the images between checkpoints; --det-set / --kp-set take
any other config key (train.batch_size, train.precision=mixed_bfloat16, ...).
--eval-minutes stops the evaluation after that long, on the frames done so far.
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
from common.errors import DataError
from results_io import write_result  # bench/ is on the path when run as a script


def _render_if_missing(out_dir, split, count, seed, workers, progress):
    from stage2_visible_keypoints.render import RenderConfig, render_split

    path = out_dir / f"{split}.json"
    if path.is_file() and (out_dir / f"render_config_{split}.json").is_file() and len(load_json(path)) == count:
        return
    render_split(out_dir, RenderConfig(num_images=count, seed=seed, scene="speed"), split=split, workers=workers,
                 progress=progress)


STEPS = ("prepare", "stage1", "stage2_box", "stage2_centre", "evaluate")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="runs/pose_bench", help="renders, caches, runs (%(default)s)")
    parser.add_argument("--train-images", type=int, default=800, help="%(default)s")
    parser.add_argument("--test-images", type=int, default=500, help="%(default)s")
    parser.add_argument("--det-epochs", type=int, default=12, help="stage-1 epochs (%(default)s)")
    parser.add_argument("--kp-epochs", type=int, default=8, help="stage-2 epochs, each model (%(default)s)")
    parser.add_argument("--det-minutes", type=float, default=0.0,
                        help="stage-1 time budget: stop at the first epoch past it (0 = the epochs alone)")
    parser.add_argument("--kp-minutes", type=float, default=0.0, help="the same for each stage-2 model")
    parser.add_argument("--det-images", type=int, default=0,
                        help="stage-1 length in images, instead of --det-epochs (train.budget_images; 0 = epochs)")
    parser.add_argument("--kp-images", type=int, default=0, help="the same for each stage-2 model")
    parser.add_argument("--epoch-images", type=int, default=0,
                        help="images per epoch (validation, checkpoint) of every model (0 = one pass)")
    parser.add_argument("--det-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of configs/stage1_speed.yaml, e.g. train.batch_size=64 (repeatable)")
    parser.add_argument("--kp-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of configs/stage2_speed.yaml for both stage-2 models (repeatable)")
    parser.add_argument("--only", choices=STEPS, help="run one step (default: all, in this order)")
    parser.add_argument("--eval-minutes", type=float, default=0.0,
                        help="stop the evaluation after this long, on the frames done (0 = every frame)")
    parser.add_argument("--figures", type=int, default=0,
                        help="overlays of the first N held-out frames, each crop, in --output-dir (%(default)s)")
    cli.add_seed(parser, "render seed (the test split adds 1)")
    cli.add_workers(parser, "render / preprocess processes", default=2)
    parser.add_argument("--retrain", action="store_true", help="train afresh even where a finished run exists")
    parser.add_argument("--output-dir", default="bench/results/pose_pipeline", help="folder for pose_pipeline.json")
    cli.add_quiet(parser)
    return parser


def budget_overrides(epochs, minutes, images, epoch_images):
    """The `train` keys of one model's budget flags."""
    return [f"train.epochs={epochs}", f"train.budget_minutes={minutes}", f"train.budget_images={images}",
            f"train.epoch_images={epoch_images}"]


def configs(args):
    """(stage-1 config, {crop: stage-2 config}) as the flags resolve them."""
    from detection.ssd.ssd_config import DetConfig
    from stage2_visible_keypoints.config import Stage2Config

    work = Path(args.work_dir)
    renders = work / "renders"
    det_cfg = load_config(DetConfig, "configs/stage1_speed.yaml", [
        f"data.data_dir={renders}", f"data.cache_dir={work / 'stage1_cache'}", f"train.output_dir={work / 'stage1'}",
        *budget_overrides(args.det_epochs, args.det_minutes, args.det_images, args.epoch_images), *args.det_set])
    kp_cfgs = {crop: load_config(Stage2Config, "configs/stage2_speed.yaml", [
        f"data.data_dir={renders}", f"data.cache_dir={work / ('cache_' + crop)}",
        f"train.output_dir={work / ('stage2_' + crop)}",
        *budget_overrides(args.kp_epochs, args.kp_minutes, args.kp_images, args.epoch_images), *args.kp_set,
        f"data.crop={crop}"]) for crop in ("box", "centre")}
    return det_cfg, kp_cfgs


def main(argv=None):
    args = build_parser().parse_args(argv)
    progress = not args.quiet
    import keras  # after parsing: --help starts at once

    from detection.ssd import box_cache
    from detection.ssd import ssd_pipeline
    from stage2_visible_keypoints import data as kp_data
    from stage2_visible_keypoints import pipeline as kp_pipeline
    from stage2_visible_keypoints.pose_pipeline import PosePipeline, evaluate_frames, read_frame
    from stage2_visible_keypoints.pose_vis import save_frame_overlay, subset_annotations
    from tqdm import tqdm

    work = Path(args.work_dir)
    renders = work / "renders"
    steps = STEPS if args.only is None else (args.only,)
    # Configs first: a bad one fails before minutes of rendering.
    det_cfg, kp_cfgs = configs(args)
    if "prepare" in steps:
        _render_if_missing(renders, "train", args.train_images, args.seed, args.workers, progress)
        _render_if_missing(renders, "test", args.test_images, args.seed + 1, args.workers, progress)
        box_cache.preprocess(det_cfg.data, "train_boxes", progress=progress, workers=args.workers)
        for cfg in kp_cfgs.values():
            kp_data.preprocess(cfg.data, "train", progress=progress, workers=args.workers)
        if args.only == "prepare":
            return

    timings = {}

    def trained(run_dir, train, step):
        """A run's training summary: trained now when its step runs and no finished run is
        there; None for a run that is there but was stopped before it wrote its summary; and
        "missing" where the evaluation finds no model (not trained, or stopped in its first epoch)."""
        if step not in steps or ((run_dir / "best.keras").is_file() and not args.retrain):
            if not (run_dir / "best.keras").is_file():
                return "missing"
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

    if "stage1" in steps:  # a cache already built is checked and reused
        box_cache.preprocess(det_cfg.data, "train_boxes", progress=progress, workers=args.workers)
    det_summary = trained(work / "stage1", lambda: ssd_pipeline.train_from_cache(det_cfg, "train_boxes", progress),
                          "stage1")

    kp_runs, kp_summaries = {}, {}
    for crop, cfg in kp_cfgs.items():
        if f"stage2_{crop}" in steps:
            kp_data.preprocess(cfg.data, "train", progress=progress, workers=args.workers)
        kp_summaries[crop] = trained(work / f"stage2_{crop}",
                                     lambda cfg=cfg: kp_pipeline.train_from_cache(cfg, "train", progress),
                                     f"stage2_{crop}")
        kp_runs[crop] = work / f"stage2_{crop}"
    if "evaluate" not in steps:
        return
    missing = [name for name, summary in (("stage1", det_summary), *(("stage2_" + c, s) for c, s in
                                                                      kp_summaries.items())) if summary == "missing"]
    det_summary = None if det_summary == "missing" else det_summary
    kp_summaries = {crop: None if s == "missing" else s for crop, s in kp_summaries.items()}

    annotations = kp_data.load_annotations(renders, "test")
    camera, mesh = renders / "camera.json", renders / "mesh.obj"
    present = np.array([record.get("bbox") is not None for record in load_json(renders / "test.json")])
    frames = list(annotations.image_paths)  # read chunk by chunk: 500 decoded frames would take 3.5 GB
    variants = {
        "fixed centre crop": (None, kp_runs["centre"], None),
        "stage-1 crop": (work / "stage1", kp_runs["box"], None),
        "true-box crop (ceiling)": (None, kp_runs["box"], annotations.boxes),
    }
    # What finished is evaluated: a crop whose models are missing is left out, and named.
    left_out = {name: [str(p) for p in (detector, keypoint_run) if p is not None and not (p / "best.keras").is_file()]
                for name, (detector, keypoint_run, _) in variants.items()}
    variants = {name: v for name, v in variants.items() if not left_out[name]}
    left_out = {name: runs for name, runs in left_out.items() if runs}
    for name, runs in left_out.items():
        print(f"left out: {name} (no model in {', '.join(runs)})")
    results = {name: [] for name in variants}
    seconds = dict.fromkeys(variants, 0.0)
    header = ("crop", "object found", "kp mean px", "kp median px", "rot median deg", "SPEED (solved)",
              "SPEED (all)", "solved", "det recall@0.5")
    budget = {"train_images": args.train_images, "stage1_epochs": args.det_epochs, "stage2_epochs_each": args.kp_epochs,
              "stage1_minutes": args.det_minutes, "stage2_minutes_each": args.kp_minutes,
              "stage1_budget_images": args.det_images, "stage2_budget_images_each": args.kp_images,
              "train_minutes": timings, "stage1": det_summary, "stage2": kp_summaries}

    def report(done, final):
        """Evaluate the first `done` frames and write pose_pipeline.json: after every chunk, so
        a run stopped by a deadline keeps the frames it finished; the table is printed at the end."""
        rows, summaries = [], {}
        labels = subset_annotations(annotations, list(range(done))) if done < len(frames) else annotations
        for name in variants if done else ():
            summary = evaluate_frames(results[name], labels, present[:done])
            if variants[name][2] is not None:  # the true boxes were given: their "detection" is 1 by construction
                summary.pop("detection", None)
            summary["model_seconds_per_frame"] = seconds[name] / done
            summaries[name] = summary
            pose = summary["pose"]
            rows.append((name, summary["object_found"], summary["keypoints"]["mean"], summary["keypoints"]["median"],
                         pose["rotation_deg"]["median"], pose["speed_score"]["mean"], pose["speed_score_all"]["mean"],
                         pose["solved_fraction"], summary.get("detection", {}).get("recall50")))
        if left_out or not done:
            bar = {"left_out": left_out, "frames_done": done}
        else:
            fixed, stage1, ceiling = (summaries[n]["pose"]["speed_score_all"]["mean"] for n in variants)  # their order
            bar = {"stage1_beats_fixed": stage1 < fixed, "stage1_over_true_box": stage1 / ceiling,
                   "within_20_percent_of_true_box": stage1 <= 1.2 * ceiling,
                   "score": "mean SPEED score over all frames, unsolved = pi + 1"}
        path = write_result(Path(args.output_dir) / "pose_pipeline.json", {
            "test_frames": done, "test_frames_planned": len(frames), "table": [dict(zip(header, row)) for row in rows],
            "bar": bar, "budget": budget, "variants": summaries, "load_average_at_end": os.getloadavg()},
            settings={"args": vars(args), "stage1": to_dict(det_cfg),
                      "stage2": {crop: to_dict(cfg) for crop, cfg in kp_cfgs.items()}}, argv=argv)
        if not final:
            return
        print(f"\n{done} held-out SPEED-like frames (1920x1200, 3-40 m); backend {keras.backend.backend()}, "
              f"{os.cpu_count()} CPU cores")
        print(" | ".join(header))
        for row in rows:
            print(" | ".join([row[0]] + ["n/a" if v is None else f"{v:.3f}" for v in row[1:]]))
        if "left_out" in bar:
            print("bar: not judged (a crop is left out)")
        else:
            print(f"bar: stage-1 crop beats the fixed crop: {bar['stage1_beats_fixed']}; stage-1 / true-box SPEED "
                  f"score {bar['stage1_over_true_box']:.3f} (<= 1.2: {bar['within_20_percent_of_true_box']})")
        trained_minutes = {name: round(s["seconds"] / 60, 1) for name, s in
                           (("stage1", det_summary), *(("stage2_" + c, kp_summaries[c]) for c in kp_summaries)) if s}
        print(f"budget: {args.train_images} training renders; stage 1 {args.det_epochs} epochs, each stage 2 "
              f"{args.kp_epochs} epochs (budgets in images {args.det_images} / {args.kp_images}, minutes "
              f"{args.det_minutes} / {args.kp_minutes}); training minutes {trained_minutes}")
        print(f"written: {path}")

    report(0, final=False)  # the training summaries and what is left out, before any model runs
    pipelines = {name: PosePipeline.from_runs(detector, keypoint_run, camera, mesh)
                 for name, (detector, keypoint_run, _) in variants.items()}
    chunk, done = 16, 0
    eval_start, figures = time.perf_counter(), Path(args.output_dir) / "pose_pipeline_figures"
    # Each chunk of frames is decoded once for the three pipelines (a 1920x1200 decode costs
    # more than a model call here).
    for start in tqdm(range(0, len(frames) if variants else 0, chunk), desc="pose", unit="chunk",
                      disable=not progress):
        if args.eval_minutes and start and time.perf_counter() - eval_start > 60 * args.eval_minutes:
            print(f"--eval-minutes {args.eval_minutes}: stopped after {start} of {len(frames)} frames")
            break
        arrays = [read_frame(path, start + i) for i, path in enumerate(frames[start:start + chunk])]
        for name, (_, _, boxes) in variants.items():
            begin = time.perf_counter()
            results[name] += pipelines[name].predict(arrays, boxes=None if boxes is None
                                                     else boxes[start:start + chunk])
            seconds[name] += time.perf_counter() - begin
            for i in range(start, min(start + chunk, args.figures)):
                slug = name.split(" (")[0].replace(" ", "_")
                save_frame_overlay(figures / slug / f"{Path(frames[i]).stem}.jpg", arrays[i - start],
                                   results[name][i], pipelines[name].predictor.object_model, annotations.boxes[i])
        done = start + len(arrays)
        if done < len(frames):
            report(done, final=False)
    report(done, final=True)
    if not variants:  # written first: the training summaries say how far each run got
        raise DataError(f"no crop could be evaluated: no model in {', '.join(missing)}", work)

if __name__ == "__main__":
    raise SystemExit(cli.run(main))
