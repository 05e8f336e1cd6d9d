# The project's commands. Each one sets up the environment first (idempotent, about a second when
# nothing changed; the first time about 12 minutes, most of it compiling mmcv's ops once).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-fast demo check-full gpu-kit clean-env

setup:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "[setup] ERROR: $(PYTHON) not found. cb_transfer needs Python 3.11 (the CPU torch 2.13.0 build is cp311): install it, or pass make PYTHON=/path/to/python3.11"; exit 1; }
	@$(PYTHON) tools/setup_env.py --venv $(VENV)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# the edit loop: everything but the end-to-end training runs (about 2 minutes)
test-fast: setup
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

demo: setup
	$(PY) tools/run_suite.py smoke

# every full-size config takes two training steps and validates two images on this machine, on
# generated data or on yours: make check-full ARGS="--ade20k ROOT --coco ROOT --imagenet ROOT"
check-full: setup
	$(PY) tools/check_full.py $(ARGS)

# the wheels and sources a bare, offline GPU machine needs (into gpu_kit/, ignored by git)
gpu-kit: setup
	$(PY) tools/gpu_kit.py download

clean-env:
	rm -rf $(VENV)
