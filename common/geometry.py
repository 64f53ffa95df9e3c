"""The one coordinate convention, and the letterbox -> centre-crop -> resize pipeline.

Convention (used everywhere in the package): continuous pixel coordinates, pixel i
covers [i, i + 1) and its centre is at i + 0.5; (0, 0) is the top-left corner of the
image. Normalised coordinates are pixels divided by the frame size, so a point at the
centre of pixel j of a W-wide map has x_norm = (j + 0.5) / W. Pillow's `resize` uses the
same convention, which is why the image warp below and the point transform agree.

Sizes: every size passed between functions of the package (image, canvas, crop, input
and heatmap sizes, in configs, caches and arguments) is `(width, height)`, as Pillow's
`Image.size`; points are `(x, y)` in the same order. Arrays keep numpy's shapes:
images `(H, W, 3)` or `(N, H, W, 3)`, heatmaps `(N, H, W, K)`. The one place that turns a
heatmap size into an array shape is `common.codecs` (`map_shape`); a model's input
size is read from its `(batch, H, W, 3)` input as `(shape[2], shape[1])`.

Arrays carry their frame in their name: `xy_original` (source image pixels),
`xy_input` (model input pixels), `xy_norm` ([0, 1] of the input frame).

A per-image transform is the 4-vector (sx, sy, tx, ty):
    xy_input = xy_original * (sx, sy) + (tx, ty)
It composes resize-with-padding onto a canvas, a centre crop and a final resize
(`letterbox_crop_transform`), or a square crop around an object's box and a resize
(`box_crop_transform`); `warp_image` / `warp_image_file` resample an image with either.
"""

import math

import numpy as np
from PIL import Image

from common.data_io import open_image, to_rgb


def letterbox_crop_transform(image_size, canvas_size, crop_size, input_size):
    """The (sx, sy, tx, ty) transform for one image, and the intermediate integer sizes.

    image_size, canvas_size, crop_size, input_size: (width, height) pairs.
    1. resize with padding: scale by s = min(canvas_w / w, canvas_h / h), rounded to
       whole pixels (so sx and sy can differ by a rounding hair), centred on the canvas;
    2. centre crop of `crop_size` from the canvas;
    3. resize the crop to `input_size`.
    Returns (transform (4,), plan dict) where the plan holds the integer sizes/offsets.
    `warp_image` resamples the image with this same transform, so the image and the
    points follow exactly the same steps.
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


def box_crop_transform(box, input_size, margin=1.25, min_side=8.0):
    """The (sx, sy, tx, ty) transform of a square crop around `box`, resized to `input_size`.

    box: [x1, y1, x2, y2] original pixels. The crop is centred on the box, its side is
    `margin` times the box's longer side (at least `min_side` px, so a box of a pixel or
    two still gives a finite scale); it may reach past the image (black there, as the
    letterbox). input_size: (width, height); a non-square input stretches the square.
    Broadcasts: box (..., 4) -> transform (..., 4).
    """
    box = np.asarray(box, dtype=np.float64)
    centre = (box[..., :2] + box[..., 2:]) / 2
    side = np.maximum(margin * np.max(box[..., 2:] - box[..., :2], axis=-1), min_side)[..., None]
    scale = np.asarray(input_size, dtype=np.float64) / side  # (..., 2)
    return np.concatenate([scale, -(centre - side / 2) * scale], axis=-1)


def points_box(xy, image_size):
    """The box [x1, y1, x2, y2] of the finite points `xy` (K, 2), clipped to the image of
    `image_size` (width, height); None when none of it is inside the image."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(axis=1)]
    if not len(xy):
        return None
    low, high = np.maximum(xy.min(axis=0), 0.0), np.minimum(xy.max(axis=0), image_size)
    if np.any(high <= low):
        return None
    return [float(v) for v in (*low, *high)]


def jitter_box(box, rng, scale=0.15, shift=0.1):
    """`box` [x1, y1, x2, y2] moved and resized at random, as a detector errs: the centre
    moves by up to `shift` of the box's width / height, each side is scaled by a factor
    in [1 - scale, 1 + scale]. Used on true boxes to make training crops."""
    box = np.asarray(box, dtype=np.float64)
    centre, size = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
    centre = centre + rng.uniform(-shift, shift, 2) * size
    size = size * rng.uniform(1 - scale, 1 + scale, 2)
    return np.concatenate([centre - size / 2, centre + size / 2])


def warp_image(image, canvas_size, crop_size, input_size, transform=None):
    """Letterbox, centre-crop and resize an image; returns (image_input uint8, transform (4,)).

    image: (H, W, 3) uint8. Padding is black. One antialiased bilinear resample maps the
    input frame's extent in the image straight to `input_size` (Pillow's filter widens
    its support when shrinking), so there is no full-size intermediate. transform: a
    given (4,) transform (a `box_crop_transform`) instead of the letterbox and centre crop.
    """
    h, w = image.shape[:2]
    if transform is None:
        transform, _ = letterbox_crop_transform((w, h), canvas_size, crop_size, input_size)
    return np.asarray(_resample(Image.fromarray(image), transform, input_size, 1)), transform


def warp_image_file(path, canvas_size, crop_size, input_size, transform=None):
    """`warp_image` on an image file: (image_input (H, W, 3) uint8, transform (4,), (width, height)).

    A JPEG is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling) when that
    still leaves at least two source pixels per input pixel: a 1920x1200 SPEED image
    decodes at 480x300 for the default 128x128 input, about ten times faster than a full
    decode and resize. The transform refers to the original size either way. Modes other
    than RGB are converted by `common.data_io.to_rgb`. A missing or unreadable file raises `DataError` naming it.
    transform: as in `warp_image`.
    """
    with open_image(path) as pil:
        size = pil.size
        if transform is None:
            transform, _ = letterbox_crop_transform(size, canvas_size, crop_size, input_size)
        transform = np.asarray(transform, dtype=np.float64)
        box_w, box_h = input_size[0] / transform[0], input_size[1] / transform[1]  # original pixels
        reduce = next((r for r in (8, 4, 2) if box_w / r >= 2 * input_size[0] and box_h / r >= 2 * input_size[1]), 1)
        drafted = pil.draft(None, (size[0] // reduce, size[1] // reduce)) if reduce > 1 else None
        scale = 1 if drafted is None else size[0] / drafted[1][2]  # draft returns (mode, (0, 0, w / s, h / s))
        pil.load()
        if pil.mode == "L":  # grayscale (SPEED's frames): resampled before it is made RGB, a third of the work
            warped = _resample(pil, transform, input_size, scale).convert("RGB")
        else:
            warped = _resample(to_rgb(pil), transform, input_size, scale)
    return np.asarray(warped), transform, size


def _resample(pil, transform, input_size, scale):
    """Resample the input frame's extent from `pil`, an image decoded at 1/scale of the
    original size (pixel j covers original [scale * j, scale * (j + 1))); black outside it.
    """
    sx, sy, tx, ty = transform
    # The input frame [0, iw) x [0, ih) in the decoded image's pixels.
    box = [-tx / sx / scale, -ty / sy / scale, (input_size[0] - tx) / sx / scale, (input_size[1] - ty) / sy / scale]
    # Bilinear support reaches max(1, shrink factor) source pixels past each box edge: pad
    # with black where it leaves the image, as the letterbox does.
    reach_x = max(1.0, (box[2] - box[0]) / input_size[0])
    reach_y = max(1.0, (box[3] - box[1]) / input_size[1])
    width, height = pil.size
    pad = [max(0, math.ceil(reach_x - box[0])), max(0, math.ceil(reach_y - box[1])),
           max(0, math.ceil(box[2] + reach_x - width)), max(0, math.ceil(box[3] + reach_y - height))]
    if any(pad):
        padded = Image.new(pil.mode, (width + pad[0] + pad[2], height + pad[1] + pad[3]))
        padded.paste(pil, (pad[0], pad[1]))
        pil, box = padded, [box[0] + pad[0], box[1] + pad[1], box[2] + pad[0], box[3] + pad[1]]
    return pil.resize(tuple(input_size), Image.BILINEAR, box=tuple(box))


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
