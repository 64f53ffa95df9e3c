"""Render synthetic aerial images with object centres, as a DOTA-format folder.

    python detection/centres/render_aerial.py --out runs/centres/aerial --num-images 3334 --seed 0 --workers 2

Writes images/aerial_NNNNNN.jpg (512x512) and labelTxt/aerial_NNNNNN.txt (DOTA lines:
4 corners of the oriented box, category, difficult) into --out; preprocess_centres.py
then reads the folder exactly like real DOTA data.
"""

import argparse
import time

from common import cli
from detection.centres.aerial import AerialConfig, render_folder


def main(argv=None):
    defaults = AerialConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (gets images/ and labelTxt/)")
    parser.add_argument("--num-images", type=int, default=100, help="images to render (%(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (%(default)s)")
    parser.add_argument("--image-size", type=int, default=defaults.image_size, help="square size, px (%(default)s)")
    parser.add_argument("--max-objects", type=int, default=defaults.max_objects, help="per image (%(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering in parallel (%(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        cfg = AerialConfig(image_size=args.image_size, max_objects=args.max_objects)
    except ValueError as err:
        parser.error(str(err))
    start = time.perf_counter()
    summary = render_folder(args.out, args.num_images, args.seed, cfg, args.workers, progress=not args.quiet)
    print(f"wrote {summary['images']} images with {summary['objects']} objects to {summary['folder']} "
          f"(images/, labelTxt/) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
