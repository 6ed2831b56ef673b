# Everything runs inside .venv at the repository root, created on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A pinned CPU torch: an unpinned one pulls the CUDA stack.
TORCH_VERSION := 2.13.0

.PHONY: install demo test test-slow bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[spconv,io,viz,train,dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m image2point.demo

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow || [ $$? -eq 5 ]  # 5: no test is marked slow

bench: install
	$(PY) benchmarks/bench_voxelize.py
	$(PY) benchmarks/bench_sparse.py
	$(PY) benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) build *.egg-info
