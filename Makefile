# Everything runs inside .venv at the repository root, created on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A pinned CPU torch: an unpinned one pulls the CUDA stack.
TORCH_VERSION := 2.13.0

.PHONY: install demo test test-slow bench device-check-cpu experiments-small clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[spconv,io,viz,train,dev,kernels]'
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
	$(PY) benchmarks/bench_cpu_bf16.py
	$(PY) benchmarks/bench_depthwise.py
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_predict.py
	$(PY) benchmarks/bench_families.py
	$(PY) benchmarks/bench_backbones.py
	$(PY) benchmarks/bench_startup.py

# The GPU device check (benchmarks/device_check.sh) in its CPU mode: the same steps, small, on the CPU, with
# plyfile, laspy and spconv hidden as on the GPU machine; report in runs/device-check-cpu/.
DEVICE_CHECK_OUT := runs/device-check-cpu

device-check-cpu: install
	PYTHON=$(PY) bash benchmarks/device_check.sh --cpu --out $(DEVICE_CHECK_OUT)

# The paper's seven tables at small scale, three seeds, on the samples in ../shared (about 35 minutes on two
# cores); finished runs are skipped on a rerun. Tables and figures are copied to docs/results/<table>/.
EXPERIMENTS_OUT := runs/experiments
RESULTS_DIR := docs/results

experiments-small: install
	$(PY) -m image2point.cli experiment all --scale small --seeds 0,1,2 --out-dir $(EXPERIMENTS_OUT)
	for table in $(EXPERIMENTS_OUT)/table*/; do \
	  name=$$(basename $$table); mkdir -p $(RESULTS_DIR)/$$name; \
	  cp $$table/table.md $$table/results.json $$table/results.csv $(RESULTS_DIR)/$$name/; \
	  find $$table -maxdepth 1 -name '*.png' -exec cp {} $(RESULTS_DIR)/$$name/ \; ; \
	done

clean:
	rm -rf $(VENV) build *.egg-info
