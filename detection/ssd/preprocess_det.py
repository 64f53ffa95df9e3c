"""Preprocess a COCO-format detection split into the detector's caches.

    python detection/ssd/preprocess_det.py --config configs/det_shapes.yaml --split train

Reads {data_dir}/{split}.json (or the file --labels names, images in the folder --images
names; bbox [x, y, w, h], or [x1, y1, x2, y2] with --bbox-format xyxy; auto guesses only
when unambiguous) and the images; writes
{cache_dir}/{split}/X_data.npy (uint8 images resized to data.input_size) and
Y_data.npz (padded boxes, classes, counts, scales, categories, config hash).
An unchanged config and unchanged inputs reuse the cache.
"""

import argparse

from common import cli
from detection.ssd.ssd_config import DetConfig

SHORTCUTS = (("data_dir", "data.data_dir"), ("cache_dir", "data.cache_dir"), ("bbox_format", "data.bbox_format"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--split", default="train", help="label file {data_dir}/{split}.json (default: train)")
    parser.add_argument("--data-dir", help="folder with {split}.json and the images (data.data_dir)")
    parser.add_argument("--cache-dir", help="where caches go: {cache_dir}/{split}/ (data.cache_dir)")
    parser.add_argument("--bbox-format", choices=("xywh", "xyxy", "auto"), help="data.bbox_format")
    cli.add_data_files(parser)
    cli.add_workers(parser, "processes decoding and resizing")
    cli.add_skip_bad(parser)
    cli.add_allow_outside(parser)
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    from detection.ssd.box_cache import preprocess  # after parsing: --help starts at once
    cfg = cli.config_from_args(DetConfig, args, SHORTCUTS)
    summary = preprocess(cfg.data, args.split, progress=not args.quiet, workers=args.workers, labels=args.labels,
                         images=args.images, skip_bad=args.skip_bad, allow_outside=args.allow_outside)
    if summary["note"]:
        print(summary["note"])
    if summary["rebuilt"]:
        print(f"rebuilding the cache: {summary['rebuilt']}")
    state = "reused (config and inputs unchanged)" if summary["reused"] else "written"
    print(f"cache {state}: {summary['cache']}")
    print(f"images: {summary['images']}, boxes: {summary['boxes']}, classes: {', '.join(summary['classes'])}, "
          f"bbox format: {summary['bbox_format']}, seconds: {summary['seconds']}")
    cli.print_skipped(summary["skipped"], summary["report"])


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
