# streetwatch: `make demo` sets everything up and runs the demo; `make test` sets up and runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := out/demo

export YOLO_OFFLINE := 1

.PHONY: demo test lint setup setup-train test-slow bench bench-live bench-inference bench-batch bench-render bench-techniques bench-roi soak clean

TRAIN_STAMP := $(VENV)/.installed-train

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Training extra (PyTorch + Ultralytics): only for train/export, never for inference. The tests also
# need the Ray extra (a local cluster runs the scale-out tests).
$(TRAIN_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[train,dev,ray]'
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
	$(BIN)/python bench/live.py --clip out/bench/clips/street_000.mp4 --streams 8 12 16 20 --seconds 40 --repeats 3

# Renderer speed and label errors: OpenGL vs the painter's algorithm; writes bench/results/render.json.
bench-render: $(TRAIN_STAMP)
	$(BIN)/python bench/render.py

# 10 minutes of 720p25 video: decode-and-infer-everything vs the product's strategy; bench/results/batch.json.
bench-batch: $(STAMP)
	$(BIN)/python bench/batch.py

# Every benchmark, then bench/results/summary.json and the table in bench/README.md.
bench: bench-inference bench-batch bench-live bench-render
	$(BIN)/python bench/summary.py

# The service on 8 generated RTSP streams for SOAK_MINUTES (default 10); writes soak/report.{json,svg,html}.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	bash scripts/install-test-services.sh
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python bench/soak.py --out soak

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
