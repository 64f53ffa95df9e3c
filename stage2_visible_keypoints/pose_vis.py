"""From full camera frames to poses: stage 1 box -> crop -> stage 2 keypoints -> PnP.

    python stage2_visible_keypoints/pose_vis.py --detector runs/speed/stage1 --model runs/speed/stage2 \\
        --data-dir runs/speed/renders --split test            # a labelled split: evaluation too
    python stage2_visible_keypoints/pose_vis.py --detector runs/speed/stage1 --model runs/speed/stage2 \\
        --images frames/ --camera camera.json --mesh mesh.obj  # a folder of frames

A labelled split is read in place as `preprocess_vis.py` reads it: `{data_dir}/{split}.json`
(the SPEED / SPEED+ layout, poses only is fine), images in `images/{split}/` or `images/`,
camera.json (and mesh.obj) in the folder or its parent, or --camera and --mesh (a real
SPEED+ folder: --data-dir speedplus/lightbox --split test --camera speedplus/camera.json
--mesh my_keypoints.obj).

Writes into --output-dir: poses.json (the SPEED label layout, frames with a pose, plus
"trusted"), frames.json (per frame: status "pose" | "no object" | "no pose", box, score,
keypoints, inliers, reprojection error, trusted), overlays/ (the full frame: stage-1 box
yellow, true box green, keypoints red, pose wireframe magenta) and, on a labelled split,
summary.json (detection recall, keypoint error in original px, rotation / translation
errors, SPEED score, fraction solved, untrusted poses). A frame where stage 1 finds
nothing gets no pose; an unreadable frame is an error naming it, or with --skip-bad it
is skipped and listed (skipped.json).
"""

import argparse
import json
from pathlib import Path

import numpy as np

from common import cli
from common.data_io import atomic_path, image_paths, save_json
from common.errors import DataError


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", help="stage-1 run (folder with best.keras and config.json, or the .keras "
                        "file); needed unless --boxes truth or the keypoint model takes the centre crop")
    cli.add_model(parser, "required")
    parser.add_argument("--data-dir", help="labelled data folder with {split}.json (evaluation)")
    parser.add_argument("--split", default="test", help="label file {data_dir}/{split}.json (%(default)s)")
    cli.add_images(parser)
    parser.add_argument("--camera", help="SPEED camera.json (default: the data folder's, or its parent's)")
    parser.add_argument("--mesh", help="OBJ whose vertices are the keypoints (default: the data folder's mesh.obj)")
    parser.add_argument("--boxes", choices=("stage1", "truth"), default="stage1",
                        help="crop around stage 1's boxes, or the labelled ones (the ceiling) (%(default)s)")
    parser.add_argument("--score-threshold", type=float, default=0.3,
                        help="stage 1 boxes scoring less are not the object (%(default)s)")
    parser.add_argument("--min-inliers", type=int, default=6, help="fewer PnP inliers: untrusted (%(default)s)")
    parser.add_argument("--max-reprojection-px", type=float, default=3.0,
                        help="larger RMS reprojection error, input-frame px: untrusted (%(default)s)")
    parser.add_argument("--max-overlays", type=int, default=12, help="frames drawn into overlays/ (%(default)s)")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable frames (listed in skipped.json)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="stage-2 inference setting, e.g. use.batch_size=8 (repeatable)")
    cli.add_output_dir(parser, "output folder (%(default)s)", default="runs/pose")
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    if args.model is None:
        parser.error("--model (the stage-2 run) is required")
    if (args.data_dir is None) == (args.images is None):
        parser.error("give --data-dir (a labelled split) or --images (a folder of frames)")
    if args.images is not None and args.boxes == "truth":
        parser.error("--boxes truth needs labels (--data-dir)")
    if (args.camera is None) != (args.mesh is None):
        parser.error("--camera and --mesh go together")
    summary = run(args)
    found = summary["counts"]
    print(f"{found['frames']} frames: {found['pose']} with a pose ({found['trusted']} trusted), "
          f"{found['no object']} with no object found, {found['no pose']} where PnP failed"
          + (f", {found['skipped']} skipped (unreadable)" if found["skipped"] else ""))
    if "evaluation" in summary:
        e = summary["evaluation"]
        detection = e.get("detection", {})
        pose = e.get("pose", {})
        print(f"object found {_fmt(e['object_found'])}, detection recall@0.5 {_fmt(detection.get('recall50'))}, "
              f"keypoint error {_fmt(e['keypoints']['mean'])} mean / {_fmt(e['keypoints']['median'])} median px")
        if pose:
            print(f"pose: solved {_fmt(pose['solved_fraction'])}, rotation median {_fmt(pose['rotation_deg']['median'])}"
                  f" deg, translation median {_fmt(pose['translation_m']['median'])} m, SPEED score mean "
                  f"{_fmt(pose['speed_score']['mean'])} (solved) / {_fmt(pose['speed_score_all']['mean'])} (all)")
    print(f"outputs in {args.output_dir}")


def _fmt(value):
    return "n/a" if value is None else f"{value:.3f}"


def run(args):
    from tqdm import tqdm

    from common.parallel import prefetch_batches
    from stage2_visible_keypoints.data import load_annotations, side_file
    from stage2_visible_keypoints.pose_pipeline import PosePipeline, evaluate_frames, read_frame

    out_dir = Path(args.output_dir)
    skipped, annotations = [], None
    camera, mesh = args.camera, args.mesh
    if args.data_dir is not None:
        annotations = load_annotations(args.data_dir, args.split, camera, mesh,
                                       skipped=skipped if args.skip_bad else None)
        if camera is None:
            camera, mesh = side_file(args.data_dir, "camera.json"), side_file(args.data_dir, "mesh.obj")
            if camera is None or mesh is None:
                raise DataError("poses need camera.json and mesh.obj in the data folder (or its parent), or "
                                "--camera and --mesh", Path(args.data_dir))
        paths = list(annotations.image_paths)
    else:
        paths = image_paths(args.images)
        if camera is None:
            raise DataError("poses need --camera and --mesh for a folder of frames", Path(args.images))
    detector = None if args.boxes == "truth" else args.detector
    pipeline = PosePipeline.from_runs(detector, args.model, camera, mesh, args.score_threshold, args.min_inliers,
                                      args.max_reprojection_px, overrides=args.set)
    if pipeline.needs_boxes and detector is None and args.boxes != "truth":
        raise DataError("the keypoint model takes crops around the object's box (data.crop: box): give --detector "
                        "(stage 1) or --boxes truth", Path(args.model))

    results, kept = [], []
    batch = pipeline.predictor.cfg.use.batch_size
    truth_boxes = annotations.boxes if annotations is not None else None
    # The next batches' frames decode in threads while the models run on this one.
    decoded = prefetch_batches(lambda job: read_frame(job[1], job[0]), list(enumerate(paths)), batch,
                               errors="return" if args.skip_bad else "raise")
    for start, read in zip(tqdm(range(0, len(paths), batch), desc="pose", unit="batch", disable=args.quiet),
                           decoded):
        frames, ok = [], []
        for i, frame in enumerate(read, start):
            if isinstance(frame, DataError):
                skipped.append((frame.path, frame.message))
            else:
                frames.append(frame)
                ok.append(i)
        if not frames:
            continue
        boxes = truth_boxes[ok] if args.boxes == "truth" else None
        results += pipeline.predict(frames, boxes=boxes)
        kept += ok
        for j, i in enumerate(ok):
            if i < args.max_overlays:
                truth = None if annotations is None else annotations.boxes[i]
                save_frame_overlay(out_dir / "overlays" / f"{paths[i].stem}.jpg", frames[j], results[-len(ok) + j],
                                   pipeline.predictor.object_model, truth)

    names = [paths[i].name for i in kept]
    poses = [{"filename": name, "q_vbs2tango": r.pose.q.tolist(), "r_Vo2To_vbs_true": r.pose.r.tolist(),
              "trusted": r.trusted} for name, r in zip(names, results) if r.pose is not None]
    save_json(out_dir / "poses.json", poses)
    save_json(out_dir / "frames.json", [frame_record(name, r) for name, r in zip(names, results)])
    counts = {status: sum(r.status == status for r in results) for status in ("pose", "no object", "no pose")}
    counts.update(frames=len(paths), trusted=sum(r.trusted for r in results), skipped=len(skipped))
    summary = {"counts": counts, "boxes": args.boxes, "detector": args.detector, "model": args.model,
               "skipped": [f"{path}: {message}" for path, message in skipped]}
    if skipped:
        save_json(out_dir / "skipped.json", summary["skipped"])
    if annotations is not None:
        if len(kept) != len(annotations.image_paths):  # frames that failed to decode: drop their labels
            annotations = subset_annotations(annotations, kept)
        present = np.array([np.any(v) or np.any(annotations.boxes[i] != [0, 0, *annotations.image_sizes[i]])
                            for i, v in enumerate(annotations.visible)])
        summary["evaluation"] = evaluate_frames(results, annotations, present)
        summary["data"] = {"data_dir": str(args.data_dir), "split": args.split}
        save_json(out_dir / "summary.json", summary)
    return summary


def subset_annotations(annotations, index):
    """The annotations of the frames at `index` (a list of rows)."""
    import dataclasses

    pick = lambda a: None if a is None else a[index]  # noqa: E731
    return dataclasses.replace(annotations, image_paths=[annotations.image_paths[i] for i in index],
                               xy_original=pick(annotations.xy_original), visible=pick(annotations.visible),
                               image_sizes=pick(annotations.image_sizes), pose_q=pick(annotations.pose_q),
                               pose_r=pick(annotations.pose_r), boxes=pick(annotations.boxes))


def frame_record(name, result):
    record = {"filename": name, "status": result.status, "trusted": result.trusted,
              "box": None if result.box is None else np.round(result.box, 2).tolist(),
              "box_score": result.box_score}
    if result.keypoints is not None:
        k = result.keypoints
        record.update(keypoints=np.round(k.keypoints_original, 3).tolist(), confidence=np.round(k.confidence, 4).tolist(),
                      visible_pred=k.visible_pred.tolist(), transform=k.transform.tolist())
    if result.pose is not None:
        record.update(q_vbs2tango=result.pose.q.tolist(), r_Vo2To_vbs_true=result.pose.r.tolist(),
                      inliers=int(result.pose.inliers.sum()), reprojection_px=round(result.pose.reprojection_px, 3))
    return json.loads(json.dumps(record))


def save_frame_overlay(path, frame, result, object_model, truth_box=None):
    """The full frame with the true box (green), stage 1's box (yellow), the predicted
    keypoints (red) and the pose's wireframe (magenta), written atomically."""
    from PIL import Image, ImageDraw

    from stage2_visible_keypoints.camera import body_to_camera, project_points

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    width = max(1, frame.shape[1] // 640)
    if truth_box is not None:
        draw.rectangle([float(v) for v in truth_box], outline=(0, 255, 0), width=width)
    if result.box is not None:
        draw.rectangle([float(v) for v in result.box], outline=(255, 255, 0), width=width)
    if result.pose is not None:
        xy = project_points(body_to_camera(object_model.keypoints_3d, result.pose.q, result.pose.r),
                            object_model.camera)
        for a, b in object_model.edges:
            draw.line([tuple(xy[a]), tuple(xy[b])], fill=(255, 0, 255), width=width)
    if result.keypoints is not None:
        r = 2 * width
        for (x, y), shown in zip(result.keypoints.keypoints_original, result.keypoints.visible_pred):
            if shown:
                draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 0, 0), width=width)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        image.save(tmp, format="JPEG", quality=90)


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
