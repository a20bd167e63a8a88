# svseg developer entry points. Every target creates/reuses the virtual environment at .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.svseg-installed

.PHONY: venv venv-label demo test test-slow test-label clean-venv

LVENV := .venv-label
LPY := $(LVENV)/bin/python
LSTAMP := $(LVENV)/.svseg-installed

# Rebuild only when the dependency declaration changes (setup.cfg / pyproject.toml).
$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch torchvision
	$(PY) -m pip install --quiet -e ".[test]"
	# test data and reference writers, never imported by svseg: the stardist wheel's real nuclei images, and
	# nnunetv2's generate_dataset_json (the reference writer of the nnU-Net layout); --no-deps keeps the
	# environment lean (nnunetv2 pulls a second training stack we do not use)
	$(PY) -m pip install --quiet --no-deps stardist nnunetv2 batchgenerators
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m svseg.cli demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# MONAI Label 0.8.5 pins numpy<2, pydicom<3, ...: it gets its own environment (svseg[label]).
$(LSTAMP): setup.cfg pyproject.toml
	@test -x $(LPY) || $(PYTHON) -m venv $(LVENV)
	$(LPY) -m pip install --quiet --upgrade pip
	$(LPY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(LPY) -m pip install --quiet -e ".[test,label]"
	@touch $(LSTAMP)

venv-label: $(LSTAMP)

test-label: $(LSTAMP)
	$(LPY) -m pytest -q -m label tests/label

clean-venv:
	rm -rf $(VENV) $(LVENV)
