"""Configuration of the anchor-based single-shot detector: one file drives every script.

Every default is here; `configs/det_shapes.yaml` overrides a few for the synthetic
shapes demo, and each script takes `--config FILE` plus `--set section.key=value`.
The number of classes comes from the data (the COCO categories); the number of
scales from `model.strides`, the anchors from `model.anchor_sizes` and
`model.aspect_ratios`.
"""

import dataclasses
import math

from common.config import TrainingConfig, size_pair


@dataclasses.dataclass
class DataConfig:
    """Where the data is and how it is read.

    data_dir: folder with `{split}.json` (COCO detection format) and the images in
    `images/{split}/`, `images/` or beside the JSON.
    bbox_format: xywh (COCO), xyxy (the course-homework variant) or auto (guesses only
    when one reading is impossible, and says so).
    input_size: (width, height) of the model input; images are resized to it.
    max_boxes: boxes per image kept in the cache (padded); more is an error.
    """

    data_dir: str = "runs/det/shapes"
    cache_dir: str = "runs/det/cache"
    bbox_format: str = "auto"
    input_size: tuple = (224, 224)
    max_boxes: int = 16

    def __post_init__(self):
        self.input_size = size_pair(self.input_size, "input_size")
        if self.input_size[0] % 16 or self.input_size[1] % 16:
            raise ValueError(f"input_size must be multiples of 16 (4 stride-2 blocks). "
                             f"Received: input_size={self.input_size}")
        if self.bbox_format not in ("xywh", "xyxy", "auto"):
            raise ValueError(f"bbox_format must be xywh|xyxy|auto. Received: bbox_format={self.bbox_format!r}")
        if self.max_boxes < 1:
            raise ValueError(f"max_boxes must be >= 1. Received: max_boxes={self.max_boxes}")


@dataclasses.dataclass
class ModelConfig:
    """Backbone of 4 stride-2 blocks; `scale_blocks` (1-based) feed the detection scales.

    filters: channels of the 4 blocks. convs_per_block: 3x3 convolutions per block (the
    first has stride 2). head_filters: channels of each head's 3x3 convolution.
    anchor_sizes: per scale, anchor sizes in input pixels (sqrt of the area).
    aspect_ratios: anchor width / height, shared by the scales.
    """

    filters: tuple = (16, 32, 64, 128)
    convs_per_block: int = 2
    scale_blocks: tuple = (2, 3, 4)
    head_filters: tuple = (64, 64, 128)
    anchor_sizes: tuple = ((16, 24, 32), (48, 64, 96), (96, 128, 192))
    aspect_ratios: tuple = (1.0,)
    variances: tuple = (0.1, 0.1, 0.2, 0.2)
    bn_momentum: float = 0.9

    def __post_init__(self):
        self.filters = tuple(int(f) for f in self.filters)
        self.scale_blocks = tuple(int(b) for b in self.scale_blocks)
        self.head_filters = tuple(int(f) for f in self.head_filters)
        self.anchor_sizes = tuple(tuple(float(s) for s in sizes) for sizes in self.anchor_sizes)
        self.aspect_ratios = tuple(float(r) for r in self.aspect_ratios)
        self.variances = tuple(float(v) for v in self.variances)
        if len(self.filters) != 4 or min(self.filters) <= 0:
            raise ValueError(f"filters must be 4 positive widths. Received: filters={self.filters}")
        if not self.scale_blocks or sorted(set(self.scale_blocks)) != list(self.scale_blocks) or \
                not set(self.scale_blocks) <= {1, 2, 3, 4}:
            raise ValueError(f"scale_blocks must be increasing block numbers in 1..4. "
                             f"Received: scale_blocks={self.scale_blocks}")
        if len(self.anchor_sizes) != len(self.scale_blocks) or len(self.head_filters) != len(self.scale_blocks):
            raise ValueError(f"anchor_sizes and head_filters need one entry per scale ({len(self.scale_blocks)}). "
                             f"Received: anchor_sizes={self.anchor_sizes}, head_filters={self.head_filters}")
        # Checks are written as `not 0 < x < math.inf` so that NaN and infinity fail too.
        if any(not sizes or not all(0 < s < math.inf for s in sizes) for sizes in self.anchor_sizes):
            raise ValueError(f"anchor sizes must be positive finite numbers. "
                             f"Received: anchor_sizes={self.anchor_sizes}")
        if len(set(len(sizes) for sizes in self.anchor_sizes)) != 1:
            raise ValueError(f"every scale needs the same number of anchor sizes. "
                             f"Received: anchor_sizes={self.anchor_sizes}")
        if not self.aspect_ratios or not all(0 < r < math.inf for r in self.aspect_ratios):
            raise ValueError(f"aspect_ratios must be positive finite numbers. "
                             f"Received: aspect_ratios={self.aspect_ratios}")
        if self.convs_per_block < 1:
            raise ValueError(f"convs_per_block must be >= 1. Received: {self.convs_per_block}")
        if len(self.variances) != 4 or not all(0 < v < math.inf for v in self.variances):
            raise ValueError(f"variances must be 4 positive finite numbers. Received: {self.variances}")

    @property
    def strides(self):
        return tuple(2 ** block for block in self.scale_blocks)


@dataclasses.dataclass
class TrainConfig(TrainingConfig):
    """Training: target assignment, losses, augmentation; the optimiser and schedule are
    `common.config.TrainingConfig`'s (here AdamW, a warm-up, then a cosine decay).

    positive_iou / negative_iou: anchors with best IoU >= positive_iou are positive,
    < negative_iou negative, ignored between (and every box's best anchor is positive).
    objectness_loss: bce (with hard-negative mining: the `neg_pos_ratio` hardest
    negatives per positive in each image; 0 keeps all) or focal (alpha, gamma).
    flip: random horizontal flips;
    scale_jitter: (min, max) zoom factors (1, 1 = off); both move the boxes with the image.
    """

    output_dir: str = "runs/det/model"
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"
    warmup_steps: int = 100
    positive_iou: float = 0.5
    negative_iou: float = 0.4
    objectness_loss: str = "bce"
    neg_pos_ratio: float = 3.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_weight: float = 1.0
    class_weight: float = 1.0
    flip: bool = True
    scale_jitter: tuple = (0.8, 1.2)

    def __post_init__(self):
        super().__post_init__()
        self.scale_jitter = tuple(float(s) for s in self.scale_jitter)
        if not 0 < self.negative_iou <= self.positive_iou <= 1:
            raise ValueError(f"need 0 < negative_iou <= positive_iou <= 1. Received: negative_iou="
                             f"{self.negative_iou}, positive_iou={self.positive_iou}")
        if self.objectness_loss not in ("bce", "focal"):
            raise ValueError(f"objectness_loss must be bce|focal. Received: {self.objectness_loss!r}")
        if len(self.scale_jitter) != 2 or not 0 < self.scale_jitter[0] <= self.scale_jitter[1] < math.inf:
            raise ValueError(f"scale_jitter must be (min, max) with 0 < min <= max. Received: {self.scale_jitter}")
        if not 0 <= self.neg_pos_ratio < math.inf:
            raise ValueError(f"neg_pos_ratio must be a finite number >= 0. Received: {self.neg_pos_ratio}")


@dataclasses.dataclass
class UseConfig:
    """Decoding and evaluation.

    score_threshold: detections below it are dropped before NMS (evaluation uses
    eval_score_threshold, low, so the precision-recall curve is complete).
    nms_iou: per-class NMS IoU. pre_nms_top_k: candidates per class entering NMS.
    max_detections: per image after NMS. overlay_threshold: detections drawn.
    """

    output_dir: str = "runs/det/predictions"
    score_threshold: float = 0.05
    eval_score_threshold: float = 0.01
    nms_iou: float = 0.45
    pre_nms_top_k: int = 100
    max_detections: int = 100
    overlay_threshold: float = 0.5
    max_overlays: int = 12
    batch_size: int = 32
    feature_map_images: int = 2

    def __post_init__(self):
        if not 0 < self.nms_iou <= 1:
            raise ValueError(f"nms_iou must be in (0, 1]. Received: nms_iou={self.nms_iou}")
        if self.pre_nms_top_k < 1 or self.max_detections < 1:
            raise ValueError(f"pre_nms_top_k and max_detections must be >= 1. Received: "
                             f"{self.pre_nms_top_k}, {self.max_detections}")


@dataclasses.dataclass
class DetConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    use: UseConfig = dataclasses.field(default_factory=UseConfig)
