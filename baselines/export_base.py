"""Export a trained baseline (HeatmapNet, RegressionNet, IntegralNet) to SavedModel, ONNX
and LiteRT (float32 and INT8).

    python baselines/export_base.py --config configs/baselines.yaml --format all

Writes saved_model/, model.onnx, model_int8.onnx, model.tflite and model_int8.tflite (INT8:
calibrated on images of the training cache) into --output-dir (default: export/ beside the model), with
the run's config.json.
"""

from common import cli
from baselines.config import KEYPOINT_NAMES_FILE, TRAINED_SETTINGS, BaselinesConfig


def _representative(cfg, count):
    from baselines.data import load_cache
    from common.export import calibration_sample

    images, _ = load_cache(cfg.data.cache_dir, "train", cfg.data)
    return calibration_sample(images, count)


def _load(path):  # Keras after parsing: --help needs none
    from baselines.pipeline import load_model

    return load_model(path)


def main(argv=None):
    from common.export import export_main

    # The run's keypoint names, which use_base.py on --images reads beside the model.
    export_main(argv, __doc__, BaselinesConfig, TRAINED_SETTINGS, _load, _representative,
                extra_files=(KEYPOINT_NAMES_FILE,))


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
