"""Train HeatmapNet, RegressionNet or IntegralNet on a preprocessed cache.

    python baselines/train_base.py --config configs/baselines.yaml --kind heatmap --output-dir runs/baselines/heatmap

Writes best.keras, model.keras, config.json, history.csv, plots/ into train.output_dir.
A killed run resumes from its last finished epoch when the same command is run again.
Options beyond the flags (every key is in baselines/config.py): --set train.loss=focal,
train.augment=true, train.clipnorm=1.0, train.lr_schedule=constant, train.sigma_curriculum=[4,3,2].
"""

import argparse
import json

from common import cli
from baselines.config import BaselinesConfig
from baselines.pipeline import train_from_cache

SHORTCUTS = (("kind", "model.kind"), ("cache_dir", "data.cache_dir"), ("output_dir", "train.output_dir"),
             ("epochs", "train.epochs"), ("loss", "train.loss"), ("seed", "train.seed"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--split", default="train", help="cache split to train on (%(default)s)")
    parser.add_argument("--kind", help="model.kind: heatmap | regression | integral")
    parser.add_argument("--cache-dir", help="data.cache_dir")
    parser.add_argument("--output-dir", help="train.output_dir")
    parser.add_argument("--epochs", type=int, help="train.epochs")
    parser.add_argument("--loss", help="train.loss: mse | focal | mse_peak | wing | adaptive_wing")
    parser.add_argument("--seed", type=int, help="train.seed")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    cfg = cli.config_from_args(BaselinesConfig, args, SHORTCUTS)
    summary = train_from_cache(cfg, split=args.split, progress=not args.quiet)
    print(f"trained {summary['kind']} net: {summary['epochs_run']} epoch(s) on {summary['train_images']} images "
          f"({summary['val_images']} validation), {summary['backend']} backend, {summary['policy']}, "
          f"{summary['seconds']} s ({summary['images_per_second']} images/s)")
    print("training:", json.dumps(summary["training"]))
    print(f"models, history and plots in {summary['output_dir']}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
