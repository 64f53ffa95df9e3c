"""Preprocess a SPEED-style split into the stage-2 caches (X_data.npy, Y_data.npz).

    python stage2_visible_keypoints/preprocess_vis.py --config configs/stage2_demo.yaml --split train

Each image is letterboxed onto the canvas (1920x1080), centre-cropped (1000x1000) and
resized to the model input (128x128); its transform is stored so predictions map back
to original pixels. An unchanged config and unchanged inputs reuse the cache.
"""

import argparse

from common import cli
from stage2_visible_keypoints.config import Stage2Config

SHORTCUTS = (("data_dir", "data.data_dir"), ("cache_dir", "data.cache_dir"), ("heatmaps", "data.cache_heatmaps"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_arguments(parser)
    parser.add_argument("--split", default="train", help="label file {data_dir}/{split}.json (default: train)")
    parser.add_argument("--data-dir", help="folder with {split}.json, images/, camera.json (data.data_dir)")
    parser.add_argument("--cache-dir", help="where caches go: {cache_dir}/{split}/ (data.cache_dir)")
    parser.add_argument("--heatmaps", action="store_const", const=True,
                        help="also cache the Gaussian heatmap targets (data.cache_heatmaps)")
    cli.add_data_files(parser)
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
    print(f"images: {summary['images']}, keypoints: {summary['keypoints']}, "
          f"visible fraction: {summary['visible_fraction']:.3f}, seconds: {summary['seconds']}")
    cli.print_skipped(summary["skipped"], summary["report"])
    if summary["poses"] and summary["keypoints_3d"]:
        print("poses and 3-D keypoints cached: use_vis.py will solve and score each image's pose")
    elif summary["poses"]:
        print("poses cached, but no camera.json and mesh.obj named like the keypoints: use_vis.py will not "
              "solve poses")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
