# streetwatch: `make demo` sets everything up and runs the demo; `make test` sets up and runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := out/demo

export YOLO_OFFLINE := 1

.PHONY: demo test lint setup setup-train test-slow bench bench-live bench-inference bench-batch bench-render bench-techniques bench-camera-models bench-roi bench-plates bench-tracker bench-ingest soak clean data train-cpu loso loso-wide adapt

TRAIN_STAMP := $(VENV)/.installed-train

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# Plate OCR (PP-OCRv4 on ONNX Runtime, Apache-2.0): its wheel asks for opencv-python, which would clash
	# with opencv-python-headless; its other requirements are in pyproject.toml.
	$(BIN)/pip install -q --no-deps 'rapidocr-onnxruntime==1.4.4' 2>&1 | grep -v "dependency resolver\|requires opencv-python" || true
	$(BIN)/python -c "import rapidocr_onnxruntime"
	touch $(STAMP)

# Training extra (PyTorch + Ultralytics): only for train/export, never for inference. The tests also
# need the Ray extra (a local cluster runs the scale-out tests).
$(TRAIN_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[train,dev,ray]'
	touch $(TRAIN_STAMP)

setup: $(STAMP)
setup-train: $(TRAIN_STAMP)

demo: $(STAMP)
	bash scripts/install-runtime.sh
	$(BIN)/streetwatch synth --out $(DEMO)/input --clips 1 --clip-seconds 30
	$(BIN)/streetwatch analyze $(DEMO)/input/clips/street_000.mp4 --out $(DEMO)/report \
		--config examples/shops/cameras.yaml --dwell 4 --annotate
	@echo "Open $(DEMO)/report/report.html"

# Style, types and the house's layers (import-linter contracts in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy detector pipelines datasets models service
	$(BIN)/lint-imports

test: $(TRAIN_STAMP)
	bash scripts/install-runtime.sh
	bash scripts/install-test-services.sh
	$(MAKE) lint
	$(BIN)/pytest -q

test-slow: $(TRAIN_STAMP)
	$(BIN)/pytest -q -m slow

# ONNX Runtime vs Ultralytics predict on the same weights; writes bench/results/inference.json.
bench-inference: $(TRAIN_STAMP)
	$(BIN)/python bench/inference.py

# Live streams held by one machine (RTSP on loopback into serve): full decode, key frames only, two streams per
# camera; writes bench/results/live.json, live_keyframes.json, live_dual.json.
bench-live: $(TRAIN_STAMP)
	bash scripts/install-test-services.sh
	$(BIN)/streetwatch synth --out out/bench --clips 1 --clip-seconds 60 --fps 25
	$(BIN)/python bench/live.py --clip out/bench/clips/street_000.mp4 --streams 12 16 20 --seconds 40 --repeats 2
	$(BIN)/python bench/live.py --clip out/bench/clips/street_000.mp4 --mode keyframes --streams 24 32 40 48 \
		--seconds 30 --out bench/results/live_keyframes.json
	$(BIN)/python bench/live.py --clip out/bench/clips/street_000.mp4 --mode dual --streams 16 24 32 40 --repeats 2 \
		--seconds 30 --out bench/results/live_dual.json

# Renderer speed and label errors: OpenGL vs the painter's algorithm; writes bench/results/render.json.
bench-render: $(TRAIN_STAMP)
	$(BIN)/python bench/render.py

# 10 minutes of 720p25 video: decode-and-infer-everything vs the product's strategy; bench/results/batch.json.
bench-batch: $(STAMP)
	$(BIN)/python bench/batch.py

# Half the cameras on a site model: a detector round split over two models vs one; bench/results/camera_models.json.
bench-camera-models: $(STAMP)
	$(BIN)/python bench/camera_models.py

# Each speed technique on its own against the product's setting; writes bench/results/techniques.json.
bench-techniques: $(TRAIN_STAMP)
	$(BIN)/python bench/techniques.py

# Regions of interest and per-zone detection rates on generated clips; writes bench/results/roi.json.
bench-roi: $(STAMP)
	$(BIN)/python bench/roi.py

# What reading 32 record, 32 substream and 16 720p25 live streams costs one process: the product's reader vs the
# one before stop 31 (bench/results/ingest.json).
bench-ingest: $(STAMP)
	bash scripts/install-test-services.sh
	$(BIN)/streetwatch synth --out out/bench --clips 1 --clip-seconds 60 --fps 25
	$(BIN)/python bench/ingest.py --clip out/bench/clips/street_000.mp4

# The product's NumPy tracker vs norfair's IoU tracker, same scenes and ids (bench/results/tracker.json).
bench-tracker: $(STAMP)
	$(BIN)/python bench/tracker.py

# What reading a truck's plate costs against one detector call (bench/results/plates.json).
bench-plates: $(STAMP)
	bash scripts/install-test-services.sh
	$(BIN)/python bench/plates.py

# Every benchmark, then bench/results/summary.json and the table in bench/README.md.
bench: bench-inference bench-batch bench-live bench-render bench-tracker bench-ingest
	$(BIN)/python bench/summary.py

# The service on 8 generated RTSP streams for SOAK_MINUTES (default 10); writes soak/report.{json,svg,html}.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	bash scripts/install-test-services.sh
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python bench/soak.py --out soak

# The CPU recipe of the default model (what made 0.4.0; about two hours on 2 cores): the external sources from
# their git snapshots (MIRROR: a folder of `owner+name/repo` snapshots or clones), a pack with teacher labels,
# 8 epochs from the COCO-pretrained start at 320 px. Then validate and export (see README "Training").
# Only the sources the recipe packs are materialized, so MIRROR needs only their snapshots.
MIRROR ?= ../.mirror
RECIPE_SOURCES ?= vehicles_highway_id vehicles_atl_cctv
data: $(TRAIN_STAMP)
	$(BIN)/streetwatch datasets materialize --mirror $(MIRROR) --out data/sources --only $(RECIPE_SOURCES)
	$(BIN)/streetwatch datasets pack --out data/pack --extra $(addprefix data/sources/,$(RECIPE_SOURCES)) \
		--synth 1200 --teacher --teacher-cache data/teacher_cache.json \
		--max-side 480 --max-mb 3000 --val-cap 100 --format jpg

# The default model's CPU recipe (about 1 h 30 min on 2 cores): 8 epochs from the COCO start at 320 px.
train-cpu: data
	$(BIN)/streetwatch train --data data/pack --out runs/cpu --model coco --epochs 8 --minutes 0 --imgsz 320 \
		--batch 16 --workers 2 --close-mosaic 2

# Site adaptation: the default model fine-tuned on k labelled images of a source it never saw (garbage_overflow_misc,
# standing in for a city's own cameras) with a replay sample of its pack, scored there and on what it knew
# (about 30 min on 2 cores after `make data`; needs the two sources' snapshots in MIRROR).
ADAPT_GAUGES ?= ../shared/data/smoke/data.yaml ../shared/data/garbage_bags/data.yaml \
	data/sources/garbage_trashbags_kr/data.yaml data/sources/vehicles_highway_id/data.yaml
adapt: data
	$(BIN)/streetwatch datasets materialize --mirror $(MIRROR) --out data/sources \
		--only garbage_overflow_misc garbage_trashbags_kr
	mkdir -p data/empty
	$(BIN)/streetwatch datasets pack --data data/empty --extra data/sources/garbage_overflow_misc --synth 0 --teacher \
		--teacher-cache data/teacher_cache.json --max-side 480 --max-mb 3000 --val-cap 0 --out data/site_misc
	$(BIN)/python -m pipelines.evaluation.adapt --site data/site_misc --replay data/pack --k 0 395 \
		--replay-images 1600 --site-repeat 2 --epochs 6 --lr0 0.002 --hyp warmup_bias_lr=0.0 --freeze 10 \
		--site-classes garbage \
		--gauge $(ADAPT_GAUGES) --out runs/adapt

# Leave one source out: the COCO start and YOLO26n from scratch, same data, size and epochs (about 4 h on 2 cores).
loso: $(TRAIN_STAMP)
	for start in coco scratch; do $(BIN)/python -m pipelines.evaluation.loso --sources garbage_bags garbage_roadside_in \
		garbage_street_cn --classes garbage garbage_bin overflowing_bin --start $$start --epochs 12 --imgsz 320 \
		--out runs/loso || exit 1; done

# Leave one source out over the five real garbage sources (the three of ../shared/data and two external ones), COCO
# start: four training sources a fold instead of two (about 25 min a fold on 2 cores, 2 h in all; needs MIRROR's
# snapshots of the two external repositories). Results: README "Leave one source out" and the model card.
LOSO_WIDE_EXTRA := data/sources/garbage_overflow_misc/data.yaml data/sources/garbage_trashbags_kr/data.yaml
loso-wide: $(TRAIN_STAMP)
	$(BIN)/streetwatch datasets materialize --mirror $(MIRROR) --out data/sources \
		--only garbage_overflow_misc garbage_trashbags_kr
	$(BIN)/python -m pipelines.evaluation.loso --sources garbage_bags garbage_roadside_in garbage_street_cn \
		$(LOSO_WIDE_EXTRA) --classes garbage garbage_bin overflowing_bin --start coco --epochs 12 --imgsz 320 \
		--out runs/loso-wide

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
