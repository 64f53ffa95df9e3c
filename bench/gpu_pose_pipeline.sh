#!/usr/bin/env bash
# Full frame to pose (bench/pose_pipeline.py) in one call on the GPU machine (JAX, no
# TensorFlow), inside DEADLINE seconds (default 560). Here first: bash ../shared/gpu/fetch-wheels.sh
# (Keras wheels into .whl/, see ../shared/gpu/README.md); then, through the device tool, with
# .whl carried:  bash bench/gpu_pose_pipeline.sh
# (The local check, TensorFlow blocked as there: PYTHON=.venv/bin/python PYTHONPATH=bench/no_tensorflow:$PWD
#  TRAIN_IMAGES=48 TEST_IMAGES=16 DEADLINE=540 EVAL_SECONDS=150 DET_BATCH=8 KP_BATCH=8 DET_RATE=1 KP_RATE=1 \
#  EPOCH_IMAGES=32 FIGURES=2 OUT=/tmp/pose_gpu WORK=/tmp/pose_gpu_work nice -n 10 bash bench/gpu_pose_pipeline.sh
#  On 2 busy cores the three trainings at once take ~200 s to finish a first epoch (JAX compiles, bf16 on a
#  CPU): with DEADLINE=300 none does, and the check shows only the left-out path.)
# 1. Renders TRAIN_IMAGES (default 6,000) + TEST_IMAGES (500) SPEED-like frames and builds
#    the three caches with every core (--only prepare).
# 2. Trains stage 1 and the two stage-2 models (box crop, centre crop) at the same time on
#    the one GPU, mixed_bfloat16, each stopped by the time left (--det-minutes/--kp-minutes);
#    the cosine rate follows budgets in images sized from DET_RATE / KP_RATE images/s (guesses
#    for three runs sharing an H100: set them from the rates the logs print).
# 3. Evaluates the three crops on the held-out frames (--only evaluate), stopping on the
#    frames done when EVAL_SECONDS (default 100) run out; a model that never finished an
#    epoch is left out and named. Writes $OUT/pose_pipeline.json, the logs, the training
#    histories and overlays of the first FIGURES (6) frames per crop in $OUT/pose_pipeline_figures/.
set -uo pipefail
source bench/gpu_env.sh
out=${OUT:-results}
work=${WORK:-/tmp/pose_bench}
deadline=${DEADLINE:-560}
eval_s=${EVAL_SECONDS:-100}
cores=$(nproc)
mkdir -p "$out"
nvidia-smi -L 2>&1 || true
$PY -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" 2>&1

common="--work-dir $work --train-images ${TRAIN_IMAGES:-6000} --test-images ${TEST_IMAGES:-500} --workers $cores"
common="$common --output-dir $out --quiet"
# The GPU settings (configs' keys, the same in every step so pose_pipeline.json records them).
gpu_sets=${GPU_SETS-"train.precision=mixed_bfloat16 train.lr_schedule=cosine train.tensorboard_images=0"}
sets="--det-set train.batch_size=${DET_BATCH:-64} --kp-set train.batch_size=${KP_BATCH:-128}"
for kv in $gpu_sets; do sets="$sets --det-set $kv --kp-set $kv"; done

$PY bench/pose_pipeline.py $common $sets --only prepare > "$out/pose_prepare.log" 2>&1 || tail -20 "$out/pose_prepare.log"
echo "data ready at ${SECONDS}s"

# Training gets what is left after the evaluation's share, less a margin for start-up (imports,
# caches, the first compilation before the budget's clock starts) and one epoch past the budget.
left=$(( deadline - SECONDS - eval_s ))
train_s=$(( left > 60 ? left - 40 : 20 ))
minutes=$(awk -v s="$train_s" 'BEGIN { printf "%.2f", s / 60 }')
budget="--det-minutes $minutes --kp-minutes $minutes --det-images $(( ${DET_RATE:-3000} * train_s ))"
budget="$budget --kp-images $(( ${KP_RATE:-3000} * train_s )) --epoch-images ${EPOCH_IMAGES:-25600}"
echo "training for ${minutes} min each: $budget"
XLA_PYTHON_CLIENT_MEM_FRACTION=.15 timeout $(( left - 5 )) $PY bench/pose_pipeline.py $common $sets $budget \
    --only stage1 --retrain > "$out/stage1.log" 2>&1 &
for crop in box centre; do
    XLA_PYTHON_CLIENT_MEM_FRACTION=.35 timeout $(( left - 5 )) $PY bench/pose_pipeline.py $common $sets $budget \
        --only "stage2_$crop" --retrain > "$out/stage2_$crop.log" 2>&1 &
done
wait
echo "training done at ${SECONDS}s"
# The histories now, so they come back even if the evaluation fails.
for run in stage1 stage2_box stage2_centre; do
    for f in history.csv training_log.json training_summary.json; do
        cp "$work/$run/$f" "$out/${run}_$f" 2>/dev/null || true
    done
    tail -3 "$out/$run.log" 2>/dev/null || true
done

left=$(( deadline - SECONDS ))
eval_minutes=$(awk -v s="$left" 'BEGIN { m = (s - 50) / 60; printf "%.2f", (m < 0.25 ? 0.25 : m) }')
status=0
timeout $(( left > 10 ? left - 5 : 5 )) $PY bench/pose_pipeline.py $common $sets $budget --only evaluate \
    --eval-minutes "$eval_minutes" --figures ${FIGURES:-6} 2>&1 | tee "$out/pose_pipeline.log" || status=$?
echo "all done at ${SECONDS}s"
exit $status
