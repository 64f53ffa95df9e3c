"""Configuration of the centre-keypoint detector: one file drives preprocess, train and use.

Every default is here; `configs/centres_aerial.yaml` is the synthetic-aerial run, and
each script takes `--config FILE` plus `--set section.key=value`. The resolved config
is written beside each script's outputs.

Frames: `xy_original` (source image pixels), a tile of `tile_size` original pixels is
resized to `input_size` (`xy_input`), and the heatmap is `input_size / 4` (`xy_heatmap`).
With the defaults (512 px tiles -> 256 px input -> 64 px heatmap) one heatmap pixel is
8 original pixels.
"""

import dataclasses
import math

from common.config import TrainingConfig
from detection.centres.dota import DOTA_CATEGORIES

WEIGHTS_HELP = "none (random init), imagenet (a local file, nothing is downloaded) or a .weights.h5 file"


@dataclasses.dataclass
class DataConfig:
    """Where the DOTA-format data is and how it is cut into tiles.

    data_dir: folder with `images/` and `labelTxt/` (DOTA layout: one `NAME.txt` per
    `NAME.png`). The images are split `split` = (train, val, test) fractions by a seeded
    shuffle of the sorted names. categories: the classes to detect, one heatmap each
    (objects of other DOTA categories are ignored); `dota-v1.0` / `dota-v1.5` mean all
    15 / 16 DOTA categories. single_class: one heatmap for every listed category.
    tile_size, tile_overlap: square tiles in original pixels (an image smaller than a
    tile is padded with black at its right and bottom). input_size: the model input a
    tile is resized to (a multiple of 32); the heatmap is input_size / 4. sigma: of the
    Gaussian targets, in heatmap pixels. small_size: objects whose longest side is below
    it (original px) count as small; cluster_distance: objects with another centre
    closer than it (original px) count as clustered. skip_difficult: drop DOTA objects
    marked difficult.
    """

    data_dir: str = "runs/centres/aerial"
    cache_dir: str = "runs/centres/cache"
    categories: tuple = ("small-vehicle", "large-vehicle", "storage-tank")
    single_class: bool = False
    split: tuple = (0.7, 0.15, 0.15)
    split_seed: int = 0
    tile_size: int = 512
    tile_overlap: int = 128
    input_size: tuple = (256, 256)
    sigma: float = 1.5
    small_size: float = 30.0
    cluster_distance: float = 40.0
    skip_difficult: bool = False

    def __post_init__(self):
        self.input_size = tuple(int(v) for v in self.input_size)
        if len(self.input_size) != 2 or self.input_size[0] != self.input_size[1] or self.input_size[0] % 32 \
                or self.input_size[0] < 32:
            raise ValueError(f"input_size must be square and a multiple of 32. Received: input_size={self.input_size}")
        if len(self.categories) == 1 and self.categories[0] in DOTA_CATEGORIES:
            self.categories = DOTA_CATEGORIES[self.categories[0]]
        self.categories = tuple(str(c) for c in self.categories)
        if not self.categories or len(set(self.categories)) != len(self.categories):
            raise ValueError(f"categories must be distinct names. Received: categories={self.categories}")
        self.split = tuple(float(f) for f in self.split)
        # Written as `not 0 <= f <= 1` so that NaN fails too.
        if len(self.split) != 3 or not all(0 <= f <= 1 for f in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(f"split must be three fractions (train, val, test) summing to 1. Received: {self.split}")
        if self.tile_size < 32 or not 0 <= self.tile_overlap < self.tile_size:
            raise ValueError(f"need tile_size >= 32 and 0 <= tile_overlap < tile_size. Received: "
                             f"tile_size={self.tile_size}, tile_overlap={self.tile_overlap}")
        if not 0 < self.sigma < math.inf:
            raise ValueError(f"sigma must be a positive finite number. Received: sigma={self.sigma}")
        if not (0 <= self.small_size < math.inf and 0 <= self.cluster_distance < math.inf):
            raise ValueError(f"small_size and cluster_distance must be finite numbers >= 0. Received: "
                             f"small_size={self.small_size}, cluster_distance={self.cluster_distance}")

    @property
    def heatmap_size(self):
        """(width, height) of the heatmaps: the decoder ends at stride 4."""
        return (self.input_size[0] // 4, self.input_size[1] // 4)

    @property
    def px_per_heatmap_px(self):
        """Original pixels per heatmap pixel: the heatmap's stride in the source image."""
        return self.tile_size / self.heatmap_size[0]

    @property
    def class_names(self):
        """Names of the heatmap channels."""
        return ("object",) if self.single_class else self.categories

    def codec(self, num_classes=None):
        """The centre codec of these maps (loss targets and decoding share it); `num_classes`
        defaults to one map per class name (a model's own channel count may be given)."""
        from common.codecs import CentreHeatmapCodec  # imports Keras: not at config-parsing time

        return CentreHeatmapCodec(self.heatmap_size, num_classes or len(self.class_names), self.sigma)


@dataclasses.dataclass
class ModelConfig:
    """ResNet-18 encoder, three transposed-conv stages (512 -> 256 -> 128 -> 64), head.

    skips: add 1x1-projected encoder features (strides 16, 8, 4) after each transposed
    conv (a light U-Net; off = the plain CenterNet-style decoder). The augmentation
    (flips/transpose, colour jitter, noise) is part of the model and runs in training only.
    """

    weights: str = "none"
    decoder_filters: tuple = (256, 128, 64)
    head_filters: int = 64
    skips: bool = True
    bn_momentum: float = 0.9
    flips: bool = True
    brightness: float = 0.1
    contrast: float = 0.2
    saturation: float = 0.2
    noise_std: float = 8.0

    def __post_init__(self):
        self.decoder_filters = tuple(int(f) for f in self.decoder_filters)
        if len(self.decoder_filters) != 3 or min(self.decoder_filters) <= 0:
            raise ValueError(f"decoder_filters must be 3 positive widths. Received: {self.decoder_filters}")
        if not 0 < self.bn_momentum < 1:
            raise ValueError(f"bn_momentum must be in (0, 1). Received: bn_momentum={self.bn_momentum}")


@dataclasses.dataclass
class TrainConfig(TrainingConfig):
    """AdamW with a StepLR-style schedule (the rate is multiplied by lr_gamma every
    lr_step_epochs epochs); the shared settings are `common.config.TrainingConfig`'s.
    Validation is on the val cache when preprocessing made one, else on a
    validation_split of the training tiles (0 = none). alpha, beta: the focal-weighted
    MSE exponents. max_steps: stop each epoch after that many batches (0 = all; for smoke
    tests)."""

    output_dir: str = "runs/centres/model"
    epochs: int = 40
    batch_size: int = 16
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: str = "step"
    validation_split: float = 0.0
    alpha: float = 2.0
    beta: float = 4.0
    max_steps: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0. Received: max_steps={self.max_steps}")


@dataclasses.dataclass
class UseConfig:
    """Decoding and evaluation. score_threshold: on the peak height. merge_distance:
    peaks of one class from two overlapping tiles closer than this (original px) are one
    object; 0 (the default): two heatmap pixels, so it follows the stride (16 px with the
    default 512 px tiles, 32 px at tile_size=1024). match_distance: the Hungarian gate for P/R/F1 (original px); pck_thresholds
    use a gate at their largest value."""

    output_dir: str = "runs/centres/predictions"
    score_threshold: float = 0.3
    max_peaks: int = 500
    merge_distance: float = 0.0
    match_distance: float = 10.0
    pck_thresholds: tuple = (5.0, 10.0, 20.0)
    batch_size: int = 16
    max_overlays: int = 12


# What a trained centre detector depends on: use_centres.py reads these from the run's
# config.json and refuses a config that says otherwise (`common.run_config`). tile_overlap
# goes with tile_size: it must stay below it, so a run with 128 px tiles (default overlap
# 128) is only valid with its own overlap.
TRAINED_SETTINGS = ("data.categories", "data.single_class", "data.tile_size", "data.tile_overlap",
                    "data.input_size", "data.sigma", "model")


@dataclasses.dataclass
class CentresConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    use: UseConfig = dataclasses.field(default_factory=UseConfig)
