"""Training helpers for landmark accuracy: a sigma curriculum and a heatmap ensemble.

A sigma curriculum trains with wide Gaussians first (easy to find, coarse) and
narrower ones later (precise). Losses bake sigma into their compiled graph, so the
schedule is applied by compiling once per sigma and fitting the epochs of that sigma
(`curriculum_segments`), which works the same on TensorFlow and JAX.
"""

import numpy as np
from keras import ops


def sigma_for_epochs(schedule, epochs, default):
    """Sigma of each epoch: `schedule[e]`, the last value after it; `default` if empty."""
    schedule = tuple(float(s) for s in schedule)
    if not schedule:
        return [float(default)] * epochs
    return [schedule[min(e, len(schedule) - 1)] for e in range(epochs)]


def curriculum_segments(schedule, epochs, default):
    """`[(sigma, first_epoch, end_epoch)]` runs of equal sigma covering `range(epochs)`.

    Example: `curriculum_segments((4, 4, 2), 5, 2)` -> `[(4.0, 0, 2), (2.0, 2, 5)]`.
    """
    sigmas = sigma_for_epochs(schedule, epochs, default)
    segments = []
    for epoch, sigma in enumerate(sigmas):
        if segments and segments[-1][0] == sigma:
            segments[-1] = (sigma, segments[-1][1], epoch + 1)
        else:
            segments.append((sigma, epoch, epoch + 1))
    return segments


def ensemble_heatmaps(models, images, output="heatmaps", batch_size=64, transform=None):
    """Average the heatmaps of several models (same input and heatmap shape).

    Args:
        models: Keras models whose outputs include `output` (a dict key), or return
            heatmaps directly.
        images: `(N, H, W, C)` array.
        transform: optional function applied to each model's heatmaps before averaging
            (e.g. a sigmoid for models trained on logits).

    Returns:
        `(N, h, w, K)` float32 mean heatmaps; decode them with the codec.
    """
    if not models:
        raise ValueError("ensemble_heatmaps needs at least one model. Received: models=[]")
    total = None
    for model in models:
        maps = []
        for start in range(0, len(images), batch_size):
            out = model.predict_on_batch(np.asarray(images[start:start + batch_size]))
            out = out[output] if isinstance(out, dict) else out
            out = ops.convert_to_numpy(out).astype(np.float32)
            maps.append(transform(out) if transform is not None else out)
        maps = np.concatenate(maps)
        if total is not None and maps.shape != total.shape:
            raise ValueError(f"models disagree on the heatmap shape: {maps.shape} vs {total.shape}")
        total = maps if total is None else total + maps
    return total / len(models)
