#!/usr/bin/env bash
# Run every collected test on its own, `pytest <node id>` in a fresh process, so that a
# test leaning on another (a file, a model or a module state left by an earlier test)
# fails here even where the whole suite passes. Slow: each node pays the imports and its
# fixtures again (the whole suite takes hours on 2 cores); give paths to check a part:
#     scripts/test_each_alone.sh tests/common/test_metrics.py tests/stage2/test_scripts_e2e.py
# Prints one line per node and, at the end, the nodes that failed or skipped; exit 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
paths=("$@")
[ ${#paths[@]} -eq 0 ] && paths=(tests)

# No random order and one process: each node alone, as a developer runs it.
mapfile -t nodes < <("$PY" -m pytest --collect-only -q -o addopts="" -p no:randomly "${paths[@]}" | grep "::")
[ ${#nodes[@]} -eq 0 ] && { echo "no tests collected in ${paths[*]}"; exit 1; }
failed=()
skipped=()
for node in "${nodes[@]}"; do
    start=$SECONDS
    if "$PY" -m pytest -o addopts="" -p no:randomly -q -x "$node" > /tmp/test_each_alone.$$.log 2>&1; then
        # A test that skips alone but runs in the suite leans on another: listed, not failed.
        if grep -q " skipped" /tmp/test_each_alone.$$.log; then
            echo "skip  $((SECONDS - start))s  $node"
            skipped+=("$node")
        else
            echo "ok    $((SECONDS - start))s  $node"
        fi
    else
        echo "FAIL  $((SECONDS - start))s  $node"
        tail -n 20 /tmp/test_each_alone.$$.log | sed 's/^/      /'
        failed+=("$node")
    fi
done
rm -f /tmp/test_each_alone.$$.log
echo "${#nodes[@]} tests run alone, ${#failed[@]} failed, ${#skipped[@]} skipped"
for node in "${skipped[@]}"; do echo "skipped alone: $node"; done
for node in "${failed[@]}"; do echo "failed alone: $node"; done
[ ${#failed[@]} -eq 0 ]
