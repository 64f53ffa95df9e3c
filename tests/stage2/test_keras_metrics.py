"""The pixel-error metric logged during fit."""

import numpy as np
import pytest

from stage2_visible_keypoints.keras_metrics import MeanKeypointError


def test_mean_keypoint_error_counts_visible_keypoints_in_pixels():
    metric = MeanKeypointError(frame_size=(100, 50))
    y_true = np.array([[[0.5, 0.5, 1.0], [0.1, 0.1, 1.0], [0.9, 0.9, 0.0]]], np.float32)
    # Errors: (0.03 * 100, 0.08 * 50) = (3, 4) -> 5 px; 0 px; the invisible one is ignored.
    y_pred = np.array([[[0.53, 0.58], [0.1, 0.1], [0.0, 0.0]]], np.float32)
    metric.update_state(y_true, y_pred)
    assert float(metric.result()) == pytest.approx(2.5, abs=1e-4)
    assert MeanKeypointError.from_config(metric.get_config()).frame_size == (100, 50)
