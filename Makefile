# streetwatch: `make demo` sets everything up and runs the demo; `make test` sets up and runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := out/demo

export YOLO_OFFLINE := 1

.PHONY: demo test lint setup setup-train test-slow bench-live bench-inference clean

TRAIN_STAMP := $(VENV)/.installed-train

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Training extra (PyTorch + Ultralytics): only for train/export, never for inference.
$(TRAIN_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[train,dev]'
	touch $(TRAIN_STAMP)

setup: $(STAMP)
setup-train: $(TRAIN_STAMP)

demo: $(STAMP)
	$(BIN)/streetwatch synth --out $(DEMO)/input --clips 1 --clip-seconds 30
	$(BIN)/streetwatch analyze $(DEMO)/input/clips/street_000.mp4 --out $(DEMO)/report \
		--config examples/demo_cameras.yaml --dwell 4 --annotate
	@echo "Open $(DEMO)/report/report.html"

test: $(TRAIN_STAMP)
	bash scripts/install-test-services.sh
	$(BIN)/ruff check .
	$(BIN)/mypy detector pipelines datasets models service
	$(BIN)/pytest -q

test-slow: $(TRAIN_STAMP)
	$(BIN)/pytest -q -m slow

# ONNX Runtime vs Ultralytics predict on the same weights; writes bench/results/inference.json.
bench-inference: $(TRAIN_STAMP)
	$(BIN)/python bench/inference.py

# Live streams held by one machine (RTSP on loopback into serve); writes bench/results/live.json.
bench-live: $(TRAIN_STAMP)
	bash scripts/install-test-services.sh
	$(BIN)/streetwatch synth --out out/bench --clips 1 --clip-seconds 60 --fps 25
	$(BIN)/python bench/live.py --clip out/bench/clips/street_000.mp4 --streams 4 8 12 16 --seconds 40

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
