"""`streetwatch train` (1 epoch at a tiny size, from scratch and from the COCO start) and `streetwatch export`,
in subprocesses (torch stays out)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datasets.pack import Source, build_pack
from datasets.synth import write_yolo_dataset
from detector.backends.base import config_for, create_backend
from detector.types import CANONICAL_LABELS

needs_train = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None and os.environ.get("CI") != "true",
    reason="the train extra is not installed (make setup-train)")
CHECKPOINT = Path(__file__).resolve().parents[3] / "shared" / "pretrained" / "yolov5n-coco.pt"
needs_checkpoint = pytest.mark.skipif(not CHECKPOINT.is_file() and os.environ.get("CI") != "true",
                                      reason="../shared/pretrained is absent")

pytestmark = pytest.mark.slow  # trains in a subprocess: 30 s from scratch then export, 12 s from the COCO start

# Cosine similarity of the first convolution and of the neck's last C3 with the COCO checkpoint's.
SIMILARITY = """
import json, sys, torch
from models.pretrained import load_coco_checkpoint
coco = load_coco_checkpoint()
out = {}
for name in sys.argv[1:]:
    ck = torch.load(name, map_location="cpu", weights_only=False)
    sd = (ck.get("ema") or ck["model"]).float().state_dict()
    out[name] = {k: float(torch.nn.functional.cosine_similarity(sd[k].flatten(), coco.state[k].flatten(), dim=0))
                 for k in ("model.0.conv.weight", "model.23.cv3.conv.weight")}
print(json.dumps(out))
"""


def train_one_epoch(tmp_path: Path, model: str, n: int, seed: int, side: int, imgsz: int,
                    *extra: str) -> dict[str, str]:
    """Pack ``n`` rendered images and train one epoch of ``model`` into ``tmp_path/run`` (``extra``: more
    ``streetwatch train`` options); returns the env used."""
    data = write_yolo_dataset(tmp_path / "syn", n=n, seed=seed, width=320, height=192)
    build_pack([Source("synthetic", data, "project's own", {})], tmp_path / "pack", max_mb=2, max_side=side)
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "ycfg")}
    run = train(tmp_path, env, "--epochs", "1", "--minutes", "0", "--imgsz", str(imgsz), "--model", model, *extra)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return env


def train(tmp_path: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    """``streetwatch train`` on ``tmp_path/pack`` into ``tmp_path/run`` at batch 4, in a subprocess."""
    return subprocess.run([sys.executable, "-m", "service.cli", "train", "--data", str(tmp_path / "pack"), "--out",
                           str(tmp_path / "run"), "--batch", "4", *options],
                          capture_output=True, text=True, timeout=900, env=env, check=False)


@needs_train
def test_train_one_epoch_then_export(tmp_path: Path) -> None:
    env = train_one_epoch(tmp_path, "yolo26n.yaml", n=16, seed=3, side=160, imgsz=96)
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "results.csv").exists()
    # On a CPU every core trains (Ultralytics alone keeps one idle for data loaders it does not use there).
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["torch_threads"] == metrics["cpu_threads"] == os.cpu_count()
    exp = subprocess.run([sys.executable, "-m", "service.cli", "export", str(tmp_path / "run" / "best.pt"),
                          "--out", str(tmp_path / "model"), "--imgsz", "96", "--metrics",
                          str(tmp_path / "run" / "metrics.json")],
                         capture_output=True, text=True, timeout=900, env=env, check=False)
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    onnx = tmp_path / "model" / "model.onnx"
    backend = create_backend(config_for(onnx))
    assert backend.names == list(CANONICAL_LABELS) and backend.imgsz == 96
    card = (tmp_path / "model" / "card.md").read_text()
    assert "Speed on CPU" in card and "ms median" in card
    # The PyTorch weights run through the Ultralytics backend of the same pipeline.
    img = next((tmp_path / "syn" / "images" / "train").glob("*.jpg"))
    ana = subprocess.run([sys.executable, "-m", "service.cli", "analyze", str(img), "--out", str(tmp_path / "a"),
                          "--model", str(tmp_path / "run" / "best.pt"), "-q"],
                         capture_output=True, text=True, timeout=900, env=env, check=False)
    assert ana.returncode == 0, ana.stderr[-3000:]
    assert '"model": {\n   "path"' in (tmp_path / "a" / "cases.json").read_text()


@needs_train
@needs_checkpoint
def test_train_from_the_coco_start_keeps_the_pretrained_weights(tmp_path: Path) -> None:
    env = train_one_epoch(tmp_path, "coco", n=12, seed=5, side=128, imgsz=64)
    start, best = tmp_path / "run" / "start.pt", tmp_path / "run" / "best.pt"
    sim = subprocess.run([sys.executable, "-c", SIMILARITY, str(start), str(best)], capture_output=True, text=True,
                         timeout=300, env=env, check=False)
    assert sim.returncode == 0, sim.stderr[-3000:]
    scores = json.loads(sim.stdout.splitlines()[-1])
    assert all(v > 0.999 for v in scores[str(start)].values())  # the start is the COCO backbone and neck
    # Ultralytics rebuilds a model from its YAML unless it starts from a checkpoint file: a trained model still
    # close to the COCO weights proves the copied weights were trained, not dropped.
    assert all(v > 0.9 for v in scores[str(best)].values()), scores
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["start"].startswith("COCO-pretrained yolov5n")


@needs_train
@needs_checkpoint
def test_a_training_stopped_after_an_epoch_goes_on_where_it_stopped(tmp_path: Path) -> None:
    work = tmp_path / "work"
    env = train_one_epoch(tmp_path, "coco", 12, 7, 128, 64, "--epochs", "2", "--work", str(work),
                          "--session-epochs", "1")
    results = tmp_path / "run" / "results.csv"
    assert len(results.read_text().splitlines()) == 2  # header and one epoch of two
    assert (work / "runs" / "train" / "weights" / "last.pt").is_file()
    resumed = train(tmp_path, env, "--work", str(work), "--resume", "--minutes", "0", "--batch", "8")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    rows = results.read_text().splitlines()
    assert [r.split(",")[0].strip() for r in rows[1:]] == ["1", "2"]  # the second epoch, not a new first one
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["resumed_after_epoch"] == 1 and metrics["imgsz"] == 64 and metrics["epochs"] == 2
    assert metrics["batch"] == 4  # the checkpoint's, not the command line's: the same training goes on
    again = train(tmp_path, env, "--work", str(work), "--resume")
    assert again.returncode != 0 and "is finished" in again.stderr
    fresh = train(tmp_path, env, "--work", str(tmp_path / "nothing"), "--resume")
    assert fresh.returncode != 0 and "no resumable epoch" in fresh.stderr
