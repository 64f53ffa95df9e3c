"""Accuracy of the centre detector on held-out synthetic aerial images (the issue's bar).

    python bench/centres_accuracy.py --train-images 2000 --test-images 500 --epochs 12 \
        --budget-minutes 30 --output-dir bench/results

Renders a training folder and a separate held-out folder (other seeds), preprocesses
both (512 px image -> one tile -> data.input_size), trains from random init (stopping
at --budget-minutes of training), then evaluates the best model on every held-out
image in original pixels: P / R / F1 at 10 px, PCK at 5 / 10 / 20 px, MAE, count
error, small and clustered objects separately. Prints a table, writes
--output-dir/centres_accuracy.json with the resolved config (`results_io.write_result`).
"""

import argparse
import json
import time
from pathlib import Path

from common import cli  # quiet TensorFlow logs first (before keras)

from common.config import load_config, to_dict
from detection.centres.aerial import render_folder
from detection.centres.centres_config import CentresConfig
from detection.centres.centres_data import preprocess
from results_io import write_result  # bench/ is on the path when run as a script


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="runs/centres_bench", help="renders, caches, model (%(default)s)")
    parser.add_argument("--config", default="configs/centres_aerial.yaml")
    parser.add_argument("--set", action="append", default=[], help="config overrides")
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--budget-minutes", type=float, default=30.0, help="training time budget")
    cli.add_workers(parser, "render / preprocess processes", default=2)
    cli.add_quiet(parser)
    parser.add_argument("--output-dir", default="results", help="folder for centres_accuracy.json (%(default)s)")
    args = parser.parse_args(argv)
    # Keras after parsing: --help starts at once and prints no TensorFlow start-up lines.
    from detection.centres.centres_pipeline import train_from_cache, use

    work = Path(args.work_dir)
    cfg = load_config(CentresConfig, args.config, [
        f"data.data_dir={work / 'train_images'}", f"data.cache_dir={work / 'cache'}", "data.split=[0.95,0.05,0.0]",
        f"train.output_dir={work / 'model'}", f"train.epochs={args.epochs}",
        f"train.budget_minutes={args.budget_minutes}",
        f"use.output_dir={work / 'predictions'}", *args.set])
    timings = {}
    start = time.perf_counter()
    render_folder(work / "train_images", args.train_images, seed=1, workers=args.workers, progress=not args.quiet)
    render_folder(work / "test_images", args.test_images, seed=2, workers=args.workers, progress=not args.quiet)
    timings["render_s"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    preprocess(cfg.data, workers=args.workers, progress=not args.quiet)
    test_cfg = load_config(CentresConfig, args.config, [
        f"data.data_dir={work / 'test_images'}", f"data.cache_dir={work / 'test_cache'}", "data.split=[0,0,1]",
        f"use.output_dir={work / 'predictions'}", *args.set])
    preprocess(test_cfg.data, workers=args.workers, progress=not args.quiet)
    timings["preprocess_s"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    trained = train_from_cache(cfg, progress=not args.quiet)
    timings["train_s"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    result = use(test_cfg, Path(cfg.train.output_dir) / "best.keras", split="test", progress=not args.quiet)
    timings["evaluate_s"] = round(time.perf_counter() - start, 1)
    s = result["summary"]

    row = {"held_out_images": s["images"], "true_objects": s["true"], "precision": s["precision"],
           "recall": s["recall"], "f1_at_10px": s["f1"], "pck": s["pck"], "mae_px": s["mae"]["euclidean"],
           "mse_px2": s["mse"], "count_error_mean_abs": s["count_error"]["mean_abs"]}
    groups = {name: {"objects": g["true"], "recall": g["recall"], "pck": g["pck"], "mae_px": g["mae"]["euclidean"]}
              for name, g in s["groups"].items()}
    report = {
        "what": "centre detector, synthetic aerial 512 px -> input "
                f"{cfg.data.input_size[0]} px -> heatmap {cfg.data.heatmap_size[0]} px, random init",
        "train_images": args.train_images, "epochs_run": trained["epochs_run"],
        "training_images_seen": trained["images_seen"],
        "train_tiles_per_second": trained["images_per_second"], "last_epoch": trained["last"],
        "timings": timings, "result": row, "groups": groups, "per_class": {
            name: {"f1": c["f1"], "pck": c["pck"]} for name, c in s["per_class"].items()},
        "bar": {"pck10": 0.95, "f1_at_10px": 0.95},
        "bar_met": {"pck10": (s["pck"]["10"] or 0) >= 0.95, "f1_at_10px": (s["f1"] or 0) >= 0.95},
    }
    path = write_result(Path(args.output_dir) / "centres_accuracy.json", report,
                        settings={"args": vars(args), "config": to_dict(cfg)}, argv=argv)
    print("\n| held-out images | objects | P | R | F1@10 | PCK@5 | PCK@10 | PCK@20 | MAE px | count err |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {s['images']} | {s['true']} | {_f(s['precision'])} | {_f(s['recall'])} | {_f(s['f1'])} | "
          + " | ".join(_f(v) for v in s["pck"].values()) + f" | {_f(s['mae']['euclidean'])} | "
          f"{_f(s['count_error']['mean_abs'])} |")
    for name, g in groups.items():
        print(f"  {name:10s} {g['objects']:5d} objects  recall {_f(g['recall'])}  PCK@10 {_f(g['pck']['10'])}  "
              f"MAE {_f(g['mae_px'])}")
    print(f"training: {trained['epochs_run']} epochs, {trained['images_per_second']} tiles/s; timings {timings}")
    print(f"wrote {path}")
    print(json.dumps(report["bar_met"]))


def _f(value):
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
