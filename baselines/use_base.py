"""Predict with a trained model on a cache split and evaluate it.

    python baselines/use_base.py --config configs/baselines.yaml --model runs/baselines/heatmap/best.keras

Writes evaluation.json (PCK at 0.05-0.20 of the keypoints' bbox diagonal, mean error
in input pixels, MRE/SDR at study.spacing_mm), predictions.npz, overlays/ and heatmaps/
into use.output_dir. Use the config the model was trained with (train.loss decides
whether heatmaps are logits).
"""

import argparse
import json

from common import cli
from baselines.config import BaselinesConfig
from baselines.pipeline import use

SHORTCUTS = (("cache_dir", "data.cache_dir"), ("output_dir", "use.output_dir"), ("loss", "train.loss"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--model", required=True, help="a .keras model from train_base.py")
    parser.add_argument("--split", default="test", help="cache split (%(default)s)")
    parser.add_argument("--cache-dir", help="data.cache_dir")
    parser.add_argument("--output-dir", help="use.output_dir")
    parser.add_argument("--loss", help="train.loss the model was trained with (focal: heatmaps are logits)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    cfg = cli.config_from_args(BaselinesConfig, args, SHORTCUTS)
    result = use(cfg, args.model, split=args.split, progress=not args.quiet)
    s = result["summary"]
    print(f"{s['images']} images, decoder {s['decoder']}: PCK " + json.dumps(s["pck"]) +
          f", mean error {s['mean_error_px']:.2f} px")
    print(f"evaluation, predictions and overlays in {result['output_dir']}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
