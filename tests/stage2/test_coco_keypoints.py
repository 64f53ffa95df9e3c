"""Stage 2 on COCO keypoints: one sample per instance cropped by its box, and the COCO
keypoint AP (OKS) of the predictions, on a tiny written COCO file: three photos with two
people each (three keypoints, one of them v = 1), a crowd region and a person with no
labelled keypoint.

A stand-in model returns the true keypoints of the crops it is given (found by their
pixels), so the numbers are exact: truth written as results scores AP 1.0 only if every
crop maps back onto its photo, and shifted keypoints score less. One run is under
KERAS_BACKEND=jax with TensorFlow blocked.
"""

import dataclasses
import json
import zlib

import cv2
import numpy as np
import pytest
import yaml

from common.coco_keypoints import (COCO_PERSON_KEYPOINTS, COCO_PERSON_SIGMAS, DEFAULT_OKS_SIGMA, keypoint_results,
                                   oks_ap, oks_sigmas, read_coco_keypoints)
from common.config import load_config
from common.errors import DataError
from common.geometry import box_crop_transform, jitter_box, to_original
from stage2_visible_keypoints.config import Stage2Config
from tests.scripts import ROOT, check, run_script

NAMES = ["head", "hand", "foot"]


def people(i):
    """The two people of photo i: (x, y, v) per keypoint; each photo's differ, so crops differ."""
    return [[(12 + 2 * i, 10, 2), (22, 30 + 3 * i, 2), (16 + i, 50, 1)],
            [(60 - 3 * i, 8, 2), (72, 28 + i, 2), (66, 54 - 2 * i, 2)]]


def write_coco(root, count=3):
    """`root/labels.json` and `root/photos/00000N.png` (96x64, a bright 3x3 dot on every keypoint)."""
    images, annotations = [], []
    for i in range(count):
        image_id = i + 1
        picture = np.full((64, 96, 3), 40, np.uint8)
        for person in people(i):
            for x, y, _ in person:
                cv2.rectangle(picture, (x - 1, y - 1), (x + 1, y + 1), (255, 255, 255), -1)
            xs, ys = [p[0] for p in person], [p[1] for p in person]
            annotations.append({"id": 100 + len(annotations), "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                "keypoints": [v for p in person for v in p], "num_keypoints": 3,
                                "bbox": [min(xs) - 2, min(ys) - 2, max(xs) - min(xs) + 4, max(ys) - min(ys) + 4]})
        (root / "photos").mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / "photos" / f"{image_id:06d}.png"), picture)
        images.append({"id": image_id, "file_name": f"{image_id:06d}.png", "width": 96, "height": 64})
    annotations += [  # skipped, and counted
        {"id": 900, "image_id": 1, "category_id": 1, "iscrowd": 1, "keypoints": [0] * 9, "bbox": [0, 0, 96, 64],
         "area": 3000.0},
        {"id": 901, "image_id": min(2, count), "category_id": 1, "iscrowd": 0, "keypoints": [0] * 9,
         "bbox": [40, 40, 10, 10]}]
    labels = {"images": images, "annotations": annotations,
              "categories": [{"id": 1, "name": "person", "keypoints": NAMES}]}
    (root / "labels.json").write_text(json.dumps(labels))
    return labels


CONFIG = {"data": {"input_size": [32, 32], "heatmap_size": [16, 16]},
          "model": {"backbone": "resnet18"}, "use": {"max_overlays": 1}}


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """The written data set and its cache (crops of the true boxes: no jitter)."""
    root = tmp_path_factory.mktemp("coco")
    labels = write_coco(root)
    config = {**CONFIG, "data": {**CONFIG["data"], "box_jitter": [0, 0], "cache_dir": str(root / "cache")}}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    out = check(run_script(ROOT / "stage2_visible_keypoints" / "preprocess_vis.py", "--labels", root / "labels.json",
                           "--images", root / "photos", "--config", root / "config.yaml", "--quiet"))
    return root, labels, out.stdout


def _cache(root, split="train"):
    return dict(np.load(root / "cache" / split / "Y_data.npz", allow_pickle=False))


def test_one_sample_per_instance_cropped_by_its_box(coco):
    root, labels, stdout = coco
    y = _cache(root)
    assert ("COCO keypoints, category 'person': 6 samples (instances) from 3 images, cropped by their boxes; "
            "instances skipped: 1 iscrowd, 1 with no labelled keypoint") in stdout
    assert "poses are not solved (PnP skipped)" in stdout
    truth = np.array([person for i in range(3) for person in people(i)], np.float64)
    assert y["keypoint_names"].tolist() == NAMES and y["annotation_ids"].tolist() == [100, 101, 102, 103, 104, 105]
    assert y["image_ids"].tolist() == [1, 1, 2, 2, 3, 3] and y["filenames"][2] == "000002.png"
    # v = 1 is labelled: stage 2 learns and evaluates it (its one flag); the file's flags are kept.
    assert y["visible"].all() and y["coco_v"].tolist() == truth[..., 2].tolist()
    np.testing.assert_array_equal(y["xy_original"], truth[..., :2])
    # The crop is the box's (data.crop box: margin 1.25 of the longer side), and the cached
    # keypoints map back through it onto the photo.
    boxes = np.array([a["bbox"] for a in labels["annotations"][:6]], np.float64)
    boxes[:, 2:] += boxes[:, :2]
    np.testing.assert_allclose(y["transforms"], box_crop_transform(boxes, (32, 32), 1.25), rtol=1e-12)
    np.testing.assert_allclose(to_original(y["xy_norm"] * 32.0, y["transforms"]), truth[..., :2], atol=2e-5)
    # The cached crop shows each person's own dots where its keypoints are.
    images = np.load(root / "cache" / "train" / "X_data.npy")
    xy_input = np.floor(y["xy_norm"] * 32).astype(int)
    assert min(images[n, yy, xx].max() for n in range(6) for xx, yy in xy_input[n]) > 120
    assert json.loads(str(y["config_json"]))["crop"] == "box"  # training takes it from the cache


def test_jittered_crops_still_map_back_exactly(coco, tmp_path):
    from stage2_visible_keypoints.data import preprocess

    root, _, _ = coco
    cfg = load_config(Stage2Config, None, [f"data.cache_dir={tmp_path}", "data.input_size=[32, 32]",
                                           "data.heatmap_size=[16, 16]"])
    summary = preprocess(cfg.data, "val", progress=False, labels=root / "labels.json", images=root / "photos")
    assert summary["coco"]["skipped_iscrowd"] == 1 and summary["images"] == 6
    y = dict(np.load(tmp_path / "val" / "Y_data.npz"))
    # The pose pipeline's jitter (data.box_jitter), drawn from (split, instance): reproducible.
    key = zlib.crc32(b"val")
    jittered = [jitter_box(box, np.random.default_rng([key, i]), 0.15, 0.1) for i, box in enumerate(y["true_boxes"])]
    np.testing.assert_allclose(y["transforms"], box_crop_transform(np.array(jittered), (32, 32), 1.25), rtol=1e-12)
    assert not np.allclose(y["transforms"], box_crop_transform(y["true_boxes"], (32, 32), 1.25))
    np.testing.assert_allclose(to_original(y["xy_norm"] * 32.0, y["transforms"]), y["xy_original"], atol=2e-5)


def test_one_category_per_run(tmp_path):
    labels = write_coco(tmp_path, count=1)
    labels["categories"].append({"id": 7, "name": "robot", "keypoints": ["a", "b"]})
    labels["annotations"].append({"id": 5, "image_id": 1, "category_id": 7, "keypoints": [1, 2, 2, 3, 4, 2],
                                  "bbox": [0, 0, 5, 5]})
    path = tmp_path / "two.json"
    path.write_text(json.dumps(labels))
    with pytest.raises(DataError, match=r"2 categories have keypoints \('person' \(id 1\), 'robot' \(id 7\)\); "
                                        r"name one with --category"):
        read_coco_keypoints(path)
    robot = read_coco_keypoints(path, "robot")
    assert robot.keypoint_names == ("a", "b") and len(robot.xy) == 1 and robot.skipped["other_category"] == 4
    assert read_coco_keypoints(path, "1").keypoint_names == tuple(NAMES)
    labels["categories"].append({"id": 8, "name": "robot", "keypoints": ["c"]})
    path.write_text(json.dumps(labels))
    with pytest.raises(DataError, match="category 'robot' has 2 keypoint definitions"):
        read_coco_keypoints(path, "robot")
    with pytest.raises(DataError, match="no category 'dog' with keypoints"):
        read_coco_keypoints(path, "dog")


def test_oks_sigmas():
    names = list(reversed(COCO_PERSON_KEYPOINTS))
    sigmas, source = oks_sigmas(names)
    assert source == "COCO person" and sigmas[0] == COCO_PERSON_SIGMAS[-1] and sigmas[-1] == pytest.approx(0.026)
    assert oks_sigmas(NAMES)[0].tolist() == [DEFAULT_OKS_SIGMA] * 3 and round(DEFAULT_OKS_SIGMA, 4) == 0.0669
    assert oks_sigmas(NAMES, (0.1, 0.2, 0.3))[0].tolist() == [0.1, 0.2, 0.3]
    with pytest.raises(DataError, match="data.oks_sigmas has 2 values for 3 keypoints"):
        oks_sigmas(NAMES, (0.1, 0.2))


def test_oks_ap_of_the_truth_is_one_and_of_shifted_keypoints_less(coco):
    root, labels, _ = coco
    truth = read_coco_keypoints(root / "labels.json")
    sigmas = oks_sigmas(NAMES)[0]
    results = keypoint_results(truth.image_ids, 1, truth.xy, np.linspace(1, 0.5, 6))
    assert oks_ap(truth.ground_truth, results, sigmas)["ap"] == 1.0
    # A false detection scored highest in the crowd region is ignored, as COCO ignores it...
    stray = keypoint_results([1], 1, [[[40, 40], [41, 45], [42, 50]]], [2.0])
    assert oks_ap(truth.ground_truth, stray + results, sigmas)["ap"] == 1.0
    # ... and costs precision where there is no crowd.
    no_crowd = {**truth.ground_truth, "annotations": [a for a in truth.ground_truth["annotations"] if not a["iscrowd"]]}
    assert oks_ap(no_crowd, stray + results, sigmas)["ap"] < 0.9
    # Keypoints 2 px off: OKS exp(-4 / (2 area (2 sigma)^2)) per instance (0.82 and 0.84), so AP50 1, AP below 1.
    shifted = keypoint_results(truth.image_ids, 1, truth.xy + [1.2, 1.6], np.ones(6))
    figures = oks_ap(truth.ground_truth, shifted, sigmas)
    assert figures["ap50"] == 1.0 and 0.4 < figures["ap"] < 0.9 and figures["instances"] == 6


class TruthStandIn:
    """Stands in for a trained model: the true keypoints (normalised, plus `shift`) of the
    cached crop nearest in pixels to each crop it is given; confidence 1."""

    def __init__(self, images, xy_norm, shift=0.0):
        import keras

        from common.layers import SoftArgMax

        self.images, self.xy_norm = np.asarray(images, np.float32), xy_norm.astype(np.float32) + shift
        maps = keras.Input((16, 16, xy_norm.shape[1]))
        self.model = keras.Model(maps, SoftArgMax(name="keypoints")(maps))

    def get_layer(self, name):
        return self.model.get_layer(name)

    def predict_on_batch(self, batch):
        distance = np.abs(np.asarray(batch, np.float32)[:, None] - self.images[None]).mean(axis=(2, 3, 4))
        assert (distance.min(axis=1) < 1.0).all(), distance  # the same crops, pixel for pixel
        index = distance.argmin(axis=1)
        count, k = len(batch), self.xy_norm.shape[1]
        return {"keypoints": self.xy_norm[index], "confidence": np.ones((count, k), np.float32),
                "heatmap_logits": np.full((count, 16, 16, k), -4.0, np.float32)}


def use_stand_in(root, out, shift=0.0, figures=0, **where):
    """`pipeline.use` of the stand-in on the cache (or on `where`: images, boxes, labels),
    drawing `figures` overlays."""
    from stage2_visible_keypoints import pipeline

    y = _cache(root)
    stand_in = TruthStandIn(np.load(root / "cache" / "train" / "X_data.npy"), y["xy_norm"], shift)
    model_path = out / "model" / "best.keras"  # hashed into the summary, never loaded
    model_path.parent.mkdir(parents=True)
    model_path.write_bytes(b"stand-in")
    (model_path.parent / "keypoint_names.json").write_text(json.dumps(NAMES))
    cfg = load_config(Stage2Config, root / "config.yaml", ["data.crop=box", "data.label_format=coco",
                                                           "data.category=person", f"use.output_dir={out / 'pred'}",
                                                           f"use.max_overlays={figures}"])
    original = pipeline.load_stage2_model
    pipeline.load_stage2_model = lambda path, input_size=None: stand_in
    try:
        return pipeline.use(cfg, model_path, split="train", progress=False, **where)
    finally:
        pipeline.load_stage2_model = original


def test_use_on_the_cache_and_on_the_photos(coco, tmp_path):
    root, labels, _ = coco
    result = use_stand_in(root, tmp_path / "cache", figures=1)
    figures = result["summary"]["coco"]
    assert figures["ap"] == 1.0 and figures["instances"] == 6 and figures["images"] == 3
    assert figures["instance_error_px"]["max"] < 1e-4 and figures["instance_oks"]["mean"] == pytest.approx(1.0)
    results = json.loads((tmp_path / "cache" / "pred" / "keypoint_results.json").read_text())
    assert [(r["image_id"], r["category_id"]) for r in results] == [(1, 1), (1, 1), (2, 1), (2, 1), (3, 1), (3, 1)]
    truth = np.array([person for i in range(3) for person in people(i)], np.float64)
    np.testing.assert_allclose(np.array([r["keypoints"] for r in results]).reshape(6, 3, 3)[..., :2],
                               truth[..., :2], atol=1e-3)  # original pixels (3 decimals)
    record = json.loads((tmp_path / "cache" / "pred" / "per_image" / "000002.png.ann103.json").read_text())
    assert (record["image_id"], record["annotation_id"], record["oks"]) == (2, 103, 1.0)
    assert (tmp_path / "cache" / "pred" / "overlays" / "000001.png.ann100.png").is_file()  # one per instance

    # The photos with the labelled boxes: the same crops (no jitter), the same keypoints,
    # AP 1 against the labels file (crowd and unlabelled person included).
    result = use_stand_in(root, tmp_path / "photos", images_dir=root / "photos", labels=root / "labels.json")
    assert result["coco"]["ap"] == 1.0 and result["images"] == 6
    assert json.loads((tmp_path / "photos" / "pred" / "keypoint_results.json").read_text()) == results

    # A detections file (COCO results): boxes of one category cropped; another category's left out.
    detections = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
                  for a in labels["annotations"][:6]] + [{"image_id": 3, "category_id": 2, "bbox": [0, 0, 9, 9],
                                                          "score": 1.0}]
    (tmp_path / "detections.json").write_text(json.dumps(detections))
    result = use_stand_in(root, tmp_path / "boxes", shift=0.06, images_dir=root / "photos",
                          boxes=tmp_path / "detections.json", labels=root / "labels.json")
    assert result["images"] == 6 and 0.0 < result["coco"]["ap"] < 1.0  # keypoints shifted by 0.06 of the crop
    shifted = json.loads((tmp_path / "boxes" / "pred" / "keypoint_results.json").read_text())
    assert [r["score"] for r in shifted] == [0.9] * 6
    # The detections.json of use_det.py (boxes per file, in original pixels): the same crops.
    per_file = {}
    for a in labels["annotations"][:6]:
        x, y, w, h = a["bbox"]
        per_file.setdefault(f"{a['image_id']:06d}.png", []).append([x, y, x + w, y + h])
    (tmp_path / "use_det.json").write_text(json.dumps({"classes": ["person"], "images": [
        {"file_name": name, "boxes_xyxy_original": boxes, "scores": [0.9] * len(boxes), "classes": ["person"] * 2}
        for name, boxes in per_file.items()]}))
    use_stand_in(root, tmp_path / "use_det", shift=0.06, images_dir=root / "photos", boxes=tmp_path / "use_det.json")
    assert json.loads((tmp_path / "use_det" / "pred" / "keypoint_results.json").read_text()) == shifted
    # Without --labels the image ids name the files (000003.png is image 3), and two categories need them.
    with pytest.raises(DataError, match="detections of 2 categories"):
        use_stand_in(root, tmp_path / "nolabels", images_dir=root / "photos", boxes=tmp_path / "detections.json")


JAX_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.stage2.test_coco_keypoints import use_stand_in
import keras
result = use_stand_in(Path({data!r}), Path({out!r}), images_dir=Path({data!r}) / "photos",
                      labels=Path({data!r}) / "labels.json")
print(json.dumps({{"backend": keras.backend.backend(), "ap": result["coco"]["ap"]}}))
"""


@pytest.mark.slow
def test_under_jax_without_tensorflow(coco, tmp_path):
    root, _, _ = coco
    # Preprocessing (the COCO reader) and use (crops, results, OKS AP by pycocotools) with
    # Keras on JAX and `import tensorflow` failing.
    cache = tmp_path / "cache"
    check(run_script(ROOT / "stage2_visible_keypoints" / "preprocess_vis.py", "--labels", root / "labels.json",
                     "--images", root / "photos", "--cache-dir", cache, "--config", root / "config.yaml",
                     "--quiet", backend="jax", block_tensorflow=True))
    assert dict(np.load(cache / "train" / "Y_data.npz"))["config_hash"] == _cache(root)["config_hash"]
    script = tmp_path / "use_jax.py"
    script.write_text(JAX_SCRIPT.format(root=str(ROOT), data=str(root), out=str(tmp_path / "jax")))
    out = check(run_script(script, backend="jax", block_tensorflow=True))
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"backend": "jax", "ap": 1.0}
