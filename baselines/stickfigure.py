"""The built-in stick-figure dataset: 128x128 grayscale figures with 5 keypoints.

Each figure has a torso, a head (a circle above the neck), two two-segment arms from
the neck and two two-segment legs from the hip. Pose (every joint angle), limb lengths,
line thickness, position, scale, brightness and noise are random. The keypoints are the
head centre, the two hands and the two feet. Arms (and legs) look the same, so which
hand is "left" is decided from the image: `hand_left` is the hand with the smaller x
(image left), likewise `foot_left`. A method that regresses coordinates directly tends
to predict an average of such poses; a heatmap method finds the limb ends.

Coordinates follow `common.codecs`: pixel i covers [i, i + 1), its centre is i + 0.5.
OpenCV draws with pixel centres at integers, so points are shifted by -0.5 to draw.
"""

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from common.data_io import atomic_path, save_json

KEYPOINT_NAMES = ("head", "hand_left", "hand_right", "foot_left", "foot_right")
# COCO "skeleton" (1-based pairs) for plots: head-hands and head-feet chains are not
# edges of the drawing, so only the two symmetric pairs are listed.
SKELETON = ((2, 3), (4, 5))
_SHIFT = 4  # OpenCV sub-pixel drawing: coordinates in 1/16 px


@dataclasses.dataclass
class StickFigureConfig:
    """Ranges of the random figure; lengths in pixels of the 128x128 image."""

    image_size: int = 128
    torso: tuple = (18.0, 30.0)
    limb: tuple = (10.0, 20.0)  # each arm and leg segment
    head_radius: tuple = (4.0, 7.0)
    thickness: tuple = (1, 3)
    margin: float = 6.0  # keypoints stay this far inside the image
    noise_std: tuple = (0.0, 12.0)
    background: tuple = (0, 70)
    foreground: tuple = (150, 255)

    def __post_init__(self):
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32. Received: image_size={self.image_size}")


def random_figure(rng, cfg=StickFigureConfig()):
    """One figure: (image (S, S) uint8, xy (5, 2) float32 in pixels of the image)."""
    size = cfg.image_size
    scale = size / 128.0
    torso = rng.uniform(*cfg.torso) * scale
    tilt = rng.uniform(-0.35, 0.35)  # torso angle from vertical
    down = np.array([np.sin(tilt), np.cos(tilt)])
    neck = np.zeros(2)
    hip = neck + torso * down
    radius = rng.uniform(*cfg.head_radius) * scale
    head = neck - (radius + 1.0 * scale) * down

    def limb(start, base_angle, spread):
        a1 = base_angle + rng.uniform(-spread, spread)
        a2 = a1 + rng.uniform(-1.4, 1.4)
        l1, l2 = rng.uniform(*cfg.limb, size=2) * scale
        mid = start + l1 * np.array([np.cos(a1), np.sin(a1)])
        return mid, mid + l2 * np.array([np.cos(a2), np.sin(a2)])

    torso_angle = np.arctan2(down[1], down[0])
    arms = [limb(neck, torso_angle + side * 1.9, 1.1) for side in (-1, 1)]
    legs = [limb(hip, torso_angle + side * 0.45, 0.45) for side in (-1, 1)]
    hands = sorted((end for _, end in arms), key=lambda p: p[0])
    feet = sorted((end for _, end in legs), key=lambda p: p[0])
    keypoints = np.array([head, hands[0], hands[1], feet[0], feet[1]])

    # Place (and shrink if needed) so that every drawn point is inside the margin.
    points = np.concatenate([keypoints, [neck, hip], [m for m, _ in arms + legs], head[None] - radius,
                             head[None] + radius])
    low, high = points.min(axis=0), points.max(axis=0)
    room = size - 2 * cfg.margin * scale
    shrink = min(1.0, room / max(high - low))
    offset = cfg.margin * scale + rng.uniform(0, 1, 2) * (room - shrink * (high - low))

    def place(p):
        return (np.asarray(p) - low) * shrink + offset

    background = rng.uniform(*cfg.background)
    foreground = rng.uniform(*cfg.foreground)
    image = np.full((size, size), background, np.float32)
    thickness = max(1, int(round(rng.integers(cfg.thickness[0], cfg.thickness[1] + 1) * scale)))

    def cv_point(p):
        return tuple(int(round(v)) for v in (place(p) - 0.5) * (1 << _SHIFT))

    for a, b in [(neck, hip)] + [(s, m) for s, (m, _) in zip((neck, neck), arms)] + \
                [(m, e) for m, e in arms] + [(s, m) for s, (m, _) in zip((hip, hip), legs)] + \
                [(m, e) for m, e in legs]:
        cv2.line(image, cv_point(a), cv_point(b), foreground, thickness, cv2.LINE_AA, _SHIFT)
    cv2.circle(image, cv_point(head), int(round(radius * shrink * (1 << _SHIFT))), foreground,
               thickness, cv2.LINE_AA, _SHIFT)
    image += rng.normal(0.0, rng.uniform(*cfg.noise_std), image.shape)
    return np.clip(image, 0, 255).round().astype(np.uint8), place(keypoints).astype(np.float32)


def render_dataset(out_dir, num_images, seed, split="train", cfg=StickFigureConfig()):
    """Write `images/{split}/*.png` and `{split}.json` (COCO keypoints) into `out_dir`.

    Returns the path of the JSON file.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(num_images):
        image, xy = random_figure(rng, cfg)
        name = f"{split}_{i:06d}.png"
        with atomic_path(out_dir / "images" / split / name) as tmp:
            cv2.imwrite(str(tmp), image)
        images.append({"id": i + 1, "file_name": name, "width": cfg.image_size, "height": cfg.image_size})
        low, high = xy.min(axis=0), xy.max(axis=0)
        keypoints = np.concatenate([xy.round(3), np.full((len(xy), 1), 2.0)], axis=1)
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                            "num_keypoints": len(xy), "keypoints": keypoints.ravel().tolist(),
                            "bbox": [float(low[0]), float(low[1]), float(high[0] - low[0]),
                                     float(high[1] - low[1])]})
    coco = {"info": {"description": "stick figures", "seed": seed, "config": dataclasses.asdict(cfg),
                     "coordinates": "pixel i covers [i, i+1), centre i + 0.5"},
            "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "stick_figure", "keypoints": list(KEYPOINT_NAMES),
                            "skeleton": [list(pair) for pair in SKELETON]}]}
    path = out_dir / f"{split}.json"
    save_json(path, coco)
    return path
