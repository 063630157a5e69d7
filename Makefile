# Hearth's commands. `make run` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Where builds that take minutes are kept between runs (and between clones of the repo).
CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hearth-build
# llama.cpp backend compiled into llama-cpp-python: cpu (default), cuda, vulkan or metal.
BACKEND ?= cpu
LLAMA_VERSION := 0.3.36
WHEELS := $(CACHE)/wheels/$(BACKEND)
STARTER := $(CACHE)/models/SmolLM2-135M-Instruct.Q4_1.gguf
export HEARTH_STARTER_MODEL := $(abspath $(STARTER))

CMAKE_ARGS_cpu :=
CMAKE_ARGS_cuda := -DGGML_CUDA=on
CMAKE_ARGS_vulkan := -DGGML_VULKAN=on
CMAKE_ARGS_metal := -DGGML_METAL=on

.PHONY: run test bench lint package clean

run: $(VENV)/.installed $(STARTER)
	$(BIN)/python tools/starter.py install $(STARTER)
	$(BIN)/hearth

test: $(VENV)/.installed-test $(STARTER) lint
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(BIN)/python -m pytest $(PYTEST_ARGS)

# Every benchmark against its reference, one after the other (several minutes): writes
# tests/bench/results.json, tests/bench/results.md and the table in README.md.
bench: $(VENV)/.installed-test $(STARTER)
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(BIN)/python tests/bench/run.py

# Installers for this machine's system into dist/ (Linux: a one-folder app, .tar.gz and .deb), for
# the llama.cpp backend in BACKEND. The frozen app is checked by tests/e2e/test_package.py.
package: $(VENV)/.installed-package $(STARTER)
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps --no-index --find-links $(WHEELS) \
		llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/python packaging/build.py --backend $(BACKEND)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check desktop tests tools packaging

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Hearth needs Python 3.11 or newer."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel

# llama-cpp-python has no binary wheel: build it once per backend into the cache (minutes).
$(WHEELS)/.built-$(LLAMA_VERSION): | $(BIN)/python
	mkdir -p $(WHEELS)
	CMAKE_ARGS="$(CMAKE_ARGS_$(BACKEND))" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc 2>/dev/null || echo 2) \
		$(BIN)/python -m pip wheel --no-deps --wheel-dir $(WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	touch $@

$(VENV)/.installed: pyproject.toml $(WHEELS)/.built-$(LLAMA_VERSION) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --find-links $(WHEELS) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --find-links $(WHEELS) -e '.[test]'
	touch $@

$(VENV)/.installed-package: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --find-links $(WHEELS) -e '.[package]'
	touch $@

$(STARTER): | $(BIN)/python
	$(BIN)/python tools/starter.py fetch $@

clean:
	rm -rf $(VENV) build dist *.egg-info
