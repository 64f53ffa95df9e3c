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

SHORTCUTS = (("kind", "model.kind"), ("loss", "train.loss"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shortcuts = cli.add_training_arguments(parser) + SHORTCUTS
    parser.add_argument("--kind", help="model.kind: heatmap | regression | integral")
    parser.add_argument("--loss", help="train.loss: mse | focal | mse_peak | wing | adaptive_wing")
    args = parser.parse_args(argv)
    from baselines.pipeline import train_from_cache  # after parsing: --help needs no Keras
    from baselines.data import LAYOUT
    cfg = cli.training_config_from_args(BaselinesConfig, args, shortcuts, LAYOUT, args.split)
    summary = train_from_cache(cfg, split=args.split, progress=not args.quiet)
    print(f"{summary['kind']} net")
    cli.print_training(summary)
    print("training:", json.dumps(summary["training"]))


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
