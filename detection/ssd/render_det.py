"""Render the synthetic shapes detection dataset (images + COCO JSON).

    python detection/ssd/render_det.py --out runs/det/shapes --split train --num-images 3000 --seed 1

Writes images/{split}/*.png and {split}.json into --out: 224x224 images with 1 to
--max-objects objects, small circles, medium squares, large triangles (see detection/ssd/shapes.py).
"""

import argparse
import time

from common import cli
from common.data_io import load_json
from detection.ssd.shapes import ShapesConfig, write_shapes


def main(argv=None):
    defaults = ShapesConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--split", default="train", help="name of the label file, {split}.json (%(default)s)")
    parser.add_argument("--num-images", type=int, default=defaults.num_images, help="images (%(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (%(default)s)")
    parser.add_argument("--max-objects", type=int, default=defaults.max_objects, help="objects per image, at most "
                        "(%(default)s)")
    parser.add_argument("--size", type=int, default=defaults.image_size[0], help="image side in pixels (%(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering in parallel (%(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        cfg = ShapesConfig(num_images=args.num_images, seed=args.seed, max_objects=args.max_objects,
                           image_size=(args.size, args.size))
    except ValueError as err:
        parser.error(str(err))
    start = time.perf_counter()
    path = write_shapes(args.out, cfg, args.split, workers=args.workers, progress=not args.quiet)
    coco = load_json(path)
    print(f"wrote {len(coco['images'])} images and {len(coco['annotations'])} boxes: {path} "
          f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
