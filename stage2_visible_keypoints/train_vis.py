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
import json

from common import cli
from stage2_visible_keypoints.config import BACKBONE_WEIGHTS_HELP, Stage2Config

SHORTCUTS = (("cache_dir", "data.cache_dir"), ("output_dir", "train.output_dir"), ("epochs", "train.epochs"),
             ("batch_size", "train.batch_size"), ("learning_rate", "train.learning_rate"),
             ("weights", "model.weights"), ("fine_tune", "train.fine_tune"), ("precision", "train.precision"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--split", default="train", help="cache split to train on (default: train)")
    parser.add_argument("--cache-dir", help="data.cache_dir")
    parser.add_argument("--output-dir", help="train.output_dir")
    parser.add_argument("--epochs", type=int, help="train.epochs")
    parser.add_argument("--batch-size", type=int, help="train.batch_size (spec default 128)")
    parser.add_argument("--learning-rate", type=float, help="train.learning_rate (spec default 5e-4)")
    parser.add_argument("--weights", help=f"model.weights: {BACKBONE_WEIGHTS_HELP}")
    parser.add_argument("--fine-tune", action="store_const", const=True, help="train.fine_tune")
    parser.add_argument("--precision", help="train.precision: auto|float32|mixed_float16|mixed_bfloat16")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    from stage2_visible_keypoints.pipeline import train_from_cache  # after parsing: --help needs no Keras
    cfg = cli.config_from_args(Stage2Config, args, SHORTCUTS)
    summary = train_from_cache(cfg, split=args.split, progress=not args.quiet)
    print(f"trained {summary['epochs_run']} epoch(s) ({summary['epochs_done']} of {summary['epochs_planned']} done) "
          f"on {summary['train_images']} images "
          f"({summary['val_images']} validation), {summary['backend']} backend, {summary['policy']}, "
          f"{summary['seconds']} s ({summary['images_per_second']} images/s)")
    print("last epoch:", json.dumps({k: round(v, 5) for k, v in summary["last"].items()}))
    print(f"models, history, plots and logs in {summary['output_dir']}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
