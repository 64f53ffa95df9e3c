"""Detect objects with a trained detector; evaluate and analyse on a labelled cache.

    python detection/ssd/use_det.py --config configs/det_shapes.yaml --split test
    python detection/ssd/use_det.py --config configs/det_shapes.yaml --images my_images/

Writes into use.output_dir: detections.json (boxes in original and input pixels),
overlays/ (prediction red, ground truth green) and, on a labelled cache,
evaluation.json (mAP@0.5 VOC all-point, COCO mAP@[.5:.95], per-class AP, per-scale
statistics) and plots/ (anchor coverage, scale specialisation, object sizes,
feature maps, precision-recall).
"""

import argparse
from pathlib import Path

from common import cli
from detection.ssd.ssd_config import DetConfig
from detection.ssd.ssd_pipeline import use

SHORTCUTS = (("cache_dir", "data.cache_dir"), ("output_dir", "use.output_dir"),
             ("threshold", "use.score_threshold"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--model", help="trained model (default: {train.output_dir}/best.keras)")
    parser.add_argument("--split", default="test", help="labelled cache split (default: test)")
    parser.add_argument("--images", help="run on a folder of images (or one image) instead of a cache "
                        "(no evaluation)")
    parser.add_argument("--cache-dir", help="data.cache_dir")
    parser.add_argument("--output-dir", help="use.output_dir")
    parser.add_argument("--threshold", type=float, help="use.score_threshold for detections.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cfg = cli.config_from_args(DetConfig, args, SHORTCUTS)
    model_path = Path(args.model) if args.model else Path(cfg.train.output_dir) / "best.keras"
    result = use(cfg, model_path, split=args.split, images_dir=args.images, progress=not args.quiet)
    print(f"detected on {result['images']} images; outputs in {result['output_dir']}")
    if "summary" in result:
        s = result["summary"]
        print(f"mAP@0.5 (VOC all-point): {s['map50']:.4f}, COCO mAP@[.5:.95]: {s['coco_map']:.4f}, "
              "per class AP@0.5: " + ", ".join(f"{k} {v.get('ap50', 0):.3f}" for k, v in s["per_class"].items()))
        for band, stats in s["scale_statistics"]["size_bands"].items():
            print(f"  objects {band}: {stats['ground_truth']} boxes, recall {stats['recall50'] or 0:.3f}, "
                  f"true positives by scale {stats['true_positives_by_scale']}")
        print(f"evaluation: {Path(result['output_dir']) / 'evaluation.json'}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
