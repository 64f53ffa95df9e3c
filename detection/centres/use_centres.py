"""Detect object centres with a trained model; evaluate on a labelled cache split.

    python detection/centres/use_centres.py --config configs/centres_aerial.yaml --split test
    python detection/centres/use_centres.py --config configs/centres_aerial.yaml --images my_images/

What the model was trained with (classes, tile and input size, sigma, model) comes from
the run's config.json beside --model; a config, flag or --set that says otherwise is an
error. Large images are cut into the same overlapping tiles as in preprocessing; peaks
(3x3 NMS, score threshold, sub-pixel refinement) are mapped to original pixels and
duplicates across tile borders merged. Writes into use.output_dir: detections/*.json,
overlays/ (truth green rings, detections red crosses), heatmaps/ and, on a cache
split, evaluation.json (P/R/F1 at use.match_distance, PCK at 5/10/20 px, MAE, MSE,
count error, per class, small / clustered / border objects separately).
"""

import argparse
from pathlib import Path

from common import cli
from detection.centres.centres_config import TRAINED_SETTINGS, CentresConfig

SHORTCUTS = (("threshold", "use.score_threshold"),)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shortcuts = cli.add_use_arguments(parser) + SHORTCUTS
    parser.add_argument("--threshold", type=float, help="use.score_threshold on the peak height")
    args = parser.parse_args(argv)
    from detection.centres.centres_data import LAYOUT  # after parsing: --help starts at once
    cfg, model_path, run_config = cli.run_config_from_args(CentresConfig, args, shortcuts, TRAINED_SETTINGS, LAYOUT)
    from detection.centres.centres_pipeline import use  # after the config: --help and config errors need no Keras
    if run_config is not None:
        print(f"trained with: classes {', '.join(cfg.data.class_names)}; {cfg.data.tile_size} px tiles at "
              f"{cfg.data.input_size[0]} px ({run_config})")
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
