"""Detector accuracy benchmark: train on synthetic shapes on this machine, evaluate on
500 held-out images.

    python bench/det_accuracy.py                       # the documented run (configs/det_shapes.yaml)
    python bench/det_accuracy.py --train-images 64 --test-images 16 --set train.epochs=1   # a smoke test

Renders --train-images and --test-images shapes images into --work-dir/shapes (kept
when a split of the same size is there), preprocesses them (caches are reused), trains
with `detection.ssd.ssd_pipeline.train_from_cache` (the same call as train_det.py; a finished run in
--work-dir/model is started afresh) and evaluates with `use` (as use_det.py). Prints a
table (training minutes, images/s, mAP@0.5 VOC all-point, COCO mAP@[.5:.95], per-class
AP@0.5, recall per size band and the share of each band's true positives found by its
main scale) and writes it with the resolved config to --output-dir/det_accuracy.json
(`results_io.write_result`: command, backend, device, precision, versions, commit).
--skip-training evaluates a run finished earlier in train.output_dir instead (e.g. one
made by train_det.py with the same config), taking its times from training_log.json.
"""

import argparse
import os
import shutil
import time
from pathlib import Path

import keras

from common import cli
from common.config import load_config, to_dict
from common.data_io import load_json
from detection.ssd.box_cache import preprocess
from detection.ssd.shapes import ShapesConfig, write_shapes
from detection.ssd.ssd_config import DetConfig
from detection.ssd.ssd_pipeline import train_from_cache, use
from results_io import write_result  # bench/ is on the path when run as a script


def _render_if_missing(shapes_dir, split, count, seed, workers):
    path = shapes_dir / f"{split}.json"
    if path.is_file() and len(load_json(path)["images"]) == count:
        return
    write_shapes(shapes_dir, ShapesConfig(num_images=count, seed=seed), split, workers=workers)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.set_defaults(config="configs/det_shapes.yaml")
    parser.add_argument("--work-dir", default="runs/det_bench", help="data, caches, model, predictions (%(default)s)")
    parser.add_argument("--train-images", type=int, default=3000, help="%(default)s")
    parser.add_argument("--test-images", type=int, default=500, help="%(default)s")
    parser.add_argument("--seed", type=int, default=1, help="render seed (%(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="render / preprocess processes (%(default)s)")
    parser.add_argument("--output-dir", default="results", help="folder for det_accuracy.json (%(default)s)")
    parser.add_argument("--skip-training", action="store_true",
                        help="evaluate the finished run in train.output_dir (its training_log.json gives the times)")
    args = parser.parse_args(argv)
    work = Path(args.work_dir)
    overrides = [f"data.data_dir={work / 'shapes'}", f"data.cache_dir={work / 'cache'}",
                 f"train.output_dir={work / 'model'}", f"use.output_dir={work / 'predictions'}"]
    cfg = load_config(DetConfig, args.config, overrides + list(args.set))
    for split, count in (("train", args.train_images), ("test", args.test_images)):
        _render_if_missing(work / "shapes", split, count, args.seed, args.workers)
        preprocess(cfg.data, split, workers=args.workers)
    model_dir = Path(cfg.train.output_dir)
    if args.skip_training:
        trained = load_json(model_dir / "training_log.json")
        train_minutes = trained["seconds"] / 60
    else:
        if model_dir.exists() and not (model_dir / "backup").exists():
            shutil.rmtree(model_dir)  # a finished earlier run: train afresh (a killed one resumes)
        start = time.perf_counter()
        trained = train_from_cache(cfg)
        train_minutes = (time.perf_counter() - start) / 60
    result = use(cfg, Path(cfg.train.output_dir) / "best.keras", split="test")
    s = result["summary"]
    bands = s["scale_statistics"]["size_bands"]
    rows = [("training minutes (wall, incl. validation)", f"{train_minutes:.1f}"),
            ("epochs x training images", f"{trained['epochs_run']} x {trained['train_images']}"),
            ("training images/s", f"{trained['images_per_second']}"),
            (f"mAP@0.5 (VOC all-point), {args.test_images} held-out", f"{s['map50']:.4f}"),
            ("COCO mAP@[.5:.95]", f"{s['coco_map']:.4f}")]
    rows += [(f"AP@0.5 {name}", f"{v['ap50']:.4f}") for name, v in s["per_class"].items() if "ap50" in v]
    rows += [(f"objects {band}: recall@0.5 / main-scale share",
              f"{b['recall50'] or 0:.3f} / {b['share_of_main_scale'] or 0:.3f} {b['true_positives_by_scale']}")
             for band, b in bands.items()]
    width = max(len(r[0]) for r in rows)
    print(f"\nbackend {keras.backend.backend()}, {trained['policy']}, {os.cpu_count()} CPU cores")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    path = write_result(Path(args.output_dir) / "det_accuracy.json", {
        "training_precision": trained["policy"], "load_average_at_end": os.getloadavg(),
        "train_minutes": round(train_minutes, 2),
        "train_images": trained["train_images"], "val_images": trained["val_images"],
        "test_images": args.test_images, "epochs_run": trained["epochs_run"],
        "images_per_second": trained["images_per_second"], "map50_voc": s["map50"], "coco_map": s["coco_map"],
        "coco_map50": s["coco_map50"], "per_class": s["per_class"], "scale_statistics": s["scale_statistics"],
        "history": trained["history"]}, settings={"args": vars(args), "config": to_dict(cfg)}, argv=argv)
    print(f"written: {path}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
