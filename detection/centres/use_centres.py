"""Detect object centres with a trained model; evaluate on a labelled cache split.

    python detection/centres/use_centres.py --config configs/centres_aerial.yaml --split test
    python detection/centres/use_centres.py --config configs/centres_aerial.yaml --images my_images/

Large images are cut into the same overlapping tiles as in preprocessing; peaks
(3x3 NMS, score threshold, sub-pixel refinement) are mapped to original pixels and
duplicates across tile borders merged. Writes into use.output_dir: detections/*.json,
overlays/ (truth green rings, detections red crosses), heatmaps/ and, on a cache
split, evaluation.json (P/R/F1 at use.match_distance, PCK at 5/10/20 px, MAE, MSE,
count error, per class, small / clustered / border objects separately).
"""

import argparse
from pathlib import Path

from common import cli
from detection.centres.centres_config import CentresConfig
from detection.centres.centres_pipeline import use

SHORTCUTS = (("cache_dir", "data.cache_dir"), ("output_dir", "use.output_dir"),
             ("threshold", "use.score_threshold"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--model", help="trained model (default: {train.output_dir}/best.keras)")
    parser.add_argument("--split", default="test", help="labelled cache split: train|val|test (default: test)")
    parser.add_argument("--images", help="run on a folder of images (or one image) instead of a cache "
                        "(no evaluation)")
    parser.add_argument("--cache-dir", help="data.cache_dir")
    parser.add_argument("--output-dir", help="use.output_dir")
    parser.add_argument("--threshold", type=float, help="use.score_threshold on the peak height")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cfg = cli.config_from_args(CentresConfig, args, SHORTCUTS)
    model_path = Path(args.model) if args.model else Path(cfg.train.output_dir) / "best.keras"
    result = use(cfg, model_path, split=args.split, images_dir=args.images, progress=not args.quiet)
    print(f"{result['images']} images ({result['tiles']} tiles): {result['detections']} centres "
          f"in {result['seconds']} s; outputs in {result['output_dir']}")
    if "summary" in result:
        s = result["summary"]
        print(f"P {_fmt(s['precision'])}, R {_fmt(s['recall'])}, F1 {_fmt(s['f1'])} at {s['match_distance']:g} px; "
              "PCK " + ", ".join(f"@{k}: {_fmt(v)}" for k, v in s["pck"].items())
              + f"; MAE {_fmt(s['mae']['euclidean'])} px; count error {_fmt(s['count_error']['mean_abs'])}")
        for name in ("small", "clustered"):
            g = s["groups"].get(name, {})
            print(f"  {name}: {g.get('true', 0)} objects, recall {_fmt(g.get('recall'))}, "
                  f"PCK@10 {_fmt(g.get('pck', {}).get('10'))}")
        print(f"evaluation: {Path(result['output_dir']) / 'evaluation.json'}")


def _fmt(value):
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
