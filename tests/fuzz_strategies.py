"""Mutated inputs for every reader of the package, shared by tests/test_fuzz_readers.py and bench/fuzz.py.

Each `Target` writes a valid tiny fixture (a data folder with images, labels and side
files), and its `strategy` draws the bytes of one file of it, mutated: JSON nodes replaced
by other types, extreme numbers (1e308, 10**400, NaN), odd strings (a 300-character
name, superscript digits); text tokens and lines replaced, dropped or repeated; bytes
flipped, cut or inserted; images of every mode and broken ones. `outcome` runs the reader
on that file and sorts what happened:

    "error"    the package's DataError, naming a file (the bar: this or "correct")
    "correct"  a result that passes the target's checks (shapes, finite values, ranges)
    "unnamed"  a DataError that names no file
    "wrong"    a result that fails the checks
    "other"    any other exception, or a RuntimeWarning (overflow, invalid value) on the way

RuntimeWarnings are raised as errors while a reader runs: a NaN or an overflow that
slips into a cache is a bug even when nothing crashes.
"""

import copy
import dataclasses
import io
import json
import math
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from common.errors import DataError

# --- building blocks -------------------------------------------------------------------------

NASTY_NUMBERS = [0, -0.0, 1, -1, 2, 0.5, 1e308, -1e308, 5e-324, 1e9 + 1, 10**400, -(10**30), math.nan, math.inf,
                 -math.inf, 3.4e38, 2**63]
NASTY_STRINGS = ["", "1", "0", "true", "x" * 300, "²", "١٢", "../a.png", "/etc/hostname", "a.png\x00", "NaN",
                 " ", "\ufeff", "é.png", "a/b"]
NASTY_TOKENS = ["nan", "inf", "-inf", "1e308", "-1e308", "1e-320", "0", "-0", "1", "2", "-1", "3.5", "1e9",
                "99999999999999999999", "²", "١٢", "１２", "", "x" * 300, "#", "name", "v", "f", "0/0", "1//",
                "1/2/3", "true", "null", ":", ",", ",,", "1,2", "plane", "ship", "[", "{", "!!python/none", "- ",
                "0x10", "1_0", "'", '"', "&a", "*a", "\t"]
BYTES = [b"\x00", b"\xff", b"\xef\xbb\xbf", b"\r", b"\n", b"\xc3", b"\x80\x80", b"\x1a"]


def json_leaves():
    return (st.sampled_from(NASTY_NUMBERS) | st.sampled_from(NASTY_STRINGS) | st.none() | st.booleans()
            | st.integers(-3, 300) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6))


def json_values():
    return st.recursive(json_leaves(), lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _paths(node, prefix=()):
    """Every position in a JSON tree, as a tuple of keys and indices (the root is ())."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _get(node, path):
    for key in path:
        node = node[key]
    return node


@st.composite
def mutated_json(draw, seed, max_mutations=3):
    """`seed` (a JSON tree) with 1..max_mutations nodes replaced, deleted, repeated or
    wrapped, as bytes; now and then the bytes are damaged too."""
    value = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = list(_paths(value))
        op = draw(st.sampled_from(["number", "number", "number", "string", "replace", "replace", "delete", "repeat",
                                   "wrap", "scale"]))
        numeric = [p for p in paths if _is_number(_get(value, p))]
        strings = [p for p in paths if isinstance(_get(value, p), str)]
        kept = {"number": numeric, "scale": numeric, "string": strings}.get(op)
        path = draw(st.sampled_from(kept or paths))
        node = _get(value, path)
        if op == "number" and kept:  # the type kept: range checks, not type checks, must catch it
            new = draw(st.floats(-50, 50) | st.integers(-2, 40) | st.sampled_from(NASTY_NUMBERS))
        elif op == "string" and kept:
            new = draw(st.sampled_from(NASTY_STRINGS) | st.text(max_size=8))
        elif op == "scale" and _is_number(node):
            factor = draw(st.sampled_from([-1, 1e300, 1e-300, 1e9, 10**40, 0.5, 1.0000001]))
            try:
                new = node * factor
            except OverflowError:  # an integer beyond float64 (10**400) times a float
                new = -node
        elif op == "wrap":
            new = [node]
        elif op in ("delete", "repeat") and path:
            parent = _get(value, path[:-1])
            if op == "delete":
                del parent[path[-1]]
                continue
            new = node
            if isinstance(parent, list):
                parent.insert(path[-1], copy.deepcopy(node))
                continue
        else:
            new = draw(json_values())
        if not path:
            value = new
        else:
            _get(value, path[:-1])[path[-1]] = new
    data = json.dumps(value, allow_nan=True).encode()
    return draw(maybe_damaged(data))


def _tokens(line):
    return line.split(" ")


@st.composite
def mutated_text(draw, seed, max_mutations=3, separators=" "):
    """`seed` text with tokens and lines replaced, dropped, repeated or swapped, as bytes
    (sometimes with CRLF line ends, a byte-order mark, or damaged bytes)."""
    lines = seed.splitlines()
    for _ in range(draw(st.integers(1, max_mutations))):
        op = draw(st.sampled_from(["token", "token", "token", "drop_token", "add_token", "drop_line",
                                   "repeat_line", "swap_lines", "new_line"]))
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        sep = draw(st.sampled_from(list(separators)))
        tokens = lines[i].split(sep)
        j = draw(st.integers(0, len(tokens) - 1))
        token = draw(st.sampled_from(NASTY_TOKENS) | st.text(max_size=5))
        if op == "token":
            tokens[j] = token
        elif op == "drop_token":
            del tokens[j]
        elif op == "add_token":
            tokens.insert(j, token)
        elif op == "drop_line":
            del lines[i]
            continue
        elif op == "repeat_line":
            lines.insert(i, lines[i])
            continue
        elif op == "swap_lines":
            k = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[k] = lines[k], lines[i]
            continue
        else:
            lines.insert(i, sep.join(draw(st.lists(st.sampled_from(NASTY_TOKENS), min_size=1, max_size=10))))
            continue
        lines[i] = sep.join(tokens)
    newline = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    text = draw(st.sampled_from(["", "", "\ufeff"])) + newline.join(lines) + newline
    return draw(maybe_damaged(text.encode("utf-8", "surrogatepass")))


@st.composite
def damaged(draw, data):
    """`data` with a few bytes flipped, cut, inserted or deleted."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "flip", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(BYTES) | st.binary(min_size=1, max_size=4))
        elif data:
            del data[at:at + draw(st.integers(1, 16))]
    return bytes(data)


def maybe_damaged(data, chance=8):
    """`data` as is, or (one time in `chance`) `damaged`."""
    # Not k == 0: hypothesis draws the ends of a range more often than the middle.
    return st.integers(0, chance - 1).flatmap(lambda k: damaged(data) if k == chance // 2 else st.just(data))


# --- images -------------------------------------------------------------------------------

W, H = 32, 24


def pattern():
    """The (H, W, 3) uint8 test image every encoding below holds: smooth ramps (JPEG keeps them)."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 255 // (W - 1), y * 255 // (H - 1), np.full_like(x, 128)], axis=-1).astype(np.uint8)


def _encode(img, fmt, **kwargs):
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width, height):
    """A PNG whose header declares width x height but whose data is one tiny row: a
    decompression bomb's header, or a zero size, without the bytes."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 4)) + _png_chunk(b"IEND", b"")


def _with_exif_orientation(rgb, orientation=6):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(Image.fromarray(rgb), "JPEG", quality=95, exif=exif.tobytes())


def image_encodings():
    """{name: (bytes, suffix, expected RGB (H, W, 3) or None, tolerance)}: every mode the
    readers meet. Expected is what a reader must return (None: it must refuse the file)."""
    rgb = pattern()
    gray = rgb[..., 0]
    gray_rgb = np.repeat(gray[..., None], 3, axis=-1)
    palette = Image.fromarray(rgb).quantize(16)
    wide = (gray.astype(np.uint16) * 257)  # 16-bit: the 8-bit value in both bytes
    out = {
        "png_rgb": (_encode(Image.fromarray(rgb), "PNG"), ".png", rgb, 0),
        "png_gray": (_encode(Image.fromarray(gray), "PNG"), ".png", gray_rgb, 0),
        "png_palette": (_encode(palette, "PNG"), ".png", np.asarray(palette.convert("RGB")), 0),
        "png_16bit": (_encode(Image.fromarray(wide), "PNG"), ".png", gray_rgb, 0),
        "png_rgba": (_encode(Image.fromarray(np.dstack([rgb, gray])), "PNG"), ".png", rgb, 0),
        "png_gray_alpha": (_encode(Image.fromarray(np.dstack([gray, gray])).convert("LA"), "PNG"), ".png",
                           np.asarray(Image.fromarray(np.dstack([gray, gray])).convert("LA").convert("RGB")), 0),
        "png_1bit": (_encode(Image.fromarray(gray > 127), "PNG"), ".png",
                     np.repeat(np.where(gray > 127, 255, 0).astype(np.uint8)[..., None], 3, axis=-1), 0),
        "jpeg_rgb": (_encode(Image.fromarray(rgb), "JPEG", quality=95), ".jpg", rgb, 8),
        "jpeg_gray": (_encode(Image.fromarray(gray), "JPEG", quality=95), ".jpg", gray_rgb, 8),
        "jpeg_cmyk": (_encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95), ".jpg", rgb, 12),
        "tiff_cmyk": (_encode(Image.fromarray(rgb).convert("CMYK"), "TIFF"), ".tif", rgb, 0),
        "bmp_rgb": (_encode(Image.fromarray(rgb), "BMP"), ".bmp", rgb, 0),
        # Pixels as stored: the package does not apply EXIF orientation (labels are in the stored frame).
        "jpeg_exif_rotated": (_with_exif_orientation(rgb), ".jpg", rgb, 8),
        "png_truncated": (_encode(Image.fromarray(rgb), "PNG")[:-40], ".png", None, 0),
        "jpeg_truncated": (_encode(Image.fromarray(rgb), "JPEG")[:200], ".jpg", None, 0),
        "empty_file": (b"", ".png", None, 0),
        "not_an_image": (b"hello, world\n", ".jpg", None, 0),
        "png_zero_size": (png_declaring(0, 0), ".png", None, 0),
        "png_bomb": (png_declaring(200_000, 200_000), ".png", None, 0),
    }
    return out


@st.composite
def image_files(draw):
    """(name, bytes, suffix, expected, tolerance) of an encoding, sometimes damaged (then
    expected is unknown: None with tolerance -1)."""
    encodings = image_encodings()
    name = draw(st.sampled_from(sorted(encodings)))
    data, suffix, expected, tol = encodings[name]
    if draw(st.integers(0, 2)) == 0:
        return name + "_damaged", draw(damaged(data)), suffix, None, -1
    return name, data, suffix, expected, tol


# --- targets ---------------------------------------------------------------------------

def _write_image(path, size=(W, H)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path)


@dataclasses.dataclass
class Target:
    """A reader under test: `fixture(folder)` writes a valid data folder and returns the
    path of the file to mutate and its valid content; `read(folder, path)` runs the reader;
    `check(result)` raises AssertionError for a wrong result."""

    name: str
    fixture: object
    mutations: object  # valid content -> strategy of bytes
    read: object
    check: object


def _fail(message):
    raise AssertionError(message)


def finite(array, name="array"):
    array = np.asarray(array)
    assert np.all(np.isfinite(array)), f"{name} holds non-finite values"


# stage-2 labels -------------------------------------------------------------------------

def _stage2_fixture(folder):
    for name in ("a.png", "b.png"):
        _write_image(folder / "images" / name)
    records = [{"filename": "a.png", "q_vbs2tango": [1.0, 0.0, 0.0, 0.0], "r_Vo2To_vbs_true": [0.0, 0.0, 10.0],
                "keypoints": [[3.5, 4.5], [20.0, 10.0], [31.0, 23.0]], "visible": [True, True, False]},
               {"filename": "b.png", "q_vbs2tango": [0.5, 0.5, 0.5, 0.5], "r_Vo2To_vbs_true": [0.1, -0.2, 8.0],
                "keypoints": [[1.0, 1.0], [2.0, 2.0], [40.0, 2.0]], "visible": [1, 0, 0]}]
    path = folder / "train.json"
    return path, records


def _stage2_read(folder, path):
    from common.geometry import letterbox_crop_transform
    from stage2_visible_keypoints.config import DataConfig
    from stage2_visible_keypoints.data import _label_arrays, load_annotations

    annotations = load_annotations(folder, "train")
    cfg = DataConfig(data_dir=str(folder), canvas_size=(64, 40), crop_size=(40, 40), input_size=(32, 32),
                     heatmap_size=(16, 16))
    transforms = np.stack([letterbox_crop_transform(tuple(size), cfg.canvas_size, cfg.crop_size, cfg.input_size)[0]
                           for size in annotations.image_sizes])
    return annotations, _label_arrays(annotations, transforms, cfg)[0]  # what goes into the cache


def _stage2_check(result):
    annotations, arrays = result
    n, k = annotations.visible.shape
    assert annotations.xy_original.shape == (n, k, 2) and len(annotations.keypoint_names) == k
    finite(annotations.xy_original, "xy_original")
    for key in ("xy_norm", "transforms"):
        finite(arrays[key], key)
    xy = annotations.xy_original[annotations.visible]
    sizes = np.repeat(annotations.image_sizes[:, None], k, axis=1)[annotations.visible]
    assert np.all((xy >= 0) & (xy < sizes)), "a visible keypoint outside its image"
    if annotations.pose_q is not None:
        finite(annotations.pose_q, "pose_q"), finite(annotations.pose_r, "pose_r")


CUBE_OBJ = "\n".join(["# a unit box, longer along x", *(f"# name {i + 1} c{i}" for i in range(8)),
                      *(f"v {x} {y} {z}" for x in (-1.5, 1.5) for y in (-0.5, 0.5) for z in (-0.25, 0.25)),
                      "f 1 2 4 3", "f 5 7 8 6", "f 1 5 6 2", "f 3 4 8 7", "f 1 3 7 5", "f 2 6 8 4"]) + "\n"
CAMERA = {"Nu": W, "Nv": H, "ppx": 1e-5, "ppy": 1e-5, "fx": 3e-4, "fy": 3e-4, "ccx": W / 2, "ccy": H / 2,
          "distCoeffs": [0.01, 0.0, 0.0, 0.0, 0.0]}


def _names_fixture(folder):
    """The stage-2 folder with a keypoint_names.json: that file is the one mutated."""
    path, records = _stage2_fixture(folder)
    path.write_text(json.dumps(records))
    return folder / "keypoint_names.json", ["nose", "tip", "edge"]


def _pose_fixture(folder):
    path, records = _stage2_fixture(folder)
    for record in records:
        del record["keypoints"], record["visible"]
    (folder / "mesh.obj").write_text(CUBE_OBJ)
    (folder / "camera.json").write_text(json.dumps(CAMERA))
    return path, records


# camera, mesh --------------------------------------------------------------------------------

def _camera_fixture(folder):
    return folder / "camera.json", dict(CAMERA, cameraMatrix=[[30.0, 0.0, 16.0], [0.0, 30.0, 12.0], [0, 0, 1]])


def _camera_read(folder, path):
    from stage2_visible_keypoints.camera import body_to_camera, load_camera_json, project_points

    camera = load_camera_json(path)
    points = body_to_camera(np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]]), [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 10.0])
    return camera, project_points(points, camera)


def _camera_check(result):
    camera, xy = result
    finite(camera.to_array(), "camera")
    assert camera.fx > 0 and camera.fy > 0 and camera.width > 0 and camera.height > 0
    finite(xy, "projected points")


def _mesh_fixture(folder):
    return folder / "mesh.obj", CUBE_OBJ


def _mesh_read(folder, path):
    from stage2_visible_keypoints.camera import Camera, body_to_camera
    from stage2_visible_keypoints.mesh import feature_edges, load_obj, visible_vertices

    mesh = load_obj(path)
    camera = Camera(30.0, 30.0, 16.0, 12.0, W, H)
    points = body_to_camera(mesh.vertices, [0.9, 0.1, 0.3, 0.2], [0.0, 0.0, 10.0])
    return mesh, feature_edges(mesh.vertices, mesh.faces), visible_vertices(mesh, points, camera)


def _mesh_check(result):
    mesh, edges, visible = result
    finite(mesh.vertices, "vertices")
    assert mesh.faces.ndim == 2 and (mesh.faces.size == 0 or mesh.faces.max() < len(mesh.vertices))
    assert len(mesh.vertex_names) == len(mesh.vertices) and visible.shape == (len(mesh.vertices),)
    assert edges.ndim == 2 and edges.shape[1] == 2


# configs and --set ---------------------------------------------------------------------------

def config_classes():
    from baselines.config import BaselinesConfig
    from detection.centres.centres_config import CentresConfig
    from detection.ssd.ssd_config import DetConfig
    from stage2_visible_keypoints.config import Stage2Config

    return {"stage2_demo.yaml": Stage2Config, "det_shapes.yaml": DetConfig, "centres_aerial.yaml": CentresConfig,
            "baselines.yaml": BaselinesConfig}


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _config_fixture(folder, name="det_shapes.yaml"):
    return folder / name, (CONFIGS / name).read_text()


def _config_target(name):
    def read(folder, path):
        from common.config import load_config

        return load_config(config_classes()[name], path)

    def check(cfg):
        assert isinstance(cfg, config_classes()[name])

    return Target(f"config file ({name})", lambda folder: _config_fixture(folder, name),
                  lambda seed: mutated_text(seed, separators=" :,"), read, check)


def _json_config_fixture(folder):
    """det_shapes.yaml as a JSON config file (the other form --config takes)."""
    import yaml

    return folder / "det_shapes.json", yaml.safe_load((CONFIGS / "det_shapes.yaml").read_text())


def _json_config_read(folder, path):
    from common.config import load_config

    return load_config(config_classes()["det_shapes.yaml"], path)


def _flat_keys(values, prefix=""):
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _flat_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


SET_VALUES = ["[1", "]", "{a: 1", "!!python/object/apply:os.system ['true']", "!!python/name:os.system", "&a [*a]",
              "1e308", "1e999", ".inf", ".nan", "-1", "0", "10**400", "99999999999999999999999", "[1, 2]",
              "[[1, 2]]", "{}", "null", "~", "yes", "'", '"', "a: b: c", "- 1", "0x10", "2026-12-06", "[.nan, 1]",
              "[1e400, 1]", "x" * 300, "\t", "%YAML 1.1", "!!binary aGVsbG8=", "@", "`"]


@st.composite
def set_overrides(draw):
    """(config class name, `--set` text): a key of that config (or a broken one) = a YAML value."""
    from common.config import to_dict

    name = draw(st.sampled_from(sorted(config_classes())))
    keys = sorted(_flat_keys(to_dict(config_classes()[name]())))
    key = draw(st.sampled_from(keys) | st.sampled_from(["", "train", "train.", ".epochs", "nope.x", "data.a.b"])
               | st.text(max_size=8))
    value = draw(st.sampled_from(SET_VALUES) | st.text(max_size=8) | st.integers().map(str)
                 | st.floats().map(repr))
    return name, f"{key}={value}"


def read_override(name, text):
    from common.config import load_config

    return load_config(config_classes()[name], None, [text])


# COCO detections, COCO keypoints, the list format ----------------------------------------------

def _coco_fixture(folder):
    for name in ("a.png", "b.png"):
        _write_image(folder / "images" / name)
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                       {"id": 2, "file_name": "b.png"}],
            "annotations": [{"image_id": 1, "category_id": 3, "bbox": [2.0, 3.0, 10.0, 8.0]},
                            {"image_id": 1, "category_id": 7, "bbox": [12, 4, 6, 6], "iscrowd": 0},
                            {"image_id": 2, "category_id": 3, "bbox": [0, 0, 32, 24], "iscrowd": 1}],
            "categories": [{"id": 3, "name": "square"}, {"id": 7, "name": "disc"}]}
    return folder / "train.json", coco


def _coco_read(folder, path):
    from detection.ssd.coco import load_coco

    return load_coco(path, folder, "train", bbox_format="auto", max_boxes=8)


def _coco_check(labels):
    n = len(labels.image_paths)
    assert len(labels.boxes) == len(labels.classes) == n and labels.image_sizes.shape == (n, 2)
    for boxes, classes, size in zip(labels.boxes, labels.classes, labels.image_sizes):
        finite(boxes, "boxes")
        assert boxes.shape == (len(classes), 4)
        assert np.all(boxes[:, 2:] >= boxes[:, :2]) and np.all((boxes >= 0) & (boxes <= np.tile(size, 2)))
        assert np.all((classes >= 0) & (classes < len(labels.category_ids)))


def _coco_keypoints_fixture(folder):
    coco = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
            "annotations": [{"image_id": 1, "keypoints": [3, 4, 2, 10, 11, 1, 0, 0, 0]},
                            {"image_id": 2, "keypoints": [5.5, 6.5, 2, 7, 8, 2, 9, 9, 2]}],
            "categories": [{"name": "person", "keypoints": ["head", "hand", "foot"]}]}
    return folder / "train.json", coco


def _keypoint_list_fixture(folder):
    labels = {"images": [{"id": 1, "file_name": "a.png", "keypoints": [[3, 4], [10, 11], [0.5, 0.5]]},
                         {"id": 2, "file_name": "b.png", "keypoints": [[5.5, 6.5], [7, 8], [9, 9]]}],
              "keypoint_names": ["head", "hand", "foot"], "num_keypoints": 3}
    return folder / "train.json", labels


def _keypoints_read(folder, path):
    from baselines.data import read_annotations

    labels = read_annotations(path)
    sizes = np.full((len(labels["file_names"]), 2), 64, np.int32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # what preprocess stores: xy / size, float32
        xy_norm = labels["xy"] / sizes[:, None, :].astype(np.float32)
    return labels, xy_norm


def _keypoints_check(result):
    labels, xy_norm = result
    n, k = labels["visible"].shape
    assert labels["xy"].shape == (n, k, 2) and labels["xy"].dtype == np.float32
    assert len(labels["file_names"]) == n and len(labels["keypoint_names"]) == k
    assert all(isinstance(name, str) for name in labels["file_names"] + list(labels["keypoint_names"]))
    finite(labels["xy"], "xy"), finite(xy_norm, "xy_norm")


def _stage2_coco_fixture(folder):
    for name in ("a.png", "b.png"):
        _write_image(folder / "images" / name)
    coco = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": [3, 4, 2, 10, 11, 1, 0, 0, 0],
                             "bbox": [2, 3, 10, 9], "area": 50.0},
                            {"id": 2, "image_id": 1, "category_id": 1, "keypoints": [20, 5, 2, 25, 15, 2, 22, 20, 2]},
                            {"id": 3, "image_id": 2, "category_id": 1, "iscrowd": 1, "bbox": [0, 0, 32, 24]},
                            {"id": 4, "image_id": 2, "category_id": 2, "keypoints": [1, 1, 2]}],
            "categories": [{"id": 1, "name": "person", "keypoints": ["head", "hand", "foot"]},
                           {"id": 2, "name": "dot", "keypoints": ["centre"]}, {"id": 3, "name": "box"}]}
    return folder / "train.json", coco


def _stage2_coco_read(folder, path):
    from stage2_visible_keypoints.config import DataConfig
    from stage2_visible_keypoints.data import _label_arrays, crop_transforms, load_labels

    cfg = DataConfig(data_dir=str(folder), input_size=(32, 32), heatmap_size=(16, 16), category="person")
    annotations, cfg = load_labels(cfg, "train")
    return annotations, _label_arrays(annotations, crop_transforms(annotations, cfg, "train"), cfg)[0]


def _stage2_coco_check(result):
    annotations, arrays = result
    assert annotations.instances is not None, "a COCO file read as another format"
    n, k = annotations.visible.shape
    assert len(annotations.image_paths) == n and arrays["image_ids"].shape == arrays["instance_areas"].shape == (n,)
    for key in ("xy_norm", "transforms", "true_boxes", "instance_areas"):
        finite(arrays[key], key)
    assert np.all(arrays["instance_areas"] > 0) and np.all(arrays["transforms"][:, :2] > 0)
    assert np.array_equal(arrays["visible_original"], arrays["coco_v"] > 0) and arrays["visible_original"].any(1).all()


def _detections_fixture(folder):
    for name in ("000001.png", "000002.png"):
        _write_image(folder / "photos" / name)
    detections = [{"image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 9], "score": 0.9},
                  {"image_id": 2, "category_id": 1, "bbox": [0.5, 1, 31, 20], "score": 0.25},
                  {"image_id": 7, "file_name": "000002.png", "bbox": [4, 4, 4, 4]}]
    return folder / "detections.json", detections


def _detections_read(folder, path):
    from stage2_visible_keypoints.coco import box_instances

    return box_instances(folder / "photos", boxes=path, category="person")


def _detections_check(instances):
    m = len(instances.paths)
    assert instances.boxes.shape == (m, 4) and instances.scores.shape == (m,) and len(set(instances.names)) == m
    finite(instances.boxes, "boxes"), finite(instances.scores, "scores")
    assert np.all(instances.boxes[:, 2:] > instances.boxes[:, :2]) and all(path.is_file() for path in instances.paths)


# DOTA, ISBI, SPEED poses ---------------------------------------------------------------------

DOTA_TEXT = ("imagesource:GoogleEarth\ngsd:0.146\n"
             "2.0 3.0 12.0 3.0 12.0 9.0 2.0 9.0 plane 0\n"
             "20 10 30 12 28 20 18 18 small-vehicle 1\n"
             "30.5 22 33 22 33 25 30.5 25 ship 0\n")


def _dota_read(folder, path):
    from detection.centres.dota import DOTA_V1_5, read_dota_labels

    return read_dota_labels(path, DOTA_V1_5, image_size=(W, H))


def _dota_check(labels):
    m = len(labels.centres)
    assert labels.polygons.shape == (m, 4, 2) and labels.categories.shape == labels.difficult.shape == (m,)
    finite(labels.centres, "centres"), finite(labels.sizes, "sizes")
    assert np.all(np.abs(labels.polygons) <= np.finfo(np.float32).max)
    assert np.all((labels.centres >= 0) & (labels.centres <= (W, H)))


ISBI_TEXT = "\n".join(f"{100 + 7 * i},{200 + 3 * i}" for i in range(19)) + "\n1\n2\n"


def _isbi_read(folder, path):
    from baselines.cephalometric import read_landmark_file

    return read_landmark_file(path)


def _isbi_check(xy):
    assert xy.shape == (19, 2) and xy.dtype == np.float32
    finite(xy, "landmarks")
    assert np.all(xy >= 0)


def _poses_fixture(folder):
    poses = [{"filename": "img000001.jpg", "q_vbs2tango": [0.61, -0.76, 0.12, -0.17],
              "r_Vo2To_vbs_true": [-0.5, -0.08, 12.34]},
             {"filename": "img000002.jpg", "q_vbs2tango_true": [0.5, 0.5, 0.5, 0.5],
              "r_Vo2To_vbs_true": [0.2, 0.1, 7.0]}]
    return folder / "train.json", poses


def _poses_read(folder, path):
    from stage2_visible_keypoints.data import read_poses, score_poses

    return read_poses(path), score_poses(path, path)  # the file against itself


def _poses_check(result):
    poses, summary = result
    for q, r in poses.values():
        assert q.shape == (4,) and r.shape == (3,)
        finite(q, "q"), finite(r, "r")
    assert summary["solved"] == summary["images"] == len(poses)
    for key in ("rotation_deg", "translation_m"):
        assert summary[key]["mean"] is None or summary[key]["mean"] < 1e-3, f"{key} of a file against itself"


# images --------------------------------------------------------------------------------------

def _image_target(name, read, check_shape):
    """A target for one image reader: `read(path)` -> (H, W, 3) array (or a size)."""

    def fixture(folder):
        return None, None

    def run(folder, drawn):
        label, data, suffix, expected, tol = drawn
        path = folder / f"image{suffix}"
        path.write_bytes(data)
        return label, read(path), expected, tol

    def check(result):
        label, value, expected, tol = result
        check_shape(label, value, expected, tol)

    return Target(name, fixture, lambda seed: image_files(), run, check)


def _array_check(label, image, expected, tol):
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, f"{label}: {image.shape}"
    if tol < 0:  # a damaged file that still decodes: any pixels, the right form
        return
    assert expected is not None, f"{label}: read, but it is not a valid image"
    assert image.shape == expected.shape, f"{label}: shape {image.shape}"
    error = np.abs(image.astype(int) - expected).max()
    assert error <= tol, f"{label}: pixels differ from the encoded ones by {error}"


def _read_rgb(path):
    from common.data_io import read_image_rgb

    return read_image_rgb(path)


def _warp(path):
    from common.geometry import warp_image_file

    image, transform, size = warp_image_file(path, (W, H), (W, H), (W, H))  # the identity warp
    assert size[0] > 0 and size[1] > 0
    return image


def _read_gray(path):
    from baselines.data import _read_gray

    image, (width, height) = _read_gray((path, 16))
    assert image.shape == (1, 16, 16, 1) and image.dtype == np.uint8
    return width, height


def _gray_check(label, size, expected, tol):
    if tol >= 0:
        assert expected is not None, f"{label}: read, but it is not a valid image"
        assert size == (expected.shape[1], expected.shape[0]), f"{label}: size {size}"


def _header_check(label, size, expected, tol):
    if label in ("png_truncated", "jpeg_truncated"):  # the header is whole: its size is right
        assert size == (W, H), f"{label}: size {size}"
    else:
        _gray_check(label, size, expected, tol)


def _image_size(path):
    from common.data_io import image_size

    return image_size(path)


# The readers, by name.
TARGETS = {t.name: t for t in [
    Target("stage-2 labels", _stage2_fixture, mutated_json, _stage2_read, _stage2_check),
    Target("stage-2 labels, pose only", _pose_fixture, mutated_json, _stage2_read, _stage2_check),
    Target("camera.json", _camera_fixture, mutated_json, _camera_read, _camera_check),
    Target("mesh.obj", _mesh_fixture, mutated_text, _mesh_read, _mesh_check),
    Target("keypoint_names.json", _names_fixture, mutated_json, _stage2_read, _stage2_check),
    *(_config_target(name) for name in ("stage2_demo.yaml", "det_shapes.yaml", "centres_aerial.yaml",
                                        "baselines.yaml")),
    Target("config file (JSON)", _json_config_fixture, mutated_json, _json_config_read,
           lambda cfg: isinstance(cfg, config_classes()["det_shapes.yaml"]) or _fail("not a DetConfig")),
    Target("COCO detections", _coco_fixture, mutated_json, _coco_read, _coco_check),
    Target("COCO keypoints", _coco_keypoints_fixture, mutated_json, _keypoints_read, _keypoints_check),
    Target("keypoint list", _keypoint_list_fixture, mutated_json, _keypoints_read, _keypoints_check),
    Target("stage-2 COCO keypoints", _stage2_coco_fixture, mutated_json, _stage2_coco_read, _stage2_coco_check),
    Target("stage-2 detections (--boxes)", _detections_fixture, mutated_json, _detections_read, _detections_check),
    Target("DOTA labels", lambda folder: (folder / "labelTxt" / "a.txt", DOTA_TEXT),
           lambda seed: mutated_text(seed, separators=" :"), _dota_read, _dota_check),
    Target("ISBI landmarks", lambda folder: (folder / "001.txt", ISBI_TEXT),
           lambda seed: mutated_text(seed, separators=","), _isbi_read, _isbi_check),
    Target("SPEED poses", _poses_fixture, mutated_json, _poses_read, _poses_check),
    Target("--set overrides", lambda folder: (None, None), lambda seed: set_overrides(),
           lambda folder, drawn: read_override(*drawn), lambda cfg: None),
    _image_target("image: read_image_rgb", _read_rgb, _array_check),
    _image_target("image: warp_image_file", _warp, _array_check),
    _image_target("image: grayscale (baselines)", _read_gray, _gray_check),
    _image_target("image: header size", _image_size, _header_check),
]}


def strategy(target):
    """The strategy of one target's inputs: the mutated bytes of its file (images: an encoding)."""
    with tempfile.TemporaryDirectory() as folder:
        _, seed = target.fixture(Path(folder))
    return target.mutations(seed)


def outcome(target, drawn):
    """Run `target`'s reader on one drawn input in a fresh folder: (kind, detail), kind as
    in the module docstring."""
    from PIL.Image import DecompressionBombWarning

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        path, _ = target.fixture(folder)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(drawn)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            warnings.filterwarnings("ignore", category=DecompressionBombWarning)  # refused as an error instead
            warnings.filterwarnings("ignore", message=".*outside their image.*")  # DOTA's note, a UserWarning
            try:
                result = target.read(folder, path if path is not None else drawn)
            except DataError as err:
                if err.path is None and str(folder) not in str(err):
                    return "unnamed", str(err)
                return "error", str(err)
            except Exception as err:  # noqa: BLE001 - what the fuzzing is for
                return "other", f"{type(err).__name__}: {err}"
            try:
                target.check(result)
            except AssertionError as err:
                return "wrong", str(err)
            except Exception as err:  # noqa: BLE001
                return "other", f"check: {type(err).__name__}: {err}"
    return "correct", ""
