#!/usr/bin/env bash
# Every GPU benchmark in one call on the GPU machine (JAX, no TensorFlow), inside DEADLINE
# seconds (default 540). Here first: bash ../shared/gpu/fetch-wheels.sh (Keras wheels into
# .whl/, see ../shared/gpu/README.md); then, through the device tool, with .whl carried:
#     bash bench/gpu_all.sh
# 1. stage 2: renders 5,000 + 1,000 images with all cores, then trains from random init
#    with a cosine learning rate over BUDGET_IMAGES images, stopped at the deadline
#    (bench/stage2_accuracy.py through the package's trainer; the focal loss summed over the
#    maps: the README's table from this step used the mean, --focal-reduction mean);
# 2. at the same time on the same GPU: the aerial centre detector (bench/centres_accuracy.py)
#    and the baselines comparison (baselines/run_study.py, comparison part, more epochs).
# Each part writes its JSON and log under $OUT; a part that fails does not stop the others.
# SMOKE=1 runs the same steps with tiny sizes (a check on the development machine).
set -uo pipefail
source bench/gpu_env.sh
out=${OUT:-results/gpu}
work=${WORK:-/tmp/gpu_bench}
deadline=${DEADLINE:-540}
cores=$(nproc)
mkdir -p "$out" "$work"
nvidia-smi -L 2>&1 || true
$PY -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" 2>&1

if [ "${SMOKE:-0}" = 1 ]; then
    s2="--train-images 16 --test-images 8 --eval-every 16 --budget-images 32 --batch-size 8"
    ce="--train-images 12 --test-images 4 --epochs 1"
    bs="--set study.train_images=40 --set study.test_images=10 --set study.comparison_epochs=1"
    side=1
else
    s2="--train-images 5000 --test-images 1000 --eval-every 25600"
    ce="--train-images 3000 --test-images 500 --epochs 40 --set train.batch_size=32"
    bs="--set study.comparison_epochs=30"
    side=$(( cores > 4 ? cores / 2 : 1 ))
fi

# Stage 2 renders and preprocesses with every core first: it is the critical path.
$PY bench/stage2_accuracy.py --workers "$cores" --work-dir "$work/stage2" $s2 --prepare-only --quiet \
    > "$work/stage2_prepare.log" 2>&1 || tail -20 "$work/stage2_prepare.log"
echo "stage 2 data ready at ${SECONDS}s"

left=$(( deadline - SECONDS ))
minutes=$(awk -v s="$left" 'BEGIN { m = (s - 75) / 60; print (m < 0.5 ? 0.5 : m) }')
echo "stage 2 trains for ${minutes} min"
XLA_PYTHON_CLIENT_MEM_FRACTION=.5 timeout $(( left - 10 )) $PY bench/stage2_accuracy.py --workers "$cores" \
    --work-dir "$work/stage2" $s2 --budget-minutes "$minutes" --budget-images ${BUDGET_IMAGES:-1200000} --lr-schedule cosine \
    --output-dir "$out" --quiet > "$out/stage2_accuracy.log" 2>&1 &
stage2=$!

(
    XLA_PYTHON_CLIENT_MEM_FRACTION=.25 timeout $(( left - 40 )) $PY bench/centres_accuracy.py --work-dir "$work/centres" \
        $ce --budget-minutes 3 --workers "$side" --output-dir "$out" > "$out/centres.log" 2>&1
    echo "centres done at ${SECONDS}s (exit $?)"
) &
(
    XLA_PYTHON_CLIENT_MEM_FRACTION=.15 timeout $(( left - 40 )) $PY baselines/run_study.py --config configs/baselines.yaml \
        --output-dir "$work/baselines" --set study.parts=[comparison] $bs \
        --set "data.data_dir=$work/baselines_data" --set "data.cache_dir=$work/baselines_cache" > "$out/baselines.log" 2>&1
    echo "baselines done at ${SECONDS}s (exit $?)"
) &
wait $stage2
echo "stage 2 done at ${SECONDS}s (exit $?)"
wait
cp "$work/baselines/comparison.json" "$out/baselines_comparison.json" 2>/dev/null || true
(cd "$work" && find . -path '*/cache' -prune -o -path '*/detections' -prune -o -path '*/images' -prune \
    -o -path '*renders' -prune -o \( -name '*.json' -o -name '*.csv' -o -name '*.png' -o -name '*.log' \) -print \
    | tar -czf "$out/extras.tgz" -T -) || true
tail -5 "$out/stage2_accuracy.log" || true
echo "all done at ${SECONDS}s"
