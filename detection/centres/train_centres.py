"""Train the ResNet-18 centre detector on the preprocessed tiles.

    python detection/centres/train_centres.py --config configs/centres_aerial.yaml
    tensorboard --logdir runs/centres/model/logs

Writes into train.output_dir: best.keras (best validation loss), model.keras (last),
config.json, history.csv, plots/loss_curves.png, logs/ (TensorBoard, TensorFlow backend
only). AdamW with a StepLR-style schedule (train.lr_step_epochs, train.lr_gamma). A
killed run resumes from its last finished epoch when the same command is run again.
"""

import argparse

from common import cli
from detection.centres.centres_config import WEIGHTS_HELP, CentresConfig

SHORTCUTS = (("weights", "model.weights"), ("max_steps", "train.max_steps"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shortcuts = cli.add_training_arguments(parser, split=False) + SHORTCUTS
    parser.add_argument("--weights", help=f"model.weights: {WEIGHTS_HELP}")
    parser.add_argument("--max-steps", type=int, help="train.max_steps: batches per epoch (0 = all)")
    args = parser.parse_args(argv)
    from detection.centres.centres_pipeline import train_from_cache  # after parsing: --help needs no Keras
    from detection.centres.centres_data import LAYOUT
    cfg = cli.training_config_from_args(CentresConfig, args, shortcuts, LAYOUT, "train")
    summary = train_from_cache(cfg, progress=not args.quiet)
    cli.print_training(summary, unit="tiles")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
