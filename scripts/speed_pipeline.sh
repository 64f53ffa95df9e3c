#!/usr/bin/env bash
# The full-frame pipeline on SPEED-like renders (README "From a full frame to the pose"):
# render, then train stage 1 (the object's box) and stage 2 (keypoints in box crops).
# Then: python stage2_visible_keypoints/pose_vis.py --detector runs/speed/stage1 \
#           --model runs/speed/stage2 --data-dir runs/speed/renders --split test
# Sizes: TRAIN=800 TEST=100 WORKERS=2 bash scripts/speed_pipeline.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
TRAIN=${TRAIN:-800} TEST=${TEST:-100} WORKERS=${WORKERS:-2}
export PYTHONPATH=${PYTHONPATH:-$PWD}
$PY -m stage2_visible_keypoints.render_vis --output-dir runs/speed/renders --scene speed --split train \
    --num-images "$TRAIN" --workers "$WORKERS"
$PY -m stage2_visible_keypoints.render_vis --output-dir runs/speed/renders --scene speed --split test \
    --num-images "$TEST" --seed 1 --workers "$WORKERS"
$PY detection/ssd/preprocess_det.py --config configs/stage1_speed.yaml --split train_boxes --workers "$WORKERS"
$PY detection/ssd/train_det.py --config configs/stage1_speed.yaml --split train_boxes
$PY stage2_visible_keypoints/preprocess_vis.py --config configs/stage2_speed.yaml --split train --workers "$WORKERS"
$PY stage2_visible_keypoints/train_vis.py --config configs/stage2_speed.yaml
