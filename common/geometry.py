"""The one coordinate convention, and the letterbox -> centre-crop -> resize pipeline.

Convention (used everywhere in the package): continuous pixel coordinates, pixel i
covers [i, i + 1) and its centre is at i + 0.5; (0, 0) is the top-left corner of the
image. Normalised coordinates are pixels divided by the frame size, so a point at the
centre of pixel j of a W-wide map has x_norm = (j + 0.5) / W. Pillow's `resize` uses the
same convention, which is why the image warp below and the point transform agree.

Arrays carry their frame in their name: `xy_original` (source image pixels),
`xy_input` (model input pixels), `xy_norm` ([0, 1] of the input frame).

A per-image transform is the 4-vector (sx, sy, tx, ty):
    xy_input = xy_original * (sx, sy) + (tx, ty)
It composes resize-with-padding onto a canvas, a centre crop and a final resize.
"""

import numpy as np
from PIL import Image


def letterbox_crop_transform(image_size, canvas_size, crop_size, input_size):
    """The (sx, sy, tx, ty) transform for one image, and the intermediate integer sizes.

    image_size, canvas_size, crop_size, input_size: (width, height) pairs.
    1. resize with padding: scale by s = min(canvas_w / w, canvas_h / h), rounded to
       whole pixels (so sx and sy can differ by a rounding hair), centred on the canvas;
    2. centre crop of `crop_size` from the canvas;
    3. resize the crop to `input_size`.
    Returns (transform (4,), plan dict) where the plan holds the integer sizes/offsets
    that `warp_image` uses, so the image and the points follow exactly the same steps.
    """
    w, h = image_size
    cw, ch = canvas_size
    kw, kh = crop_size
    iw, ih = input_size
    if min(w, h, cw, ch, kw, kh, iw, ih) <= 0:
        raise ValueError(f"sizes must be positive. Received: image={image_size}, canvas={canvas_size}, "
                         f"crop={crop_size}, input={input_size}")
    scale = min(cw / w, ch / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    pad_x, pad_y = (cw - new_w) // 2, (ch - new_h) // 2
    crop_x, crop_y = (cw - kw) // 2, (ch - kh) // 2
    fx, fy = iw / kw, ih / kh
    transform = np.array([new_w / w * fx, new_h / h * fy, (pad_x - crop_x) * fx, (pad_y - crop_y) * fy])
    plan = {"resized": (new_w, new_h), "offset": (pad_x - crop_x, pad_y - crop_y), "crop": (kw, kh), "input": (iw, ih)}
    return transform, plan


def warp_image(image, canvas_size, crop_size, input_size):
    """Letterbox, centre-crop and resize an image; returns (image_input uint8, transform (4,)).

    image: (H, W, 3) uint8. Padding is black. Downscaling is antialiased (Pillow's
    bilinear filter widens its support when shrinking).
    """
    h, w = image.shape[:2]
    transform, plan = letterbox_crop_transform((w, h), canvas_size, crop_size, input_size)
    pil = Image.fromarray(image)
    if plan["resized"] != (w, h):
        pil = pil.resize(plan["resized"], Image.BILINEAR)
    crop = Image.new("RGB", plan["crop"])
    crop.paste(pil, plan["offset"])  # paste clips what falls outside the crop
    if plan["input"] != plan["crop"]:
        crop = crop.resize(plan["input"], Image.BILINEAR)
    return np.asarray(crop), transform


def to_input(xy_original, transform):
    """Original pixels -> input pixels. xy (..., K, 2), transform (..., 4) broadcast over K."""
    t = np.asarray(transform, dtype=np.float64)[..., None, :]
    return np.asarray(xy_original, dtype=np.float64) * t[..., :2] + t[..., 2:]


def to_original(xy_input, transform):
    """Input pixels -> original pixels: the exact inverse of `to_input`."""
    t = np.asarray(transform, dtype=np.float64)[..., None, :]
    return (np.asarray(xy_input, dtype=np.float64) - t[..., 2:]) / t[..., :2]


def inside(xy, size):
    """(..., K) bool: points inside [0, width) x [0, height)."""
    xy = np.asarray(xy)
    return (xy[..., 0] >= 0) & (xy[..., 0] < size[0]) & (xy[..., 1] >= 0) & (xy[..., 1] < size[1])
