# Thin wrapper over CMake for the commands people type. See README.md.
MAKEFLAGS += --no-print-directory
BUILD ?= build
JOBS ?= $(shell nproc)
MODEL ?= models/all-MiniLM-L6-v2

.PHONY: all build setup fetch run test asan fuzz fixtures python clean

all: build

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) >$(BUILD)/build.log 2>&1 || { tail -n 40 $(BUILD)/build.log; exit 1; }

# Install what is missing (Debian packages, .venv) and fetch the real models.
setup:
	@bash scripts/setup.sh

fetch:
	@.venv/bin/python scripts/fetch_models.py

# The main job: set up, build, fetch the models, serve them over HTTP (Ctrl-C stops it).
LLM ?= models/SmolLM2-135M-Instruct-Q4_1
PORT ?= 8080
run: setup build
	@echo 'eft serve: generation $(LLM), embeddings $(MODEL), http://127.0.0.1:$(PORT)'
	@echo '  try: curl 127.0.0.1:$(PORT)/v1/embeddings -d '"'"'{"input": ["The cat sits on the mat."]}'"'"
	@echo '       curl 127.0.0.1:$(PORT)/v1/chat/completions -d '"'"'{"messages": [{"role": "user", "content": "Hi!"}]}'"'"
	@exec $(BUILD)/eft serve --model $(LLM) --embedding-model $(MODEL) --port $(PORT) --num-cores $(JOBS)

# The whole suite from scratch: release + ASan/UBSan builds, ctest, short fuzz runs.
test:
	@bash scripts/test.sh

asan:
	@cmake -S . -B build-asan -DEFT_SANITIZE=ON >/dev/null && cmake --build build-asan -j $(JOBS) >/dev/null
	@cd build-asan && ctest -j $(JOBS) --output-on-failure

fuzz:
	@CC=clang cmake -S . -B build-fuzz -DEFT_FUZZ=ON >/dev/null && cmake --build build-fuzz -j $(JOBS) >/dev/null
	@echo "fuzz binaries: build-fuzz/fuzz_*  (run e.g. build-fuzz/fuzz_gguf tests/fuzz/corpus/gguf)"

# The Python package (python/eft) with its libeft.so, installed into .venv.
python: build
	@cp $(BUILD)/libeft.so python/eft/libeft.so
	@.venv/bin/pip install -q ./python && echo "installed: .venv/bin/python -c 'import eft; print(eft.version())'"

# Regenerate the reference fixtures (needs PyTorch; see tools/ref/README.md).
fixtures:
	@bash tools/ref/setup-venv.sh && bash tools/ref/make-all.sh

clean:
	rm -rf build build-asan build-fuzz build*.log
