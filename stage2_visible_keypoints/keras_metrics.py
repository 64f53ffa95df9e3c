"""Keras (streaming) metrics, `keras.ops` code for both backends.

`common.metrics` holds the numpy evaluation; these run inside `fit` so the logs,
TensorBoard and the CSV history show an error in pixels while training.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keypoints")
class MeanKeypointError(keras.metrics.Metric):
    """Mean Euclidean error of visible keypoints, in pixels of a frame of `frame_size`.

    y_true (batch, K, 3) = (x_norm, y_norm, visible); y_pred (batch, K, 2) normalised.
    frame_size: (width, height) that the normalised coordinates are scaled by.
    """

    def __init__(self, frame_size=(128, 128), name="pixel_error", **kwargs):
        super().__init__(name=name, **kwargs)
        self.frame_size = tuple(int(v) for v in frame_size)
        self.total = self.add_variable((), initializer="zeros", name="total")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")
        scale = ops.convert_to_tensor(self.frame_size, dtype="float32")
        delta = (ops.cast(y_pred, "float32") - y_true[..., :2]) * scale
        visible = y_true[..., 2]
        error = ops.sqrt(ops.sum(ops.square(delta), axis=-1) + 1e-12)
        # where, not a product: NaN coordinates of invisible keypoints must not leak in.
        self.total.assign_add(ops.sum(ops.where(visible > 0, error, 0.0)))
        self.count.assign_add(ops.sum(visible))

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "frame_size": self.frame_size}
