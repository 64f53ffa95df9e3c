"""Export a trained SSD detector to SavedModel, ONNX and LiteRT (float32 and INT8).

    python detection/ssd/export_det.py --config configs/det_shapes.yaml --format all

Writes saved_model/, model.onnx, model_int8.onnx, model.tflite and model_int8.tflite (INT8:
calibrated on images of the training cache) into --output-dir (default: export/ beside the model), with
the run's config.json. The files hold the network (raw anchor predictions); box decoding
and NMS stay in `use_det.py`.
"""

from common import cli
from detection.ssd.ssd_config import TRAINED_SETTINGS, DetConfig


def _representative(cfg, count):
    from common.export import calibration_sample
    from detection.ssd.box_cache import load_cache

    return calibration_sample(load_cache(cfg.data.cache_dir, "train", cfg.data).images, count)


def _load(path):  # Keras after parsing: --help needs none
    from detection.ssd.ssd_pipeline import load_detector

    return load_detector(path)


def main(argv=None):
    from common.export import export_main

    # categories.json: the class names, which use_det.py on --images reads beside the model.
    export_main(argv, __doc__, DetConfig, TRAINED_SETTINGS, _load, _representative, extra_files=("categories.json",))


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
