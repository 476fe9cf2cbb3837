# mmdat: every target sets up .venv/ first (idempotent; seconds when it is already there).
PY := .venv/bin/python

.PHONY: setup demo test benchmark

setup:
	bash tools/setup_env.sh

# The main job on the embedded default: plain vs DAT on the built-in shapes data with the tiny VQGAN,
# CPU, clean and under corruptions. TASK=cls (default), det or seg; ARGS=... passes options, e.g.
# ARGS='--ablation --seed 1' (adds the reconstruction-only model).
TASK ?= cls
demo: setup
	$(PY) tools/demo.py --task $(TASK) $(ARGS)

test: setup
	$(PY) -m pytest -q tests

# VQGAN speed/memory, DAT vs plain vs reference step time, FLOPs vs bound (a few minutes on CPU);
# tables in docs/benchmarks.md. ARGS=... passes options, e.g. ARGS='--threads 1'.
benchmark: setup
	$(PY) tools/analysis_tools/benchmark_dat.py $(ARGS)
