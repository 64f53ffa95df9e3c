"""The centre detector's data config checks and its DOTA reading (categories, image sizes)."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from common.config import load_config
from common.errors import DataError
from detection.centres.centres_config import CentresConfig, DataConfig
from detection.centres.centres_data import load_cache, preprocess, read_labels
from detection.centres.dota import DOTA_V1_0, find_dota_pairs


@pytest.mark.parametrize("override, message", [
    ("data.sigma=.nan", r"sigma must be a positive finite number. Received: sigma=nan"),
    ("data.sigma=.inf", r"sigma must be a positive finite number. Received: sigma=inf"),
    ("data.sigma=0", r"sigma must be a positive finite number. Received: sigma=0"),
    ("data.split=[.nan, 0.5, 0.5]", r"split must be three fractions .* Received: \(nan, 0.5, 0.5\)"),
    ("data.split=[1.5, -0.5, 0]", r"split must be three fractions .* Received: \(1.5, -0.5, 0.0\)"),
    ("data.small_size=.nan", r"small_size and cluster_distance must be finite numbers >= 0. Received: small_size=nan"),
    ("data.cluster_distance=-1", r"Received: small_size=30.0, cluster_distance=-1"),
])
def test_config_rejects_nan_infinity_and_bad_fractions(override, message):
    with pytest.raises(DataError, match=message):
        load_config(CentresConfig, None, [override])


def _dota(root, objects, size=(220, 200)):
    """A DOTA folder with one image per entry of `objects`: {name: [label lines]}."""
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    for name, lines in objects.items():
        Image.new("RGB", size).save(root / "images" / f"{name}.png")
        (root / "labelTxt" / f"{name}.txt").write_text("\n".join(["imagesource:x", "gsd:0.5"] + lines) + "\n")
    return find_dota_pairs(root)


CAR = "10 10 40 10 40 30 10 30 small-vehicle 0"
TRUCK = "100 100 150 100 150 140 100 140 large-vehicle 0"


def test_a_category_that_matches_no_object_names_it(tmp_path):
    pairs = _dota(tmp_path, {"P1": [CAR], "P2": [TRUCK]})
    labels = read_labels(pairs, DataConfig(categories=("small-vehicle", "large-vehicle")))
    assert [len(item.xy) for item in labels] == [1, 1]
    for categories, absent in [(("small-vehicle", "foo"), "foo"), (("plane",), "plane"),
                               (("dota-v2.0",), "dota-v2.0")]:
        with pytest.raises(DataError, match=f"field 'data.categories': '{absent}' matches no object in the 2 label "
                                            f"files \\(present: large-vehicle, small-vehicle; DOTA names: plane,") as err:
            read_labels(pairs, DataConfig(categories=categories))
        assert str(tmp_path / "labelTxt") in str(err.value)
    # A whole DOTA list may meet a subset of its classes (here 2 of 15), not none of them.
    assert DataConfig(categories=("dota-v1.0",)).categories == DOTA_V1_0
    assert [len(item.xy) for item in read_labels(pairs, DataConfig(categories=("dota-v1.0",)))] == [1, 1]
    pairs = _dota(tmp_path / "ships", {"P1": ["10 10 40 10 40 30 10 30 container-crane 0"]})
    with pytest.raises(DataError, match="'plane' matches no object"):
        read_labels(pairs, DataConfig(categories=("dota-v1.0",)))


def test_objects_whose_centre_is_outside_the_image_are_left_out_with_a_warning(tmp_path):
    # (5020, 5015) in a 220x200 image is left out; a box that only sticks out of the image is kept.
    _dota(tmp_path, {"P1": [CAR], "P2": ["-10 10 10 10 10 30 -10 30 small-vehicle 0",
                                         "5000 5000 5040 5000 5040 5030 5000 5030 small-vehicle 0"]})
    cfg = DataConfig(data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), categories=("small-vehicle",),
                     tile_size=128, tile_overlap=32, input_size=(32, 32))
    with pytest.warns(UserWarning, match=r"1 objects whose centre lies outside their image were left out "
                                         r"\(first: .*P2.txt, line 4\)"):
        labels = read_labels(find_dota_pairs(tmp_path), cfg)
    np.testing.assert_allclose(labels[1].xy, [[0, 20]])


def test_a_category_seen_only_as_difficult_objects_is_absent_when_they_are_skipped(tmp_path):
    pairs = _dota(tmp_path, {"P1": [CAR], "P2": ["10 10 40 10 40 30 10 30 large-vehicle 1"]})
    categories = ("small-vehicle", "large-vehicle")
    assert [len(item.xy) for item in read_labels(pairs, DataConfig(categories=categories))] == [1, 1]
    with pytest.raises(DataError, match="'large-vehicle' matches no object"):
        read_labels(pairs, DataConfig(categories=categories, skip_difficult=True))


def test_reused_caches_read_no_labels(tmp_path, monkeypatch):
    _dota(tmp_path, {f"P{i}": [CAR] for i in range(4)})
    cfg = DataConfig(data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), categories=("small-vehicle",),
                     tile_size=128, tile_overlap=32, input_size=(32, 32), split=(0.5, 0.25, 0.25))
    first = preprocess(cfg, progress=False)
    assert not any(first[split]["reused"] for split in ("train", "val", "test"))

    def no_reading(*args):
        raise AssertionError("labels read although every cache is current")

    monkeypatch.setattr("detection.centres.centres_data.read_labels", no_reading)
    again = preprocess(cfg, progress=False)
    assert all(again[split]["reused"] for split in ("train", "val", "test"))


def test_objects_centred_on_the_right_or_bottom_edge_land_in_a_tile(tmp_path):
    # 220 x 200 image, 128 px tiles, 32 overlap: the last tiles start at x = 92, y = 72 and end at
    # the edges. Centres at x = 220 (right edge), y = 200 (bottom edge) and the corner (220, 200).
    _dota(tmp_path, {"P1": ["200 40 240 40 240 60 200 60 small-vehicle 0",
                            "60 190 80 190 80 210 60 210 small-vehicle 0",
                            "210 190 230 190 230 210 210 210 small-vehicle 0"]})
    cfg = DataConfig(data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), categories=("small-vehicle",),
                     tile_size=128, tile_overlap=32, input_size=(32, 32), split=(1, 0, 0))
    preprocess(cfg, progress=False)
    y = load_cache(cfg.cache_dir, "train", cfg).y
    np.testing.assert_allclose(y["gt_xy_original"], [[220, 50], [70, 200], [220, 200]])
    valid = y["objects"][..., 3] > 0
    # Every true centre is in a tile's targets, back in original pixels through its transform.
    found = set()
    for t, slot in zip(*np.nonzero(valid)):
        transform = y["tile_transforms"][t]
        found.add(tuple(np.round((y["objects"][t, slot, :2] * 32 - transform[2:]) / transform[:2], 3)))
    assert found == {(220, 50), (70, 200), (220, 200)}
    assert y["objects"][valid][:, :2].max() == 1.0  # on the tile's far edge: inside the codec's [0, 1]


def test_a_split_that_leaves_train_empty_is_one_line(tmp_path):
    _dota(tmp_path, {"P1": [CAR], "P2": [CAR]})
    cfg = DataConfig(data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), categories=("small-vehicle",),
                     tile_size=128, tile_overlap=32, input_size=(32, 32), split=(0.34, 0.33, 0.33))
    with pytest.raises(DataError) as info:
        preprocess(cfg, progress=False)
    assert str(info.value) == (f"{tmp_path}: field 'data.split': [0.34, 0.33, 0.33] of 2 images leaves train empty "
                               "(val 1, test 1); add images or raise the train fraction")
    assert not (tmp_path / "cache").exists()
    # A test-only folder (train fraction 0) is what the user asked for.
    assert preprocess(dataclasses.replace(cfg, split=(0, 0, 1)), progress=False)["test"]["images"] == 2


def test_a_split_left_empty_by_a_new_config_loses_its_old_cache(tmp_path):
    _dota(tmp_path, {f"P{i}": [CAR] for i in range(4)})
    cfg = DataConfig(data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), categories=("small-vehicle",),
                     tile_size=128, tile_overlap=32, input_size=(32, 32), split=(0.5, 0.5, 0))
    assert preprocess(cfg, progress=False)["val"]["images"] == 2
    again = dataclasses.replace(cfg, split=(1, 0, 0))
    summary = preprocess(again, progress=False)
    assert summary["val"] == {"images": 0, "tiles": 0, "objects": 0, "cache": None, "reused": False, "removed": True}
    assert not (tmp_path / "cache" / "val").exists()  # training validates on train tiles, not a stale val
    assert load_cache(again.cache_dir, "train", again).y["filenames"].tolist() == [f"P{i}.png" for i in range(4)]


def test_skip_bad_leaves_out_images_whose_image_or_label_file_is_bad(tmp_path):
    from detection.centres.centres_data import Cache, split_names

    _dota(tmp_path, {f"P{i}": [CAR] for i in range(6)})
    (tmp_path / "images" / "P1.png").write_bytes(b"not an image")
    (tmp_path / "labelTxt" / "P4.txt").write_text("imagesource:x\n10 10 40 10 40 30 10 30 small-vehicle zero\n")
    cfg = DataConfig(data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), categories=("small-vehicle",),
                     tile_size=128, tile_overlap=32, input_size=(32, 32), split=(0.5, 0.25, 0.25))
    with pytest.raises(DataError, match="P1.png: cannot read image"):
        preprocess(cfg, progress=False)
    summary = preprocess(cfg, progress=False, skip_bad=True)
    splits = split_names(6, cfg.split, cfg.split_seed)
    names = {split: [f"P{i}" for i in np.sort(splits[split])] for split in ("train", "val", "test")}
    for split, wanted in names.items():
        good = [name for name in wanted if name not in ("P1", "P4")]
        report = tmp_path / "cache" / split / "skipped.tsv"
        assert summary[split]["skipped"] == len(wanted) - len(good), split
        assert report.is_file() == (len(good) < len(wanted))
        if good:
            assert [f.removesuffix(".png") for f in Cache.load(cfg.cache_dir, split).y["filenames"]] == good
    reported = "".join((tmp_path / "cache" / s / "skipped.tsv").read_text() for s in names
                       if (tmp_path / "cache" / s / "skipped.tsv").is_file())
    assert "P1.png\tcannot read image" in reported and "P4.txt\t" in reported
