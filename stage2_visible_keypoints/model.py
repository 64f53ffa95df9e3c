"""The stage-2 model: raw RGB -> ResNet-50 (or -18) U-Net -> K heatmaps -> SoftArgMax keypoints.

The ResNet preprocessing (BGR, mean subtraction) and the photometric augmentation
(training only) are layers inside the model, so a saved `.keras` file takes raw uint8
images and cannot be fed wrongly preprocessed ones.

Outputs (all float32, also under mixed precision):
    heatmap_logits (batch, h, w, K)  trained with the focal heatmap loss (summed over the K maps)
    keypoints      (batch, K, 2)     normalised (x, y) of the input frame, SoftArgMax(beta)
    confidence     (batch, K)        peak height of sigmoid(heatmap_logits), the visibility score
"""

import keras
from keras import layers

from common.backbones import resnet18_pyramid, resnet50_pyramid
from common.layers import HeatmapPeak, PhotometricAugment, ResNetPreprocess, SoftArgMax
from common.losses import FocalHeatmapLoss, InterchangeableLoss, MaskedL1
from stage2_visible_keypoints.keras_metrics import MeanKeypointError


def build_model(num_keypoints, data_cfg, model_cfg, seed=None):
    """ResNet U-Net (model_cfg.backbone) with 4 upsampling stages (stride 32 -> 2) and skip connections."""
    if num_keypoints < 1:
        raise ValueError(f"num_keypoints must be >= 1. Received: num_keypoints={num_keypoints}")
    width, height = data_cfg.input_size
    images = keras.Input((height, width, 3), dtype="uint8", name="images")
    x = PhotometricAugment(blur_prob=model_cfg.blur_prob, max_blur_sigma=model_cfg.max_blur_sigma,
                           brightness_range=model_cfg.brightness_range, seed=seed, name="augment")(images)
    x = ResNetPreprocess(name="resnet_preprocess")(x)
    pyramid = {"resnet50": resnet50_pyramid, "resnet18": resnet18_pyramid}[model_cfg.backbone]
    backbone = pyramid((height, width, 3), model_cfg.weights, name="backbone")
    # keras.applications uses momentum 0.99: after a few hundred steps the moving statistics
    # of a randomly initialised ResNet are still far from the batch ones, and validation and
    # inference see garbage. 0.9 (PyTorch's default) tracks them ten times faster.
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = model_cfg.bn_momentum
    taps = backbone(x)
    x = taps[-1]
    for stage, (skip, filters) in enumerate(zip(taps[-2::-1], model_cfg.decoder_filters), start=1):
        x = layers.UpSampling2D(interpolation="bilinear", name=f"up{stage}")(x)
        x = layers.Concatenate(name=f"skip{stage}")([x, skip])
        for i in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"dec{stage}_conv{i}")(x)
            x = layers.BatchNormalization(momentum=model_cfg.bn_momentum, name=f"dec{stage}_bn{i}")(x)
            x = layers.Activation("relu", name=f"dec{stage}_relu{i}")(x)
    # Biased toward "no peak" at the start (sigmoid(-4) = 0.018), as RetinaNet does for rare positives.
    logits = layers.Conv2D(num_keypoints, 1, dtype="float32", name="heatmap_logits",
                           bias_initializer=keras.initializers.Constant(-4.0))(x)
    probs = layers.Activation("sigmoid", dtype="float32", name="heatmaps")(logits)
    keypoints = SoftArgMax(beta=model_cfg.beta, debias=model_cfg.debias, name="keypoints")(probs)
    confidence = HeatmapPeak(name="confidence")(probs)
    return keras.Model(images, {"heatmap_logits": logits, "keypoints": keypoints, "confidence": confidence},
                       name=f"stage2_{model_cfg.backbone}_unet")


def compile_model(model, data_cfg, train_cfg, optimizer, jit_compile, groups=()):
    """Focal heatmap loss (summed or averaged over the K maps) + coord_weight * masked L1 on
    visible keypoints, with `optimizer` (`common.training.make_optimizer`). With `groups`
    (interchangeable keypoints, as indices) each loss is taken under the best assignment
    within the groups (`common.losses.InterchangeableLoss`)."""
    heatmap_loss = FocalHeatmapLoss(alpha=train_cfg.focal_alpha, gamma=train_cfg.focal_gamma,
                                    keypoint_reduction=train_cfg.focal_keypoint_reduction,
                                    **data_cfg.codec().get_config())
    coordinate_loss = MaskedL1()
    if groups:
        heatmap_loss = InterchangeableLoss(heatmap_loss, groups)
        coordinate_loss = InterchangeableLoss(coordinate_loss, groups)
    model.compile(
        optimizer=optimizer,
        loss={"heatmap_logits": heatmap_loss, "keypoints": coordinate_loss, "confidence": None},
        loss_weights={"heatmap_logits": 1.0, "keypoints": train_cfg.coord_weight, "confidence": 0.0},
        metrics={"keypoints": [MeanKeypointError(data_cfg.input_size)]},
        jit_compile=jit_compile,
    )
    return model
