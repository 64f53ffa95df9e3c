# Sourced by the GPU scripts (bench/gpu_all.sh, bench/gpu_stage2.sh): sets PY, installs Keras
# from the wheels in .whl/ where it cannot be imported, and exports the JAX environment.
PY=${PYTHON:-python3}
export KERAS_BACKEND=jax
if [ -d .whl ] && ! $PY -c "import keras" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
