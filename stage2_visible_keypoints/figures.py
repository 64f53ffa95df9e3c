"""The per-image figures of `use_vis.py`, drawn with Pillow and numpy (~0.1 s an image).

A module of its own that imports neither Keras nor TensorFlow: when there are enough
figures for worker processes (`pipeline.use`), each spawned worker imports only this,
numpy and PIL (matplotlib once, for the colour map), not the several seconds of the
model's modules.
"""

from pathlib import Path

import numpy as np

from common.data_io import read_image_rgb
from common.plots import plot_heatmaps, save_overlay


def draw_figures(job):
    """One image's overlay (input frame), heatmap figure and, when its source image is
    readable, overlay on the original. `job`: the dict `stage2_visible_keypoints.pipeline.use`
    builds (arrays and paths only, so it pickles)."""
    save_overlay(job["overlay"], job["image"], xy_pred=job["xy_input"], xy_true=job["truth"],
                 visible_true=job["visible_true"], scores=job["confidence"], score_threshold=job["threshold"],
                 scale=job["scale"], segments=job["segments_input"])
    heatmaps = 1.0 / (1.0 + np.exp(-np.asarray(job["logits"], dtype=np.float32)))
    plot_heatmaps(job["image"], heatmaps, job["heatmaps"], keypoint_names=job["keypoint_names"],
                  xy_pred_heatmap=job["xy_heatmap"])
    source = job["source"]
    if source is not None and Path(source).is_file():  # caches can outlive their images
        save_overlay(job["original_overlay"], read_image_rgb(source), xy_pred=job["xy_original"],
                     xy_true=job["xy_original_true"], visible_true=job["visible_true"], scores=job["confidence"],
                     score_threshold=job["threshold"], segments=job["segments_original"])
    return job["overlay"]
