"""Preprocess a SPEED-style split into the stage-2 caches (X_data.npy, Y_data.npz).

    python stage2_visible_keypoints/preprocess_vis.py --config configs/stage2_demo.yaml --split train

Each image is letterboxed onto the canvas (1920x1080), centre-cropped (1000x1000) and
resized to the model input (128x128); its transform is stored so predictions map back
to original pixels. An unchanged config and unchanged inputs reuse the cache.

A COCO keypoints file (`--format coco`, or found so: a JSON object with "annotations")
gives one sample per instance of one category (`--category`, or the only one with
keypoints), cropped around its box (data.crop box, data.box_margin, data.box_jitter);
iscrowd instances and those with no labelled keypoint are skipped and counted:

    python stage2_visible_keypoints/preprocess_vis.py --labels coco/person_keypoints_train2017.json \
        --images coco/train2017 --cache-dir coco/cache
"""

import argparse

from common import cli
from stage2_visible_keypoints.config import Stage2Config

SHORTCUTS = (("data_dir", "data.data_dir"), ("cache_dir", "data.cache_dir"), ("heatmaps", "data.cache_heatmaps"),
             ("format", "data.label_format"), ("category", "data.category"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--split", default="train", help="label file {data_dir}/{split}.json (default: train)")
    parser.add_argument("--data-dir", help="folder with {split}.json, images/, camera.json (data.data_dir)")
    parser.add_argument("--cache-dir", help="where caches go: {cache_dir}/{split}/ (data.cache_dir)")
    parser.add_argument("--heatmaps", action="store_const", const=True,
                        help="also cache the Gaussian heatmap targets (data.cache_heatmaps)")
    cli.add_data_files(parser)
    parser.add_argument("--format", choices=("auto", "speed", "coco"),
                        help="data.label_format: the SPEED layout or a COCO keypoints file (default auto: told by "
                        "the file)")
    parser.add_argument("--category", help="data.category: the COCO category to read, by name or id (default: the "
                        "only one with keypoints)")
    cli.add_workers(parser, "processes decoding and resizing images")
    cli.add_skip_bad(parser)
    cli.add_allow_outside(parser)
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    from stage2_visible_keypoints.data import preprocess  # after parsing: --help starts at once
    cfg = cli.config_from_args(Stage2Config, args, SHORTCUTS)
    with cli.one_line_warnings():  # a symmetric mesh.obj
        summary = preprocess(cfg.data, args.split, progress=not args.quiet, workers=args.workers, labels=args.labels,
                             images=args.images, skip_bad=args.skip_bad, allow_outside=args.allow_outside)
    if summary["rebuilt"]:
        print(f"rebuilding the cache: {summary['rebuilt']}")
    state = "reused (config and inputs unchanged)" if summary["reused"] else "written"
    print(f"cache {state}: {summary['cache']}")
    coco = summary["coco"]
    if coco:
        print(f"COCO keypoints, category {coco['category_name']!r}: {summary['images']} samples (instances) from "
              f"{coco['source_images']} images, cropped by their boxes; instances skipped: {coco['skipped_iscrowd']} "
              f"iscrowd, {coco['skipped_unlabelled']} with no labelled keypoint"
              + (f", {coco['skipped_other_category']} of other categories" if coco["skipped_other_category"] else ""))
        print("no camera or mesh for COCO keypoints: poses are not solved (PnP skipped)")
    noun = "samples" if coco else "images"
    print(f"{noun}: {summary['images']}, keypoints: {summary['keypoints']}, "
          f"visible fraction: {summary['visible_fraction']:.3f}, seconds: {summary['seconds']}")
    cli.print_skipped(summary["skipped"], summary["report"])
    if summary["poses"] and summary["keypoints_3d"]:
        print("poses and 3-D keypoints cached: use_vis.py will solve and score each image's pose")
    elif summary["poses"]:
        print("poses cached, but no camera.json and mesh.obj named like the keypoints: use_vis.py will not "
              "solve poses")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
