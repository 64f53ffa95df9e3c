"""Synthetic shapes, the COCO reader (formats, bad boxes), caches and box-moving augmentation."""

import json

import numpy as np
import pytest
from keras import ops
from PIL import Image

from common.errors import DataError
from detection.ssd.box_cache import load_cache, preprocess
from detection.ssd.coco import load_coco
from detection.ssd.shapes import ShapesConfig, render_image, write_shapes
from detection.ssd.ssd_config import DataConfig
from detection.ssd.ssd_pipeline import augment_batch


def test_rendered_boxes_are_the_objects_pixel_extent():
    cfg = ShapesConfig(num_images=1)
    for seed in range(4):
        image, boxes, classes = render_image(seed, cfg)
        assert image.shape == (224, 224, 3) and len(boxes) == len(classes) >= 1
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 224).all()
        for box, cls in zip(boxes, classes):
            low, high = cfg.size_bands[cls]
            assert max(box[2] - box[0], box[3] - box[1]) <= high + 1  # clipping only shrinks boxes


def _write(tmp_path, boxes, categories=({"id": 1, "name": "a"},), size=(40, 30), name="train.json"):
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(tmp_path / "images" / "im.png")
    coco = {"images": [{"id": 7, "file_name": "im.png", "width": size[0], "height": size[1]}],
            "annotations": [{"id": k, "image_id": 7, "category_id": c, "bbox": b} for k, (b, c) in enumerate(boxes)],
            "categories": list(categories)}
    (tmp_path / name).write_text(json.dumps(coco))
    return tmp_path / name


def test_xywh_xyxy_and_auto(tmp_path):
    # [30, 5, 8, 20] is a valid xywh box but not xyxy (x2 = 8 < x1 = 30): auto reads xywh and says so.
    path = _write(tmp_path, [([30, 5, 8, 20], 1), ([1, 1, 5, 5], 1)])
    labels = load_coco(path, bbox_format="auto")
    assert labels.bbox_format == "xywh" and "auto" in labels.note
    np.testing.assert_allclose(labels.boxes[0], [[30, 5, 38, 25], [1, 1, 6, 6]])
    # [2, 3, 39, 29] is valid xyxy but as xywh it leaves the 40x30 image.
    path = _write(tmp_path, [([2, 3, 39, 29], 1)])
    labels = load_coco(path, bbox_format="auto")
    assert labels.bbox_format == "xyxy"
    np.testing.assert_allclose(labels.boxes[0], [[2, 3, 39, 29]])
    np.testing.assert_allclose(load_coco(path, bbox_format="xyxy").boxes[0], [[2, 3, 39, 29]])
    # Valid both ways: auto refuses to guess.
    path = _write(tmp_path, [([1, 1, 5, 5], 1)])
    with pytest.raises(DataError, match="ambiguous"):
        load_coco(path, bbox_format="auto")


@pytest.mark.parametrize("boxes, fmt, message", [
    ([([5, 5, -3, 4], 1)], "xywh", r"annotations\[0\] \(image im.png\): field 'bbox' .* negative or zero size"),
    ([([10, 10, 5, 20], 1)], "xyxy", r"negative or zero size"),
    ([([30, 5, 20, 10], 1)], "xywh", r"outside the 40x30 image"),
    ([([1, 1, 5, 5], 9)], "xywh", r"annotations\[0\]: field 'category_id' 9 is an unknown category"),
    ([([1, 1, float("nan"), 5], 1)], "xywh", r"field 'bbox' must be a finite number"),
])
def test_bad_boxes_are_one_line_errors(tmp_path, boxes, fmt, message):
    path = _write(tmp_path, boxes)
    with pytest.raises(DataError, match=message) as err:
        load_coco(path, bbox_format=fmt)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_fields(tmp_path):
    path = _write(tmp_path, [([1, 1, 5, 5], 1)])
    coco = json.loads(path.read_text())
    del coco["annotations"][0]["bbox"]
    path.write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"annotations\[0\]: missing field 'bbox'"):
        load_coco(path, bbox_format="xywh")
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="missing field 'annotations'"):
        load_coco(path)


def test_whole_float_ids_are_ints(tmp_path):
    # Some exporters write ids as 1.0: they are the ints they stand for.
    path = _write(tmp_path, [([1, 1, 5, 5], 1)])
    coco = json.loads(path.read_text())
    coco["annotations"][0]["image_id"] = float(coco["images"][0]["id"])
    coco["annotations"][0]["category_id"] = float(coco["categories"][0]["id"])
    path.write_text(json.dumps(coco))
    labels = load_coco(path, bbox_format="xywh")
    assert labels.category_ids == (1,) and labels.image_ids.tolist() == [7]
    assert labels.classes[0].tolist() == [0]  # the annotation found its image and category
    np.testing.assert_allclose(labels.boxes[0], [[1, 1, 6, 6]])


@pytest.mark.parametrize("section, field, value, message", [
    ("annotations", "category_id", [1], r"annotations\[0\]: field 'category_id' must be an integer \(or string\) id, got \[1\]"),
    ("annotations", "image_id", [7], r"annotations\[0\]: field 'image_id' must be an integer \(or string\) id, got \[7\]"),
    ("annotations", "image_id", {"id": 7}, r"annotations\[0\]: field 'image_id' must be an integer \(or string\) id"),
    ("categories", "id", [1], r"categories\[0\]: field 'id' must be an integer \(or string\) id, got \[1\]"),
    ("categories", "id", True, r"categories\[0\]: field 'id' must be an integer \(or string\) id, got True"),
    ("images", "id", 7.5, r"images\[0\]: field 'id' must be an integer \(or string\) id, got 7.5"),
    ("annotations", "iscrowd", "no", r"annotations\[0\]: field 'iscrowd' must be 0 or 1, got 'no'"),
    ("annotations", "iscrowd", 2, r"annotations\[0\]: field 'iscrowd' must be 0 or 1, got 2"),
])
def test_bad_ids_and_iscrowd_are_one_line_errors(tmp_path, section, field, value, message):
    path = _write(tmp_path, [([1, 1, 5, 5], 1)])
    coco = json.loads(path.read_text())
    coco[section][0][field] = value
    path.write_text(json.dumps(coco))
    with pytest.raises(DataError, match=message) as err:
        load_coco(path, bbox_format="xywh")
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_iscrowd_true_or_1_drops_the_annotation(tmp_path):
    path = _write(tmp_path, [([1, 1, 5, 5], 1), ([10, 10, 5, 5], 1), ([20, 10, 5, 5], 1)])
    coco = json.loads(path.read_text())
    coco["annotations"][0]["iscrowd"], coco["annotations"][1]["iscrowd"] = True, 1
    coco["annotations"][2]["iscrowd"] = 0
    path.write_text(json.dumps(coco))
    np.testing.assert_allclose(load_coco(path, bbox_format="xywh").boxes[0], [[20, 10, 25, 15]])


def test_declared_size_must_match_the_image_file(tmp_path):
    # The image is 40x30; 1000x1000 declared would make every scale 25 times too small.
    path = _write(tmp_path, [([1, 1, 5, 5], 1)])
    coco = json.loads(path.read_text())
    coco["images"][0].update(width=1000, height=1000)
    path.write_text(json.dumps(coco))
    cfg = DataConfig(data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), input_size=(32, 32),
                     bbox_format="xywh")
    with pytest.raises(DataError, match=r"images\[0\] \(im.png\): fields 'width', 'height' say 1000x1000 but the "
                                        r"image file is 40x30") as err:
        preprocess(cfg, "train", progress=False)
    assert str(path) in str(err.value)
    coco["images"][0].update(width=40, height=30)
    path.write_text(json.dumps(coco))
    assert preprocess(cfg, "train", progress=False)["images"] == 1


def test_cache_round_trip_reuse_and_stale_config(tmp_path):
    json_path = write_shapes(tmp_path / "shapes", ShapesConfig(num_images=3, seed=5), "train", progress=False)
    coco = json.loads(json_path.read_text())
    cfg = DataConfig(data_dir=str(tmp_path / "shapes"), cache_dir=str(tmp_path / "cache"), input_size=(112, 112),
                     bbox_format="xywh")
    assert not preprocess(cfg, "train", progress=False)["reused"]
    assert preprocess(cfg, "train", progress=False)["reused"]
    cache = load_cache(cfg.cache_dir, "train", cfg)
    assert cache.images.shape == (3, 112, 112, 3) and cache.category_names == ("circle", "square", "triangle")
    for i, image in enumerate(coco["images"]):
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        boxes, classes = cache.ground_truth(i)
        expected = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]) * 0.5
        np.testing.assert_allclose(boxes, expected, atol=1e-4)
        assert classes.tolist() == [a["category_id"] - 1 for a in anns]
    targets = cache.targets()
    assert targets.shape == (3, cfg.max_boxes, 5) and (targets[2, len(boxes):, 4] == -1).all()
    other = DataConfig(data_dir=cfg.data_dir, cache_dir=cfg.cache_dir, input_size=(96, 96), bbox_format="xywh")
    with pytest.raises(DataError, match=r"Y_data.npz: cache was built with another config: input_size"):
        load_cache(cfg.cache_dir, "train", other)


def _square_image():
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 8:16, 4:12] = 255  # pixels x 4..11, y 8..15: box (4, 8, 12, 16)
    targets = np.array([[[4, 8, 12, 16, 2], [0, 0, 0, 0, -1]]], np.float32)
    return image, targets


def _box_of_pixels(image):
    ys, xs = np.nonzero(image[..., 0] > 127)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_flip_moves_pixels_and_boxes_together():
    image, targets = _square_image()
    one = np.ones(1, np.float32)
    out, y = augment_batch(image, targets, np.zeros(1, np.float32), one * 0.5, np.zeros((1, 2), np.float32),
                           (1.0, 1.0))
    out, y = ops.convert_to_numpy(out), ops.convert_to_numpy(y)
    np.testing.assert_allclose(y[0, 0], [20, 8, 28, 16, 2])
    assert _box_of_pixels(out[0]) == [20, 8, 28, 16]
    np.testing.assert_allclose(y[0, 1], [0, 0, 0, 0, -1])


def test_zoom_moves_pixels_and_boxes_together():
    image, targets = _square_image()
    # Zoom x2 (range (2, 2)) anchored at the origin (shift 0 -> offset W(1 - s) * 0 = 0): box (8, 16, 24, 32).
    out, y = augment_batch(image, targets, np.ones(1, np.float32), np.zeros(1, np.float32),
                           np.zeros((1, 2), np.float32), (2.0, 2.0))
    out, y = ops.convert_to_numpy(out), ops.convert_to_numpy(y)
    np.testing.assert_allclose(y[0, 0], [8, 16, 24, 32, 2])
    box = _box_of_pixels(out[0])
    assert np.abs(np.array(box) - [8, 16, 24, 32]).max() <= 1  # bilinear edges
    # Zoom x2 anchored at the far corner (shift 1 -> offset -32): the box leaves the frame and becomes padding.
    _, y = augment_batch(image, targets, np.ones(1, np.float32), np.zeros(1, np.float32),
                         np.ones((1, 2), np.float32), (2.0, 2.0))
    np.testing.assert_allclose(ops.convert_to_numpy(y)[0, 0], [0, 0, 0, 0, -1])


def test_an_image_name_leading_outside_the_data_folder_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    path = _write(tmp_path / "data", [([2, 3, 10, 10], 1)])
    Image.new("RGB", (40, 30)).save(tmp_path / "outside.png")
    coco = json.loads(path.read_text())
    for name in ("../outside.png", "../missing.png", str(tmp_path / "outside.png")):
        coco["images"][0]["file_name"] = name
        path.write_text(json.dumps(coco))
        with pytest.raises(DataError, match=r"train.json: images\[0\] \(.*\): the file name leads outside the data "
                                            r"folder .*data \(an absolute path or '..'\); --allow-outside reads it"):
            load_coco(path, bbox_format="xywh")
    assert load_coco(path, bbox_format="xywh", allow_outside=True).image_paths[0] == tmp_path / "outside.png"


def test_skip_bad_leaves_out_unreadable_images_and_lists_them(tmp_path):
    json_path = write_shapes(tmp_path / "shapes", ShapesConfig(num_images=3, seed=5), "train", progress=False)
    coco = json.loads(json_path.read_text())
    bad = tmp_path / "shapes" / "images" / "train" / coco["images"][1]["file_name"]
    bad.write_bytes(bad.read_bytes()[:100])  # the header says 224x224; the pixels are cut off
    cfg = DataConfig(data_dir=str(tmp_path / "shapes"), cache_dir=str(tmp_path / "cache"), input_size=(112, 112),
                     bbox_format="xywh")
    with pytest.raises(DataError, match="cannot read image"):
        preprocess(cfg, "train", progress=False)
    summary = preprocess(cfg, "train", progress=False, skip_bad=True)
    assert (summary["images"], summary["skipped"]) == (2, 1)
    report = (tmp_path / "cache" / "train" / "skipped.tsv").read_text().splitlines()
    assert report[1].startswith(f"{bad}\tcannot read image")
    cache = load_cache(cfg.cache_dir, "train", cfg)
    assert list(cache.y["image_ids"]) == [str(coco["images"][i]["id"]) for i in (0, 2)]
    anns = [a for a in coco["annotations"] if a["image_id"] == coco["images"][2]["id"]]
    assert cache.ground_truth(1)[1].tolist() == [a["category_id"] - 1 for a in anns]
    again = preprocess(cfg, "train", progress=False, skip_bad=True)
    assert again["reused"] and (again["images"], again["skipped"]) == (2, 1)
