#!/usr/bin/env bash
# The stage-2 accuracy benchmark in one call on the GPU machine (JAX, no TensorFlow).
# Here first: bash ../shared/gpu/fetch-wheels.sh   (Keras wheels into .whl/, see ../shared/gpu/README.md)
# Then, through the device tool, with .whl carried:  bash bench/gpu_stage2.sh
# Renders 5,000 + 1,000 images with all cores, trains from random init for
# BUDGET_MINUTES (default 5) of training time (cosine learning rate over it) and writes the learning curve to $OUT.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
out=${OUT:-results}
mkdir -p "$out"
nvidia-smi -L || true
python3 bench/stage2_accuracy.py --workers "$(nproc)" --work-dir /tmp/bench --eval-every 20000 \
    --budget-minutes "${BUDGET_MINUTES:-5}" --budget-images 100000000 --lr-schedule cosine --out "$out/stage2_accuracy.json" --quiet 2>&1 | tee "$out/stage2_accuracy.log"
