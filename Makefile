# The two set-up commands on a fresh machine (README.md): `make demo` and `make test`.
# Each creates or reuses .venv and installs the package with the pinned constraints.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN    := runs/demo

export PYTHONHASHSEED = 0
# Quiet installs: no pip version nag, no setuptools deprecation banners (-qq: errors only).
export PIP_DISABLE_PIP_VERSION_CHECK = 1
PIP_QUIET := -qq

# The demo's GPU steps, the exports' GPU checks (each artifact compiled on the GPU, run and
# compared with the CPU) and the GPU bench: the machine's own Vulkan GPU, else (VK_ICD_FILENAMES
# unset) the software GPU in Debian's chromium package where it is installed (docs/gpu.md);
# with neither, the export's GPU verdict is a static guess, labelled so, and the bench falls
# back to the CPU and says so.
SWIFTSHADER_ICD := /usr/lib/chromium/vk_swiftshader_icd.json
GPU_ENV := $(if $(VK_ICD_FILENAMES),,$(if $(wildcard $(SWIFTSHADER_ICD)),VK_ICD_FILENAMES=$(SWIFTSHADER_ICD)))

.PHONY: demo test install clean jvm-build jvm-test android-static-check deps test-deps smoke

# The Android demo's plain-Java core (android_demo/core), built and tested with Debian's JDK 17,
# JUnit 5 and Gson (.ci/run installs them), no Gradle or network needed.
JAVA_LIBS  := /usr/share/java
JVM_OUT    := android_demo/core/build/jvm
JVM_CP     := $(JAVA_LIBS)/gson.jar
JUNIT_CP   := $(JAVA_LIBS)/junit-jupiter-api.jar:$(JAVA_LIBS)/opentest4j.jar:$(JAVA_LIBS)/junit-platform-commons.jar:$(JAVA_LIBS)/apiguardian.jar

$(STAMP): pyproject.toml constraints.txt setup.py basisnet_deploy/artifacts/_fastsynth.c
	bash scripts/install-build-deps.sh $(PYTHON)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_QUIET) --upgrade pip
	$(BIN)/python -m pip install $(PIP_QUIET) -c constraints.txt -e '.[convert,test]'
	touch $(STAMP)

install: deps $(STAMP)

# System packages (scripts/install-test-deps.sh, the same script .ci/run calls; idempotent):
# deps = Python with venv support; test-deps = that plus the JVM test dependencies.
deps:
	bash scripts/install-test-deps.sh --python-only $(PYTHON)

test-deps:
	bash scripts/install-test-deps.sh $(PYTHON)

# The main job on the embedded default: train the demo BasisNet on digits, re-evaluate the
# checkpoint from disk, cost it, export it to TFLite int8 and ONNX float32 (each export prints
# its verification table against the float model; the ONNX export is float32: its int8
# recipes are measured on real photos in docs/export.md "Int8 recipes", where the fidelity recipe runs
# at 0.95-1.17x float speed in onnxruntime here, so int8 would buy file size, not speed),
# calibrate the early-exit threshold,
# bench the sequential and pipelined runners, bench the specialist on the GPU, and copy the TFLite export into the Android
# demo's assets (android_demo/app/src/main/assets/basisnet, git-ignored).
demo: deps $(STAMP)
	$(BIN)/basisnet-deploy train --dataset digits --preset demo --out $(RUN)/ckpt
	$(BIN)/basisnet-deploy evaluate $(RUN)/ckpt
	$(BIN)/basisnet-deploy cost $(RUN)/ckpt
	env $(GPU_ENV) $(BIN)/basisnet-deploy export $(RUN)/ckpt --target tflite --calibration digits --int8-recipe fidelity --verify-images 359 --out $(RUN)/export-tflite
	env $(GPU_ENV) $(BIN)/basisnet-deploy export $(RUN)/ckpt --target onnx --quantize float32 --verify-images 359 --out $(RUN)/export-onnx
	$(BIN)/basisnet-deploy calibrate-threshold $(RUN)/export-tflite --dataset digits --max-drop 0.5
	$(BIN)/basisnet-deploy bench $(RUN)/export-tflite --delegate xnnpack --runner both --frames 500 --json-out $(RUN)/bench.json
	env $(GPU_ENV) $(BIN)/basisnet-deploy bench $(RUN)/export-tflite --delegate gpu --allow-fallback --threshold 1 --runner sequential --frames 50 --json-out $(RUN)/bench-gpu.json
	$(BIN)/basisnet-deploy android-assets $(RUN)/export-tflite

test: test-deps $(STAMP) jvm-test android-static-check
	BASISNET_JVM_CLASSES=$(JVM_OUT) $(BIN)/python -m pytest -q tests

jvm-build:
	rm -rf $(JVM_OUT) && mkdir -p $(JVM_OUT)/main $(JVM_OUT)/test
	javac --release 17 -Xlint:all -Werror -d $(JVM_OUT)/main -cp $(JVM_CP) $$(find android_demo/core/src/main/java -name '*.java')
	javac --release 17 -d $(JVM_OUT)/test -cp $(JVM_OUT)/main:$(JVM_CP):$(JUNIT_CP) $$(find android_demo/core/src/test/java -name '*.java')

jvm-test: jvm-build
	java -jar $(JAVA_LIBS)/junit-platform-console-standalone.jar --disable-banner --details=summary \
	  --fail-if-no-tests -cp $(JVM_OUT)/main:$(JVM_OUT)/test:$(JVM_CP) --scan-classpath $(JVM_OUT)/test

clean:
	rm -rf $(VENV) .venv-smoke-* runs .pytest_cache

# A smoke test on another Python (CI runs the full suite on $(PYTHON) and this on the others):
# the base install (no TensorFlow), import, --help and the tests that need no TensorFlow.
#   make smoke SMOKE_PYTHON="$(bash scripts/find-python.sh 3.13)"
SMOKE_PYTHON ?= python3.13
SMOKE_VENV   := .venv-smoke-$(notdir $(SMOKE_PYTHON))
smoke:
	bash scripts/install-test-deps.sh --python-only $(SMOKE_PYTHON)
	test -x $(SMOKE_VENV)/bin/python || $(SMOKE_PYTHON) -m venv $(SMOKE_VENV)
	$(SMOKE_VENV)/bin/python -m pip install $(PIP_QUIET) -c constraints.txt -e '.[test]'
	$(SMOKE_VENV)/bin/python -c 'import sys, basisnet_deploy; print("basisnet-deploy", basisnet_deploy.__version__, "on Python", sys.version.split()[0])'
	$(SMOKE_VENV)/bin/basisnet-deploy --help > /dev/null
	$(SMOKE_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_arch.py tests/test_data.py tests/test_layout.py tests/test_outputs.py tests/test_packaging.py

# The Android app's static check (android_demo/README.md "Static check"): one runtime in the
# Gradle files, the wrapper, the ABIs, and the app's Kotlin compiled against the core and the
# compile-only API signatures in android_demo/tools/stubs. Installs kotlinc from npm if missing.
android-static-check:
	bash android_demo/tools/static_check.sh
