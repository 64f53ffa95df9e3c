"""Train the ResNet-18 centre detector on the preprocessed tiles.

    python detection/centres/train_centres.py --config configs/centres_aerial.yaml
    tensorboard --logdir runs/centres/model/logs

Writes into train.output_dir: best.keras (best validation loss), model.keras (last),
config.json, history.csv, plots/loss_curves.png, logs/ (TensorBoard, TensorFlow backend
only). AdamW with a StepLR-style schedule (train.lr_step_epochs, train.lr_gamma). A
killed run resumes from its last finished epoch when the same command is run again.
"""

import argparse
import json

from common import cli
from detection.centres.centres_config import WEIGHTS_HELP, CentresConfig
from detection.centres.centres_pipeline import train_from_cache

SHORTCUTS = (("cache_dir", "data.cache_dir"), ("output_dir", "train.output_dir"), ("epochs", "train.epochs"),
             ("batch_size", "train.batch_size"), ("learning_rate", "train.learning_rate"),
             ("weights", "model.weights"), ("max_steps", "train.max_steps"), ("precision", "train.precision"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--cache-dir", help="data.cache_dir")
    parser.add_argument("--output-dir", help="train.output_dir")
    parser.add_argument("--epochs", type=int, help="train.epochs")
    parser.add_argument("--batch-size", type=int, help="train.batch_size")
    parser.add_argument("--learning-rate", type=float, help="train.learning_rate (AdamW, default 1e-3)")
    parser.add_argument("--weights", help=f"model.weights: {WEIGHTS_HELP}")
    parser.add_argument("--max-steps", type=int, help="train.max_steps: batches per epoch (0 = all)")
    parser.add_argument("--precision", help="train.precision: auto|float32|mixed_float16|mixed_bfloat16")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    cfg = cli.config_from_args(CentresConfig, args, SHORTCUTS)
    summary = train_from_cache(cfg, progress=not args.quiet)
    print(f"trained {summary['epochs_run']} epoch(s) on {summary['train_tiles']} tiles "
          f"({summary['val_tiles']} validation), {summary['backend']} backend, {summary['policy']}, "
          f"{summary['seconds']} s ({summary['images_per_second']} tiles/s)")
    print("last epoch:", json.dumps({k: round(v, 5) for k, v in summary["last"].items()}))
    print(f"models, history, plots and logs in {summary['output_dir']}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
