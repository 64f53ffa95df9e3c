"""Where `use_vis.py --images` spends its wall time, per model format, in one run.

    python bench/use_vis_time.py                      # 100 full-size frames, 16 figures, .keras and .onnx
    python bench/use_vis_time.py --frames 8 --overlays 2 --repeats 1 --backbone resnet18   # smoke test

Builds a stage-2 run with random weights (--backbone, the default input size; --model a
trained run's best.keras instead) and exports it to ONNX (`export_vis.py`) and ONNX INT8
(calibrated on 32 of the frames), writes --frames
synthetic 1920x1200 JPEG frames (bench/inference.py's smooth content), then runs
`use_vis.py --model M --images FRAMES --set use.max_overlays=--overlays` in a fresh
process for each format, --repeats times, alternating the formats. Each run prints its
own time split (the model's calls, waiting for decoded images, and the rest: start-up,
loading the model, figures); the table gives each run's and the bar's figure, the share
of the wall time outside the model and the decoding. Writes --output-dir/use_vis_time.json.
"""

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import cli
from results_io import write_result  # bench/ is on the path when run as a script

ROOT = Path(__file__).resolve().parents[1]
SPLIT = re.compile(r"time: ([\d.]+) s = model ([\d.]+) s \+ waiting for images ([\d.]+) s.*?other ([\d.]+) s "
                   r"\(\d+%: start-up ([\d.]+) s, loading the model ([\d.]+) s, figures ([\d.]+) s")
FIELDS = ("wall_s", "model_s", "waiting_s", "other_s", "startup_s", "load_s", "figures_after_model_s")


def make_run(work, backbone):
    """A random-weight stage-2 run: best.keras, config.json and keypoint_names.json."""
    from common.config import save_config
    from common.data_io import save_json
    from stage2_visible_keypoints.config import Stage2Config
    from stage2_visible_keypoints.data import KEYPOINT_NAMES_FILE
    from stage2_visible_keypoints.model import build_model

    run = work / "run"
    run.mkdir(parents=True, exist_ok=True)
    cfg = Stage2Config()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=backbone, weights="none"))
    names = [f"kp{k:02d}" for k in range(11)]
    build_model(len(names), cfg.data, cfg.model, seed=0).save(run / "best.keras")
    save_config(cfg, run / "config.json")
    save_json(run / KEYPOINT_NAMES_FILE, names)
    return run / "best.keras"


def make_frames(folder, count):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):  # smooth content: JPEG decoding of noise is slower than of a real frame
        small = rng.integers(0, 256, (75, 120, 3), dtype=np.uint8)
        Image.fromarray(small).resize((1920, 1200), Image.BILINEAR).save(folder / f"frame{i:03d}.jpg", quality=90)
    return folder


def export_int8(keras_model, frames, export, count=32):
    """model_int8.onnx of the run, calibrated on `count` of the frames cut as use_vis.py cuts them."""
    from common.export import export_model
    from common.geometry import warp_image_file
    from common.run_config import load_run_config
    from stage2_visible_keypoints.config import TRAINED_SETTINGS, Stage2Config
    from stage2_visible_keypoints.predictor import load_stage2_model

    data = load_run_config(Stage2Config, keras_model, trained=TRAINED_SETTINGS)[0].data
    images = np.stack([warp_image_file(p, data.canvas_size, data.crop_size, data.input_size)[0]
                       for p in sorted(frames.glob("*.jpg"))[:count]])
    return export_model(load_stage2_model(keras_model, data.input_size), export, ("onnx_int8",), images)["onnx_int8"]


def script(name, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(ROOT / "stage2_visible_keypoints" / name), *map(str, args)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained stage-2 best.keras (with its config.json); default: random weights")
    parser.add_argument("--backbone", default="resnet50", help="of the random-weight model (%(default)s)")
    parser.add_argument("--frames", type=int, default=100, help="full-size JPEG frames (%(default)s)")
    parser.add_argument("--overlays", type=int, default=16, help="use.max_overlays (%(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per format (%(default)s)")
    parser.add_argument("--work-dir", help="for the run, export and frames (default: a temporary folder)")
    parser.add_argument("--output-dir", default="bench/results/use_vis_time", help="(%(default)s)")
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        keras_model = Path(args.model) if args.model else make_run(work, args.backbone)
        export = work / "export"
        script("export_vis.py", "--model", keras_model, "--format", "onnx", "--output-dir", export)
        frames = make_frames(work / "frames", args.frames)
        models = {"keras": keras_model, "onnx": export / "model.onnx",
                  "onnx_int8": export_int8(keras_model, frames, export)}
        rows = []
        for repeat in range(args.repeats):
            for fmt, model in models.items():
                out = script("use_vis.py", "--model", model, "--images", frames, "--set",
                             f"use.max_overlays={args.overlays}", "--output-dir", work / f"out_{fmt}_{repeat}")
                found = SPLIT.search(out)
                if found is None:
                    raise SystemExit(f"no time split in use_vis.py's output:\n{out[-1000:]}")
                row = {"format": fmt, "repeat": repeat, **dict(zip(FIELDS, map(float, found.groups())))}
                row["outside_share"] = round(row["other_s"] / row["wall_s"], 3)
                rows.append(row)
                if not args.quiet:
                    print(f"{fmt:9s} run {repeat}: wall {row['wall_s']:5.1f} s, model {row['model_s']:5.1f} s, waiting "
                          f"{row['waiting_s']:4.1f} s, outside {row['other_s']:4.1f} s ({row['outside_share']:.0%}: "
                          f"start-up {row['startup_s']:.1f}, loading {row['load_s']:.1f}, figures after the model "
                          f"{row['figures_after_model_s']:.1f})", flush=True)
    summary = {fmt: {"outside_share_median": float(np.median([r["outside_share"] for r in rows if r["format"] == fmt])),
                     "wall_s_median": float(np.median([r["wall_s"] for r in rows if r["format"] == fmt]))}
               for fmt in models}
    for fmt, s in summary.items():
        print(f"{fmt}: median wall {s['wall_s_median']:.1f} s, outside the model and decoding "
              f"{s['outside_share_median']:.0%} (bar: under 20 %)")
    path = write_result(Path(args.output_dir) / "use_vis_time.json", {"rows": rows, "summary": summary}, args,
                        argv=argv)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
