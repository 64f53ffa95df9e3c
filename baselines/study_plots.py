"""Figures of the study: PCK curves, failure gallery, heatmaps across epochs, bar charts."""

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw

from common.data_io import atomic_path
from common.metrics import bbox_diagonals, pck_bbox
from common.plots import BLUE, GREEN, ORANGE, PURPLE, SKY, VERMILLION, draw_keypoints

COLOURS = (BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY)


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def pck_curves(predictions, truth, visible, fractions, path):
    """PCK against the threshold (fraction of the bbox diagonal), one line per method."""
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    for (name, xy), colour in zip(predictions.items(), COLOURS):
        pck = pck_bbox(xy, truth, visible, fractions[fractions > 0])
        values = [0.0] + list(pck.values()) if fractions[0] == 0 else list(pck.values())
        ax.plot(fractions, values, label=name, color=colour)
    for f in (0.05, 0.1, 0.15, 0.2):
        ax.axvline(f, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("threshold (fraction of the keypoints' bounding-box diagonal)")
    ax.set_ylabel("PCK")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"PCK on {len(truth)} test images")
    return _save(fig, path)


def _image_ok(xy, truth, visible, fraction):
    """(N,) whether every visible keypoint of an image is within fraction * its diagonal."""
    error = np.hypot(*(xy - truth).transpose(2, 0, 1))
    limit = fraction * bbox_diagonals(truth, visible)[:, None]
    return np.where(visible, error <= limit, True).all(axis=1)


def failure_gallery(images, predictions, truth, visible, path, per_pair=3, scale=2):
    """Cases where one method is right (all keypoints within 5 % of the diagonal) and
    another is wrong (some keypoint beyond 10 %): one row per such pair of methods,
    each case drawn for both methods (green circles truth, red crosses prediction)."""
    names = list(predictions)
    ok = {n: _image_ok(predictions[n], truth, visible, 0.05) for n in names}
    bad = {n: ~_image_ok(predictions[n], truth, visible, 0.10) for n in names}
    rows = []
    for good in names:
        for wrong in names:
            if good == wrong:
                continue
            cases = np.flatnonzero(ok[good] & bad[wrong])[:per_pair]
            if len(cases):
                rows.append((good, wrong, cases))
    size = images.shape[1] * scale
    label_h = 14
    width = max(1, per_pair) * 2 * size
    canvas = Image.new("RGB", (width, max(1, len(rows)) * (size + label_h)), "white")
    draw = ImageDraw.Draw(canvas)
    if not rows:
        draw.text((4, 2), "no case where one method succeeds and another fails", fill="black")
    for r, (good, wrong, cases) in enumerate(rows):
        top = r * (size + label_h)
        for c, i in enumerate(cases):
            rgb = np.repeat(np.asarray(images[i]), 3, axis=-1)
            for j, name in enumerate((good, wrong)):
                tile = draw_keypoints(rgb, predictions[name][i], truth[i], visible[i], scale=scale)
                left = (2 * c + j) * size
                canvas.paste(tile, (left, top + label_h))
                draw.text((left + 2, top + 1), f"{name} ({'ok' if j == 0 else 'fails'}) #{i}", fill="black")
    with atomic_path(path) as tmp:
        canvas.save(tmp)
    return path


def heatmaps_across_epochs(images, maps_per_epoch, path):
    """Rows: epochs; columns: a few test images; each panel the max over keypoints."""
    epochs, count = len(maps_per_epoch), len(images)
    fig, axes = plt.subplots(epochs, count + 1, figsize=(1.6 * (count + 1), 1.6 * epochs), squeeze=False,
                             layout="constrained")
    for e, maps in enumerate(maps_per_epoch):
        axes[e, 0].text(0.5, 0.5, f"epoch {e + 1}", ha="center", va="center")
        axes[e, 0].set_axis_off()
        for i in range(count):
            ax = axes[e, i + 1]
            ax.imshow(np.asarray(images[i])[..., 0], cmap="gray", extent=(0, 1, 1, 0))
            ax.imshow(maps[i].max(axis=-1), cmap="magma", alpha=0.6, extent=(0, 1, 1, 0))
            ax.set_axis_off()
    fig.suptitle("HeatmapNet: predicted heatmaps (max over keypoints) after each epoch")
    return _save(fig, path)


def cell_bars(tables, path, title):
    """One panel per table: PCK@0.05 and mean error per cell, mean +- std over seeds,
    each seed as a dot so a reader can judge whether a difference is real."""
    fig, axes = plt.subplots(2, len(tables), figsize=(3.2 + 1.1 * max(len(v) for v in tables.values()) *
                                                      len(tables), 6), squeeze=False, layout="constrained")
    for col, (part, rows) in enumerate(tables.items()):
        labels = [row["label"] for row in rows]
        x = np.arange(len(rows))
        for r, (key, ylabel) in enumerate((("pck@0.05", "PCK@0.05"), ("mean_error_px", "mean error (px)"))):
            ax = axes[r, col]
            means = [row[key]["mean"] for row in rows]
            stds = [row[key]["std"] or 0.0 for row in rows]
            ax.bar(x, means, yerr=stds, color=COLOURS[r], alpha=0.7, capsize=3)
            for i, row in enumerate(rows):
                seeds = [s["pck"]["0.05"] if key == "pck@0.05" else s["mean_error_px"] for s in row["per_seed"]]
                ax.plot([i] * len(seeds), seeds, "k.", ms=4)
            ax.set_xticks(x, labels, rotation=30, ha="right", fontsize="small")
            ax.set_ylabel(ylabel)
            ax.grid(axis="y", alpha=0.3)
            if r == 0:
                ax.set_title(part)
    fig.suptitle(title)
    return _save(fig, path)
