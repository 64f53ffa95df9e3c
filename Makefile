# Two commands do all set-up on a fresh machine:
#   make demo   .venv + install + render -> preprocess -> train -> use on synthetic data
#   make test   .venv + install + the test suite (what CI runs)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DEMO := runs/demo
DEMO_CONFIG := configs/stage2_demo.yaml

# One fixed order for CI (`make test`): the tests run shuffled by pytest-randomly with this
# seed, so a test leaning on an earlier one fails the same way on every run. Another order:
# `make test TEST_SEED=123`; the one-by-one check: `make test-alone` (slow).
TEST_SEED ?= 20261206

.PHONY: help install test test-alone mutate demo clean

help:
	@echo "make demo    install, then run stage 2 end to end on synthetic renders (< 15 min on 2 cores)"
	@echo "make test    install, then run the tests (shuffled, seed TEST_SEED=$(TEST_SEED))"
	@echo "make test-alone  each test in its own pytest process (slow; TESTS=path... for a part)"
	@echo "make mutate  mutation testing of the numeric core (slow; MUTANTS='common.geometry*' for one module)"
	@echo "make clean   remove runs/ (demo outputs); keeps .venv"

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' || \
		{ echo "error: Python 3.11 is required; run: make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

test: install
	$(PY) -m pytest -p randomly --randomly-seed=$(TEST_SEED)

# FORK=1: each test in a child forked after one collection (fast; scripts/fork_each_test.py).
TESTS ?= tests
JOBS ?= 1
test-alone: install
	$(PY) scripts/test_each_alone.py --jobs $(JOBS) $(if $(FORK),--fork) $(TESTS)

# Mutation testing of the numeric core ([tool.mutmut] in pyproject.toml: the files and their
# tests); not in CI. The surviving mutants go to bench/results/mutation/survivors.txt; each
# needs a test, or a line in bench/results/mutation/*.md on why it changes nothing observable.
MUTANTS ?=
mutate: install
	$(PY) -m pip install -q mutmut==3.8.1
	$(VENV)/bin/mutmut run --max-children 2 $(MUTANTS) || true
	mkdir -p bench/results/mutation
	# mutmut's forked children time out in Keras code: each timeout is rerun in a fresh process.
	$(PY) scripts/mutants_alone.py '$(or $(MUTANTS),*)' --report bench/results/mutation/alone.tsv || true
	$(VENV)/bin/mutmut results | grep -v "not checked" > bench/results/mutation/survivors.txt || true
	@echo "survivors: bench/results/mutation/survivors.txt, timeouts rerun alone: bench/results/mutation/alone.tsv"
	@echo "(mutmut show NAME for a mutant's diff)"

MESH := stage2_visible_keypoints/assets/spacecraft.obj

# The renders are redone when the bundled mesh changes.
$(DEMO)/renders/train.json: $(MESH) | install
	$(PY) stage2_visible_keypoints/render_vis.py --output-dir $(DEMO)/renders --split train --num-images 300 --seed 1 --workers 2

$(DEMO)/renders/test.json: $(MESH) | install
	$(PY) stage2_visible_keypoints/render_vis.py --output-dir $(DEMO)/renders --split test --num-images 60 --seed 2 --workers 2

demo: install $(DEMO)/renders/train.json $(DEMO)/renders/test.json
	$(PY) stage2_visible_keypoints/preprocess_vis.py --config $(DEMO_CONFIG) --split train --workers 2
	$(PY) stage2_visible_keypoints/preprocess_vis.py --config $(DEMO_CONFIG) --split test
	$(PY) stage2_visible_keypoints/train_vis.py --config $(DEMO_CONFIG)
	$(PY) stage2_visible_keypoints/use_vis.py --config $(DEMO_CONFIG) --split test
	@echo "demo outputs: $(DEMO)/ (model/, predictions/; TensorBoard: $(VENV)/bin/tensorboard --logdir $(DEMO)/model/logs)"

clean:
	rm -rf runs
