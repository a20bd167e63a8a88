# svseg developer entry points. Every target creates/reuses the virtual environment at .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.svseg-installed

.PHONY: venv demo test test-slow test-label clean-venv

# Rebuild only when the dependency declaration changes (setup.cfg / pyproject.toml).
$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch torchvision
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m svseg.cli demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

clean-venv:
	rm -rf $(VENV)
