"""Detect objects with a trained detector; evaluate and analyse on a labelled cache.

    python detection/ssd/use_det.py --config configs/det_shapes.yaml --split test
    python detection/ssd/use_det.py --config configs/det_shapes.yaml --images my_images/

What the detector was trained with (input size, anchors, model) comes from the run's
config.json beside --model; a config, flag or --set that says otherwise is an error.
Writes into use.output_dir: detections.json (boxes in original and input pixels),
overlays/ (prediction red, ground truth green) and, on a labelled cache,
evaluation.json (mAP@0.5 VOC all-point, COCO mAP@[.5:.95], per-class AP, box IoU,
per-scale statistics) and plots/ (anchor coverage, scale specialisation, object sizes,
feature maps, precision-recall).
"""

import argparse
from pathlib import Path

from common import cli
from detection.ssd.ssd_config import TRAINED_SETTINGS, DetConfig

SHORTCUTS = (("threshold", "use.score_threshold"),)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shortcuts = cli.add_use_arguments(parser) + SHORTCUTS
    parser.add_argument("--threshold", type=float, help="use.score_threshold for detections.json")
    args = parser.parse_args(argv)
    from detection.ssd.box_cache import LAYOUT  # after parsing: --help starts at once
    cfg, model_path, run_config = cli.run_config_from_args(DetConfig, args, shortcuts, TRAINED_SETTINGS, LAYOUT)
    from detection.ssd.ssd_pipeline import use  # after the config: --help and config errors need no Keras
    if run_config is not None:
        print(f"trained with: input {cfg.data.input_size[0]}x{cfg.data.input_size[1]}, anchor sizes "
              f"{cfg.model.anchor_sizes}, {cfg.train.objectness_loss} objectness loss ({run_config})")
    result = use(cfg, model_path, split=args.split, images_dir=args.images, progress=not args.quiet)
    print(f"detected on {result['images']} images; outputs in {result['output_dir']}")
    if "summary" in result:
        s = result["summary"]
        print(f"mAP@0.5 (VOC all-point): {s['map50']:.4f}, COCO mAP@[.5:.95]: {s['coco_map']:.4f}, "
              "per class AP@0.5: " + ", ".join(f"{k} {v.get('ap50', 0):.3f}" for k, v in s["per_class"].items()))
        iou = s["box_iou"]
        print(f"box IoU of the best detection per object (score >= {iou['score_threshold']:g}): mean "
              f"{iou['mean'] or 0:.3f}, median {iou['median'] or 0:.3f}")
        for band, stats in s["scale_statistics"]["size_bands"].items():
            print(f"  objects {band}: {stats['ground_truth']} boxes, recall {stats['recall50'] or 0:.3f}, "
                  f"true positives by scale {stats['true_positives_by_scale']}")
        print(f"evaluation: {Path(result['output_dir']) / 'evaluation.json'}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
