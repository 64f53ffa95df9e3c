"""The centre-keypoint detector: raw RGB tile -> ResNet-18 encoder-decoder -> C heatmaps.

The augmentation (flips and transpose, colour jitter, noise) and the ResNet
preprocessing are layers inside the model, so a saved `.keras` file takes raw uint8
tiles. The geometric augmentation flips the input and un-flips the output heatmaps
(`common.augment`), so the targets, built from the cached centres in the loss, never
need to move.

Output (float32, also under mixed precision):
    heatmaps (batch, H/4, W/4, C)  sigmoid probabilities, one map per class,
                                   trained with the focal-weighted MSE
"""

import math

import keras
from keras import layers

from common.augment import ColourJitter, FlipTranspose, RandomFlipFlags
from common.backbones import resnet18_pyramid
from common.layers import ResNetPreprocess
from common.losses import FocalMSEHeatmapLoss

# CenterNet's start: sigmoid(bias) = 0.1 everywhere, so the focal weights start moderate.
HEAD_PRIOR = 0.1


def build_model(num_classes, data_cfg, model_cfg, seed=None):
    """ResNet-18 -> 3 x (transposed conv 4x4 stride 2, BN, ReLU [+ skip]) -> 3x3 conv, 1x1 conv, sigmoid."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1. Received: num_classes={num_classes}")
    width, height = data_cfg.input_size
    images = keras.Input((height, width, 3), dtype="uint8", name="images")
    flags = RandomFlipFlags(flip_x=model_cfg.flips, flip_y=model_cfg.flips,
                            transpose=model_cfg.flips and width == height, seed=seed, name="flip_flags")(images)
    x = FlipTranspose(name="flip")([images, flags])
    x = ColourJitter(brightness=model_cfg.brightness, contrast=model_cfg.contrast,
                     saturation=model_cfg.saturation, noise_std=model_cfg.noise_std,
                     seed=None if seed is None else seed + 1, name="colour_jitter")(x)
    x = ResNetPreprocess(name="resnet_preprocess")(x)
    taps = resnet18_pyramid((height, width, 3), model_cfg.weights, name="backbone",
                            bn_momentum=model_cfg.bn_momentum)(x)
    x = taps[-1]  # stride 32, 512 channels
    for stage, (filters, skip) in enumerate(zip(model_cfg.decoder_filters, taps[-2:-5:-1]), start=1):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=f"up{stage}_deconv")(x)
        x = layers.BatchNormalization(momentum=model_cfg.bn_momentum, name=f"up{stage}_bn")(x)
        x = layers.Activation("relu", name=f"up{stage}_relu")(x)
        if model_cfg.skips:
            projected = layers.Conv2D(filters, 1, use_bias=False, name=f"skip{stage}_conv")(skip)
            projected = layers.BatchNormalization(momentum=model_cfg.bn_momentum, name=f"skip{stage}_bn")(projected)
            x = layers.Add(name=f"skip{stage}_add")([x, projected])
    x = layers.Conv2D(model_cfg.head_filters, 3, padding="same", activation="relu", name="head_conv")(x)
    logits = layers.Conv2D(num_classes, 1, dtype="float32", name="head_logits",
                           bias_initializer=keras.initializers.Constant(math.log(HEAD_PRIOR / (1 - HEAD_PRIOR))))(x)
    probs = layers.Activation("sigmoid", dtype="float32", name="head_sigmoid")(logits)
    heatmaps = FlipTranspose(inverse=True, dtype="float32", name="heatmaps")([probs, flags])
    return keras.Model(images, {"heatmaps": heatmaps}, name="centres_resnet18")


def compile_model(model, data_cfg, train_cfg, optimizer, jit_compile):
    """Focal-weighted MSE on the heatmaps, with `optimizer` (`common.training.make_optimizer`:
    AdamW with a StepLR-style decay by default)."""
    num_classes = model.output["heatmaps"].shape[-1] if isinstance(model.output, dict) else model.output.shape[-1]
    loss = FocalMSEHeatmapLoss(alpha=train_cfg.alpha, beta=train_cfg.beta, heatmap_size=data_cfg.heatmap_size[::-1],
                               num_classes=num_classes, sigma=data_cfg.sigma)
    model.compile(optimizer=optimizer, loss={"heatmaps": loss}, jit_compile=jit_compile)
    return model
