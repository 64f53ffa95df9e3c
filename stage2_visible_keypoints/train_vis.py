"""Train the stage-2 ResNet-50 U-Net on a preprocessed cache.

    python stage2_visible_keypoints/train_vis.py --config configs/stage2_demo.yaml
    tensorboard --logdir runs/demo/model/logs

Writes into train.output_dir: best.keras (best validation loss), model.keras (last),
config.json (resolved config), keypoint_names.json (for use on unlabelled images),
history.csv, plots/loss_curves.png, logs/ (TensorBoard, TensorFlow backend only). A
killed run resumes from its last finished epoch when the same command is run again;
otherwise a new run starts a new history. With --weights imagenet|PATH the backbone
starts frozen; --fine-tune then starts from best.keras, unfreezes the backbone at
train.fine_tune_learning_rate and writes into train.output_dir/fine_tune/.
"""

import argparse

from common import cli
from stage2_visible_keypoints.config import BACKBONE_WEIGHTS_HELP, Stage2Config

SHORTCUTS = (("weights", "model.weights"), ("fine_tune", "train.fine_tune"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shortcuts = cli.add_training_arguments(parser) + SHORTCUTS
    parser.add_argument("--weights", help=f"model.weights: {BACKBONE_WEIGHTS_HELP}")
    parser.add_argument("--fine-tune", action="store_const", const=True, help="train.fine_tune")
    args = parser.parse_args(argv)
    from stage2_visible_keypoints.pipeline import train_from_cache  # after parsing: --help needs no Keras
    from stage2_visible_keypoints.data import LAYOUT
    cfg = cli.training_config_from_args(Stage2Config, args, shortcuts, LAYOUT, args.split)
    summary = train_from_cache(cfg, split=args.split, progress=not args.quiet)
    cli.print_training(summary)


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
