"""A training run stopped after an epoch resumes where it stopped."""

import csv
import dataclasses

import pytest

from stage2_visible_keypoints.camera import Camera, save_camera_json
from stage2_visible_keypoints.config import ModelConfig, Stage2Config
from stage2_visible_keypoints.data import preprocess
from stage2_visible_keypoints.pipeline import train_from_cache
from stage2_visible_keypoints.render import RenderConfig, render_split
from tests.harness import StopAtEpoch

pytestmark = pytest.mark.slow


def test_interrupted_training_resumes_from_the_last_epoch(tmp_path):
    camera = tmp_path / "camera.json"
    save_camera_json(camera, Camera(fx=500.6, fy=500.6, cx=160, cy=100, width=320, height=200))
    render_split(tmp_path / "renders", RenderConfig(num_images=6, seed=3, camera_json=str(camera)), "train")
    cfg = Stage2Config()
    cfg.data = dataclasses.replace(cfg.data, data_dir=str(tmp_path / "renders"), cache_dir=str(tmp_path / "cache"),
                                   canvas_size=(320, 180), crop_size=(160, 160), input_size=(64, 64),
                                   heatmap_size=(32, 32))
    # The resume logic is the same for any model: the small backbone keeps the test quick.
    cfg.model = ModelConfig(backbone="resnet18", decoder_filters=(32, 16, 16, 8))
    cfg.train = dataclasses.replace(cfg.train, output_dir=str(tmp_path / "model"), epochs=2, batch_size=2,  # 4 + 2 images: whole batches
                                    validation_split=0.34)
    preprocess(cfg.data, "train", progress=False)

    with pytest.raises(KeyboardInterrupt):
        train_from_cache(cfg, progress=False, callbacks=[StopAtEpoch(1)])
    assert (tmp_path / "model" / "backup").is_dir() and (tmp_path / "model" / "best.keras").is_file()

    summary = train_from_cache(cfg, progress=False)
    assert summary["epochs_run"] == 1  # only the second epoch was left
    with open(tmp_path / "model" / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1]
    assert not (tmp_path / "model" / "backup").exists()  # removed once the run completed
