"""Test driver: train_det then use_det in one process (one start-up instead of two).

    python tests/detection/ssd/det_train_then_use.py CONFIG MODEL_DIR PRED_DIR IMAGES_DIR|-
"""

import sys

from common import cli
from detection.ssd import train_det, use_det

config, model_dir, pred_dir = sys.argv[1:4]
status = cli.run(train_det.main, ["--config", config, "--output-dir", model_dir, "--quiet"])
if status == 0:
    status = cli.run(use_det.main, ["--config", config, "--model", f"{model_dir}/best.keras",
                                    "--output-dir", pred_dir, "--quiet"])
if status == 0 and sys.argv[4] != "-":  # and on a folder of images, without labels
    status = cli.run(use_det.main, ["--config", config, "--model", f"{model_dir}/best.keras", "--images",
                                    sys.argv[4], "--output-dir", f"{pred_dir}_folder", "--quiet"])
raise SystemExit(status)
