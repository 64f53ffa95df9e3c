"""Three models on one encoder design: HeatmapNet, RegressionNet, IntegralNet.

    uint8 (B, S, S, 1) -> /255 -> encoder: stem conv (stride 1), then 4 stages of
    [3x3 conv stride 2, 3x3 conv] (BN + ReLU) with taps at strides 2, 4, 8, 16
    HeatmapNet:    decoder: upsample x2 + (skip concat) + 3x3 conv back to the heatmap
                   stride -> 1x1 conv -> "heatmaps" (B, h, h, K), linear (logits for
                   the focal loss)
    RegressionNet: global average pooling -> Dense -> Dense(2K) -> "keypoints" (B, K, 2)
                   normalised (x, y)
    IntegralNet:   HeatmapNet + SoftArgMax -> "heatmaps" and "keypoints"

Outputs are float32 under mixed precision (the heads have a float32 dtype).
"""

import keras

from common.layers import SoftArgMax


def _conv(x, filters, stride, name, seed):
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv",
                            kernel_initializer=keras.initializers.HeNormal(seed))(x)
    # momentum 0.9: with a few hundred steps per run, 0.99 leaves the inference statistics stale.
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def encoder(images, filters, seed=0):
    """Taps {stride: tensor} for strides 1, 2, 4, 8, 16 of a (B, S, S, 1) uint8 input."""
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(images)
    x = _conv(x, max(filters[0] // 2, 2), 1, "stem", seed)
    taps = {1: x}
    for i, width in enumerate(filters):
        x = _conv(x, width, 2, f"enc{i + 1}a", seed + 10 * i + 1)
        x = _conv(x, width, 1, f"enc{i + 1}b", seed + 10 * i + 2)
        taps[2 ** (i + 1)] = x
    return taps


def heatmap_head(taps, num_keypoints, output_stride, filters, skips, seed=0):
    """Decoder from stride 16 up to `output_stride`; returns linear float32 heatmaps."""
    x, stride = taps[16], 16
    widths = {8: filters[2], 4: filters[1], 2: filters[0], 1: max(filters[0] // 2, 2)}
    while stride > output_stride:
        stride //= 2
        x = keras.layers.UpSampling2D(2, name=f"up{stride}")(x)
        if skips:
            x = keras.layers.Concatenate(name=f"skip{stride}")([x, taps[stride]])
        x = _conv(x, widths[stride], 1, f"dec{stride}", seed + 100 + stride)
    return keras.layers.Conv2D(num_keypoints, 1, name="heatmaps", dtype="float32",
                               kernel_initializer=keras.initializers.GlorotUniform(seed + 200))(x)


def build_model(num_keypoints, data_cfg, model_cfg, seed=0):
    """The model of `model_cfg.kind` for (S, S, 1) uint8 inputs (S = data.input_size)."""
    if num_keypoints < 1:
        raise ValueError(f"num_keypoints must be >= 1. Received: num_keypoints={num_keypoints}")
    size = data_cfg.input_size
    images = keras.Input((size, size, 1), dtype="uint8", name="image")
    taps = encoder(images, model_cfg.filters, seed)
    kind = model_cfg.kind
    if kind == "regression":
        x = keras.layers.GlobalAveragePooling2D(name="pool")(taps[16])
        x = keras.layers.Dense(model_cfg.dense_units, activation="relu", name="dense",
                               kernel_initializer=keras.initializers.HeNormal(seed + 300))(x)
        x = keras.layers.Dense(2 * num_keypoints, name="coordinates", dtype="float32",
                               kernel_initializer=keras.initializers.GlorotUniform(seed + 301),
                               bias_initializer=keras.initializers.Constant(0.5))(x)
        outputs = {"keypoints": keras.layers.Reshape((num_keypoints, 2), name="keypoints", dtype="float32")(x)}
        return keras.Model(images, outputs, name="regression_net")
    heatmaps = heatmap_head(taps, num_keypoints, size // data_cfg.heatmap_size, model_cfg.filters,
                            model_cfg.skips, seed)
    outputs = {"heatmaps": heatmaps}
    if kind == "integral":
        outputs["keypoints"] = SoftArgMax(model_cfg.beta, model_cfg.debias, name="keypoints")(heatmaps)
    return keras.Model(images, outputs, name=f"{kind}_net")
