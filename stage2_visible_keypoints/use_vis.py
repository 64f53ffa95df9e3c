"""Predict keypoints with a trained stage-2 model; evaluate when labels exist.

    python stage2_visible_keypoints/use_vis.py --config configs/stage2_demo.yaml --split test
    python stage2_visible_keypoints/use_vis.py --model runs/demo/model/best.keras --images my_images/
    python stage2_visible_keypoints/use_vis.py --model runs/demo/export/model.onnx --images my_images/ --no-figures
    python stage2_visible_keypoints/use_vis.py --model coco/model/best.keras --images coco/val2017 \
        --boxes coco/detections.json --labels coco/person_keypoints_val2017.json

What the model was trained with (sizes, backbone, decoder) comes from the run's
config.json beside --model; a config, flag or --set that says otherwise is an error.
--model may also name a file export_vis.py wrote (SavedModel folder, .onnx, .tflite).

Writes into use.output_dir: overlays/ (input frame; truth green, prediction red),
original_overlays/ (on the source image), heatmaps/ (per-keypoint maps), per_image/*.json
(keypoints in original and input pixels, confidence, predicted visibility, pose) and, on
a labelled cache, evaluation_summary.json and plots/.

COCO keypoints (a model trained on a COCO keypoints cache): on a cache split, each
instance is one record (per_image/FILE.annID.json, with its error and OKS), the
predictions are written as COCO keypoint results (keypoint_results.json) and the summary
adds the COCO keypoint AP (OKS; `stage2_visible_keypoints.coco`). On --images, --boxes
crops every box of a detections file (COCO detection results, or use_det.py's
detections.json) and --labels (a COCO keypoints file) adds the AP against it (alone, it
crops the labelled boxes). There is no camera or mesh for COCO data: no poses.

Pose: when the camera and the object's 3-D keypoints are known (a cache built from a
data folder with camera.json and mesh.obj, or --camera and --mesh), each image's pose
is solved by PnP (RANSAC) from its predicted-visible keypoints, drawn on the overlays
as the model's edges (magenta), written to poses.json (the SPEED label layout, images
with a pose only) and scored against the labelled poses (SPEED score).
"""

import argparse
import time
from pathlib import Path

STARTED = time.perf_counter()  # before the imports below: the time split covers the whole run

from common import cli
from stage2_visible_keypoints.config import TRAINED_SETTINGS, Stage2Config

SHORTCUTS = (("threshold", "use.visibility_threshold"), ("camera", "use.camera"), ("mesh", "use.mesh"),
             ("no_figures", "use.max_overlays"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shortcuts = cli.add_use_arguments(
        parser, "{train.output_dir}/best.keras; with train.fine_tune, fine_tune/best.keras in it") + SHORTCUTS
    parser.add_argument("--threshold", type=float, help="use.visibility_threshold on the peak height")
    parser.add_argument("--camera", help="use.camera: SPEED camera JSON, for the pose of --images")
    parser.add_argument("--mesh", help="use.mesh: OBJ whose vertices are the keypoints, for the pose of --images "
                        "(vertex names: those in the run's keypoint_names.json, in any order)")
    parser.add_argument("--boxes", metavar="FILE", help="with --images: crop every box of this detections file "
                        "(COCO detection results, or use_det.py's detections.json) and write COCO keypoint results")
    parser.add_argument("--labels", metavar="FILE", help="with --images: a COCO keypoints file; the OKS AP of the "
                        "predictions against it (without --boxes, its labelled boxes are cropped)")
    parser.add_argument("--no-figures", action="store_const", const=0,
                        help="draw no overlays or heatmap figures (use.max_overlays=0), for speed")
    args = parser.parse_args(argv)
    if (args.boxes or args.labels) and not args.images:
        parser.error("--boxes and --labels go with --images (a cache split carries its own labels)")
    from stage2_visible_keypoints.data import LAYOUT  # after parsing: --help starts at once
    cfg, model_path, run_config = cli.run_config_from_args(Stage2Config, args, shortcuts, TRAINED_SETTINGS, LAYOUT)
    from stage2_visible_keypoints.pipeline import use  # after the config: --help and config errors need no Keras
    if run_config is not None:
        print(f"trained with: backbone {cfg.model.backbone}, input {cfg.data.input_size[0]}x{cfg.data.input_size[1]}"
              f", SoftArgMax beta {cfg.model.beta:g}{' debiased' if cfg.model.debias else ''} ({run_config})")
    result = use(cfg, model_path, split=args.split, images_dir=args.images, progress=not args.quiet,
                 boxes=args.boxes, labels=args.labels)
    unit = "instances" if "results" in result else "images"
    print(f"predicted {result['images']} {unit}; outputs in {result['output_dir']}")
    print(time_split(result["timing"], time.perf_counter() - STARTED))
    if "results" in result:
        print(f"COCO keypoint results: {result['results']}; no camera or mesh for COCO keypoints, so no poses "
              "(PnP skipped)")
    if "coco" in result:
        _print_coco(result["coco"])
    if "poses_found" in result:
        print(f"pose found by PnP for {result['poses_found']} of {result['images']} images: "
              f"{Path(result['output_dir']) / 'poses.json'}")
    if "summary" in result:
        s = result["summary"]
        frame, pck = s["input_frame"], s["input_frame"]["pck"]
        print(f"input frame ({frame['unit']}): mean {_fmt(frame['euclidean']['mean'])}, "
              f"median {_fmt(frame['euclidean']['median'])}, PCK "
              + ", ".join(f"@{k}: {_fmt(v)}" for k, v in pck.items()))
        print(f"original frame: mean {_fmt(s['original_frame']['euclidean']['mean'])} px; visibility precision "
              f"{_fmt(s['visibility']['precision'])}, recall {_fmt(s['visibility']['recall'])}")
        if "matched" in s:  # interchangeable keypoints: the figures above are against the labels as given
            matched = s["matched"]["input_frame"]
            print(f"matched within {s['matched']['groups']}: input-frame mean {_fmt(matched['euclidean']['mean'])}, "
                  "PCK " + ", ".join(f"@{k}: {_fmt(v)}" for k, v in matched["pck"].items()))
        if "coco" in s:
            _print_coco(s["coco"])
            print(f"per instance: mean error {_fmt(s['coco']['instance_error_px']['mean'])} px (original), mean OKS "
                  f"{_fmt(s['coco']['instance_oks']['mean'])}")
        wrong = s["input_frame_wrong_keypoint"]
        print(f"on another keypoint: {_fmt(wrong['fraction'])} of the visible keypoints, "
              f"{_fmt(wrong['error_share'])} of the summed error")
        if "pose" in s:
            pose, oracle = s["pose"], s["pose_from_true_keypoints"]
            print(f"pose (PnP on {pose['solved']}/{pose['images']} images): rotation median "
                  f"{_fmt(pose['rotation_deg']['median'])} deg, translation median "
                  f"{_fmt(pose['translation_m']['median'])} m, SPEED score mean {_fmt(pose['speed_score']['mean'])} "
                  f"(from the true keypoints: {_fmt(oracle['speed_score']['mean'])})")
        print(f"summary: {Path(result['output_dir']) / 'evaluation_summary.json'}")


def time_split(timing, wall):
    """One line: the run's wall time split into the model, waiting for decoding, and the rest."""
    model, waited = timing["model"], timing["input"]
    other = wall - model - waited
    threads = f", {timing['decode_threads']:.1f} s in the decoding threads" if "decode_threads" in timing else ""
    beside = f" more after {timing['figures_beside_model']:.1f} s drawn beside the model" \
        if "figures_beside_model" in timing else ""
    return (f"time: {wall:.1f} s = model {model:.1f} s + waiting for images {waited:.1f} s{threads} + other "
            f"{other:.1f} s ({other / wall:.0%}: start-up {wall - timing['total']:.1f} s, loading the model "
            f"{timing['load']:.1f} s, figures {timing['figures']:.1f} s{beside})")


def _print_coco(coco):
    print(f"COCO keypoint AP (OKS, sigmas: {coco['sigmas']}): AP {_fmt(coco['ap'])}, AP50 {_fmt(coco['ap50'])}, "
          f"AP75 {_fmt(coco['ap75'])}, AR {_fmt(coco['ar'])} on {coco['instances']} labelled instances")


def _fmt(value):
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
