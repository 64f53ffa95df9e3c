"""Predict with a trained model on a cache split and evaluate it, or on a folder of images.

    python baselines/use_base.py --config configs/baselines.yaml --model runs/baselines/heatmap/best.keras
    python baselines/use_base.py --model runs/baselines/model/best.keras --images my_images/

Writes evaluation.json (PCK at 0.05-0.20 of the keypoints' bbox diagonal, mean error
in input pixels, MRE/SDR at study.spacing_mm), predictions.npz (keypoints normalised
and in the files' pixels), overlays/ and heatmaps/ into use.output_dir. What the model
was trained with (sizes, model, train.loss: whether heatmaps are logits) comes from the
run's config.json beside --model; a config, flag or --set that says otherwise is an error.
"""

import argparse
import json

from common import cli
from baselines.config import TRAINED_SETTINGS, BaselinesConfig

SHORTCUTS = (("loss", "train.loss"),)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shortcuts = cli.add_use_arguments(parser) + SHORTCUTS
    parser.add_argument("--loss", help="train.loss, for a model without config.json beside it "
                        "(focal: heatmaps are logits)")
    args = parser.parse_args(argv)
    from baselines.data import LAYOUT  # after parsing: --help starts at once
    cfg, model_path, run_config = cli.run_config_from_args(BaselinesConfig, args, shortcuts, TRAINED_SETTINGS, LAYOUT)
    from baselines.pipeline import use  # after the config: --help and config errors need no Keras
    if run_config is not None:
        print(f"trained with: model {cfg.model.kind}, loss {cfg.train.loss}, input {cfg.data.input_size} px, "
              f"heatmap {cfg.data.heatmap_size} px ({run_config})")
    result = use(cfg, model_path, split=args.split, images_dir=args.images, progress=not args.quiet)
    if "summary" in result:
        s = result["summary"]
        print(f"{s['images']} images, decoder {s['decoder']}: PCK " + json.dumps(s["pck"]) +
              f", mean error {s['mean_error_px']:.2f} px" + (" (raw: labels as given)" if "matched" in s else ""))
        if "matched" in s:
            m = s["matched"]
            print(f"matched within {m['groups']}: PCK " + json.dumps(m["pck"]) +
                  f", mean error {m['mean_error_px']:.2f} px ({m['relabelled_images']:.0%} of images relabelled)")
    else:
        print(f"{result['images']} images, decoder {result['decoder']}")
    print(f"predictions and overlays in {result['output_dir']}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
