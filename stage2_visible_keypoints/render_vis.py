"""Render a synthetic SPEED-like split of the keypoint mesh.

    python -m stage2_visible_keypoints.render_vis --out runs/render --num-images 200

Writes images/, {split}.json, camera.json, mesh.obj, keypoint_names.json and
render_config_{split}.json into --out (see `render_split`).
"""

import argparse
import sys
import time
import warnings

import numpy as np

from common import cli
from common.data_io import load_json
from stage2_visible_keypoints.render import RenderConfig, render_split


def main(argv=None):
    """Exit status: 0, or 2 with one `error: ...` line for bad input."""
    return cli.run(_render, argv)


def _render(argv):
    defaults = RenderConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-images", type=int, default=defaults.num_images, help="images to render (%(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (%(default)s)")
    parser.add_argument("--split", default="train", help="name of the label file, {split}.json (%(default)s)")
    parser.add_argument("--camera", default=None, help="SPEED camera.json (default: the SPEED camera)")
    parser.add_argument("--mesh", default=None, help="keypoint mesh .obj (default: the bundled spacecraft)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering in parallel (%(default)s)")
    args = parser.parse_args(argv)

    try:
        config = RenderConfig(num_images=args.num_images, seed=args.seed, camera_json=args.camera,
                              mesh_path=args.mesh)
    except ValueError as err:
        parser.error(str(err))  # a bad option: usage + message, exit 2
    start = time.perf_counter()
    with warnings.catch_warnings():  # one line per warning (a symmetric mesh), like the errors
        warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}", file=sys.stderr)
        split_path = render_split(args.out, config, split=args.split, workers=args.workers)
    records = load_json(split_path)
    visible = np.array([record["visible"] for record in records], dtype=bool)
    print(f"wrote {len(records)} images to {split_path.parent / 'images' / args.split} and labels to {split_path}")
    print(f"keypoints per image: {visible.shape[1]}, visible fraction: {visible.mean():.3f}, "
          f"seconds: {time.perf_counter() - start:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
