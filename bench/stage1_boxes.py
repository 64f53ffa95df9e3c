"""Where a trained stage 1 (the one-class SSD of configs/stage1_speed.yaml) misses the box.

    python bench/stage1_boxes.py --run runs/speed/stage1 --data-dir runs/speed/renders --split test

On a labelled split of SPEED-like renders ({split}_boxes.json, COCO): recall@0.5 of the
top-scoring box (what PosePipeline crops around) and of the best of the top 10 (the ranking's
share of the misses), mean IoU, and by the object's size at the model input (sqrt of the box
area): recall, the size of the top box over the true size, and which anchor scale / size index
gave the top box. Also the anchors' coverage of the labels: each box's best anchor IoU and its
positives at train.positive_iou. Writes --output-dir/stage1_boxes.json.
"""

import argparse
from pathlib import Path

import numpy as np

from common import cli
from common.data_io import load_json, read_image_rgb
from results_io import write_result  # bench/ is on the path when run as a script

SIZE_BINS = ((0, 24), (24, 48), (48, 96), (96, 10_000))


def _iou(a, b):
    """IoU of xyxy boxes, broadcast over leading axes."""
    low, high = np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., 2:], b[..., 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=-1)
    area = lambda x: np.prod(x[..., 2:] - x[..., :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="stage-1 run folder (best.keras, config.json)")
    parser.add_argument("--data-dir", required=True, help="renders folder with {split}_boxes.json and images/")
    parser.add_argument("--split", default="test", help="%(default)s")
    parser.add_argument("--max-images", type=int, default=0, help="the first N images (0 = all)")
    parser.add_argument("--output-dir", default="bench/results/stage1_boxes", help="folder for stage1_boxes.json")
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    from detection.ssd.anchors import generate_anchors
    from detection.ssd.box_cache import resize_image
    from detection.ssd.ssd_config import TRAINED_SETTINGS, DetConfig
    from common.run_config import load_run_config
    from stage2_visible_keypoints.pose_pipeline import load_stage1
    from tqdm import tqdm

    data = Path(args.data_dir)
    coco = load_json(data / f"{args.split}_boxes.json")
    truth_of = {a["image_id"]: a["bbox"] for a in coco["annotations"]}
    images = [im for im in coco["images"] if im["id"] in truth_of]  # frames with the object
    images = images[:args.max_images] if args.max_images else images
    detector, size = load_stage1(args.run, score_threshold=0.01)
    cfg, _ = load_run_config(DetConfig, Path(args.run) / "best.keras", trained=TRAINED_SETTINGS)
    scale = np.array([size[0] / im["width"] for im in images])[:, None]
    truth = np.array([truth_of[im["id"]] for im in images], np.float64)
    truth[:, 2:] += truth[:, :2]
    truth *= scale  # model-input pixels (the frame is resized whole: one scale per axis)
    detections = []
    for start in tqdm(range(0, len(images), 16), desc="detect", unit="batch", disable=args.quiet):
        batch = [resize_image(read_image_rgb(data / "images" / im["file_name"]), size)[0]
                 for im in images[start:start + 16]]
        detections.append(np.asarray(detector.predict_on_batch(np.stack(batch))))
    raw = np.concatenate(detections)  # (N, D, 7): x1, y1, x2, y2, score, class, anchor; by score
    iou_top = _iou(raw[:, 0, :4], truth) * (raw[:, 0, 4] > 0)
    iou_ten = (_iou(raw[:, :10, :4], truth[:, None]) * (raw[:, :10, 4] > 0)).max(axis=1)
    side = np.sqrt(np.prod(truth[:, 2:] - truth[:, :2], axis=1))
    top_side = np.sqrt(np.prod(np.clip(raw[:, 0, 2:4] - raw[:, 0, :2], 0, None), axis=1))

    model = cfg.model
    anchors, scale_index = generate_anchors(size, model.strides, model.anchor_sizes, model.aspect_ratios)
    per_location = len(model.anchor_sizes[0]) * len(model.aspect_ratios)
    anchor = raw[:, 0, 6].astype(int)
    anchor_iou = _iou(truth[:, None], anchors[None])  # (N, anchors): the labels' coverage
    best_anchor = anchor_iou.max(axis=1)
    positives = (anchor_iou >= cfg.train.positive_iou).sum(axis=1)
    bins = []
    for low, high in SIZE_BINS:
        m = (side >= low) & (side < high)
        if not m.any():
            continue
        found = anchor[m] >= 0
        bins.append({"size_px": [low, high], "frames": int(m.sum()),
                     "recall50_top1": float(np.mean(iou_top[m] >= 0.5)),
                     "recall50_top10": float(np.mean(iou_ten[m] >= 0.5)),
                     "top_box_size_ratio_median": float(np.median(top_side[m] / side[m])),
                     "top_box_scale_counts": np.bincount(scale_index[anchor[m][found]],
                                                         minlength=len(model.anchor_sizes)).tolist(),
                     "top_box_size_index_counts": np.bincount((anchor[m][found] % per_location)
                                                              // len(model.aspect_ratios),
                                                              minlength=len(model.anchor_sizes[0])).tolist(),
                     "best_anchor_iou_min": float(best_anchor[m].min()),
                     "positives_median": float(np.median(positives[m]))})
    result = {"frames": len(images), "input_size": list(size), "recall50_top1": float(np.mean(iou_top >= 0.5)),
              "recall50_top10": float(np.mean(iou_ten >= 0.5)), "mean_iou_top1": float(iou_top.mean()),
              "object_size_px_percentiles_5_50_95": np.percentile(side, [5, 50, 95]).round(1).tolist(),
              "best_anchor_iou_min": float(best_anchor.min()), "by_size": bins}
    print(f"{len(images)} frames of {args.split}: recall@0.5 top box {result['recall50_top1']:.3f}, best of top 10 "
          f"{result['recall50_top10']:.3f}; mean IoU {result['mean_iou_top1']:.3f}; every box has an anchor at IoU "
          f">= {result['best_anchor_iou_min']:.2f}")
    print("size px | frames | recall top1 | recall top10 | top box size / true | top box scale counts")
    for b in bins:
        print(f"{b['size_px'][0]}-{b['size_px'][1]} | {b['frames']} | {b['recall50_top1']:.2f} | "
              f"{b['recall50_top10']:.2f} | {b['top_box_size_ratio_median']:.2f} | {b['top_box_scale_counts']}")
    path = write_result(Path(args.output_dir) / "stage1_boxes.json", result, args=args, argv=argv)
    print(f"written: {path}")


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
