# Two set-up-and-go commands:  make lab   and   make test
# Both create .venv if it is missing and install the project into it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch is installed first, pinned to a release this machine holds as a local CPU wheel,
# so that resolving the project does not pull a multi-GB CUDA build. Override on a GPU box:
#   make install TORCH_SPEC='torch'     (or any spec your platform needs)
TORCH_SPEC ?= torch==2.13.0
# Extra pip arguments for that torch install. A Linux laptop without the local wheel gets PyPI's
# CUDA build (GBs); ask for PyTorch's CPU wheels instead:
#   make lab TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
TORCH_PIP_ARGS ?=
STAMP  := $(VENV)/.installed

.PHONY: install lab test test-server cheatsheet unit notebooks browser bench-smoke figures clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[model,lab,test,replay]"
	touch $(STAMP)

install: $(STAMP)

# JupyterLab refuses to start as root unless told; containers and CI machines often run as root
LAB_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(LAB_FLAGS) notebooks/

# The numpy core, whose docstring examples run as doctests (--doctest-modules).
DOCTESTED := packviz/checks.py packviz/datafiles.py packviz/shapes.py packviz/trace.py packviz/lengths.py packviz/layout.py \
             packviz/packing.py packviz/flops.py packviz/steps.py packviz/exercises.py packviz/trace_numbers.py \
             packviz/serving/costs.py packviz/serving/scheduler.py packviz/serving/simulator.py packviz/serving/metrics.py \
             packviz/serving/sweep.py packviz/serving/calibration.py packviz/serving/timeline.py

# The whole suite: the core's doctests, the unit tests, then every notebook under strict nbval.
test: $(STAMP)
	$(PY) -m pytest --doctest-modules $(DOCTESTED) tests notebooks --nbval --nbval-current-env -p no:cacheprovider

# The replay against a real server: transformers serve on 127.0.0.1 with a tiny local model (about
# 2.5 min, most of it the server's start-up), kept out of `make test`; CI runs it after the suite.
SERVER_STAMP := $(VENV)/.installed-server
$(SERVER_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[model,lab,test,replay,server]"
	touch $(SERVER_STAMP)

test-server: $(SERVER_STAMP)
	PACKVIZ_SERVER_TEST=1 $(PY) -m pytest tests/test_replay.py -k real_transformers -p no:cacheprovider -rA

unit: $(STAMP)
	$(PY) -m pytest --doctest-modules $(DOCTESTED) tests

bench-smoke: $(STAMP)
	$(PY) -m packviz bench --smoke --out /tmp/packviz-smoke

figures: $(STAMP)
	$(PY) -m packviz figures --out figures/

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# Notebook 06's answers as a one-page printable HTML (code hidden), from its stored outputs.
CHEATSHEET ?= build/cheatsheet.html
cheatsheet: $(STAMP)
	$(PY) scripts/cheatsheet.py $(CHEATSHEET)
