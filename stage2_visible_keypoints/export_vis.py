"""Export a trained stage-2 model to SavedModel, ONNX and LiteRT (float32 and INT8).

    python stage2_visible_keypoints/export_vis.py --config configs/stage2_demo.yaml --format all
    python stage2_visible_keypoints/export_vis.py --model runs/demo/model/best.keras --format onnx --output-dir deploy/

Writes saved_model/, model.onnx, model_int8.onnx, model.tflite and model_int8.tflite (INT8:
calibrated on images of the training cache) into --output-dir (default: export/ beside the model), with
the run's config.json and keypoint_names.json, so `use_vis.py --model deploy/model.onnx`
runs the exported file (ONNX needs only onnxruntime, not Keras or TensorFlow).
"""

from common import cli
from stage2_visible_keypoints.config import TRAINED_SETTINGS, Stage2Config


def _representative(cfg, count):
    from common.export import calibration_sample
    from stage2_visible_keypoints.data import load_cache

    return calibration_sample(load_cache(cfg.data.cache_dir, "train", cfg.data).images, count)


def main(argv=None):
    from common.export import export_main
    from stage2_visible_keypoints.data import KEYPOINT_NAMES_FILE

    def keras_loader(path):
        from stage2_visible_keypoints.predictor import load_stage2_model
        return load_stage2_model(path)

    export_main(argv, __doc__, Stage2Config, TRAINED_SETTINGS, keras_loader, _representative,
                extra_files=(KEYPOINT_NAMES_FILE,))


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
