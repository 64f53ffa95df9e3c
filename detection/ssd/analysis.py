"""The detector's analysis outputs: overlays and PNG figures (titled, axes labelled).

- anchor coverage: for every ground-truth box, the best IoU any anchor of each scale
  reaches, which scale holds its best anchor, and the IoU distribution;
- scale specialisation: which scale produced each true positive, by object size band
  and by class;
- object size distribution per class with the scales' size bands;
- feature maps: the channel-mean activation of each scale's backbone block, from a
  feature-extraction model of the trained network;
- precision-recall curves per class at IoU 0.5.
"""

from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw

from common.data_io import atomic_path
from common.plots import BLACK, BLUE, DPI, GREEN, ORANGE, PRED_RGB, PURPLE, SKY, TRUTH_RGB, VERMILLION, _font
from detection.ssd.evaluation import COCO_IOUS, iou_matrix, match_image, precision_recall, size_band

SCALE_COLOURS = (BLUE, ORANGE, GREEN, PURPLE, SKY, VERMILLION)


def _save(fig, path):
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return path


def draw_detections(image, detections, truth=None, class_names=None, score_threshold=0.5, scale=2):
    """Pillow image with ground truth (green) and detections >= score_threshold (red, labelled)."""
    base = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    base = base.resize((base.width * scale, base.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(base)
    font = _font(11)
    if truth is not None:
        for box in np.asarray(truth[0]).reshape(-1, 4):
            draw.rectangle(list(box * scale), outline=TRUTH_RGB, width=2)
    keep = np.asarray(detections["scores"]) >= score_threshold
    for box, score, cls in zip(detections["boxes"][keep], detections["scores"][keep], detections["classes"][keep]):
        draw.rectangle(list(box * scale), outline=PRED_RGB, width=2)
        label = f"{class_names[cls] if class_names else cls} {score:.2f}"
        draw.text((box[0] * scale + 2, box[1] * scale + 1), label, fill=(255, 255, 255), font=font,
                  stroke_width=1, stroke_fill=(0, 0, 0))
    return base


def save_detection_overlay(path, image, detections, truth=None, class_names=None, score_threshold=0.5):
    drawn = draw_detections(image, detections, truth, class_names, score_threshold)
    with atomic_path(path) as tmp:
        drawn.save(tmp)
    return Path(path)


def anchor_coverage(truth, anchors, anchor_scale, positive_iou=0.5, chunk=512):
    """Per ground-truth box: best IoU with each scale's anchors (G, S), the scale of its
    best anchor (G,), and how many anchors of each scale reach positive_iou (G, S)."""
    boxes = np.concatenate([np.asarray(b).reshape(-1, 4) for b, _ in truth]) if truth else np.zeros((0, 4))
    num_scales = int(anchor_scale.max()) + 1
    best = np.zeros((len(boxes), num_scales))
    positives = np.zeros((len(boxes), num_scales), np.int64)
    for start in range(0, len(boxes), chunk):
        iou = iou_matrix(boxes[start:start + chunk], anchors)
        for s in range(num_scales):
            mine = iou[:, anchor_scale == s]
            best[start:start + chunk, s] = mine.max(axis=1)
            positives[start:start + chunk, s] = (mine >= positive_iou).sum(axis=1)
    return boxes, best, best.argmax(axis=1) if len(boxes) else np.zeros(0, np.int64), positives


def plot_anchor_coverage(truth, anchors, anchor_scale, cfg, path):
    boxes, best, best_scale, positives = anchor_coverage(truth, anchors, anchor_scale, cfg.train.positive_iou)
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    num_scales = best.shape[1]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for s in range(num_scales):
        mine = best_scale == s
        sizes = "/".join(f"{v:g}" for v in cfg.model.anchor_sizes[s])
        axes[0].scatter(side[mine], best.max(axis=1)[mine], s=6, color=SCALE_COLOURS[s % 6],
                        label=f"scale {s + 1} (anchors {sizes} px)")
    axes[0].axhline(cfg.train.positive_iou, color=BLACK, linestyle="--", linewidth=1, label="positive IoU")
    axes[0].set(xlabel="ground-truth box size sqrt(w*h) (px)", ylabel="best anchor IoU",
                title="Best anchor per box, coloured by its scale")
    axes[0].legend(fontsize=8)
    bins = np.linspace(0, 1, 41)
    for s in range(num_scales):
        axes[1].hist(best[:, s], bins=bins, histtype="step", linewidth=1.5, color=SCALE_COLOURS[s % 6],
                     label=f"scale {s + 1}")
    axes[1].hist(best.max(axis=1), bins=bins, color="0.8", label="best over all scales")
    axes[1].set(xlabel="best IoU with the scale's anchors", ylabel="ground-truth boxes",
                title="IoU distribution per scale")
    axes[1].legend(fontsize=8)
    matched = (positives > 0)
    share = [matched[:, s].mean() if len(matched) else 0 for s in range(num_scales)]
    axes[2].bar([f"scale {s + 1}" for s in range(num_scales)], share,
                color=[SCALE_COLOURS[s % 6] for s in range(num_scales)])
    axes[2].set(ylabel=f"share of boxes with an anchor IoU >= {cfg.train.positive_iou:g}",
                title=f"Boxes each scale can match ({len(boxes)} boxes)", ylim=(0, 1))
    fig.suptitle("Anchor coverage")
    return _save(fig, path)


def plot_scale_specialisation(stats, path):
    bands = stats["size_bands"]
    band_names = list(bands)
    scales = list(next(iter(bands.values()))["true_positives_by_scale"])
    matrix = np.array([[bands[b]["true_positives_by_scale"][s] for s in scales] for b in band_names], np.float64)
    by_class = stats["by_class"]
    class_matrix = np.array([[by_class[c][s] for s in scales] for c in by_class], np.float64)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, values, rows, label in ((axes[0], matrix, band_names, "object size band (sqrt(w*h))"),
                                    (axes[1], class_matrix, list(by_class), "class")):
        share = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                ax.text(j, i, f"{share[i, j]:.2f}\n({int(values[i, j])})", ha="center", va="center",
                        color="white" if share[i, j] > 0.6 else "black", fontsize=9)
        ax.set_xticks(range(len(scales)), scales)
        ax.set_yticks(range(len(rows)), rows)
        ax.set(xlabel="scale that produced the true positive", ylabel=label)
    axes[0].set_title("True positives by size band (row share)")
    axes[1].set_title("True positives by class (row share)")
    fig.suptitle(f"Scale specialisation (IoU 0.5, score >= {stats['score_threshold']:g})")
    return _save(fig, path)


def plot_size_distribution(truth, class_names, band_edges, path):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    boxes = [np.asarray(b).reshape(-1, 4) for b, _ in truth]
    classes = np.concatenate([np.asarray(c) for _, c in truth]) if truth else np.zeros(0, np.int64)
    boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    bins = np.linspace(0, max(side.max() if len(side) else 1, 1) * 1.05, 50)
    for c, name in enumerate(class_names):
        ax.hist(side[classes == c], bins=bins, alpha=0.6, color=SCALE_COLOURS[c % 6], label=f"{name} "
                f"({int((classes == c).sum())})")
    for edge in band_edges:
        ax.axvline(edge, color=BLACK, linestyle="--", linewidth=1)
    ax.set(xlabel="box size sqrt(w*h) (px, model input)", ylabel="boxes",
           title="Object size distribution (dashed: edges of the scales' size bands)")
    ax.legend()
    return _save(fig, path)


def feature_extractor(model, scale_blocks):
    """A model from the detector's input to the outputs of the blocks feeding each scale."""
    return keras.Model(model.input, [model.get_layer(f"block{b}").output for b in scale_blocks])


def plot_feature_maps(model, images, cfg, path):
    if not len(images):
        return None
    features = feature_extractor(model, cfg.model.scale_blocks).predict_on_batch(images)
    features = features if isinstance(features, (list, tuple)) else [features]
    cols = 1 + len(features)
    fig, axes = plt.subplots(len(images), cols, figsize=(3.2 * cols, 3.2 * len(images)), squeeze=False)
    for i, image in enumerate(images):
        axes[i, 0].imshow(image)
        axes[i, 0].set_title("input")
        for s, fmap in enumerate(features, start=1):
            mean = np.asarray(fmap[i], np.float32).mean(axis=-1)
            shown = axes[i, s].imshow(mean, cmap="viridis")
            axes[i, s].set_title(f"scale {s}: block {cfg.model.scale_blocks[s - 1]} "
                                 f"({mean.shape[1]}x{mean.shape[0]})")
            fig.colorbar(shown, ax=axes[i, s], fraction=0.046)
        for ax in axes[i]:
            ax.set_xlabel("x (feature cells)")
            ax.set_ylabel("y")
    fig.suptitle("Channel-mean activation of each scale's feature map")
    return _save(fig, path)


def plot_precision_recall(detections, truth, class_names, path):
    fig, ax = plt.subplots(figsize=(6, 5))
    for c, name in enumerate(class_names):
        scores, tp, num_gt = [], [], 0
        for dets, (gt_boxes, gt_classes) in zip(detections, truth):
            gt = np.asarray(gt_boxes).reshape(-1, 4)[np.asarray(gt_classes) == c]
            mine = dets["classes"] == c
            order, matched = match_image(dets["boxes"][mine], dets["scores"][mine], gt, COCO_IOUS[:1])
            scores.append(dets["scores"][mine][order])
            tp.append(matched[0] >= 0)
            num_gt += len(gt)
        if num_gt and len(np.concatenate(scores)):
            precision, recall = precision_recall(np.concatenate(scores), np.concatenate(tp), num_gt)
            ax.plot(recall, precision, color=SCALE_COLOURS[c % 6], label=name)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
           title="Precision-recall per class (IoU 0.5)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return _save(fig, path)


__all__ = ["anchor_coverage", "draw_detections", "feature_extractor", "plot_anchor_coverage",
           "plot_feature_maps", "plot_precision_recall", "plot_scale_specialisation", "plot_size_distribution",
           "save_detection_overlay", "size_band"]
