"""README "Your own data": every command of the section runs, as written, on a tiny data set
of its format written here (SPEED labels, COCO keypoints for the baselines and stage 2, COCO
boxes, DOTA, ISBI 2015, the keypoint list), in one process through `keypose`; then what each one made is checked.

The data sets are laid out as users' are (`train_annotations.json` beside `train/`), so the
default split-name layout would not find them: `--labels` and `--images` must. The `*/config.yaml`
files the section names hold tiny models and sizes here, and nothing about the data: the box
format, sizes and categories come from the caches.
"""

import json
import re
import shlex
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from keypose.__main__ import main as keypose

pytestmark = pytest.mark.slow
README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def section_commands():
    """The `keypose` command lines of the README's "Your own data" section, in order."""
    section = README.split("\n## Your own data\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S) for line in block.splitlines()]
    return [line for line in lines if line.startswith("keypose ")]


def _image(path, size, points=(), value=255):
    """A dark image (width, height) with a bright 3x3 dot on each point, written to `path`."""
    image = np.full((size[1], size[0], 3), 40, np.uint8)
    for x, y in points:
        cv2.rectangle(image, (int(x) - 1, int(y) - 1), (int(x) + 1, int(y) + 1), (value,) * 3, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def _yaml(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values))


def write_speed(root):
    records = []
    for i in range(3):
        xy = [[10 + 5 * i, 8], [40, 12 + 3 * i], [20, 30], [50, 5]]
        _image(root / "speed" / "train" / f"img{i}.png", (64, 40), xy)
        records.append({"filename": f"img{i}.png", "keypoints": xy, "visible": [True, True, i != 1, True]})
    (root / "speed" / "train_labels.json").write_text(json.dumps(records))
    _yaml(root / "speed" / "config.yaml", {"data": {"input_size": [64, 64], "heatmap_size": [32, 32]}})


# Two people in each photo, three keypoints each: (x, y, v) with v = 1 labelled but hidden.
PEOPLE = [[(10, 10, 2), (20, 30, 2), (14, 50, 1)], [(60, 8, 2), (70, 28, 2), (66, 52, 2)]]


def write_coco_keypoints(root):
    for split, folder, count in (("train", "train2017", 2), ("val", "val2017", 1)):
        images, annotations = [], []
        for i in range(count):
            image_id = 100 * (split == "val") + i + 1  # ids continue across splits, as in some data sets
            _image(root / "coco" / folder / f"{image_id:06d}.jpg", (96, 64),
                   [(x, y) for person in PEOPLE for x, y, _ in person])
            images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": 96, "height": 64})
            for person in PEOPLE:
                xs, ys = [p[0] for p in person], [p[1] for p in person]
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                    "keypoints": [v for p in person for v in p], "num_keypoints": 3,
                                    "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]})
        if split == "train":  # a crowd region and a person with no labelled keypoint: skipped, counted
            annotations.append({"id": 90, "image_id": 1, "category_id": 1, "iscrowd": 1, "keypoints": [0] * 9,
                                "bbox": [0, 0, 96, 64]})
            annotations.append({"id": 91, "image_id": 2, "category_id": 1, "iscrowd": 0, "keypoints": [0] * 9,
                                "bbox": [40, 40, 10, 10]})
        (root / "coco" / f"person_keypoints_{split}.json").write_text(json.dumps({
            "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": ["head", "hand", "foot"]}]}))
    # Stage 2 on the same files: detections of the val people (COCO results, their true boxes).
    (root / "coco" / "detections_val.json").write_text(json.dumps([
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9 - 0.1 * j}
        for j, a in enumerate(annotations)]))
    _yaml(root / "coco" / "stage2.yaml", {
        "data": {"input_size": [32, 32], "heatmap_size": [16, 16]},
        "model": {"backbone": "resnet18", "decoder_filters": [8, 8, 8, 8]},
        "train": {"epochs": 1, "batch_size": 2, "lr_schedule": "constant"}, "use": {"max_overlays": 1}})
    _yaml(root / "coco" / "config.yaml", {
        "data": {"input_size": 32, "heatmap_size": 16},
        "model": {"filters": [4, 4, 8, 8], "dense_units": 8},
        "train": {"epochs": 1, "batch_size": 2, "lr_schedule": "constant"}, "use": {"max_overlays": 1}})


def write_coco_boxes(root):
    for split, count in (("train", 4), ("val", 2)):
        images, annotations = [], []
        for i in range(count):
            x1, y1 = 4 + 6 * i, 6 + 2 * i
            _image(root / "boxes" / split / f"{split}{i}.png", (64, 48))
            images.append({"id": i, "file_name": f"{split}{i}.png", "width": 64, "height": 48})
            # [x1, y1, x2, y2] whose "w, h" would leave the image: auto would read xyxy too
            annotations.append({"id": i, "image_id": i, "category_id": 0, "bbox": [x1, y1, x1 + 30, y1 + 20],
                                "area": 600, "iscrowd": 0})
        (root / "boxes" / f"{split}_annotations.json").write_text(json.dumps({
            "images": images, "annotations": annotations, "categories": [{"id": 0, "name": "part"}]}))
    # The same val boxes as [x, y, w, h].
    for annotation in annotations:
        x1, y1, x2, y2 = annotation["bbox"]
        annotation["bbox"] = [x1, y1, x2 - x1, y2 - y1]
    (root / "boxes" / "val_xywh.json").write_text(json.dumps({
        "images": images, "annotations": annotations, "categories": [{"id": 0, "name": "part"}]}))
    _yaml(root / "boxes" / "config.yaml", {
        "data": {"input_size": [64, 64]},
        "model": {"filters": [4, 8, 8, 8], "head_filters": [8, 8, 8],
                  "anchor_sizes": [[4, 6, 8], [12, 16, 24], [24, 32, 48]]},
        "train": {"epochs": 1, "batch_size": 4, "warmup_steps": 1},
        "use": {"max_overlays": 1, "feature_map_images": 1, "pre_nms_top_k": 20, "max_detections": 20}})


def write_dota(root):
    for i in range(3):
        _image(root / "dota" / "images" / f"P{i:04d}.png", (64, 64))
        (root / "dota" / "labelTxt-v1.0").mkdir(parents=True, exist_ok=True)
        (root / "dota" / "labelTxt-v1.0" / f"P{i:04d}.txt").write_text(
            "imagesource:test\ngsd:null\n10 10 30 10 30 20 10 20 plane 0\n40 40 50 40 50 50 40 50 ship 1\n")


def write_isbi(root):
    for i in (1, 2):
        xy = [(5 + 3 * k, 4 + 2 * k) for k in range(19)]
        _image(root / "isbi" / "RawImage" / f"{i:03d}.bmp", (80, 64), xy)
        folder = root / "isbi" / "AnnotationsByMD" / "400_senior"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:03d}.txt").write_text("\n".join(f"{x},{y}" for x, y in xy) + "\n1\n2\n")


def write_points(root):
    images = []
    for name in ("a.jpg", "b.jpg"):
        _image(root / "points" / "photos" / name, (50, 40), [(10, 12), (30, 20)])
        images.append({"file_name": name, "keypoints": [[10.5, 12.5], [30.5, 20.5]]})
    (root / "points" / "labels.json").write_text(json.dumps({"images": images, "keypoint_names": ["nose", "tail"]}))


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Every command of the section run in a folder holding the six data sets: {command: output}."""
    root = tmp_path_factory.mktemp("own_data")
    for write in (write_speed, write_coco_keypoints, write_coco_boxes, write_dota, write_isbi, write_points):
        write(root)
    outputs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for line in section_commands():
            capture, start = _Capture(), time.perf_counter()
            with capture:
                status = keypose(shlex.split(line)[1:] + ["--quiet"])
            print(f"{time.perf_counter() - start:.1f} s: {line}")
            assert status == 0, f"{line}\n{capture.text}"
            outputs[line] = capture.text
    return root, outputs


class _Capture:
    """stdout and stderr of in-process commands, as one string."""

    def __enter__(self):
        import contextlib
        import io

        self._buffer = io.StringIO()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(self._buffer))
        self._stack.enter_context(contextlib.redirect_stderr(self._buffer))

    def __exit__(self, *exc):
        self._stack.close()
        self.text = self._buffer.getvalue()


def test_the_section_has_one_example_per_format():
    lines = section_commands()
    for part, labels in (("stage2", "speed/"), ("baselines", "coco/"), ("stage2", "coco/"), ("ssd", "boxes/"), ("centres", "dota/"),
                         ("baselines", "isbi/"), ("baselines", "points/")):
        assert any(line.startswith(f"keypose {part} preprocess --labels {labels}") for line in lines), labels
    assert any("--bbox-format xyxy" in line for line in lines) and any("--bbox-format xywh" in line for line in lines)


def _output(outputs, start):
    return next(text for line, text in outputs.items() if line.startswith(start))


def _cache(root, folder, split):
    return dict(np.load(root / folder / "cache" / split / "Y_data.npz", allow_pickle=False))


def test_coco_keypoints_one_sample_per_person_cropped_by_its_box(ran):
    root, outputs = ran
    y = _cache(root, "coco", "train")
    images = np.load(root / "coco" / "cache" / "train" / "X_data.npy")
    assert len(y["xy_norm"]) == 4 and images.shape == (4, 32, 32, 1)  # 2 photos x 2 people
    assert "4 samples from 2 images" in _output(outputs, "keypose baselines preprocess --labels coco/")
    assert "1 iscrowd, 1 with no labelled keypoint" in _output(outputs, "keypose baselines preprocess --labels coco/")
    people = np.array(PEOPLE * 2, np.float64)
    # The crop maps back onto the photo: its origin plus xy_norm times its size is the label.
    crops = y["crop_boxes"].astype(np.float64)
    np.testing.assert_allclose(crops[:, None, :2] + y["xy_norm"] * crops[:, None, 2:], people[..., :2], atol=1e-3)
    # Square crops around each person: the box's longer side (40 and 44 px) plus 25 % of it on each side.
    np.testing.assert_allclose(crops[:, 2], [60, 66, 60, 66])
    np.testing.assert_allclose(crops[0, :2] + 30, [15, 30])  # the first person's box centre
    # v = 1 is labelled (trained, evaluated) but not visible.
    assert y["labelled"].all() and y["visible"].tolist() == [[True, True, False], [True] * 3] * 2
    # The cached crop shows each person's own dots where its keypoints are (mostly bright).
    xy_input = np.floor(y["xy_norm"] * 32).astype(int)
    brightness = [images[n, yy, xx, 0] for n in range(4) for xx, yy in xy_input[n]]
    assert min(brightness) > 100, brightness
    assert json.loads((root / "coco" / "predictions" / "evaluation.json").read_text())["images"] == 2


def test_coco_keypoints_stage2_one_sample_per_instance_and_oks_ap(ran):
    from common.geometry import to_original

    root, outputs = ran
    y = dict(np.load(root / "coco" / "stage2_cache" / "train" / "Y_data.npz", allow_pickle=False))
    out = _output(outputs, "keypose stage2 preprocess --labels coco/")
    assert ("category 'person': 4 samples (instances) from 2 images, cropped by their boxes; instances skipped: "
            "1 iscrowd, 1 with no labelled keypoint") in out and "PnP skipped" in out
    assert y["keypoint_names"].tolist() == ["head", "hand", "foot"] and y["coco_v"].tolist() == [
        [2, 2, 1], [2, 2, 2]] * 2
    # Each crop (the box's, jittered) maps the cached keypoints back onto the photo.
    people = np.array(PEOPLE * 2, np.float64)[..., :2]
    np.testing.assert_allclose(to_original(y["xy_norm"] * 32.0, y["transforms"]), people, atol=2e-5)
    log = json.loads((root / "coco" / "stage2_model" / "training_log.json").read_text())
    assert (log["train_images"], log["val_images"]) == (4, 2)
    summary = json.loads((root / "coco" / "stage2_predictions" / "evaluation_summary.json").read_text())
    assert summary["coco"]["instances"] == 2 and 0.0 <= summary["coco"]["ap"] <= 1.0
    assert summary["coco"]["sigmas"].startswith("uniform")
    for folder in ("stage2_predictions", "stage2_detected"):  # the val photo's two people, as COCO results
        results = json.loads((root / "coco" / folder / "keypoint_results.json").read_text())
        assert [(r["image_id"], r["category_id"], len(r["keypoints"])) for r in results] == [(101, 1, 9)] * 2
    detected = json.loads((root / "coco" / "stage2_detected" / "evaluation_summary.json").read_text())
    assert detected["coco"]["instances"] == 2 and detected["coco"]["results"] == 2


def test_coco_boxes_xyxy_train_and_use_without_the_format_repeated(ran):
    root, outputs = ran
    run = json.loads((root / "boxes" / "model" / "config.json").read_text())
    assert run["data"]["bbox_format"] == "xyxy" and run["train"]["val_split"] == "val"
    log = json.loads((root / "boxes" / "model" / "training_log.json").read_text())
    assert (log["train_images"], log["val_images"]) == (4, 2)  # all of train, validated on the val split
    # Read as [x1, y1, x2, y2] = [10, 8, 40, 28], resized from 64x48 to the 64x64 input.
    np.testing.assert_allclose(_cache(root, "boxes", "train")["boxes"][1, 0], [10, 8 * 4 / 3, 40, 28 * 4 / 3], rtol=1e-5)
    assert json.loads((root / "boxes" / "predictions" / "evaluation.json").read_text())["counts"]["images"] == 2
    # The same boxes written either way make the same cache.
    xywh = dict(np.load(root / "boxes" / "xywh_cache" / "val" / "Y_data.npz", allow_pickle=False))
    np.testing.assert_array_equal(xywh["boxes"], _cache(root, "boxes", "val")["boxes"])


def test_a_flag_that_contradicts_the_cache_names_the_flag_to_drop(ran, capsys, monkeypatch):
    root, _ = ran
    monkeypatch.chdir(root)
    line = next(line for line in section_commands() if line.startswith("keypose ssd train"))
    assert keypose(shlex.split(line)[1:] + ["--set", "data.bbox_format=xywh", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert 'data.bbox_format="xywh" (--set data.bbox_format=xywh) contradicts the cache' in err
    assert "drop --set data.bbox_format=xywh" in err and "boxes/cache/train/Y_data.npz" in err


def test_speed_dota_isbi_and_list_caches(ran):
    root, outputs = ran
    speed = _cache(root, "speed", "train")
    assert speed["xy_norm"].shape == (3, 4, 2) and speed["visible"][1].tolist() == [True, True, False, True]
    assert speed["input_size"].tolist() == [64, 64]
    dota = _cache(root, "dota", "train")
    assert list(dota["class_names"])[:2] == ["plane", "ship"] and len(dota["filenames"]) >= 1
    isbi = _cache(root, "isbi", "train")
    np.testing.assert_allclose(isbi["xy_norm"][0, 3], [(14 + 0.5) / 80, (10 + 0.5) / 64], atol=1e-6)
    assert isbi["keypoint_names"][0] == "sella"
    points = _cache(root, "points", "train")
    np.testing.assert_allclose(points["xy_norm"][1], [[10.5 / 50, 12.5 / 40], [30.5 / 50, 20.5 / 40]], atol=1e-6)
    assert "2 samples from 2 images" in _output(outputs, "keypose baselines preprocess --labels points/")
