"""Backbones that expose their feature pyramid by name (what a U-Net decoder needs).

`resnet50_pyramid` wraps `keras.applications.ResNet50` (include_top=False) and returns
a functional model whose outputs are the stride-2/4/8/16/32 taps, finest first.
Weights: "none" (random init, the default: nothing can be downloaded here), "imagenet"
(Keras downloads or finds `~/.keras/models/...notop.h5`; offline this fails with a
clear message), or a path to a local weights file.
"""

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
