# The README's commands. Each sets the environment up itself (idempotent) first.
# `make test` runs the suite on Detectron2 v0.6 (.venv) and then, when the official Detectron2
# source archive is beside the repository (../shared/detectron2/detectron2-*.tar.gz), again on
# Detectron2 built from it with its compiled ops (.venv-d2main). Both legs must pass.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
PYTEST_ARGS ?= -q -p no:cacheprovider
# The Detectron2-main leg: a source folder, a .tar.gz of one, or a git URL, e.g.
#   make test-d2main D2_SOURCE=git+https://github.com/facebookresearch/detectron2.git
D2MAIN_VENV ?= .venv-d2main
D2_SOURCE ?= $(firstword $(wildcard ../shared/detectron2/detectron2-*.tar.gz))

.PHONY: setup setup-d2main demo test test-v06 test-d2main lint

setup:
	$(PYTHON) -m bootstrap.setup_env --venv $(VENV)

demo: setup
	$(PY) tools/main_job.py

test: test-v06
	@if [ -n "$(D2_SOURCE)" ]; then \
		$(MAKE) --no-print-directory test-d2main; \
	else \
		echo "no ../shared/detectron2/detectron2-*.tar.gz and no D2_SOURCE: Detectron2-main leg not run"; \
	fi

test-v06: setup
	$(PY) -m pytest $(PYTEST_ARGS) tests

setup-d2main:
	@test -n "$(D2_SOURCE)" || { echo "set D2_SOURCE to a Detectron2 source folder, .tar.gz or git URL"; exit 2; }
	$(PYTHON) -m bootstrap.setup_env --venv $(D2MAIN_VENV) --detectron2-source "$(D2_SOURCE)"

test-d2main: setup-d2main
	$(D2MAIN_VENV)/bin/python -m pytest $(PYTEST_ARGS) tests

lint: setup
	$(PY) -m ruff check .
