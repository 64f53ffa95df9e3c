"""The three models: outputs, resolutions, skips, loss wiring."""

import keras
import numpy as np
import pytest

from baselines.config import BaselinesConfig, DataConfig, ModelConfig, TrainConfig
from baselines.models import build_model
from baselines.pipeline import decoder_name, losses_for, model_kind


@pytest.mark.parametrize("kind, heatmap_size, skips, outputs", [
    ("heatmap", 32, True, {"heatmaps": (2, 32, 32, 5)}),
    ("heatmap", 16, False, {"heatmaps": (2, 16, 16, 5)}),
    ("heatmap", 64, True, {"heatmaps": (2, 64, 64, 5)}),
    ("regression", 32, True, {"keypoints": (2, 5, 2)}),
    ("integral", 32, True, {"heatmaps": (2, 32, 32, 5), "keypoints": (2, 5, 2)}),
])
def test_output_shapes(kind, heatmap_size, skips, outputs):
    model = build_model(5, DataConfig(input_size=64, heatmap_size=heatmap_size),
                        ModelConfig(kind=kind, filters=(4, 8, 8, 8), skips=skips))
    result = model(np.zeros((2, 64, 64, 1), np.uint8))
    assert {k: tuple(v.shape) for k, v in result.items()} == outputs
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in result.values())
    has_skip = any(layer.name.startswith("skip") for layer in model.layers)
    assert has_skip == (skips and kind != "regression")


def test_loss_wiring_and_decoders():
    cfg = BaselinesConfig()
    assert decoder_name(cfg) == "argmax_refine"
    cfg.train = TrainConfig(loss="wing")
    assert model_kind(cfg) == "integral" and decoder_name(cfg) == "soft_argmax"
    assert list(losses_for(cfg, 2.0)[0]) == ["keypoints"]
    cfg.train, cfg.model = TrainConfig(loss="focal"), ModelConfig(kind="integral")
    losses, weights = losses_for(cfg, 3.0)
    assert type(losses["heatmaps"]).__name__ == "FocalHeatmapLoss" and losses["heatmaps"].sigma == 3.0
    assert set(weights) == {"heatmaps", "keypoints"}
    with pytest.raises(ValueError, match="heatmap_size must be input_size"):
        DataConfig(input_size=128, heatmap_size=48)


def test_cosine_schedule_decays_to_one_percent_of_the_rate():
    from baselines.pipeline import training_statement
    from common.training import learning_rate_schedule, plan_run

    tc = TrainConfig(learning_rate=1e-3, epochs=4, lr_schedule="cosine", batch_size=4)
    plan = plan_run(tc, train_count=100)  # 25 steps an epoch, 100 in all
    schedule = learning_rate_schedule(tc, plan)
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(50)) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))  # half way: cos(pi / 2) = 0
    assert float(schedule(100)) == pytest.approx(1e-5)
    assert learning_rate_schedule(TrainConfig(learning_rate=2e-3), plan) == 2e-3  # plateau: a plain rate
    cfg = BaselinesConfig()
    cfg.train = tc
    assert training_statement(cfg)["lr_schedule"] == "cosine"
    with pytest.raises(ValueError, match="lr_schedule must be constant"):
        TrainConfig(lr_schedule="linear")
