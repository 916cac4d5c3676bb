# `make demo` and `make test` build the project's environment in .venv/ when it is missing
# (or when pyproject.toml changed) and then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: demo test bench ablations install install-dev clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Core library only.
$(VENV)/.core.stamp: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

# Everything: core + tf extra (with tensorflow-text, --no-deps) + test tooling.
$(VENV)/.dev.stamp: pyproject.toml requirements/tf-nodeps.txt | $(PY)
	$(PIP) install -q -e ".[tf,test]"
	$(PIP) install -q --no-deps -r requirements/tf-nodeps.txt
	touch $(VENV)/.core.stamp $@

install: $(VENV)/.core.stamp
install-dev: $(VENV)/.dev.stamp

demo: $(VENV)/.dev.stamp
	$(PY) -m groupvit_jax.demo

test: $(VENV)/.dev.stamp
	$(PY) -m pytest -q $(PYTEST_ARGS)

ablations: $(VENV)/.dev.stamp
	$(PY) experiments/shapes_ablations.py

bench: $(VENV)/.dev.stamp
	$(PY) experiments/benchmarks/bench_model.py

clean-venv:
	rm -rf $(VENV)
