"""Baselines configuration: one file drives render, preprocess, train, use and the study.

Every default is here; `configs/baselines.yaml` is the documented study setting, and
each script takes `--config FILE` plus `--set section.key=value`.
"""

import dataclasses

from common.config import TrainingConfig

KEYPOINT_NAMES_FILE = "keypoint_names.json"  # beside the model: resolves named groups for images without labels

MODEL_KINDS = ("heatmap", "regression", "integral")
HEATMAP_LOSSES = ("mse", "focal", "mse_peak", "wing", "adaptive_wing")


@dataclasses.dataclass
class DataConfig:
    """data_dir: `{split}.json` + `images/`; caches in `cache_dir/{split}/`.
    input_size: square model input in pixels; heatmap_size: square heatmap side
    (input / 4, / 2 or / 1); sigma: Gaussian sigma in heatmap pixels.
    crop: instance (each COCO instance is a sample, cropped from its image as a square of
    its box's longer side plus `crop_margin` of it on each side: context, and room for
    keypoints just outside the box) | image (each image whole, resized to the square
    input: one instance per image, as the stick figures, which fill their frame).
    interchangeable: groups of keypoints whose labels are arbitrary, by name or index
    (`[[hand_left, hand_right]]`): training takes the loss under the best assignment
    within each group, evaluation reports matched and raw figures, decoding keeps a
    group's keypoints on distinct peaks (`common.interchangeable`)."""

    data_dir: str = "runs/baselines/data"
    cache_dir: str = "runs/baselines/cache"
    input_size: int = 128
    heatmap_size: int = 64
    sigma: float = 2.0
    crop: str = "instance"
    crop_margin: float = 0.25
    interchangeable: tuple = ()

    def __post_init__(self):
        from common.interchangeable import check_groups

        self.interchangeable = check_groups(self.interchangeable)
        if self.crop not in ("instance", "image"):
            raise ValueError(f"crop must be instance|image. Received: crop={self.crop!r}")
        if not 0 <= self.crop_margin <= 2:
            raise ValueError(f"crop_margin must be in [0, 2]. Received: crop_margin={self.crop_margin}")
        if self.input_size < 32 or self.input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16, >= 32. Received: input_size={self.input_size}")
        if self.heatmap_size not in (self.input_size // 4, self.input_size // 2, self.input_size):
            raise ValueError(f"heatmap_size must be input_size / 4, / 2 or / 1. "
                             f"Received: heatmap_size={self.heatmap_size}, input_size={self.input_size}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be positive. Received: sigma={self.sigma}")

    def codec(self, sigma=None):
        """The heatmap codec of these square maps, `(heatmap_size, heatmap_size)` (width, height);
        `sigma` overrides `data.sigma` (a sigma curriculum recompiles with each)."""
        from common.codecs import GaussianHeatmapCodec  # imports Keras: not at config-parsing time

        return GaussianHeatmapCodec((self.heatmap_size, self.heatmap_size), self.sigma if sigma is None else sigma)


@dataclasses.dataclass
class ModelConfig:
    """kind: heatmap | regression | integral. filters: encoder widths at strides 2, 4,
    8, 16 (the stem at stride 1 has filters[0] / 2). skips: U-Net skip connections.
    beta / debias: SoftArgMax of the integral model."""

    kind: str = "heatmap"
    filters: tuple = (8, 16, 32, 64)
    skips: bool = True
    dense_units: int = 128
    beta: float = 15.0
    debias: bool = False

    def __post_init__(self):
        self.filters = tuple(int(f) for f in self.filters)
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model.kind must be one of {MODEL_KINDS}. Received: kind={self.kind!r}")
        if len(self.filters) != 4 or min(self.filters) < 2:
            raise ValueError(f"filters must be 4 widths >= 2. Received: filters={self.filters}")
        if not self.beta > 0:
            raise ValueError(f"beta must be positive. Received: beta={self.beta}")


@dataclasses.dataclass
class TrainConfig(TrainingConfig):
    """Adam(learning_rate, clipnorm) halved on a plateau by default; the optimiser, schedule
    and length are `common.config.TrainingConfig`'s. loss (heatmap and integral models):
    mse | focal | mse_peak | wing | adaptive_wing. coordinate_weight: weight of the
    coordinate loss of the integral model (and of the peak term of mse_peak).
    foreground_weight: mse and mse_peak weigh each pixel's squared error by
    1 + w * target (0 = plain MSE; with plain MSE a small net sits at all-zero maps for
    epochs).
    augment: random rotation (+-rotation degrees), scale, translation (fraction of the
    image) moving image and keypoints together. sigma_curriculum: sigma per epoch
    (the last value holds for the remaining epochs); empty = data.sigma throughout."""

    output_dir: str = "runs/baselines/model"
    epochs: int = 12
    batch_size: int = 8  # 15 epochs: PCK@0.05 0.991 at batch 8, 0.985 at 16 (README)
    learning_rate: float = 1e-3
    loss: str = "mse"
    coordinate_weight: float = 1.0
    foreground_weight: float = 10.0
    lr_schedule: str = "plateau"
    augment: bool = False
    rotation: float = 20.0
    scale_range: tuple = (0.85, 1.15)
    translation: float = 0.08
    sigma_curriculum: tuple = ()

    def __post_init__(self):
        super().__post_init__()
        self.scale_range = tuple(float(s) for s in self.scale_range)
        self.sigma_curriculum = tuple(float(s) for s in self.sigma_curriculum)
        if self.loss not in HEATMAP_LOSSES:
            raise ValueError(f"train.loss must be one of {HEATMAP_LOSSES}. Received: loss={self.loss!r}")
        if any(s <= 0 for s in self.sigma_curriculum):
            raise ValueError(f"sigma_curriculum values must be positive. Received: {self.sigma_curriculum}")


@dataclasses.dataclass
class UseConfig:
    output_dir: str = "runs/baselines/predictions"
    batch_size: int = 64
    max_overlays: int = 8


@dataclasses.dataclass
class StudyConfig:
    """The comparison + ablation + loss study (`run_study.py`).

    Train/test images, epochs and seeds per part; `quick` settings are in
    `run_study.QUICK`. Every arm of a part gets the same budget: the comparison trains
    on all `train_images`, each ablation cell and loss arm on the first
    `part_train_images` of them (10 % of either held out for validation)."""

    output_dir: str = "results"
    train_images: int = 4000
    test_images: int = 500
    data_seed: int = 1
    comparison_epochs: int = 15
    part_train_images: int = 2000
    ablation_epochs: int = 2
    ablation_seeds: tuple = (0, 1)
    heatmap_strides: tuple = (4, 2, 1)
    sigmas: tuple = (1.0, 2.0, 3.0, 4.0)
    skips: tuple = (True, False)
    loss_epochs: int = 2
    loss_seeds: tuple = (0, 1)
    loss_arms: tuple = ("mse", "focal", "mse_peak", "wing", "adaptive_wing", "mse+augment", "mse+clipnorm",
                        "mse+augment+clipnorm")
    spacing_mm: float = 1.0
    parts: tuple = ("comparison", "ablation", "loss")

    def __post_init__(self):
        self.ablation_seeds = tuple(int(s) for s in self.ablation_seeds)
        self.loss_seeds = tuple(int(s) for s in self.loss_seeds)
        self.heatmap_strides = tuple(int(s) for s in self.heatmap_strides)
        self.sigmas = tuple(float(s) for s in self.sigmas)
        self.skips = tuple(bool(s) for s in self.skips)
        self.loss_arms = tuple(str(a) for a in self.loss_arms)
        self.parts = tuple(str(p) for p in self.parts)
        if not set(self.heatmap_strides) <= {1, 2, 4}:
            raise ValueError(f"study.heatmap_strides must be 1, 2 or 4. Received: {self.heatmap_strides}")
        if self.train_images < 2 or self.test_images < 1:
            raise ValueError(f"study needs >= 2 train and >= 1 test images. Received: {self.train_images}, "
                             f"{self.test_images}")
        unknown = set(self.parts) - {"comparison", "ablation", "loss"}
        if unknown:
            raise ValueError(f"study.parts: unknown {sorted(unknown)}; known: comparison, ablation, loss")


# What a trained model depends on: use_base.py reads these from the run's config.json and
# refuses a config that says otherwise (`common.run_config`); train.loss decides whether
# the heatmaps are logits.
TRAINED_SETTINGS = ("data.input_size", "data.heatmap_size", "data.sigma", "data.interchangeable", "model",
                    "train.loss")


@dataclasses.dataclass
class BaselinesConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    use: UseConfig = dataclasses.field(default_factory=UseConfig)
    study: StudyConfig = dataclasses.field(default_factory=StudyConfig)
