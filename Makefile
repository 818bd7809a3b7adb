# Thin wrapper over CMake for the commands people type. See README.md.
MAKEFLAGS += --no-print-directory
BUILD ?= build
JOBS ?= $(shell nproc)
MODEL ?= models/all-MiniLM-L6-v2

.PHONY: all build setup fetch run test asan fuzz fixtures clean

all: build

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) >$(BUILD)/build.log 2>&1 || { tail -n 40 $(BUILD)/build.log; exit 1; }

# Install what is missing (Debian packages, .venv) and fetch the real models.
setup:
	@bash scripts/setup.sh

fetch:
	@.venv/bin/python scripts/fetch_models.py

# The main job: set up, build, fetch the default model, describe it and embed two sentences.
run: setup build
	@$(BUILD)/eft info $(MODEL)
	@echo
	@echo '$$ eft embed $(MODEL) "The cat sits on the mat." "A feline rests on a rug."'
	@$(BUILD)/eft embed $(MODEL) "The cat sits on the mat." "A feline rests on a rug."

# The whole suite from scratch: release + ASan/UBSan builds, ctest, short fuzz runs.
test:
	@bash scripts/test.sh

asan:
	@cmake -S . -B build-asan -DEFT_SANITIZE=ON >/dev/null && cmake --build build-asan -j $(JOBS) >/dev/null
	@cd build-asan && ctest -j $(JOBS) --output-on-failure

fuzz:
	@CC=clang cmake -S . -B build-fuzz -DEFT_FUZZ=ON >/dev/null && cmake --build build-fuzz -j $(JOBS) >/dev/null
	@echo "fuzz binaries: build-fuzz/fuzz_*  (run e.g. build-fuzz/fuzz_gguf tests/fuzz/corpus/gguf)"

# Regenerate the reference fixtures (needs PyTorch; see tools/ref/README.md).
fixtures:
	@bash tools/ref/setup-venv.sh && bash tools/ref/make-all.sh

clean:
	rm -rf build build-asan build-fuzz build*.log
