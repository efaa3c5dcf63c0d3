# The front door: `make demo` and `make test` set up .venv themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0

.PHONY: venv demo test lab bench doctor clean

venv: $(STAMP)

# torch first and pinned: anything asking for a newer torch would pull CUDA wheels (see README).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,ray,sb3]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/workbench demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup tests

bench: $(STAMP)
	$(VENV)/bin/workbench bench

doctor: $(STAMP)
	$(VENV)/bin/workbench doctor

# 127.0.0.1 only, with JupyterLab's token (open the URL it prints); --allow-root only when run as root (containers).
LAB_PORT ?= 8888
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser $(if $(filter 0,$(shell id -u)),--allow-root,) notebooks/

clean:
	rm -rf $(VENV) runs reports .pytest_cache
