"""One command for every part: `keypose PART COMMAND [flags]`.

    keypose stage2 train --config configs/stage2_demo.yaml
    keypose ssd preprocess --labels data/train_annotations.json --images data/train --split train
    keypose baselines use --help

Each `PART COMMAND` runs the per-part script's `main(argv)` unchanged (its flags, its
`--help`, its one-line errors): `keypose stage2 train` is `python
stage2_visible_keypoints/train_vis.py`. Nothing imports Keras before the script has
parsed its arguments, so `keypose --help` and every `--help` start at once.
"""

import importlib
import sys

# part -> command -> (module, what it does). The modules are imported only when run.
COMMANDS = {
    "stage2": {
        "render": ("stage2_visible_keypoints.render_vis", "render SPEED-like images of a mesh"),
        "preprocess": ("stage2_visible_keypoints.preprocess_vis", "labels + images -> a cache split"),
        "train": ("stage2_visible_keypoints.train_vis", "train the keypoint model on a cache"),
        "use": ("stage2_visible_keypoints.use_vis", "predict (and evaluate, solve poses)"),
        "score": ("stage2_visible_keypoints.score_poses", "score a poses file against labels"),
        "pose": ("stage2_visible_keypoints.pose_vis", "full frames -> box -> keypoints -> pose"),
        "export": ("stage2_visible_keypoints.export_vis", "export to SavedModel, ONNX, LiteRT"),
    },
    "ssd": {
        "render": ("detection.ssd.render_det", "render the shapes data set"),
        "preprocess": ("detection.ssd.preprocess_det", "COCO boxes + images -> a cache split"),
        "train": ("detection.ssd.train_det", "train the anchor detector"),
        "use": ("detection.ssd.use_det", "detect (and evaluate: mAP)"),
        "export": ("detection.ssd.export_det", "export to SavedModel, ONNX, LiteRT"),
    },
    "centres": {
        "render": ("detection.centres.render_aerial", "render aerial scenes (DOTA layout)"),
        "preprocess": ("detection.centres.preprocess_centres", "DOTA folder -> tiled train/val/test caches"),
        "train": ("detection.centres.train_centres", "train the centre detector"),
        "use": ("detection.centres.use_centres", "detect centres (and evaluate)"),
        "export": ("detection.centres.export_centres", "export to SavedModel, ONNX, LiteRT"),
    },
    "baselines": {
        "render": ("baselines.render_base", "render stick figures"),
        "preprocess": ("baselines.preprocess_base", "COCO keypoints or a keypoint list + images -> a cache"),
        "train": ("baselines.train_base", "train HeatmapNet, RegressionNet or IntegralNet"),
        "use": ("baselines.use_base", "predict (and evaluate: PCK, MRE/SDR)"),
        "study": ("baselines.run_study", "the comparison, ablations and loss study"),
        "export": ("baselines.export_base", "export to SavedModel, ONNX, LiteRT"),
    },
}


def usage(part=None):
    lines = ["usage: keypose PART COMMAND [flags]   (keypose PART COMMAND --help for its flags)", ""]
    for name, commands in COMMANDS.items():
        if part in (None, name):
            lines.append(f"{name}:")
            lines += [f"  keypose {name} {command:<11} {what}" for command, (_, what) in commands.items()]
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    part, command = argv[0], argv[1] if len(argv) > 1 else None
    if part not in COMMANDS:
        print(f"{usage()}\nerror: unknown part {part!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if command in (None, "-h", "--help"):
        print(usage(part))
        return 0 if command else 2
    if command not in COMMANDS[part]:
        print(f"{usage(part)}\nerror: unknown command {command!r} for {part}; choose from "
              f"{', '.join(COMMANDS[part])}", file=sys.stderr)
        return 2
    from common import cli  # quietens TensorFlow's start-up logs before any script imports it

    module = importlib.import_module(COMMANDS[part][command][0])
    sys.argv[0] = f"keypose {part} {command}"  # what argparse shows as the program in usage lines
    return cli.run(module.main, argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
