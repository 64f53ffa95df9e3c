"""Train the multi-scale single-shot detector on a preprocessed cache.

    python detection/ssd/train_det.py --config configs/det_shapes.yaml
    tensorboard --logdir runs/det/model/logs

Writes into train.output_dir: best.keras (best validation loss), model.keras (last),
config.json, categories.json, history.csv, training_log.json, plots/loss_curves.png,
logs/ (TensorBoard, TensorFlow backend only). Augmentation (flips, scale jitter)
moves the boxes with the image. A killed run resumes from its last finished epoch
when the same command is run again.
"""

import argparse

from common import cli
from detection.ssd.ssd_config import DetConfig

SHORTCUTS = (("optimizer", "train.optimizer"),)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shortcuts = cli.add_training_arguments(parser) + SHORTCUTS
    parser.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), help="train.optimizer")
    args = parser.parse_args(argv)
    from detection.ssd.ssd_pipeline import train_from_cache  # after parsing: --help needs no Keras
    from detection.ssd.box_cache import LAYOUT
    cfg = cli.training_config_from_args(DetConfig, args, shortcuts, LAYOUT, args.split)
    summary = train_from_cache(cfg, split=args.split, progress=not args.quiet)
    cli.print_training(summary)


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
