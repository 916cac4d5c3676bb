# `make demo` and `make test` build the project's environment in .venv/ when it is missing
# (or when pyproject.toml changed) and then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=
# The suite runs in this many pytest-xdist workers; each takes whole files (--dist loadfile), so
# a file's module fixtures are built once. 2 suits the 2-core CI machine (16 min instead of 22).
TEST_WORKERS ?= 2

.PHONY: demo test bench bench-cpu bench-accelerator-smoke ablations planted-bugs install install-dev clean-venv

# No .pyc compilation at install time (tensorflow alone has ~10k modules): Python compiles what
# it imports on first use.
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --no-compile --upgrade pip

# Core library only.
$(VENV)/.core.stamp: pyproject.toml | $(PY)
	$(PIP) install -q --no-compile -e .
	touch $@

# Core + tf extra (with tensorflow-text, --no-deps): what training and make demo need.
$(VENV)/.tf.stamp: pyproject.toml requirements/tf-nodeps.txt | $(PY)
	$(PIP) install -q --no-compile -e ".[tf]"
	$(PIP) install -q --no-compile --no-deps -r requirements/tf-nodeps.txt
	touch $(VENV)/.core.stamp $@

# Everything: the above + test tooling (torch and transformers, the tests' reference).
$(VENV)/.dev.stamp: $(VENV)/.tf.stamp
	$(PIP) install -q --no-compile -e ".[tf,test]"
	touch $@

install: $(VENV)/.core.stamp
install-dev: $(VENV)/.dev.stamp

demo: $(VENV)/.tf.stamp
	$(PY) -m groupvit_jax.demo

test: $(VENV)/.dev.stamp
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

ablations: $(VENV)/.tf.stamp
	$(PY) experiments/shapes_ablations.py

# Plants each bug of experiments/planted_bugs.py in a temporary copy and runs the tests that must
# catch it (not part of `make test`; two bugs at a time, each in its own copy of the tree).
planted-bugs: $(VENV)/.dev.stamp
	$(PY) experiments/planted_bugs.py $(PLANTED_ARGS)

bench: $(VENV)/.dev.stamp
	$(PY) experiments/benchmarks/bench_model.py

# The CPU goals against transformers: every core, then one core per side; the profile.
bench-cpu: $(VENV)/.dev.stamp
	$(PY) experiments/benchmarks/cpu_vs_torch.py --dtypes float32,bfloat16
	$(PY) experiments/benchmarks/cpu_vs_torch.py --threads 1 \
	  --out experiments/benchmarks/results/cpu_vs_torch_1core.json
	$(PY) experiments/benchmarks/profile_cpu.py
	$(PY) experiments/benchmarks/speed_table.py

# The accelerator script's CPU rehearsal (the GPU command is in its docstring).
bench-accelerator-smoke: $(VENV)/.dev.stamp
	$(PY) experiments/benchmarks/accelerator.py --smoke --out_dir /tmp/accelerator_smoke

clean-venv:
	rm -rf $(VENV)
