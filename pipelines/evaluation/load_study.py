"""Would a second stage on truck crops tell the load better than the detector's classes? The measurement.

The candidate second stage: the COCO-pretrained backbone (YOLOv5n layers 0-9, see :mod:`models.pretrained`)
on a 128x128 letterboxed truck crop, global-average pooled (256 values), and a multinomial logistic regression
over covered / uncovered / empty / unknown. It learns from rendered trucks (the renderer knows the load:
covered, uncovered, empty) and from the real trucks of ``datasets/truck_loads.csv``'s training split (covered,
empty, unknown: no real uncovered load exists in any source we may use). It is scored on what is held out:
rendered trucks of other seeds and the real trucks of the validation split.

The detector's answer on the same trucks comes from ``streetwatch evaluate loads`` (single-frame
``P(uncovered)`` of the scene stage). This script writes ``OUT/load_classifier.json`` with the classifier's
confusion on both test sets, for the model card to set side by side:

    python -m pipelines.evaluation.load_study --sources data/sources --out runs/loadcls

Needs the ``train`` extra.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from datasets.render import render_background
from datasets.render_gl import Light
from datasets.synth import Layout, draw, randomise, resolve_renderer, sample_camera, sample_palette, truck
from datasets.truck_loads import TRUCK_LOADS
from detector.loadstate import STATES
from detector.postprocess import letterbox, to_blob
from models.pretrained import _detection_model, copy_backbone_neck, load_coco_checkpoint
from pipelines.evaluation.loads import LabelledTruck, from_csv

log = logging.getLogger("load_classifier")
SIDE = 128
NAMES = [s.value for s in STATES]


def crop(image: npt.NDArray[np.uint8], box: tuple[float, float, float, float], margin: float = 0.08
         ) -> npt.NDArray[np.uint8]:
    """A truck's crop with a margin, letterboxed to ``SIDE`` pixels."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    top, bottom = max(0, int(y1 - my)), min(h, math.ceil(y2 + my))
    c = image[top:bottom, max(0, int(x1 - mx)):min(w, math.ceil(x2 + mx))]
    return letterbox(np.ascontiguousarray(c), SIDE)[0]


def rendered_trucks(n: int, seed: int) -> list[tuple[npt.NDArray[np.uint8], str]]:
    """``n`` rendered single-truck street scenes per load state, cropped: (crop, load)."""
    renderer = resolve_renderer("auto")
    rng = np.random.default_rng(seed)
    out = []
    for k in range(3 * n):
        load = ("covered", "uncovered", "empty")[k % 3]
        cam = sample_camera(rng, 640, 384)
        lay = Layout(road_x=float(rng.uniform(-3, 1)), road_w=float(rng.uniform(7, 12)), walk_w=4.0)
        near, far = cam.ground_visible_y()
        y = float(rng.uniform(near + 4, min(far, near + 25)))
        x = lay.road_x + float(rng.uniform(-1.5, 1.5))
        bg = render_background(cam, rng, lay.road_x, lay.road_w, lay.walk_w, sample_palette(rng))
        light = Light.sample(rng) if renderer == "gl" else None
        boxes = draw(bg, cam, truck(rng, x, y, load), rng, renderer, light)
        img, boxes, _ = randomise(bg, boxes, rng)
        for _, box in boxes:
            if min(box[2] - box[0], box[3] - box[1]) >= 24:
                out.append((crop(img, box), load))
    return out


def real_trucks(labels: Path, sources: Path, split: str) -> list[tuple[npt.NDArray[np.uint8], str]]:
    """The labelled real trucks of one split, cropped: (crop, load)."""
    out = []
    for image, trucks in from_csv(labels, sources, split):
        img = np.asarray(cv2.imread(str(image), cv2.IMREAD_COLOR), np.uint8)
        t: LabelledTruck
        for t in trucks:
            out.append((crop(img, t.pixels(img.shape[1], img.shape[0])), t.load))
    return out


def features(crops: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
    """Pooled COCO-backbone features (layers 0-9) of 128x128 crops."""
    import torch

    body = _detection_model(80)
    copy_backbone_neck(body, load_coco_checkpoint())
    layers = list(body.model)[:10]  # the backbone (through SPPF)
    feats = []
    with torch.inference_mode():
        for i in range(0, len(crops), 64):
            x = torch.from_numpy(to_blob(crops[i:i + 64]))
            for m in layers:
                x = m(x)
            feats.append(x.mean(dim=(2, 3)).numpy())
    return np.asarray(np.concatenate(feats), np.float32)


def fit(x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], classes: int, l2: float = 1e-2, steps: int = 800
        ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Multinomial logistic regression by gradient descent on standardised features, classes balanced."""
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mu) / sd
    w = np.zeros((z.shape[1], classes), np.float32)
    b = np.zeros(classes, np.float32)
    counts = np.bincount(y, minlength=classes).astype(np.float32)
    weight = (len(y) / np.maximum(counts, 1) / classes)[y]
    onehot = np.eye(classes, dtype=np.float32)[y]
    for _ in range(steps):
        logits = z @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) * weight[:, None] / len(y)
        w -= 0.5 * (z.T @ g + l2 * w)
        b -= 0.5 * g.sum(axis=0)
    return w, b, mu, sd


def predict(x: npt.NDArray[np.float32], model: tuple[Any, ...]) -> npt.NDArray[np.float32]:
    w, b, mu, sd = model
    logits = ((x - mu) / sd) @ w + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(p / p.sum(axis=1, keepdims=True), np.float32)


def confusion(truth: list[str], probs: npt.NDArray[np.float32]) -> dict[str, Any]:
    """Per true state: how many, the predicted states, and the share called uncovered (P >= 0.5)."""
    out: dict[str, Any] = {}
    pred = [NAMES[int(i)] for i in probs.argmax(axis=1)]
    for state in sorted(set(truth)):
        idx = [i for i, t in enumerate(truth) if t == state]
        out[state] = {"trucks": len(idx),
                      "predicted": {s: sum(pred[i] == s for i in idx) for s in NAMES},
                      "mean_p_uncovered": round(float(probs[idx, 1].mean()), 4),
                      "called_uncovered": round(float((probs[idx, 1] >= 0.5).mean()), 4)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=TRUCK_LOADS)
    ap.add_argument("--sources", type=Path, required=True, help="materialized external sources")
    ap.add_argument("--rendered", type=int, default=300, help="rendered trucks per load state for training")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train = rendered_trucks(args.rendered, seed=101) + real_trucks(args.labels, args.sources, "train")
    test_synth = rendered_trucks(max(30, args.rendered // 3), seed=202)
    test_real = real_trucks(args.labels, args.sources, "val")
    log.info("train %d crops, test %d rendered + %d real", len(train), len(test_synth), len(test_real))
    x = features([c for c, _ in train])
    y = np.asarray([NAMES.index(s) for _, s in train], np.int64)
    model = fit(x, y, len(NAMES))
    result = {"what": __doc__.split("\n\n")[1], "train": {s: sum(t == s for _, t in train) for s in NAMES},
              "rendered_test": confusion([s for _, s in test_synth], predict(features([c for c, _ in test_synth]),
                                                                             model)),
              "real_test": confusion([s for _, s in test_real], predict(features([c for c, _ in test_real]), model))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load_classifier.json").write_text(json.dumps(result, indent=1))
    log.info("%s", json.dumps({k: result[k] for k in ("rendered_test", "real_test")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
