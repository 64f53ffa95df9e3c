"""Synthetic SPEED-like renders of a keypoint mesh, with exact keypoint visibility.

Pure numpy + Pillow: a z-buffer triangle rasteriser with flat Lambert shading over a
star field or an Earth limb. Each image is labelled in SPEED's format (`q_vbs2tango`,
`r_Vo2To_vbs_true`) plus the projected keypoints `xy_original` (K, 2) and their
visibility (K,), where K = number of mesh vertices.

Conventions (from `stage2_visible_keypoints.camera`): continuous pixel coordinates, (0, 0) is the
top-left image corner, pixel i covers [i, i + 1) and its centre is i + 0.5; body
points go to the camera frame as `quat2dcm(q).T @ p_body + r`.
"""

import dataclasses
import statistics
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from common.data_io import save_image, save_json
from common.geometry import points_box
from common.parallel import parallel_map
from stage2_visible_keypoints.camera import (
    body_to_camera,
    load_camera_json,
    project_points,
    random_quaternion,
    save_camera_json,
    speed_camera,
)
from stage2_visible_keypoints.mesh import load_obj, save_obj, symmetry_warnings, visible_vertices

DEFAULT_MESH = Path(__file__).parent / "assets" / "spacecraft.obj"

# Albedo (linear RGB in [0, 1]) per part; a face's part is the prefix of its first
# vertex's name up to the first "_" (body_000 -> "body"). Unknown parts are grey.
PART_ALBEDO = {
    "body": (0.85, 0.65, 0.25),  # gold-ish multilayer insulation foil
    "panel": (0.10, 0.16, 0.45),  # dark blue solar cells
    "antenna": (0.60, 0.60, 0.62),
}
DEFAULT_ALBEDO = (0.5, 0.5, 0.5)
BACKGROUND_KINDS = ("stars", "earth")
# Scene distributions. "centred": today's default, the body origin within max_offset_px of
# the principal point at 9-16 m, so a fixed centre crop holds the object. "speed": like
# SPEED / SPEED+, 3-40 m and the body origin anywhere in the frame, so the object may be a
# few pixels wide, overflow any fixed crop or stick out of the image: it needs stage 1.
SCENES = {"centred": {"distance_range": (9.0, 16.0)}, "speed": {"distance_range": (3.0, 40.0)}}


@dataclasses.dataclass
class RenderConfig:
    """What to render; every default is visible here.

    num_images: images in the split. seed: images are reproducible from (seed, index).
    camera_json: SPEED camera file, None = `speed_camera()`. mesh_path: OBJ file, None
    = the bundled `assets/spacecraft.obj`. distance_range: (min, max) metres from the
    camera centre to the body origin; None = the scene's (`SCENES`). scene: "centred"
    (the body origin projects within +-max_offset_px (x and y) of the principal point) or
    "speed" (it projects anywhere in the image; max_offset_px is unused). backgrounds: probability weight
    per background kind ("stars", "earth"). blur_prob: chance of a Gaussian blur.
    noise_std: std of additive grey Gaussian noise in 0-255 units. ambient: light a
    face receives with the sun behind it, as a fraction of its albedo.
    image_format: "jpg" or "png".
    """

    num_images: int = 100
    seed: int = 0
    camera_json: str | None = None
    mesh_path: str | None = None
    scene: str = "centred"
    distance_range: tuple | None = None
    max_offset_px: float = 150.0
    backgrounds: dict = dataclasses.field(default_factory=lambda: {"stars": 0.6, "earth": 0.4})
    blur_prob: float = 0.3
    noise_std: float = 3.0
    ambient: float = 0.12
    image_format: str = "jpg"

    def __post_init__(self):
        if isinstance(self.num_images, bool) or not isinstance(self.num_images, int) or self.num_images < 1:
            raise ValueError(f"num_images must be a positive integer. Received: num_images={self.num_images!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer. Received: seed={self.seed!r}")
        if self.scene not in SCENES:
            raise ValueError(f"scene must be one of {tuple(SCENES)}. Received: scene={self.scene!r}")
        if self.distance_range is None:
            self.distance_range = SCENES[self.scene]["distance_range"]
        self.distance_range = tuple(float(d) for d in self.distance_range)
        low, high = self.distance_range if len(self.distance_range) == 2 else (0.0, -1.0)
        if not 0 < low <= high:
            raise ValueError(f"distance_range must be (min, max) with 0 < min <= max. "
                             f"Received: distance_range={self.distance_range}")
        if not self.max_offset_px >= 0:
            raise ValueError(f"max_offset_px must be >= 0. Received: max_offset_px={self.max_offset_px}")
        unknown = set(self.backgrounds) - set(BACKGROUND_KINDS)
        weights = list(self.backgrounds.values())
        if unknown or not weights or not np.isfinite(weights).all() or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"backgrounds must map some of {BACKGROUND_KINDS} to non-negative weights with a "
                             f"positive sum. Received: backgrounds={self.backgrounds}")
        for name in ("blur_prob", "ambient"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]. Received: {name}={getattr(self, name)}")
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0. Received: noise_std={self.noise_std}")
        if self.image_format not in ("jpg", "png"):
            raise ValueError(f"image_format must be 'jpg' or 'png'. Received: image_format={self.image_format!r}")


def sample_pose(rng, camera, config):
    """A random pose (q (4,), r (3,) metres) that puts the body origin in view.

    The rotation is uniform on SO(3). The body origin lies on the ray through a pixel
    within +-config.max_offset_px of the principal point ("centred" scene) or anywhere
    in the image ("speed"), at a distance drawn uniformly from config.distance_range.
    """
    q = random_quaternion(rng)
    if config.scene == "speed":
        offset = rng.uniform([0.0, 0.0], [camera.width, camera.height]) - [camera.cx, camera.cy]
    else:
        offset = rng.uniform(-config.max_offset_px, config.max_offset_px, size=2)
    ray = np.array([offset[0] / camera.fx, offset[1] / camera.fy, 1.0])
    r = rng.uniform(*config.distance_range) * ray / np.linalg.norm(ray)
    return q, r


def face_albedo(mesh):
    """(F, 3) albedo per face from the part name of its first vertex (see PART_ALBEDO)."""
    parts = [mesh.vertex_names[a].split("_")[0] for a in mesh.faces[:, 0]]
    return np.array([PART_ALBEDO.get(part, DEFAULT_ALBEDO) for part in parts], dtype=np.float32).reshape(-1, 3)


def rasterise(mesh, points_cam, camera, sun_dir, ambient, near=1e-3):
    """Z-buffer render of the mesh: rgb (H, W, 3) uint8, mask (H, W) bool.

    points_cam: (V, 3) camera-frame vertices. sun_dir: (3,) unit vector towards the
    sun, camera frame. Faces are two-sided with flat Lambert shading,
    albedo * (ambient + (1 - ambient) * max(0, n . sun_dir)), n facing the camera.
    A pixel is covered when its centre (i + 0.5, j + 0.5) is inside the projected
    triangle; depth is resolved per pixel with 1/Z interpolated affinely in screen
    space (exact for a pinhole). With lens distortion, vertices are distorted but
    edges stay straight (an approximation). Faces with a vertex at Z <= near are
    skipped (no clipping): poses keep the object well in front of the camera.
    """
    rgb = np.zeros((camera.height, camera.width, 3), np.uint8)
    mask = np.zeros((camera.height, camera.width), bool)
    box, rgb_box, mask_box = _rasterise_box(mesh, points_cam, camera, sun_dir, ambient, near)
    if box is not None:
        y_lo, y_hi, x_lo, x_hi = box
        rgb[y_lo:y_hi, x_lo:x_hi], mask[y_lo:y_hi, x_lo:x_hi] = rgb_box, mask_box
    return rgb, mask


def _rasterise_box(mesh, points_cam, camera, sun_dir, ambient, near):
    """`rasterise` on the image part the mesh can cover: (box, rgb (h, w, 3), mask (h, w)).

    box = (y_lo, y_hi, x_lo, x_hi) pixel rows/columns, half-open; None if nothing
    can be drawn. Working on this box keeps a 1920x1200 render to tens of ms.
    """
    xy_original = project_points(points_cam, camera)
    in_front = np.all(points_cam[mesh.faces, 2] > near, axis=1)  # (F,)
    faces = mesh.faces[in_front]
    if len(faces) == 0:
        return None, None, None
    used = xy_original[np.unique(faces)]
    # Columns/rows whose pixel centres can fall inside some triangle.
    x_lo, y_lo = np.maximum(np.ceil(used.min(axis=0) - 0.5).astype(int), 0)
    x_hi = min(int(np.floor(used[:, 0].max() - 0.5)) + 1, camera.width)
    y_hi = min(int(np.floor(used[:, 1].max() - 0.5)) + 1, camera.height)
    if x_lo >= x_hi or y_lo >= y_hi:
        return None, None, None

    corners = points_cam[faces]  # (F, 3, 3)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    # Two-sided: turn each normal towards the camera (the camera centre is the origin).
    normals *= np.where(np.sum(normals * corners.mean(axis=1), axis=1, keepdims=True) > 0, -1.0, 1.0)
    lambert = np.clip(normals @ np.asarray(sun_dir, dtype=np.float64), 0.0, None)
    shade = face_albedo(mesh)[in_front] * (ambient + (1 - ambient) * lambert[:, None])
    colours = (np.clip(shade, 0, 1) * 255 + 0.5).astype(np.uint8)

    inv_depth = np.zeros((y_hi - y_lo, x_hi - x_lo), np.float32)  # 0 = nothing drawn
    rgb = np.zeros((y_hi - y_lo, x_hi - x_lo, 3), np.uint8)
    # Box-relative float32 coordinates: exact enough (< 1e-3 px) and twice as fast.
    xy_box = (xy_original - [x_lo, y_lo]).astype(np.float32)
    for face, colour in zip(faces, colours):
        z = points_cam[face, 2].astype(np.float32)
        a, b, c = xy_box[face]
        area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if abs(area) < 1e-6:
            continue  # edge-on: covers no pixel centre
        # This triangle's own bounding box, in box pixels.
        i_lo, j_lo = np.maximum(np.ceil(np.min([a, b, c], axis=0) - 0.5).astype(int), 0)
        i_hi = min(int(np.floor(max(a[0], b[0], c[0]) - 0.5)) + 1, rgb.shape[1])
        j_hi = min(int(np.floor(max(a[1], b[1], c[1]) - 0.5)) + 1, rgb.shape[0])
        if i_lo >= i_hi or j_lo >= j_hi:
            continue
        px = (np.arange(i_lo, i_hi, dtype=np.float32) + 0.5)[None, :]
        py = (np.arange(j_lo, j_hi, dtype=np.float32) + 0.5)[:, None]
        # Barycentric weights of a and b from edge functions (separable in x and y).
        w_a = ((c[0] - b[0]) / area * (py - b[1])) - ((c[1] - b[1]) / area * (px - b[0]))
        w_b = ((a[0] - c[0]) / area * (py - c[1])) - ((a[1] - c[1]) / area * (px - c[0]))
        w_c = 1.0 - w_a - w_b
        inside = (w_a >= 0) & (w_b >= 0) & (w_c >= 0)
        inv_z = w_a / z[0] + w_b / z[1] + w_c / z[2]
        zbuf = inv_depth[j_lo:j_hi, i_lo:i_hi]
        nearer = inside & (inv_z > zbuf)
        zbuf[nearer] = inv_z[nearer]
        rgb[j_lo:j_hi, i_lo:i_hi][nearer] = colour
    return (y_lo, y_hi, x_lo, x_hi), rgb, inv_depth > 0


def render_background(rng, camera, config):
    """A (H, W, 3) uint8 background: a star field or an Earth limb (weights in config)."""
    kinds = list(config.backgrounds)
    weights = np.array([config.backgrounds[k] for k in kinds], dtype=np.float64)
    kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
    return _earth_limb(rng, camera) if kind == "earth" else _stars(rng, camera)


def _stars(rng, camera):
    """Black sky with sparse single-pixel stars of random brightness and tint."""
    height, width = camera.height, camera.width
    image = np.zeros((height, width, 3), np.uint8)
    count = rng.poisson(height * width / 4000)
    rows, cols = rng.integers(0, height, count), rng.integers(0, width, count)
    brightness = rng.uniform(50, 255, (count, 1)) * rng.uniform(0.85, 1.0, (count, 3))
    image[rows, cols] = brightness.astype(np.uint8)
    return image


def _earth_limb(rng, camera):
    """Part of a large Earth disc: ocean blue with cloud noise, a bright limb and a glow.

    Drawn at 1/4 resolution and upsampled bilinearly: the content is smooth and this
    keeps a 1920x1200 background to a few milliseconds.
    """
    height, width = camera.height, camera.width
    small_h, small_w = -(-height // 4), -(-width // 4)
    radius = float(rng.uniform(1.0, 3.0) * width)  # px, full resolution (a Python float keeps arrays float32)
    # The limb passes through a random image point, the disc centre off to one side.
    limb_point = rng.uniform([0, 0], [width, height])
    angle = rng.uniform(0, 2 * np.pi)
    centre = (limb_point + radius * np.array([np.cos(angle), np.sin(angle)])).astype(np.float32)
    x = (np.arange(small_w, dtype=np.float32) + 0.5) * 4
    y = (np.arange(small_h, dtype=np.float32)[:, None] + 0.5) * 4
    depth = radius - np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2)  # > 0 inside the disc
    # Low-frequency cloud field: a coarse random grid, upsampled smoothly.
    coarse = rng.integers(0, 256, (16, 24), dtype=np.uint8)
    clouds = np.asarray(Image.fromarray(coarse).resize((small_w, small_h), Image.BICUBIC), np.float32) / 255
    clouds = np.clip((clouds - 0.45) * 2.5, 0, 1)[..., None]
    ocean = np.array([0.05, 0.18, 0.45], np.float32)
    cloud = np.array([0.92, 0.94, 0.97], np.float32)
    haze = np.array([0.55, 0.75, 1.0], np.float32)
    limb = np.exp(-np.clip(depth, 0, None) / (0.02 * radius))[..., None]  # 1 at the limb, fading inwards
    surface = (1 - clouds) * ocean + clouds * cloud
    surface = (1 - 0.6 * limb) * surface + 0.6 * limb * haze
    glow = 0.5 * np.exp(-np.clip(-depth, 0, None) / (0.004 * radius))[..., None] * haze
    small = np.where(depth[..., None] > 0, surface, glow) * rng.uniform(0.6, 1.0)  # overall illumination
    small = Image.fromarray((np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.array(small.resize((width, height), Image.BILINEAR))


# Standard normal quantiles at 256 equally likely levels: indexing this table with
# random bytes draws (quantised) Gaussian noise several times faster than
# rng.standard_normal for a full 1920x1200 frame.
_NORMAL_LEVELS = np.array([statistics.NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)])


def render_image(mesh, q, r, camera, rng, config):
    """Render one image of `mesh` at pose (q, r).

    Returns image (H, W, 3) uint8, xy_original (V, 2) projected vertices (pixels, the
    module's convention; may lie outside the image), visible (V,) bool from
    `stage2_visible_keypoints.mesh.visible_vertices` (exact, independent of the raster).
    Blur (probability config.blur_prob) is applied to the object's box plus a margin
    only: it stands for defocus / motion of the target, and blurring a whole 1920x1200
    frame would triple the render time.
    """
    points_cam = body_to_camera(mesh.vertices, q, r)
    xy_original = project_points(points_cam, camera)
    visible = visible_vertices(mesh, points_cam, camera)
    # The sun lies on the camera's side of the object (as in most SPEED images), so
    # the faces seen are mostly lit; its direction is otherwise uniform.
    sun_dir = rng.standard_normal(3)
    sun_dir /= np.linalg.norm(sun_dir)
    if sun_dir @ np.asarray(r) > 0:
        sun_dir = -sun_dir
    image = render_background(rng, camera, config)
    box, rgb_box, mask_box = _rasterise_box(mesh, points_cam, camera, sun_dir, config.ambient, near=1e-3)
    blur = rng.uniform() < config.blur_prob
    radius = rng.uniform(0.5, 1.5)
    if box is not None:
        y_lo, y_hi, x_lo, x_hi = box
        region = image[y_lo:y_hi, x_lo:x_hi]
        region[mask_box] = rgb_box[mask_box]
        if blur:
            margin = 8  # > 3 blur radii: the blurred edge fades out inside the crop
            y_lo, x_lo = max(y_lo - margin, 0), max(x_lo - margin, 0)
            y_hi, x_hi = min(y_hi + margin, camera.height), min(x_hi + margin, camera.width)
            crop = Image.fromarray(image[y_lo:y_hi, x_lo:x_hi])
            image[y_lo:y_hi, x_lo:x_hi] = np.asarray(crop.filter(ImageFilter.GaussianBlur(radius=radius)))
    if config.noise_std > 0:
        levels = np.round(_NORMAL_LEVELS * config.noise_std).astype(np.int16)
        noise = levels[rng.integers(0, 256, (camera.height, camera.width, 1), dtype=np.uint8)]
        image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return image, xy_original, visible


def object_box(xy_original, image_size):
    """The object's 2-D box [x1, y1, x2, y2] (pixels): the box of its projected mesh
    vertices (so of the projected mesh, whose faces are triangles of them), clipped to
    the image of `image_size` (width, height); None when the object is outside it."""
    return points_box(xy_original, image_size)


def coco_boxes(records, split, image_size, category="spacecraft"):
    """A split's object boxes as a COCO detection file (one class), for stage 1
    (`detection/ssd/preprocess_det.py --split {split}_boxes`): file names are
    `{split}/<file>`, found under `images/`. Images whose object is outside the image
    have no annotation (stage 1 learns that they hold nothing)."""
    images, annotations = [], []
    for index, record in enumerate(records):
        images.append({"id": index + 1, "file_name": f"{split}/{record['filename']}", "width": image_size[0],
                       "height": image_size[1]})
        if record.get("bbox") is not None:
            x1, y1, x2, y2 = record["bbox"]
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": category}]}


def render_split(out_dir, config, split="train", workers=1, progress=True):
    """Render `config.num_images` images and their labels into `out_dir`.

    Writes (all atomically) `images/{split}/img000001.<fmt>` (the SPEED layout) ..., `camera.json` (SPEED format),
    `mesh.obj`, `keypoint_names.json`, `render_config_{split}.json`, `{split}.json`: a list
    of records {"filename", "q_vbs2tango" (4,), "r_Vo2To_vbs_true" (3,), "keypoints"
    (K, 2) xy_original, "visible" (K,), "bbox" [x1, y1, x2, y2] (`object_box`, None when
    the object is outside the image)}, and `{split}_boxes.json`, the same boxes in COCO
    format (`coco_boxes`) for the stage-1 detector. Image i is drawn from (config.seed, split, i), so a
    split is reproducible (whatever `workers`, the number of processes); give each
    split its own seed. A mesh whose keypoint identities images cannot fix
    (`stage2_visible_keypoints.mesh.symmetry_warnings`) gets a `UserWarning`. Returns the path of `{split}.json`.
    """
    out_dir = Path(out_dir)
    camera = speed_camera() if config.camera_json is None else load_camera_json(config.camera_json)
    mesh_path = DEFAULT_MESH if config.mesh_path is None else config.mesh_path
    mesh = load_obj(mesh_path)
    for message in symmetry_warnings(mesh):
        warnings.warn(f"{mesh_path}: {message}", stacklevel=2)
    # The split's name is part of every image's seed: "train" and "test" with the same
    # --seed are still different images (no leak of training poses into a test split).
    split_key = zlib.crc32(split.encode())
    jobs = [(out_dir / "images" / split, config, camera, mesh, split_key, index) for index in range(config.num_images)]
    records = list(parallel_map(_render_one, jobs, workers, desc=f"render {split}", progress=progress))
    save_camera_json(out_dir / "camera.json", camera)
    save_obj(out_dir / "mesh.obj", mesh)
    save_json(out_dir / "keypoint_names.json", list(mesh.vertex_names))
    split_path = out_dir / f"{split}.json"
    save_json(split_path, records)
    save_json(out_dir / f"{split}_boxes.json", coco_boxes(records, split, (camera.width, camera.height)))
    save_json(out_dir / f"render_config_{split}.json", dataclasses.asdict(config))  # last: marks the split done
    return split_path


def _render_one(job):
    """Render and save image `index` (a process-pool task); returns its label record."""
    image_dir, config, camera, mesh, split_key, index = job
    rng = np.random.default_rng([config.seed, split_key, index])
    q, r = sample_pose(rng, camera, config)
    image, xy_original, visible = render_image(mesh, q, r, camera, rng, config)
    filename = f"img{index + 1:06d}.{config.image_format}"
    save_image(image_dir / filename, image)
    return {"filename": filename, "q_vbs2tango": q.tolist(), "r_Vo2To_vbs_true": r.tolist(),
            "keypoints": xy_original.tolist(), "visible": visible.tolist(),
            "bbox": object_box(xy_original, (camera.width, camera.height))}
