"""Render the built-in stick-figure dataset (COCO keypoints labels).

    python baselines/render_base.py --output-dir runs/baselines/data --split train --num-images 4000 --seed 1

Writes `{output_dir}/images/{split}/*.png` (128x128 grayscale) and `{output_dir}/{split}.json`.
"""

import argparse
import time

from common import cli
from baselines.stickfigure import KEYPOINT_NAMES, render_dataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_output_dir(parser, "output folder", required=True)
    parser.add_argument("--split", default="train", help="split name: {split}.json, images/{split}/ (%(default)s)")
    parser.add_argument("--num-images", type=int, default=1000, help="images to render (%(default)s)")
    cli.add_seed(parser)
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error(f"--num-images must be >= 1, got {args.num_images}")
    start = time.perf_counter()
    path = render_dataset(args.output_dir, args.num_images, args.seed, args.split)
    print(f"wrote {args.num_images} images ({len(KEYPOINT_NAMES)} keypoints: {', '.join(KEYPOINT_NAMES)}) and "
          f"{path} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
