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
from detection.ssd.ssd_pipeline import train_from_cache

SHORTCUTS = (("cache_dir", "data.cache_dir"), ("output_dir", "train.output_dir"), ("epochs", "train.epochs"),
             ("batch_size", "train.batch_size"), ("learning_rate", "train.learning_rate"),
             ("optimizer", "train.optimizer"), ("precision", "train.precision"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--split", default="train", help="cache split to train on (default: train)")
    parser.add_argument("--cache-dir", help="data.cache_dir")
    parser.add_argument("--output-dir", help="train.output_dir")
    parser.add_argument("--epochs", type=int, help="train.epochs")
    parser.add_argument("--batch-size", type=int, help="train.batch_size")
    parser.add_argument("--learning-rate", type=float, help="train.learning_rate (peak of the cosine schedule)")
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), help="train.optimizer")
    parser.add_argument("--precision", help="train.precision: auto|float32|mixed_float16|mixed_bfloat16")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    cfg = cli.config_from_args(DetConfig, args, SHORTCUTS)
    summary = train_from_cache(cfg, split=args.split, progress=not args.quiet)
    last = {k: round(v[-1], 5) for k, v in summary["history"].items() if v and k != "learning_rate"}
    print(f"trained {summary['epochs_run']} epoch(s) on {summary['train_images']} images "
          f"({summary['val_images']} validation), {summary['backend']} backend, {summary['policy']}, "
          f"{summary['seconds']} s ({summary['images_per_second']} images/s); last epoch: {last}")
    print(f"models, history, plots and logs in {summary['output_dir']}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
