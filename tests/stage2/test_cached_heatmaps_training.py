"""Training takes heatmap targets cached by `preprocess_vis.py --heatmaps` from a memory
map, and they train the model as the targets built on the fly do."""

import csv
import dataclasses

import numpy as np
import pytest

from stage2_visible_keypoints.camera import Camera, save_camera_json
from stage2_visible_keypoints.config import ModelConfig, Stage2Config
from stage2_visible_keypoints.data import load_cache, preprocess
from stage2_visible_keypoints.pipeline import train_from_cache, training_targets
from stage2_visible_keypoints.render import RenderConfig, render_split

pytestmark = pytest.mark.slow


def _first_epoch(output_dir):
    with open(output_dir / "history.csv") as f:
        return next(csv.DictReader(f))


def test_cached_heatmaps_train_like_targets_built_on_the_fly(tmp_path):
    camera = tmp_path / "camera.json"
    save_camera_json(camera, Camera(fx=500.6, fy=500.6, cx=160, cy=100, width=320, height=200))
    render_split(tmp_path / "renders", RenderConfig(num_images=4, seed=5, camera_json=str(camera)), "train")
    cfg = Stage2Config()
    cfg.data = dataclasses.replace(cfg.data, data_dir=str(tmp_path / "renders"), canvas_size=(320, 180),
                                   crop_size=(160, 160), input_size=(64, 64), heatmap_size=(32, 32))
    cfg.model = ModelConfig(backbone="resnet18", decoder_filters=(16, 8, 8, 8))
    histories = {}
    for cached in (False, True):
        name = "cached" if cached else "on_the_fly"
        data = dataclasses.replace(cfg.data, cache_dir=str(tmp_path / f"cache_{name}"), cache_heatmaps=cached)
        preprocess(data, "train", progress=False)
        # Training with the default config (cache_heatmaps false) accepts either cache.
        run = dataclasses.replace(cfg, data=dataclasses.replace(data, cache_heatmaps=False))
        run.train = dataclasses.replace(cfg.train, output_dir=str(tmp_path / name), epochs=1, batch_size=2,
                                        validation_split=0.5)
        train_from_cache(run, progress=False)
        histories[name] = _first_epoch(tmp_path / name)
    heatmaps = load_cache(tmp_path / "cache_cached", "train").y["heatmaps"]
    assert isinstance(heatmaps, np.memmap) and heatmaps.shape == (4, 32, 32, 19)
    # training_targets hands them to the heatmap loss as they are (not the keypoints).
    assert training_targets({"xy_norm": np.zeros((4, 19, 2)), "visible": np.ones((4, 19), bool),
                             "heatmaps": heatmaps})["heatmap_logits"] is heatmaps
    # Same seed, same images, same targets (but for float16 rounding): the same losses.
    for key in ("loss", "heatmap_logits_loss", "keypoints_loss", "val_loss"):
        np.testing.assert_allclose(float(histories["cached"][key]), float(histories["on_the_fly"][key]),
                                   rtol=2e-3, err_msg=key)
