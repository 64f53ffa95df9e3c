"""Backbones that expose their feature pyramid by name (what a U-Net decoder needs).

`resnet50_pyramid` wraps `keras.applications.ResNet50` (include_top=False) and returns
a functional model whose outputs are the stride-2/4/8/16/32 taps, finest first.
Weights: "none" (random init, the default: nothing can be downloaded here), "imagenet"
(Keras downloads or finds `~/.keras/models/...notop.h5`; offline this fails with a
clear message), or a path to a local weights file.
"""

import os
from pathlib import Path

import keras

from common.errors import DataError

RESNET50_TAPS = ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out")
RESNET50_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def resnet50_pyramid(input_shape, weights="none", name="resnet50"):
    """ResNet-50 feature pyramid. input_shape (H, W, 3), already preprocessed ("caffe").

    Returns a `keras.Model` with 5 outputs (strides 2, 4, 8, 16, 32; 64 to 2048
    channels), named by `RESNET50_TAPS`. It expects ResNet "caffe" preprocessed input
    (`common.layers.ResNetPreprocess`).
    """
    weights = _resolve_weights(weights)
    try:
        base = keras.applications.ResNet50(include_top=False, weights=weights, input_shape=tuple(input_shape))
    except Exception as err:  # download errors come as several types (URLError, OSError, Exception)
        if weights == "imagenet":
            raise DataError(
                "cannot load ImageNet weights for ResNet-50 (no network?). Put "
                f"{RESNET50_NOTOP_FILE} in ~/.keras/models/ or pass its path with --weights PATH "
                f"({err.__class__.__name__}: {err})", "weights=imagenet") from None
        raise DataError(f"cannot load backbone weights ({err.__class__.__name__}: {err})", weights) from None
    outputs = [base.get_layer(tap).output for tap in RESNET50_TAPS]
    return keras.Model(base.input, outputs, name=name)


def _resolve_weights(weights):
    if weights in (None, "none", "None", ""):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise DataError("weights file not found (use none, imagenet or a local file)", path)
    return str(path)


def has_pretrained_weights(weights):
    """Whether a `weights` setting loads trained values (so freezing the backbone makes sense)."""
    return _resolve_weights(weights) is not None


# --- ResNet-18 (keras.applications has none) ---

RESNET18_TAPS = ("conv1_relu", "conv2_block2_out", "conv3_block2_out", "conv4_block2_out", "conv5_block2_out")
RESNET18_IMAGENET_FILE = "resnet18_imagenet_notop.weights.h5"


def resnet18_pyramid(input_shape, weights="none", name="resnet18", bn_momentum=0.9):
    """ResNet-18 (He et al. 2016, basic blocks [2, 2, 2, 2]) as a feature pyramid.

    input_shape (H, W, 3), already preprocessed (e.g. `common.layers.ResNetPreprocess`).
    Returns a functional `keras.Model` with 5 outputs, strides 2, 4, 8, 16, 32 with
    64, 64, 128, 256, 512 channels, named by `RESNET18_TAPS` (the layer names follow
    `keras.applications.ResNet50`'s scheme). Weights: "none" (random init), "imagenet"
    (the file `~/.keras/models/resnet18_imagenet_notop.weights.h5`, which nothing
    downloads: put it there or pass its path), or a path to a `.weights.h5` file saved
    from this same architecture (`model.save_weights`).
    """
    layers = keras.layers
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"`input_shape` must be (H, W, 3). Received: input_shape={input_shape}")
    weights_path = _resnet18_weights_path(weights)

    def bn(x, layer_name):
        return layers.BatchNormalization(epsilon=1.001e-5, momentum=bn_momentum, name=layer_name)(x)

    def block(x, filters, stride, layer_name):
        shortcut = x
        if stride != 1 or x.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{layer_name}_0_conv")(x)
            shortcut = bn(shortcut, f"{layer_name}_0_bn")
        y = layers.ZeroPadding2D(1, name=f"{layer_name}_1_pad")(x)
        y = layers.Conv2D(filters, 3, strides=stride, use_bias=False, name=f"{layer_name}_1_conv")(y)
        y = layers.Activation("relu", name=f"{layer_name}_1_relu")(bn(y, f"{layer_name}_1_bn"))
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{layer_name}_2_conv")(y)
        y = layers.Add(name=f"{layer_name}_add")([shortcut, bn(y, f"{layer_name}_2_bn")])
        return layers.Activation("relu", name=f"{layer_name}_out")(y)

    inputs = keras.Input(tuple(input_shape), name=f"{name}_input")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    c1 = layers.Activation("relu", name="conv1_relu")(bn(x, "conv1_bn"))
    x = layers.ZeroPadding2D(1, name="pool1_pad")(c1)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    outputs = [c1]
    for stage, filters in enumerate((64, 128, 256, 512), start=2):
        for index in (1, 2):
            stride = 2 if index == 1 and stage > 2 else 1
            x = block(x, filters, stride, f"conv{stage}_block{index}")
        outputs.append(x)
    model = keras.Model(inputs, outputs, name=name)
    if weights_path is not None:
        try:
            model.load_weights(weights_path)
        except Exception as err:  # h5py and Keras raise several types for a foreign file
            raise DataError(f"cannot load ResNet-18 weights ({err.__class__.__name__}: {err})",
                            weights_path) from None
    return model


def _resnet18_weights_path(weights):
    if weights in (None, "none", "None", ""):
        return None
    if weights == "imagenet":
        path = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "models" / RESNET18_IMAGENET_FILE
        if not path.is_file():
            raise DataError(f"no ImageNet weights for ResNet-18 (nothing is downloaded): put {RESNET18_IMAGENET_FILE} "
                            "there or pass a local file with --weights PATH", path)
        return str(path)
    path = Path(weights)
    if not path.is_file():
        raise DataError("weights file not found (use none, imagenet or a local file)", path)
    return str(path)
