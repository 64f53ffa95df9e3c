"""Export a trained centre detector to SavedModel, ONNX and LiteRT (float32 and INT8).

    python detection/centres/export_centres.py --config configs/centres_aerial.yaml --format all

Writes saved_model/, model.onnx, model_int8.onnx, model.tflite and model_int8.tflite (INT8:
calibrated on tiles of the training cache) into --output-dir (default: export/ beside the model), with
the run's config.json. The files map a tile to its centre heatmaps; peak finding and
tiling stay in `use_centres.py`.
"""

from common import cli
from detection.centres.centres_config import TRAINED_SETTINGS, CentresConfig


def _representative(cfg, count):
    from common.export import calibration_sample
    from detection.centres.centres_data import load_cache

    return calibration_sample(load_cache(cfg.data.cache_dir, "train", cfg.data).images, count)


def _load(path):  # Keras after parsing: --help needs none
    from detection.centres.centres_pipeline import load_centres_model

    return load_centres_model(path)


def main(argv=None):
    from common.export import export_main

    export_main(argv, __doc__, CentresConfig, TRAINED_SETTINGS, _load, _representative)


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
