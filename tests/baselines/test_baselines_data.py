"""Stick figures, the two label formats, the cache."""

import json

import cv2
import numpy as np
import pytest

from baselines.config import DataConfig
from baselines.data import labels_json, load_cache, preprocess, read_annotations
from baselines.stickfigure import KEYPOINT_NAMES, random_figure, render_dataset
from common.errors import DataError


def test_figures_keypoints_lie_on_the_drawing_and_left_is_left():
    rng = np.random.default_rng(3)
    for _ in range(20):
        image, xy = random_figure(rng)
        assert image.shape == (128, 128) and image.dtype == np.uint8 and xy.shape == (5, 2)
        assert (xy >= 6).all() and (xy <= 122).all()  # inside the margin
        assert xy[1, 0] <= xy[2, 0] and xy[3, 0] <= xy[4, 0]  # hand_left / foot_left have the smaller x
        # Hands and feet are line ends: the drawing is brighter there than the image median.
        for x, y in xy[1:]:
            patch = image[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2]
            assert patch.max() > np.median(image) + 40


def test_render_writes_coco_that_reads_back(tmp_path):
    path = render_dataset(tmp_path, 3, seed=5, split="train")
    labels = read_annotations(path)
    assert labels["keypoint_names"] == list(KEYPOINT_NAMES)
    assert labels["file_names"] == ["train_000000.png", "train_000001.png", "train_000002.png"]
    assert labels["visible"].all() and labels["xy"].shape == (3, 5, 2)
    _, xy = random_figure(np.random.default_rng(5))  # the same stream as image 0
    np.testing.assert_allclose(labels["xy"][0], xy, atol=1e-3)
    assert cv2.imread(str(tmp_path / "images" / "train" / "train_000000.png"), cv2.IMREAD_GRAYSCALE).shape == (128, 128)
    # The list format of the same labels reads back to the same arrays.
    (tmp_path / "list.json").write_text(json.dumps(labels_json(labels)))
    again = read_annotations(tmp_path / "list.json")
    np.testing.assert_array_equal(again["xy"], labels["xy"])
    assert again["keypoint_names"] == labels["keypoint_names"]


def _coco(keypoints, flags=(2, 2)):
    values = [v for (x, y), f in zip(keypoints, flags) for v in (x, y, f)]
    return {"images": [{"id": 7, "file_name": "a.png"}], "categories": [{"id": 1, "keypoints": ["p", "q"]}],
            "annotations": [{"image_id": 7, "category_id": 1, "keypoints": values}]}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["annotations"][0].pop("keypoints"), r"annotations\[0\] \(image 7\): missing field 'keypoints'"),
    (lambda d: d["annotations"][0]["keypoints"].pop(), r"has 5 numbers, expected 3 \* 2"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, float("nan")), "NaN or infinite"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(2, 5), r"visibility flags \(every third number of .keypoints.\) must be 0, 1 or 2"),
    (lambda d: d["images"][0].__setitem__("id", 8), r"annotations\[0\]: field 'image_id' 7 is not an id in 'images'"),
    (lambda d: d.pop("categories"), "missing field 'categories'"),
])
def test_coco_errors_name_file_and_field(tmp_path, mutate, message):
    data = _coco([(1, 2), (3, 4)])
    mutate(data)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=message) as err:
        read_annotations(tmp_path / "bad.json")
    assert "bad.json" in str(err.value)


def test_coco_flag_zero_is_unlabelled_one_hidden_and_list_errors(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(_coco([(1, 2), (0, 0)], flags=(1, 0))))
    labels = read_annotations(tmp_path / "c.json")
    assert labels["labelled"].tolist() == [[True, False]] and labels["visible"].tolist() == [[False, False]]
    bad = {"images": [{"id": 1, "file_name": "a.png", "keypoints": [[1, 2], [3]]}], "num_keypoints": 2}
    (tmp_path / "l.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"images\[0\]: field 'keypoints'"):
        read_annotations(tmp_path / "l.json")


def test_preprocess_cache_round_trip_reuse_stale_and_corrupt(tmp_path):
    render_dataset(tmp_path / "data", 3, seed=1, split="train")
    cfg = DataConfig(input_size=64, heatmap_size=32, crop="image")  # whole images: xy_norm of the file
    out = preprocess(tmp_path / "data", "train", tmp_path / "cache", cfg, progress=False)
    images, y = load_cache(tmp_path / "cache", "train", cfg)
    labels = read_annotations(tmp_path / "data" / "train.json")
    assert images.shape == (3, 64, 64, 1)
    np.testing.assert_allclose(y["xy_norm"], labels["xy"] / 128, atol=1e-6)  # resize keeps xy_norm
    stamp = (out / "X_data.npy").stat().st_mtime_ns
    preprocess(tmp_path / "data", "train", tmp_path / "cache", cfg, progress=False)
    assert (out / "X_data.npy").stat().st_mtime_ns == stamp  # up to date: reused
    with pytest.raises(DataError, match=r"Y_data.npz: cache was built with another config: input_size=64 \(config: 128\); "
                                        r"to rebuild it, run preprocess_base.py --split train"):
        load_cache(tmp_path / "cache", "train", DataConfig(crop="image"))
    (tmp_path / "data" / "images" / "train" / "train_000001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="train_000001.png: cannot read image"):
        preprocess(tmp_path / "data", "train", tmp_path / "cache2", cfg, progress=False)


def test_an_image_name_leading_outside_the_data_folder_is_refused(tmp_path):
    render_dataset(tmp_path / "data", 2, seed=1, split="train")
    labels = json.loads((tmp_path / "data" / "train.json").read_text())
    outside = tmp_path / "outside.png"
    (tmp_path / "data" / "images" / "train" / labels["images"][0]["file_name"]).rename(outside)
    cfg = DataConfig(input_size=64, heatmap_size=32)
    for name in ("../../../outside.png", str(outside)):
        labels["images"][0]["file_name"] = name
        (tmp_path / "data" / "train.json").write_text(json.dumps(labels))
        with pytest.raises(DataError, match=r"train.json: image of sample 0: the file name leads outside the data "
                                            r"folder"):
            preprocess(tmp_path / "data", "train", tmp_path / "cache", cfg, progress=False)
    preprocess(tmp_path / "data", "train", tmp_path / "cache", cfg, progress=False, allow_outside=True)
    assert load_cache(tmp_path / "cache", "train", cfg)[0].shape[0] == 2
    # --skip-bad lists the name and reads nothing in its place (the file outside exists).
    preprocess(tmp_path / "data", "train", tmp_path / "skip", cfg, progress=False, skip_bad=True)
    (row,) = (tmp_path / "skip" / "train" / "skipped.tsv").read_text().splitlines()[1:]
    assert row.startswith(f"{tmp_path / 'data' / 'train.json'}\timage of sample 0: the file name leads outside")
    assert load_cache(tmp_path / "skip", "train", cfg)[0].shape[0] == 1


def test_missing_image_names_every_folder_searched_and_image_crops_take_one_per_image(tmp_path):
    data = _coco([(1, 2), (3, 4)])
    data["annotations"].append(dict(data["annotations"][0], id=2))  # a second person in a.png
    (tmp_path / "train.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=rf"train.json: image of sample 0: image 'a.png' not found in "
                                        rf"{tmp_path}/images/train/, {tmp_path}/images/, {tmp_path}/$"):
        preprocess(tmp_path, "train", tmp_path / "cache", DataConfig(), progress=False)
    (tmp_path / "photos").mkdir()  # the image where --images says it is
    cv2.imwrite(str(tmp_path / "photos" / "a.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="image a.png holds 2 instances, but data.crop=image takes one per image"):
        preprocess(tmp_path, "train", tmp_path / "cache", DataConfig(crop="image"), progress=False,
                   images=tmp_path / "photos")
    preprocess(tmp_path, "train", tmp_path / "cache", DataConfig(), progress=False, images=tmp_path / "photos")
    assert len(load_cache(tmp_path / "cache", "train", DataConfig())[1]["xy_norm"]) == 2  # one per person


def test_skip_bad_leaves_out_missing_and_unreadable_images(tmp_path, capsys):
    from baselines import preprocess_base

    render_dataset(tmp_path / "data", 4, seed=1, split="train")
    images = tmp_path / "data" / "images" / "train"
    (images / "train_000001.png").write_bytes(b"not a png")
    (images / "train_000002.png").unlink()
    preprocess_base.main(["--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache"), "--quiet",
                          "--skip-bad", "--set", "data.input_size=64", "--set", "data.heatmap_size=32",
                          "--set", "data.crop=image"])  # stick figures fill their frame: cached whole
    report = tmp_path / "cache" / "train" / "skipped.tsv"
    assert f"skipped 2 bad item(s), listed in {report}" in capsys.readouterr().out
    assert [line.split("\t")[1] for line in report.read_text().splitlines()[1:]] == [
        "cannot read image (corrupt or not an image)", "image file not found"]
    images, y = load_cache(tmp_path / "cache", "train", DataConfig(input_size=64, heatmap_size=32, crop="image"))
    labels = read_annotations(tmp_path / "data" / "train.json")
    assert images.shape == (2, 64, 64, 1) and list(y["filenames"]) == [labels["file_names"][i] for i in (0, 3)]
    np.testing.assert_allclose(y["xy_norm"], labels["xy"][[0, 3]] / 128, atol=1e-6)
