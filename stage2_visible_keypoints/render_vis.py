"""Render a synthetic SPEED-like split of the keypoint mesh.

    python -m stage2_visible_keypoints.render_vis --output-dir runs/render --num-images 200
    python -m stage2_visible_keypoints.render_vis --output-dir runs/speed --scene speed  # 3-40 m, anywhere

Writes images/, {split}.json, camera.json, mesh.obj, keypoint_names.json and
render_config_{split}.json into --output-dir, and {split}_boxes.json (the object's box,
COCO format) for the stage-1 detector (see `render_split`).
"""

import argparse
import time

import numpy as np

from common import cli
from common.data_io import load_json
from stage2_visible_keypoints.render import SCENES, RenderConfig, render_split


def main(argv=None):
    """Exit status: 0, or 2 with one `error: ...` line for bad input."""
    return cli.run(_render, argv)


def _render(argv):
    defaults = RenderConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_output_dir(parser, "output folder", required=True)
    parser.add_argument("--num-images", type=int, default=defaults.num_images, help="images to render (%(default)s)")
    cli.add_seed(parser)
    parser.add_argument("--split", default="train", help="name of the label file, {split}.json (%(default)s)")
    parser.add_argument("--camera", default=None, help="SPEED camera.json (default: the SPEED camera)")
    parser.add_argument("--mesh", default=None, help="keypoint mesh .obj (default: the bundled spacecraft)")
    cli.add_workers(parser, "processes rendering in parallel")
    cli.add_quiet(parser)
    scene = parser.add_argument_group("scene and image (RenderConfig)")
    scene.add_argument("--scene", choices=tuple(SCENES), default=defaults.scene,
                       help="centred: 9-16 m near the image centre; speed: 3-40 m anywhere in the frame, as in "
                       "SPEED (%(default)s)")
    scene.add_argument("--distance-range", type=float, nargs=2, metavar=("MIN", "MAX"), default=None,
                       help="camera-to-body distance, metres (default: the scene's, %s)"
                       % ", ".join(f"{k} {v['distance_range'][0]:g}-{v['distance_range'][1]:g}"
                                   for k, v in SCENES.items()))
    scene.add_argument("--max-offset-px", type=float, default=defaults.max_offset_px,
                       help="centred scene: the body origin projects within this many px of the principal point "
                       "(%(default)s)")
    scene.add_argument("--backgrounds", default=_format_weights(defaults.backgrounds),
                       help="weight per background kind, e.g. stars=1 for stars only (%(default)s)")
    scene.add_argument("--blur-prob", type=float, default=defaults.blur_prob,
                       help="chance of a Gaussian blur per image (%(default)s)")
    scene.add_argument("--noise-std", type=float, default=defaults.noise_std,
                       help="std of additive grey noise, 0-255 units (%(default)s)")
    scene.add_argument("--ambient", type=float, default=defaults.ambient,
                       help="light on faces turned from the sun, fraction of albedo (%(default)s)")
    scene.add_argument("--format", choices=("jpg", "png"), default=defaults.image_format,
                       help="image file format (%(default)s)")
    args = parser.parse_args(argv)

    try:
        config = RenderConfig(num_images=args.num_images, seed=args.seed, camera_json=args.camera,
                              mesh_path=args.mesh, scene=args.scene,
                              distance_range=None if args.distance_range is None else tuple(args.distance_range),
                              max_offset_px=args.max_offset_px, backgrounds=_parse_weights(args.backgrounds),
                              blur_prob=args.blur_prob, noise_std=args.noise_std, ambient=args.ambient,
                              image_format=args.format)
    except ValueError as err:
        parser.error(str(err))  # a bad option: usage + message, exit 2
    start = time.perf_counter()
    with cli.one_line_warnings():  # a symmetric mesh
        split_path = render_split(args.output_dir, config, split=args.split, workers=args.workers,
                                  progress=not args.quiet)
    records = load_json(split_path)
    visible = np.array([record["visible"] for record in records], dtype=bool)
    print(f"wrote {len(records)} images to {split_path.parent / 'images' / args.split} and labels to {split_path}")
    print(f"keypoints per image: {visible.shape[1]}, visible fraction: {visible.mean():.3f}, "
          f"seconds: {time.perf_counter() - start:.1f}")
    return 0


def _format_weights(weights):
    return ",".join(f"{kind}={weight:g}" for kind, weight in weights.items())


def _parse_weights(text):
    """"stars=0.6,earth=0.4" -> {"stars": 0.6, "earth": 0.4}; a malformed entry raises ValueError."""
    weights = {}
    for item in text.split(","):
        kind, sep, weight = item.partition("=")
        kind = kind.strip()
        try:
            weight = float(weight)
        except ValueError:
            sep = ""
        if not sep or kind in weights:
            raise ValueError(f"--backgrounds takes KIND=WEIGHT[,KIND=WEIGHT...], each kind once. Received: {text!r}")
        weights[kind] = weight
    return weights


if __name__ == "__main__":
    raise SystemExit(main())
