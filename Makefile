# mmdat: every target sets up .venv/ first (idempotent; seconds when it is already there).
PY := .venv/bin/python

.PHONY: setup demo test benchmark

setup:
	bash tools/setup_env.sh

# The main job on the embedded default: DAT on the built-in shapes dataset with the tiny VQGAN, CPU.
demo: setup
	$(PY) tools/demo.py --work-dir work_dirs/demo

test: setup
	$(PY) -m pytest -q tests

benchmark: setup
	$(PY) tools/benchmark_dat.py
