#!/usr/bin/env bash
# One unattended call on a lent GPU machine, two trainings side by side on the same GPU:
#   main: the default model fine-tuned from models/default/model.pt on the whole pack (real + synthetic), or,
#         with MODEL=coco, from the COCO-pretrained start (PRETRAINED: the yolov5n-coco.pt carried along,
#         default ../shared/pretrained/yolov5n-coco.pt);
#   s2r:  the sim-to-real study, yolo26n from scratch on the synthetic images only, garbage/bin/smoke
#         classes only, validated on the real splits (its metrics.json answers "how far does synthetic go").
#         S2R_MINUTES=0 skips it and gives the main run all the data-loader workers (the data loader, not
#         the GPU, bounds an epoch at these sizes). With SIDE=ft the second run is instead the default model
#         fine-tuned on the same pack at the main run's size (learning rate FT_LR0, default 0.003), its outputs
#         in OUT/s2r all the same; the two runs then share the workers evenly.
# Each run has its own time budget and a hard `timeout` two minutes after it, so the call ends in time
# and train_gpu.py still writes its outputs (it saves on SIGTERM).
#
# Usage, from the repo root on the GPU machine, with the pack (streetwatch datasets pack) in ./pack and the
# Ultralytics wheels in ./.whl:  bash models/gpu_run.sh "$OUT" [MAIN_MINUTES] [S2R_MINUTES] [IMGSZ]
# IMGSZ (default 640, the GPU recipe) is the training and export size of the main run; the CPU recipe and the
# shipped model 0.2.0 use 320 px (4x less compute per frame on a CPU). Training stops at its time budget
# (Ultralytics `time=`), so a larger size means fewer epochs, never a longer call.
set -uo pipefail
out=${1:?usage: gpu_run.sh OUT_DIR [MAIN_MINUTES] [S2R_MINUTES] [IMGSZ]}
main_min=${2:-7}
s2r_min=${3:-6}
imgsz=${4:-640}
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
mkdir -p "$out/main"
if awk -v m="$s2r_min" 'BEGIN { exit !(m > 0) }'; then s2r=1 main_workers=$([ "${SIDE:-s2r}" = ft ] && echo 7 || echo 10); else s2r=0 main_workers=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 )); fi
limit() { awk -v m="$1" 'BEGIN { printf "%d", (m + 2) * 60 }'; }  # budget + 2 minutes, in whole seconds
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout -s TERM "$(limit "$main_min")" python3 -m models.train_gpu --pack pack --out "$out/main" \
  --model "${MODEL:-models/default/model.pt}" ${PRETRAINED:+--pretrained "$PRETRAINED"} --minutes "$main_min" \
  --imgsz "$imgsz" --batch 64 --workers "$main_workers" \
  >"$out/main.log" 2>&1 &
a=$!
rb=0
if [ "$s2r" = 1 ] && [ "${SIDE:-s2r}" = ft ]; then
  # SIDE=ft: the default model (models/default/model.pt) fine-tuned on the same pack at a low learning rate, side
  # by side with the main run: a start that already knows the old sources, so they are forgotten less.
  mkdir -p "$out/s2r"
  timeout -s TERM "$(limit "$s2r_min")" python3 -m models.train_gpu --pack pack --out "$out/s2r" \
    --model models/default/model.pt --lr0 "${FT_LR0:-0.003}" --warmup-epochs 1 --hyp warmup_bias_lr=0.0 \
    --minutes "$s2r_min" --imgsz "$imgsz" --batch 64 --workers "$main_workers" >"$out/s2r.log" 2>&1 &
  b=$!
elif [ "$s2r" = 1 ]; then
  mkdir -p "$out/s2r"
  timeout -s TERM "$(limit "$s2r_min")" python3 -m models.train_gpu --pack pack --out "$out/s2r" \
    --model yolo26n.yaml --data only_synthetic.yaml --classes garbage,garbage_bin,overflowing_bin,smoke \
    --minutes "$s2r_min" --imgsz 320 --batch 64 --workers 5 >"$out/s2r.log" 2>&1 &
  b=$!
fi
if [ "$s2r" = 1 ]; then wait "$b"; rb=$?; fi
wait "$a"; ra=$?
# What comes back is limited to 8 files: keep the main weights and both runs' metrics and logs.
[ "${SIDE:-s2r}" = ft ] || rm -f "$out"/s2r/best.pt
rm -f "$out"/*/best.onnx "$out"/*/train.log "$out"/*/start.pt
echo "main rc=$ra s2r rc=$rb"
ls -la "$out" "$out"/*
[ -f "$out/main/best.pt" ]
