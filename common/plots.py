"""Plots and overlays for training runs and evaluations, written as PNG files.

Every function that writes a file writes it atomically (`atomic_path`) and returns
its path. Colours follow the Okabe-Ito palette, which stays distinguishable under
the common colour-vision deficiencies. Keypoint overlays are drawn with Pillow
(fast enough for thousands of images), and so is the per-image heatmap grid;
run-level figures (curves, histograms) with matplotlib (Agg on headless machines).

Pixel-centre convention: pixel i covers [i, i + 1), its centre is i + 0.5. A point
(x, y) in an image's pixel frame is drawn at continuous position (x, y) (times the
panel's scale), so markers land on the pixel they lie in.
"""

import functools
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common.data_io import atomic_path

DPI = 120
HEATMAP_PANEL = 192  # screen pixels of a heatmap panel's longer side

# Okabe-Ito colours.
BLUE = "#0072B2"
ORANGE = "#E69F00"
GREEN = "#009E73"
VERMILLION = "#D55E00"
SKY = "#56B4E9"
PURPLE = "#CC79A7"
BLACK = "#000000"

# Overlay colours (RGB): truth and prediction also differ in shape (circle vs cross),
# so they stay apart for readers who cannot tell red from green.
TRUTH_RGB = (0, 220, 0)
PRED_RGB = (255, 30, 30)
LINK_RGB = (255, 230, 0)
WIRE_RGB = (255, 80, 255)  # magenta: a model drawn in an estimated pose
LOW_SCORE_ALPHA = 110  # of 255: predictions below the score threshold are dimmed

# Substrings of metric names where larger is better (for marking the best epoch).
_HIGHER_IS_BETTER = ("acc", "pck", "auc", "precision", "recall", "f1", "iou", "map", "sdr")
_LR_KEYS = ("learning_rate", "lr")


def plot_history(history, path, title="Training"):
    """Plot training curves: one panel per metric, train and `val_` on the same axes.

    Args:
        history: {name: per-epoch values}, e.g. `keras.callbacks.History.history`.
            `val_<name>` is drawn with `<name>`; `learning_rate` or `lr` gets its own
            panel. NaN values (a diverged epoch) leave gaps.
        path: output PNG path.
        title: figure title.

    Returns:
        `Path` of the written PNG.

    A panel uses a log y axis when its positive values span more than two decades.
    The best validation epoch (lowest, or highest for accuracy-like names such as
    "pck" or "acc") is marked.
    """
    if not history or not any(len(v) for v in history.values()):
        raise ValueError(f"history has no values to plot. Received: keys={list(history or {})}")
    lr_key = next((k for k in _LR_KEYS if k in history), None)
    families = []
    for name in history:
        if name in _LR_KEYS:
            continue
        base = name[4:] if name.startswith("val_") else name
        if base not in families:
            families.append(base)
    panels = families + ([lr_key] if lr_key else [])

    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _pyplot().subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, panels):
        if name == lr_key:
            _plot_series(ax, history[name], "learning rate", PURPLE)
            ax.set_title("learning rate")
            ax.set_ylabel("learning rate")
            series = [history[name]]
        else:
            series = []
            for key, label, colour in ((name, "train", BLUE), (f"val_{name}", "validation", ORANGE)):
                if key in history:
                    _plot_series(ax, history[key], label, colour)
                    series.append(history[key])
            if f"val_{name}" in history:
                _mark_best(ax, history[f"val_{name}"], higher_is_better=_higher_is_better(name))
            ax.set_title(name)
            ax.set_ylabel(name)
        values = np.concatenate([np.asarray(s, dtype=np.float64) for s in series])
        positive = values[np.isfinite(values) & (values > 0)]
        if positive.size and positive.size == np.isfinite(values).sum() and positive.max() > 100 * positive.min():
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize="small")
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    fig.suptitle(title)
    return _save_figure(fig, path)


def draw_keypoints(
    image,
    xy_pred=None,
    xy_true=None,
    visible_true=None,
    scores=None,
    score_threshold=None,
    keypoint_names=None,
    scale=1,
    segments=None,
):
    """Draw true and predicted keypoints on an image with Pillow.

    Args:
        image: `(H, W, 3)` or `(H, W)` uint8.
        xy_pred: `(K, 2)` predicted (x, y) in the image's pixel frame, or None.
            Non-finite rows are skipped.
        xy_true: `(K, 2)` true (x, y) in the same frame, or None.
        visible_true: `(K,)` bool; only visible truths (and their links) are drawn.
            None = all visible.
        scores: `(K,)` prediction scores, or None.
        score_threshold: predictions with `scores < score_threshold` are drawn dimmed.
            None = none dimmed.
        keypoint_names: K labels drawn beside the points; None labels them by index.
        scale: integer upscale factor (nearest neighbour) applied before drawing, so a
            128x128 input stays readable; a point (x, y) is drawn at (x*scale, y*scale).
        segments: `(E, 2, 2)` line segments in the same frame (e.g. a model's edges in an
            estimated pose), drawn in magenta under the keypoints; non-finite ones skipped.

    Returns:
        RGB `PIL.Image.Image` of size (W*scale, H*scale).

    Truth: green ring with a centre dot. Prediction: red X. A yellow line joins each
    visible truth to its prediction.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise ValueError(f"image must be uint8 (H, W, 3) or (H, W). Received: shape={image.shape}, dtype={image.dtype}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer. Received: scale={scale}")
    scale = int(scale)
    xy_pred = _optional_array(xy_pred, "xy_pred", (None, 2), np.float64)
    xy_true = _optional_array(xy_true, "xy_true", (None, 2), np.float64)
    num_keypoints = next((len(a) for a in (xy_pred, xy_true) if a is not None), None)
    visible_true = _optional_array(visible_true, "visible_true", (num_keypoints,), bool)
    scores = _optional_array(scores, "scores", (num_keypoints,), np.float64)
    if xy_pred is not None and xy_true is not None and len(xy_pred) != len(xy_true):
        raise ValueError(f"xy_pred and xy_true differ in K. Received: {xy_pred.shape} and {xy_true.shape}")
    if num_keypoints is None:
        num_keypoints = 0
    if keypoint_names is not None and len(keypoint_names) != num_keypoints:
        raise ValueError(f"keypoint_names has {len(keypoint_names)} names for {num_keypoints} keypoints")
    labels = [str(k) for k in range(num_keypoints)] if keypoint_names is None else [str(n) for n in keypoint_names]

    base = Image.fromarray(image).convert("RGB")
    if scale > 1:
        base = base.resize((base.width * scale, base.height * scale), Image.NEAREST)
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    radius = max(3, 2 * scale)
    width = max(1, scale // 2)
    font = _font(max(10, 3 * scale))

    def to_canvas(xy):
        # Continuous position x*scale; Pillow's integer coordinate i is pixel i's
        # centre (continuous i + 0.5), hence the -0.5.
        return xy[0] * scale - 0.5, xy[1] * scale - 0.5

    truth_ok = np.zeros(num_keypoints, bool)
    if xy_true is not None:
        truth_ok = np.isfinite(xy_true).all(axis=1) & (True if visible_true is None else visible_true)
    pred_ok = np.zeros(num_keypoints, bool) if xy_pred is None else np.isfinite(xy_pred).all(axis=1)
    confident = np.ones(num_keypoints, bool)
    if scores is not None and score_threshold is not None:
        confident = scores >= score_threshold

    # Order: segments, links, truths, labels, then predictions on top.
    segments = _optional_array(segments, "segments", (None, 2, 2), np.float64)
    for a, b in ([] if segments is None else segments[np.isfinite(segments).all(axis=(1, 2))]):
        draw.line([to_canvas(a), to_canvas(b)], fill=WIRE_RGB + (230,), width=width)
    for k in np.flatnonzero(truth_ok & pred_ok):
        alpha = 255 if confident[k] else LOW_SCORE_ALPHA
        draw.line([to_canvas(xy_true[k]), to_canvas(xy_pred[k])], fill=LINK_RGB + (alpha,), width=max(1, width // 2))
    for k in np.flatnonzero(truth_ok):
        x, y = to_canvas(xy_true[k])
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=TRUTH_RGB + (255,), width=width)
        dot = max(1.0, scale / 2)
        draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=TRUTH_RGB + (255,))
    for k in range(num_keypoints):
        anchor = xy_true[k] if truth_ok[k] else (xy_pred[k] if pred_ok[k] else None)
        if anchor is None:
            continue
        x, y = to_canvas(anchor)
        draw.text(
            (x + radius + 1, y - 2 * radius - 1),
            labels[k],
            fill=(255, 255, 255, 255),
            font=font,
            stroke_width=1,
            stroke_fill=(0, 0, 0, 255),
        )
    for k in np.flatnonzero(pred_ok):
        x, y = to_canvas(xy_pred[k])
        fill = PRED_RGB + ((255,) if confident[k] else (LOW_SCORE_ALPHA,))
        r = radius * 0.8
        draw.line([(x - r, y - r), (x + r, y + r)], fill=fill, width=width + 1)
        draw.line([(x - r, y + r), (x + r, y - r)], fill=fill, width=width + 1)
    return Image.alpha_composite(base.convert("RGBA"), overlay).convert("RGB")


# zlib's fastest level: a heatmap grid encodes in 18 ms instead of 43 ms, for a file 4 % larger.
FAST_PNG = {"compress_level": 1}


def save_overlay(path, image, xy_pred=None, xy_true=None, visible_true=None, scores=None,
                 score_threshold=None, keypoint_names=None, scale=1, segments=None):
    """Write `draw_keypoints(...)` to `path` atomically (format from the suffix); return the path."""
    drawn = draw_keypoints(image, xy_pred, xy_true, visible_true, scores, score_threshold, keypoint_names, scale,
                           segments)
    path = Path(path)
    with atomic_path(path) as tmp:
        drawn.save(tmp, **(FAST_PNG if path.suffix.lower() == ".png" else {}))
    return path


def plot_heatmaps(image, heatmaps, path, keypoint_names=None, xy_pred_heatmap=None, max_cols=6):
    """Show an image and its K heatmaps in a grid, one panel per keypoint.

    Args:
        image: `(H, W, 3)` or `(H, W)` uint8, the model input.
        heatmaps: `(h, w, K)` float heatmaps (one image, channels last).
        path: output PNG path.
        keypoint_names: K panel titles; None = "kp0", "kp1", ...
        xy_pred_heatmap: `(K, 2)` decoded (x, y) in the heatmap frame, drawn as a
            red X beside the argmax peak (white +). None = peaks only.
        max_cols: panels per row.

    Returns:
        `Path` of the written PNG.

    All heatmap panels share one colour scale, min(0, min) .. max over all K maps,
    so weak maps look weak; each title gives the map's peak value. Drawn with Pillow
    and numpy (a colour map lookup table, nearest-neighbour upscaling), not matplotlib:
    `use_vis.py` draws one per image, and matplotlib's layout took seconds each.
    Non-finite heatmap values are left white.
    """
    image = np.asarray(image)
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmaps must have shape (h, w, K). Received: heatmaps.shape={heatmaps.shape}")
    h, w, num_keypoints = heatmaps.shape
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape (H, W, 3) or (H, W). Received: image.shape={image.shape}")
    names = [f"kp{k}" for k in range(num_keypoints)] if keypoint_names is None else [str(n) for n in keypoint_names]
    if len(names) != num_keypoints:
        raise ValueError(f"keypoint_names has {len(names)} names for {num_keypoints} heatmaps")
    xy_pred_heatmap = _optional_array(xy_pred_heatmap, "xy_pred_heatmap", (num_keypoints, 2), np.float64)

    finite = heatmaps[np.isfinite(heatmaps)]
    vmin = min(0.0, float(finite.min())) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    vmax = max(vmax, vmin + 1e-6)  # an all-zero (collapsed) output still plots

    panels = num_keypoints + 1
    layout = _heatmap_layout(h, w, panels, max_cols)
    scale, box_w, box_h = layout["scale"], layout["box"][0], layout["box"][1]
    title_font, tick_font = _font(13), _font(10)
    canvas = Image.new("RGB", layout["size"], "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((canvas.width // 2, 6), f"Heatmaps ({w}x{h} px, markers at pixel centres)", fill="black",
              font=_font(15), anchor="mt")
    if num_keypoints:  # the legend in the header, where it hides no peak; markers on the map's low colour
        legend_x, low = canvas.width // 2 - 110, tuple(int(c) for c in _viridis_lut()[0])
        legend = [(0, "+", "argmax")] + ([(90, "x", "decoded keypoint")] if xy_pred_heatmap is not None else [])
        for dx, kind, label in legend:
            draw.rectangle([legend_x + dx - 8, 25, legend_x + dx + 8, 41], fill=low)
            _draw_markers(draw, [(kind, legend_x + dx, 33)], 5)
            draw.text((legend_x + dx + 12, 33), label, fill="black", font=tick_font, anchor="lm")
    panel_origin = layout["origin"]

    # The input, fitted into the panel box with its own aspect ratio.
    x0, y0 = panel_origin(0)
    shown = Image.fromarray(_to_uint8(image)).convert("RGB")
    fit = min(box_w / shown.width, box_h / shown.height)
    shown = shown.resize((max(1, round(shown.width * fit)), max(1, round(shown.height * fit))), Image.BILINEAR)
    canvas.paste(shown, (x0, y0))
    _frame_and_ticks(draw, x0, y0, shown.width, shown.height, image.shape[1], image.shape[0], tick_font)
    draw.text((x0 + shown.width // 2, y0 - 18), f"input {image.shape[1]}x{image.shape[0]}", fill="black",
              font=title_font, anchor="md")
    draw.text((x0 + shown.width // 2, y0 - 4), "x, y in input px", fill="black", font=tick_font, anchor="md")

    lut = _viridis_lut()
    for k in range(num_keypoints):
        x0, y0 = panel_origin(k + 1)
        hm = heatmaps[:, :, k]
        ok = np.isfinite(hm)
        index = np.clip(np.round((np.where(ok, hm, vmin) - vmin) / (vmax - vmin) * 255), 0, 255).astype(np.uint8)
        rgb = np.where(ok[..., None], lut[index], np.uint8(255))
        canvas.paste(Image.fromarray(rgb).resize((box_w, box_h), Image.NEAREST), (x0, y0))
        _frame_and_ticks(draw, x0, y0, box_w, box_h, w, h, tick_font)
        # Continuous (x, y) lands at screen x0 + x * scale; Pillow's integer i is pixel i's centre.
        markers, peak = [], float("nan")
        if ok.any():
            row, col = np.unravel_index(np.nanargmax(hm), hm.shape)
            peak = hm[row, col]
            markers.append(("+", x0 + (col + 0.5) * scale - 0.5, y0 + (row + 0.5) * scale - 0.5))
        if xy_pred_heatmap is not None and np.isfinite(xy_pred_heatmap[k]).all():
            px, py = xy_pred_heatmap[k]
            markers.append(("x", x0 + px * scale - 0.5, y0 + py * scale - 0.5))
        _draw_markers(draw, markers, 6)
        draw.text((x0 + box_w // 2, y0 - 18), names[k], fill="black", font=title_font, anchor="md")
        draw.text((x0 + box_w // 2, y0 - 4), f"peak {peak:.3g}", fill="black", font=tick_font, anchor="md")
    if num_keypoints:
        _colour_bar(canvas, draw, *layout["bar"], vmin, vmax, lut, tick_font)
    path = Path(path)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG", **FAST_PNG)
    return path


def plot_error_histogram(errors, path, thresholds=(2, 5, 10), unit="px", title="Keypoint error"):
    """Histogram of keypoint errors with the PCK thresholds marked.

    Args:
        errors: `(M,)` Euclidean errors, e.g. `metrics.keypoint_errors(...)`.
        path: output PNG path.
        thresholds: drawn as vertical lines labelled with the fraction <= each.
        unit: axis unit, naming the frame, e.g. "px in the 128x128 input frame".
        title: figure title.

    Returns:
        `Path` of the written PNG.

    The x axis stops near the 99th percentile so a few wild errors do not squash
    the rest; the count beyond the axis is given in the legend.
    """
    errors = np.asarray(errors, dtype=np.float64).ravel()
    if not np.isfinite(errors).all():
        raise ValueError(f"errors must be finite. Received: {int((~np.isfinite(errors)).sum())} non-finite of {errors.size}")
    thresholds = [float(t) for t in thresholds]
    fig, ax = _pyplot().subplots(figsize=(6.4, 4.0), layout="constrained")
    if errors.size == 0:
        ax.text(0.5, 0.5, "no visible keypoints", ha="center", va="center", transform=ax.transAxes)
    else:
        upper = max(float(np.percentile(errors, 99)), max(thresholds, default=0.0)) * 1.1 or 1.0
        beyond = int((errors > upper).sum())
        label = f"{errors.size} keypoints" + (f" ({beyond} beyond {upper:.3g})" if beyond else "")
        ax.hist(errors, bins=min(60, max(10, errors.size // 20)), range=(0, upper),
                color=SKY, edgecolor=BLUE, label=label)
        colours = (GREEN, ORANGE, VERMILLION, PURPLE, BLACK)
        for i, t in enumerate(thresholds):
            fraction = float(np.mean(errors <= t))
            ax.axvline(t, color=colours[i % len(colours)], linestyle="--", linewidth=1.5,
                       label=f"≤ {t:g}: {100 * fraction:.1f}%")
        title = f"{title}: median {np.median(errors):.3g}, mean {errors.mean():.3g}"
        ax.set_xlim(0, upper)
        ax.legend(fontsize="small")
    ax.set_title(title)
    ax.set_xlabel(f"error ({unit})")
    ax.set_ylabel("keypoints")
    ax.grid(True, axis="y", alpha=0.3)
    return _save_figure(fig, path)


def plot_pose_errors(rotation_deg, translation_rel, path, title="Pose from keypoints"):
    """Cumulative distributions of per-image pose errors, one panel each for rotation
    (degrees) and translation (error / distance), both on log axes.

    Args:
        rotation_deg, translation_rel: `(N,)` errors per image; NaN = no pose found,
            counted as a failure (each curve ends at the fraction found).
        path: output PNG path.
        title: figure title; the number of images and the fraction found are appended.

    Returns:
        `Path` of the written PNG.
    """
    rotation_deg = np.asarray(rotation_deg, dtype=np.float64).ravel()
    translation_rel = np.asarray(translation_rel, dtype=np.float64).ravel()
    if rotation_deg.shape != translation_rel.shape:
        raise ValueError(f"rotation_deg and translation_rel must have one value per image. Received: shapes "
                         f"{rotation_deg.shape} and {translation_rel.shape}")
    count = rotation_deg.size
    found = np.isfinite(rotation_deg) & np.isfinite(translation_rel)
    fig, axes = _pyplot().subplots(1, 2, figsize=(9.6, 3.8), layout="constrained")
    panels = ((rotation_deg, "rotation error (degrees)", BLUE), (translation_rel, "translation error / distance",
                                                                  VERMILLION))
    for ax, (values, label, colour) in zip(axes, panels):
        done = np.sort(values[found])
        if done.size:
            floor = max(float(done[done > 0].min()) if (done > 0).any() else 1e-6, 1e-6)
            xs = np.maximum(done, floor)
            ax.step(np.concatenate([[floor], xs]), np.arange(done.size + 1) / count, where="post", color=colour)
            median = float(np.median(done))
            ax.axvline(max(median, floor), color=BLACK, linestyle=":", linewidth=1,
                       label=f"median of those found: {median:.3g}")
            ax.set_xscale("log")
            ax.legend(fontsize="small", loc="lower right")
        else:
            ax.text(0.5, 0.5, "no pose found", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(label)
        ax.set_ylabel("fraction of images, error ≤ x")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{title}: {count} images, pose found for {100 * found.mean() if count else 0:.0f}%")
    return _save_figure(fig, path)


def plot_per_keypoint_error(summary, path, title="Mean error per keypoint"):
    """Bar chart of the mean error per keypoint from `metrics.keypoint_error_summary`.

    Args:
        summary: the dict returned by `keypoint_error_summary` (or its JSON reload).
        path: output PNG path.
        title: figure title.

    Returns:
        `Path` of the written PNG.

    Each bar is labelled with its count of visible instances; never-visible
    keypoints show "n/a" and no bar. A dashed line marks the overall mean.
    """
    rows = summary["per_keypoint"]
    unit = summary.get("unit", "px")
    names = [row["name"] for row in rows]
    means = [row["euclidean_mean"] for row in rows]
    fig, ax = _pyplot().subplots(figsize=(max(5.0, 0.45 * len(rows) + 2.0), 4.0), layout="constrained")
    x = np.arange(len(rows))
    heights = [m if m is not None else 0.0 for m in means]
    bars = ax.bar(x, heights, color=BLUE)
    top = max(heights, default=0.0) or 1.0
    for bar, row in zip(bars, rows):
        text = f"n={row['count']}" if row["euclidean_mean"] is not None else "n/a"
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01 * top, text,
                ha="center", va="bottom", fontsize="x-small", rotation=90 if len(rows) > 12 else 0)
    overall = summary.get("euclidean", {}).get("mean")
    if overall is not None:
        ax.axhline(overall, color=VERMILLION, linestyle="--", label=f"all keypoints: {overall:.3g}")
        ax.legend(fontsize="small")
    ax.set_xticks(x, names, rotation=45 if len(rows) > 6 else 0, ha="right" if len(rows) > 6 else "center")
    ax.set_ylim(0, top * (1.3 if len(rows) > 12 else 1.2))  # room for the (rotated) counts
    ax.set_xlabel("keypoint")
    ax.set_ylabel(f"mean Euclidean error\n({unit})")  # units such as "px in the 128x128 input frame" are long
    ax.set_title(f"{title} ({summary.get('count', 0)} visible in {summary.get('images', 0)} images)")
    ax.grid(True, axis="y", alpha=0.3)
    return _save_figure(fig, path)


def plot_wrong_keypoints(summary, path, title="Keypoints predicted on another keypoint"):
    """Which keypoint is taken for which: a K x K matrix from `metrics.wrong_keypoint_summary`.

    Cell (k, j) is the fraction of keypoint k's visible instances predicted on keypoint j
    (nearer j's true position than k's own, error over `min_error`), labelled with its
    count; the row sums are k's identity-error rate. Pairs that swap both ways show as
    mirror cells: the signature of a view the object looks the same from. Returns the PNG's `Path`.
    """
    names, matrix = summary["names"], np.array(summary["matrix"], dtype=np.float64).reshape(len(summary["names"]), -1)
    visible = np.maximum(np.array(summary["visible_per_keypoint"], dtype=np.float64), 1.0)
    rates = matrix / visible[:, None]
    size = max(4.5, 0.38 * len(names) + 2.5)
    fig, ax = _pyplot().subplots(figsize=(size + 1.0, size), layout="constrained")
    cmap = _pyplot().get_cmap("magma_r").with_extremes(bad="#d9d9d9")  # grey diagonal: a keypoint's own cell
    shown = np.ma.masked_where(np.eye(len(names), dtype=bool), rates)
    image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=max(rates.max(), 1e-3))
    if len(names) <= 30:
        for k, j in zip(*np.nonzero(matrix)):
            ax.text(j, k, f"{int(matrix[k, j])}", ha="center", va="center", fontsize="xx-small",
                    color="white" if rates[k, j] > 0.6 * rates.max() else "black")
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=90, fontsize="x-small")
    ax.set_yticks(ticks, names, fontsize="x-small")
    ax.set_xlabel("predicted on (nearest other keypoint)")
    ax.set_ylabel("visible keypoint")
    fraction = summary.get("fraction")
    share = summary.get("error_share")
    detail = "" if fraction is None else (f": {fraction:.1%} of {summary['count']} visible keypoints"
                                           + ("" if share is None else f", {share:.0%} of the error"))
    ax.set_title(f"{title}{detail}", fontsize="small")
    fig.colorbar(image, ax=ax, label="fraction of the row keypoint's visible instances", shrink=0.8)
    return _save_figure(fig, path)


def _heatmap_layout(h, w, panels, max_cols):
    """Where `plot_heatmaps` puts things: `scale` (screen px per heatmap px), `box`
    (panel width, height), `origin(i)` (panel i's top-left screen pixel, row-major),
    `bar` (colour bar x, y, height) and the canvas `size`."""
    # Heatmap pixels become blocks of `scale` screen pixels (whole ones while they fit
    # the panel, so every heatmap pixel has the same size); the input fills the same box.
    scale = HEATMAP_PANEL // max(h, w) if max(h, w) <= HEATMAP_PANEL else HEATMAP_PANEL / max(h, w)
    box_w, box_h = max(1, round(w * scale)), max(1, round(h * scale))
    pad, left, top_gap, bottom = 10, 30, 34, 18  # around each panel: margins for ticks and its two-line title
    header, bar_w = 44, (70 if panels > 1 else 0)
    cell_w, cell_h = left + box_w + pad, top_gap + box_h + bottom
    ncols = max(1, min(max_cols, panels))
    nrows = math.ceil(panels / ncols)
    size = (pad + ncols * cell_w + bar_w, header + nrows * cell_h + pad)

    def origin(index):
        row, col = divmod(index, ncols)
        return pad + col * cell_w + left, header + row * cell_h + top_gap

    return {"scale": scale, "box": (box_w, box_h), "origin": origin, "size": size,
            "bar": (size[0] - bar_w + 6, header + top_gap, nrows * cell_h - top_gap - bottom)}


def _pyplot():
    # Imported on first use: it costs ~0.3 s, and processes that draw only the Pillow
    # figures (use_vis.py's figure workers) never need it. Headless machines pick Agg;
    # notebooks keep their inline backend.
    import matplotlib.pyplot as plt

    return plt


@functools.cache
def _viridis_lut():
    """matplotlib's viridis as a (256, 3) uint8 lookup table, read once per process."""
    import matplotlib

    return np.round(matplotlib.colormaps["viridis"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def _to_uint8(image):
    """An image for display as uint8: floats in [0, 1] are scaled by 255, others clipped."""
    if image.dtype == np.uint8:
        return image
    image = np.nan_to_num(np.asarray(image, dtype=np.float64))
    if image.size and image.max() <= 1.0:
        image = image * 255.0
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _frame_and_ticks(draw, x0, y0, width, height, size_x, size_y, font):
    """A black frame round a panel of `width` x `height` screen pixels that shows
    `size_x` x `size_y` data pixels, with ticks at 0, half and the end on the left and bottom."""
    draw.rectangle([x0 - 1, y0 - 1, x0 + width, y0 + height], outline="black")
    for fraction in (0.0, 0.5, 1.0):
        x = x0 + fraction * width - 0.5
        draw.line([(x, y0 + height), (x, y0 + height + 3)], fill="black")
        draw.text((x, y0 + height + 4), f"{fraction * size_x:g}", fill="black", font=font, anchor="mt")
        y = y0 + fraction * height - 0.5
        draw.line([(x0 - 4, y), (x0 - 1, y)], fill="black")
        draw.text((x0 - 5, y), f"{fraction * size_y:g}", fill="black", font=font, anchor="rm")


def _draw_markers(draw, markers, r):
    """("+" | "x", x, y) markers: argmax a white +, decoded keypoint a vermillion X. All
    black edges first, then all colours, so two markers on one pixel both stay readable."""
    def strokes(kind, x, y):
        if kind == "+":
            return [(x - r, y), (x + r, y)], [(x, y - r), (x, y + r)]
        d = r * 0.8
        return [(x - d, y - d), (x + d, y + d)], [(x - d, y + d), (x + d, y - d)]

    for edge in (True, False):
        for kind, x, y in markers:
            colour = "black" if edge else ("white" if kind == "+" else VERMILLION)
            for line in strokes(kind, x, y):
                draw.line(line, fill=colour, width=4 if edge else 2)


def _colour_bar(canvas, draw, x0, y0, height, vmin, vmax, lut, font):
    """A vertical bar of the shared colour scale (vmax at the top), ticked at five values."""
    bar = lut[np.linspace(255, 0, max(2, height)).round().astype(int)]
    canvas.paste(Image.fromarray(np.repeat(bar[:, None], 14, axis=1)), (x0, y0))
    draw.rectangle([x0 - 1, y0 - 1, x0 + 14, y0 + height], outline="black")
    for fraction in np.linspace(0.0, 1.0, 5):
        y = y0 + (1.0 - fraction) * (height - 1)
        draw.line([(x0 + 14, y), (x0 + 17, y)], fill="black")
        draw.text((x0 + 19, y), f"{vmin + fraction * (vmax - vmin):.3g}", fill="black", font=font, anchor="lm")
    label = Image.new("RGB", (max(1, int(draw.textlength("heatmap value", font=font))) + 4, 14), "white")
    ImageDraw.Draw(label).text((2, 7), "heatmap value", fill="black", font=font, anchor="lm")
    label = label.rotate(90, expand=True)
    canvas.paste(label, (canvas.width - label.width - 1, y0 + max(0, (height - label.height) // 2)))


def _save_figure(fig, path):
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format=path.suffix.lstrip(".") or "png")
    finally:
        _pyplot().close(fig)
    return path


def _plot_series(ax, values, label, colour):
    values = np.asarray(values, dtype=np.float64)
    epochs = np.arange(1, values.size + 1)
    ax.plot(epochs, values, color=colour, label=label, marker="o" if values.size <= 30 else None, markersize=3)


def _mark_best(ax, values, higher_is_better):
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).any():
        return
    best = int(np.nanargmax(values) if higher_is_better else np.nanargmin(values))
    ax.axvline(best + 1, color=GREEN, linestyle=":", linewidth=1.2)
    ax.plot(best + 1, values[best], "*", color=GREEN, markersize=12,
            label=f"best val: epoch {best + 1}, {values[best]:.4g}")


def _higher_is_better(name):
    return not name.endswith("loss") and any(s in name.lower() for s in _HIGHER_IS_BETTER)


def _optional_array(value, name, shape, dtype):
    """None, or `value` as an array of `dtype` whose shape matches `shape` (None = any)."""
    if value is None:
        return None
    array = np.asarray(value).astype(dtype)
    if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape)):
        wanted = "(" + ", ".join("K" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {wanted}. Received: {name}.shape={array.shape}")
    return array


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed-size bitmap font
        return ImageFont.load_default()
