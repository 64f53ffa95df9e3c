"""Sigma curriculum segments and the heatmap ensemble."""

import keras
import numpy as np
import pytest

from baselines.landmarks import curriculum_segments, ensemble_heatmaps, sigma_for_epochs


def test_sigma_schedule_and_segments():
    assert sigma_for_epochs((), 3, 2.0) == [2.0, 2.0, 2.0]
    assert sigma_for_epochs((4, 3), 4, 2.0) == [4.0, 3.0, 3.0, 3.0]
    assert curriculum_segments((4, 4, 2), 5, 2.0) == [(4.0, 0, 2), (2.0, 2, 5)]
    assert curriculum_segments((), 3, 2.0) == [(2.0, 0, 3)]
    assert curriculum_segments((3, 2, 1, 1, 1, 1), 2, 2.0) == [(3.0, 0, 1), (2.0, 1, 2)]


def _constant_model(value):
    inputs = keras.Input((4, 4, 1))
    outputs = keras.layers.Conv2D(2, 1, kernel_initializer="zeros",
                                  bias_initializer=keras.initializers.Constant(value))(inputs)
    return keras.Model(inputs, {"heatmaps": outputs})


def test_ensemble_averages_heatmaps_and_checks_shapes():
    images = np.zeros((3, 4, 4, 1), np.float32)
    mean = ensemble_heatmaps([_constant_model(1.0), _constant_model(3.0)], images, batch_size=2)
    assert mean.shape == (3, 4, 4, 2)
    np.testing.assert_allclose(mean, 2.0)
    doubled = ensemble_heatmaps([_constant_model(1.0)], images, transform=lambda h: 2 * h)
    np.testing.assert_allclose(doubled, 2.0)
    with pytest.raises(ValueError, match="at least one model"):
        ensemble_heatmaps([], images)
