"""Stage-2 configuration: one file drives preprocess, train and use.

Every default is here; `configs/stage2_demo.yaml` overrides a few for the demo, and
each script takes `--config FILE` plus `--set section.key=value`. The resolved config
is written beside each script's outputs.
"""

import dataclasses
import math

from common.config import TrainingConfig, size_pair
from common.config import check_range as _check_range

CROPS = ("centre", "box")
LABEL_FORMATS = ("auto", "speed", "coco")
BACKBONE_WEIGHTS_HELP = "none (random init), imagenet (needs network or Keras' cache), or a local .h5/.weights.h5 file"


@dataclasses.dataclass
class DataConfig:
    """Where the data is and how it is cut down to the model input.

    data_dir: folder with `{split}.json`, `images/`, `camera.json` (and `mesh.obj` when
    the labels hold poses but no 2D keypoints, as real SPEED files do); the side files
    may also sit in its parent folder (SPEED+: `speedplus/camera.json` beside `synthetic/`).
    cache_dir: caches go to `cache_dir/{split}/X_data.npy, Y_data.npz`.
    canvas_size, crop_size, input_size: (width, height) of the letterbox canvas, its
    centre crop and the model input. heatmap_size: (width, height), input / 2.
    sigma: Gaussian sigma of the heatmap targets, in heatmap pixels.
    interchangeable: groups of keypoints whose labels are arbitrary, by name or index
    (`[[corner_a, corner_b]]`; the vertex groups a mesh symmetry maps onto each other,
    as `symmetry_warnings` names them): training takes the loss under the best
    assignment within each group, evaluation adds matched figures, the argmax decode
    keeps a group on distinct peaks and the pose step tries the allowed assignments
    (`common.interchangeable`).
    crop: how an image is cut down to the input. centre: the letterbox onto canvas_size
    and the fixed centre crop_size (an object near the image centre, the "centred"
    renders). box: a square crop around the object's box, box_margin times its longer
    side (`common.geometry.box_crop_transform`): the true box (label "bbox", else the
    keypoints' box) for caches, stage 1's box in `pose_vis.py` / `PosePipeline`.
    box_jitter: (scale, shift) of the random error put on the true boxes of a cache
    (`common.geometry.jitter_box`), about what stage 1 errs by, so that the model does
    not depend on a perfect box; (0, 0) = crops of the true boxes.
    label_format: auto (a JSON list is the SPEED layout, an object with "annotations" a
    COCO keypoints file) | speed | coco. COCO: one sample per instance of one category,
    cropped by its box (`data.crop` is then box), no poses (`common.coco_keypoints`).
    category: the COCO category to read, by name or id ("" = the only one with keypoints).
    oks_sigmas: the COCO OKS sigma of each keypoint, for the keypoint AP of COCO data;
    () = the COCO person sigmas when the keypoints are the 17 COCO person keypoints,
    else `common.coco_keypoints.DEFAULT_OKS_SIGMA` (0.0669, their mean) for each.
    """

    data_dir: str = "runs/demo/renders"
    cache_dir: str = "runs/demo/cache"
    canvas_size: tuple = (1920, 1080)
    crop_size: tuple = (1000, 1000)
    input_size: tuple = (128, 128)
    heatmap_size: tuple = (64, 64)
    sigma: float = 2.0
    cache_heatmaps: bool = False
    interchangeable: tuple = ()
    crop: str = "centre"
    box_margin: float = 1.25
    box_jitter: tuple = (0.15, 0.1)
    label_format: str = "auto"
    category: str = ""
    oks_sigmas: tuple = ()

    def __post_init__(self):
        from common.interchangeable import check_groups

        self.interchangeable = check_groups(self.interchangeable)
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}. Received: crop={self.crop!r}")
        _check_range(self, "box_margin", low=0.0)
        if self.label_format not in LABEL_FORMATS:
            raise ValueError(f"label_format must be one of {LABEL_FORMATS}. Received: label_format={self.label_format!r}")
        self.oks_sigmas = tuple(self.oks_sigmas)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                   for v in self.oks_sigmas):
            raise ValueError(f"oks_sigmas must be positive numbers, one per keypoint. Received: "
                             f"oks_sigmas={self.oks_sigmas}")
        self.oks_sigmas = tuple(float(v) for v in self.oks_sigmas)
        self.box_jitter = tuple(float(v) for v in self.box_jitter)
        if len(self.box_jitter) != 2 or not all(0 <= v < 1 for v in self.box_jitter):
            raise ValueError(f"box_jitter must be (scale, shift), each in [0, 1). Received: box_jitter={self.box_jitter}")
        for name in ("canvas_size", "crop_size", "input_size", "heatmap_size"):
            setattr(self, name, size_pair(getattr(self, name), name))
        if self.crop_size[0] > self.canvas_size[0] or self.crop_size[1] > self.canvas_size[1]:
            raise ValueError(f"crop_size must fit in canvas_size. Received: crop_size={self.crop_size}, "
                             f"canvas_size={self.canvas_size}")
        if self.heatmap_size != (self.input_size[0] // 2, self.input_size[1] // 2):
            raise ValueError(f"heatmap_size must be input_size / 2 (the U-Net's finest tap has stride 2). "
                             f"Received: heatmap_size={self.heatmap_size}, input_size={self.input_size}")
        if min(self.input_size) < 32 or self.input_size[0] % 32 or self.input_size[1] % 32:
            raise ValueError(f"input_size must be multiples of 32 (ResNet-50 has stride 32). "
                             f"Received: input_size={self.input_size}")
        _check_range(self, "sigma", low=0.0)

    def codec(self):
        """The heatmap codec of these maps: the loss, the cached targets and the argmax decode share it."""
        from common.codecs import GaussianHeatmapCodec  # imports Keras: not at config-parsing time

        return GaussianHeatmapCodec(self.heatmap_size, self.sigma)


BACKBONES = ("resnet50", "resnet18")
# The focal loss over the K maps (common.losses.KEYPOINT_REDUCTIONS; repeated here so that
# this module, which preprocessing and --help load, needs no Keras; a test keeps them equal).
FOCAL_REDUCTIONS = ("sum", "mean")


@dataclasses.dataclass
class ModelConfig:
    """ResNet U-Net. backbone: resnet50 (the spec's) | resnet18 (a third of the compute,
    for small data or quick runs). weights: none | imagenet | PATH. beta: SoftArgMax
    temperature. bn_momentum: moving-average momentum of every BatchNormalization layer."""

    backbone: str = "resnet50"
    weights: str = "none"
    decoder_filters: tuple = (256, 128, 64, 32)
    beta: float = 15.0
    debias: bool = False
    bn_momentum: float = 0.9
    blur_prob: float = 0.5
    max_blur_sigma: float = 1.5
    brightness_range: tuple = (0.6, 1.0)

    def __post_init__(self):
        self.decoder_filters = tuple(int(f) for f in self.decoder_filters)
        if self.backbone not in BACKBONES:
            raise ValueError(f"model.backbone must be one of {BACKBONES}. Received: backbone={self.backbone!r}")
        if len(self.decoder_filters) != 4 or min(self.decoder_filters) <= 0:
            raise ValueError(f"decoder_filters must be 4 positive widths. Received: {self.decoder_filters}")
        if not 0 < self.bn_momentum < 1:
            raise ValueError(f"bn_momentum must be in (0, 1). Received: bn_momentum={self.bn_momentum}")
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta must be positive. Received: beta={self.beta}")


@dataclasses.dataclass
class TrainConfig(TrainingConfig):
    """Training defaults from the stage-2 spec (Adam, batch 128, lr 5e-4 halved on a
    plateau, 15 % validation); the shared settings are `common.config.TrainingConfig`'s.

    coord_weight: lambda in loss = focal(heatmaps) + lambda * masked L1(coordinates).
    focal_keypoint_reduction: sum | mean of the focal loss over the K heatmaps. sum (the
    tensorflow-addons focal loss the lambda = 5 of the spec was set against) keeps the
    balance between the two terms whatever K is; mean weighs the heatmaps K times less.
    fine_tune: unfreeze a pretrained backbone, start from `output_dir/best.keras`, lr
    `fine_tune_learning_rate`. eval_split: a cached split (say, test) evaluated in pixels
    after every epoch; its mean / median error and PCK go into history.csv as eval_* (one
    process: refused with distribution=multi_process).
    """

    output_dir: str = "runs/demo/model"
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 5e-4
    lr_schedule: str = "plateau"
    validation_split: float = 0.15
    fine_tune: bool = False
    fine_tune_learning_rate: float = 2e-6
    coord_weight: float = 5.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    focal_keypoint_reduction: str = "sum"
    eval_split: str = ""

    def __post_init__(self):
        super().__post_init__()
        _check_range(self, "fine_tune_learning_rate", low=0.0)
        _check_range(self, "coord_weight", low=0.0, low_inclusive=True)
        _check_range(self, "focal_alpha", low=0.0, high=1.0, low_inclusive=True)
        _check_range(self, "focal_gamma", low=0.0, low_inclusive=True)
        if self.focal_keypoint_reduction not in FOCAL_REDUCTIONS:
            raise ValueError(f"focal_keypoint_reduction must be sum|mean. "
                             f"Received: {self.focal_keypoint_reduction!r}")
        # The evaluation predicts the whole split in one process; under multi_process every
        # process holds only its share of each batch's outputs, and one process alone cannot run
        # the replicated model. use_vis.py evaluates the trained model instead.
        if self.eval_split and self.distribution == "multi_process":
            raise ValueError(f"eval_split works in one process; with distribution=multi_process evaluate the "
                             f"trained model with use_vis.py. Received: eval_split={self.eval_split!r}")


@dataclasses.dataclass
class UseConfig:
    """Inference and evaluation. visibility_threshold applies to the peak height.

    Pose: each image's pose is solved by PnP from its predicted-visible keypoints when
    the object's 3-D keypoints and the camera are known: from the cache (a data folder
    with camera.json and mesh.obj), or from `camera` and `mesh` (files; for --images; the
    mesh's vertex names must be the keypoint names, of the cache or of the run's
    keypoint_names.json, in any order).
    pnp_ransac_px: RANSAC inlier threshold in input-frame pixels.
    """

    output_dir: str = "runs/demo/predictions"
    visibility_threshold: float = 0.3
    max_overlays: int = 12
    batch_size: int = 32
    pck_thresholds: tuple = (2.0, 5.0, 10.0)
    pnp_ransac_px: float = 3.0
    camera: str = ""
    mesh: str = ""

    def __post_init__(self):
        _check_range(self, "visibility_threshold", low=0.0, high=1.0, low_inclusive=True)
        if self.max_overlays < 0 or self.batch_size < 1:
            raise ValueError(f"max_overlays must be >= 0 and batch_size >= 1. Received: "
                             f"max_overlays={self.max_overlays}, batch_size={self.batch_size}")
        self.pck_thresholds = tuple(float(t) for t in self.pck_thresholds)
        if not self.pck_thresholds or not all(math.isfinite(t) and t > 0 for t in self.pck_thresholds):
            raise ValueError(f"pck_thresholds must be positive finite pixel distances. "
                             f"Received: pck_thresholds={self.pck_thresholds}")
        if not (isinstance(self.pnp_ransac_px, (int, float)) and math.isfinite(self.pnp_ransac_px)
                and self.pnp_ransac_px > 0):
            raise ValueError(f"pnp_ransac_px must be a positive finite number. Received: pnp_ransac_px={self.pnp_ransac_px}")
        if bool(self.camera) != bool(self.mesh):
            raise ValueError(f"use.camera and use.mesh go together. Received: camera={self.camera!r}, "
                             f"mesh={self.mesh!r}")


# What a trained model depends on: use_vis.py and the predictor read these from the run's
# config.json and refuse a config that says otherwise (`common.run_config`).
TRAINED_SETTINGS = ("data.canvas_size", "data.crop_size", "data.input_size", "data.heatmap_size", "data.sigma",
                    "data.interchangeable", "data.crop", "data.box_margin", "data.label_format", "data.category",
                    "model")


@dataclasses.dataclass
class Stage2Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    use: UseConfig = dataclasses.field(default_factory=UseConfig)
