# The README's commands. Each sets the environment up itself (idempotent) first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup demo test lint

setup:
	$(PYTHON) tools/setup_env.py --venv $(VENV)

demo: setup
	$(PY) tools/main_job.py

test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(PY) -m ruff check .
