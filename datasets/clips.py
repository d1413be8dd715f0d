"""Synthetic labelled clips: violations appear, stay and leave in front of a fixed camera.

Each clip comes with ActivityNet-style labels::

    {"database": {"clip.mp4": {"duration": 30.0, "annotations": [
        {"segment": [2.0, 30.0], "label": "garbage", "box": [x1, y1, x2, y2]}]}}}

Static objects are composited once per change of the scene, so only moving
objects (passing trucks, pedestrians) are drawn per frame. Frames are rendered by the OpenGL
renderer (:mod:`datasets.render_gl`: depth, one sun per clip with cast shadows, visible-pixel
label boxes) where an EGL driver exists, else by the painter's renderer (:mod:`datasets.render`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from datasets.render import Camera, Image, Obj, render_background
from datasets.render_gl import Light
from datasets.synth import (
    barbecue,
    bin_,
    draw,
    garbage_pile,
    person,
    resolve_renderer,
    sample_palette,
    street_stall,
    truck,
)
from detector.types import CANONICAL_LABELS, VIOLATION_LABELS

log = logging.getLogger(__name__)

#: Detector label of each object kind -> the violation it is evidence of.
VIOLATION_OF = {"street_stall": "street_stall", "garbage": "garbage", "barbecue": "barbecue",
                "uncovered_truck": "uncovered_truck", "overflowing_bin": "overflowing_bin"}


@dataclass(frozen=True)
class Actor:
    """An object present from ``start`` to ``end`` seconds; trucks move along the road."""

    kind: str  # street_stall | garbage | barbecue | uncovered_truck | covered_truck | overflowing_bin | garbage_bin
    start: float
    end: float
    x: float
    y: float
    speed: float = 0.0  # metres per second along -Y (towards the camera) for trucks


def _build(actor: Actor, rng: np.random.Generator, y: float, seed: int) -> list[Obj]:
    objs = _build_objects(actor, rng, y)
    for i, o in enumerate(objs):
        o.seed = seed + i
    return objs


def _build_objects(actor: Actor, rng: np.random.Generator, y: float) -> list[Obj]:
    if actor.kind == "street_stall":
        return street_stall(rng, actor.x, y)
    if actor.kind == "garbage":
        return garbage_pile(rng, actor.x, y)
    if actor.kind == "barbecue":
        return barbecue(rng, actor.x, y, smoke=True)
    if actor.kind in ("overflowing_bin", "garbage_bin"):
        return bin_(rng, actor.x, y, overflowing=actor.kind == "overflowing_bin")
    load = "uncovered" if actor.kind == "uncovered_truck" else "covered"
    return truck(rng, actor.x, y, load=load)


def _write_frame_labels(path: Path, boxes: list[tuple[str, tuple[float, float, float, float]]], width: int,
                        height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    boxes = [(n, b) for n, b in boxes if n in VIOLATION_LABELS]  # context labels (people) are not scored here
    lines = [f"{CANONICAL_LABELS.index(n)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
             f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}" for n, (x1, y1, x2, y2) in boxes]
    path.write_text("\n".join(lines) + ("\n" if lines else ""))


def default_script(duration: float) -> list[Actor]:
    """The demo scene: garbage dumped, a stall set up and packed away, a muck truck, a barbecue."""
    d = duration
    return [
        Actor("garbage", 0.07 * d, d, 6.2, 14.0),
        Actor("street_stall", 0.13 * d, 0.8 * d, 6.0, 20.0),
        Actor("uncovered_truck", 0.27 * d, 0.47 * d, -1.5, 38.0, speed=3.5),
        Actor("barbecue", 0.4 * d, d, 5.8, 10.0),
        Actor("garbage_bin", 0.0, d, 7.5, 24.0),
    ]


def render_clip(path: Path, duration: float = 30.0, fps: float = 10.0, width: int = 1280, height: int = 720,
                seed: int = 0, script: list[Actor] | None = None, frame_labels: Path | None = None,
                label_every: int = 5, noise_pool: int = 0, renderer: str = "auto") -> dict[str, object]:
    """Render a labelled clip to ``path`` (H.264 MP4); returns its ActivityNet entry.

    With ``frame_labels``, every ``label_every``-th frame's exact boxes of all labelled objects
    (violations and context such as trucks, bins, smoke) are written as YOLO files
    ``frame_labels/<frame index>.txt`` with canonical class ids. ``noise_pool`` > 0 draws each frame's
    sensor noise from that many precomputed noise frames instead of fresh noise (for long benchmark clips;
    25 ms less per 720p frame). ``renderer``: ``auto`` (OpenGL where available), ``gl`` or ``cpu``.
    """
    renderer = resolve_renderer(renderer)
    rng = np.random.default_rng(seed)
    pool: list[npt.NDArray[np.float32]] = []
    cam = Camera(width=width, height=height, cam_height=6.0, pitch_deg=24.0, hfov_deg=68.0, yaw_deg=8.0)
    palette = sample_palette(rng)
    bg = render_background(cam, rng, road_x=-1.0, road_w=9.0, walk_w=5.5, palette=palette)
    script = script if script is not None else default_script(duration)
    # One sun for the whole clip (a fixed camera does not see the light jump between frames).
    light = Light.sample(np.random.default_rng(seed + 7919)) if renderer == "gl" else None
    # Each static actor keeps the same look for the whole clip (fixed seed per actor).
    seeds = [int(rng.integers(1 << 30)) for _ in script]
    walkers = [(float(rng.uniform(4.5, 8.0)), float(rng.uniform(8, 30)), float(rng.uniform(-1.2, 1.2)))
               for _ in range(3)]
    boxes: dict[int, list[float]] = {}
    static_boxes: list[tuple[str, tuple[float, float, float, float]]] = []
    static_cache: tuple[frozenset[int], Image] | None = None
    n_frames = round(duration * fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, int(fps))
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(int(fps * 2))}
        for i in range(n_frames):
            t = i / fps
            present = frozenset(k for k, a in enumerate(script) if a.start <= t < a.end and a.speed == 0)
            if static_cache is None or static_cache[0] != present:
                layer = bg.copy()
                objs: list[Obj] = []
                for k in sorted(present):
                    objs += _build(script[k], np.random.default_rng(seeds[k]), script[k].y, seeds[k])
                static_boxes = draw(layer, cam, objs, np.random.default_rng(seed), renderer, light)
                for name, box in static_boxes:
                    for k in present:
                        if name == script[k].kind:
                            boxes.setdefault(k, list(box))
                static_cache = (present, layer)
            frame = static_cache[1].copy()
            drawn = draw(frame, cam, _moving(script, seeds, walkers, t), np.random.default_rng(seed), renderer, light)
            for k, a in enumerate(script):
                if a.speed and a.start <= t < a.end:
                    for name, box in drawn:
                        if name == a.kind:
                            boxes.setdefault(k, list(box))
            if frame_labels is not None and i % label_every == 0:
                _write_frame_labels(frame_labels / f"{i:06d}.txt", static_boxes + drawn, width, height)
            vf = av.VideoFrame.from_ndarray(_noisy(frame, rng, pool, noise_pool), format="bgr24")
            vf.pts = i
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return {"duration": round(duration, 3), "annotations": _annotations(script, boxes, duration),
            "tags": ["synthetic", "day", f"renderer:{renderer}"]}


def _moving(script: list[Actor], seeds: list[int], walkers: list[tuple[float, float, float]], t: float
            ) -> list[Obj]:
    """The moving actors and the passers-by at time ``t`` (each actor keeps its look: a fixed seed)."""
    moving: list[Obj] = []
    for k, a in enumerate(script):
        if a.speed and a.start <= t < a.end:
            y = a.y - a.speed * (t - a.start)
            moving += _build(a, np.random.default_rng(seeds[k]), y, seeds[k])
    for wx, wy, v in walkers:
        walker = person(np.random.default_rng(int(wx * 1000)), wx, wy + v * t * 0.8)
        walker.seed = int(wx * 1000)
        moving.append(walker)
    return moving


def _noisy(frame: Image, rng: np.random.Generator, pool: list[npt.NDArray[np.float32]], noise_pool: int) -> Image:
    """The frame with sensor noise: fresh per frame, or drawn from ``noise_pool`` precomputed frames (long
    benchmark clips)."""
    if noise_pool:
        if not pool:
            pool.extend(rng.normal(0, 2.0, frame.shape).astype(np.float32) for _ in range(noise_pool))
        noise = pool[int(rng.integers(noise_pool))]
    else:
        noise = rng.normal(0, 2.0, frame.shape).astype(np.float32)
    return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _annotations(script: list[Actor], boxes: dict[int, list[float]], duration: float) -> list[dict[str, object]]:
    """ActivityNet annotations of the script's violations, with each one's first drawn box."""
    annotations = []
    for k, a in enumerate(script):
        if a.kind not in VIOLATION_OF:
            continue
        ann: dict[str, object] = {"segment": [round(a.start, 3), round(min(a.end, duration), 3)],
                                  "label": VIOLATION_OF[a.kind]}
        if k in boxes:
            ann["box"] = [round(v, 1) for v in boxes[k]]
        annotations.append(ann)
    return annotations


def write_clip_set(out: Path, n: int = 1, duration: float = 30.0, fps: float = 10.0, width: int = 1280,
                   height: int = 720, seed: int = 0) -> Path:
    """Render ``n`` clips and their ``labels.json`` into ``out``; returns the labels path."""
    out.mkdir(parents=True, exist_ok=True)
    db: dict[str, object] = {}
    for i in range(n):
        name = f"street_{seed + i:03d}.mp4"
        db[name] = render_clip(out / name, duration, fps, width, height, seed + i)
        log.info("clip %s rendered", name)
    labels = out / "labels.json"
    labels.write_text(json.dumps({"version": "streetwatch-synth-1", "database": db}, indent=1))
    return labels



#: The committed regression clips (tests/data/clips): two with violations, one with distractors only.
REGRESSION_SCRIPTS: dict[str, list[Actor]] = {
    "reg_violations_a.mp4": default_script(16.0),
    "reg_violations_b.mp4": [
        Actor("street_stall", 1.0, 16.0, 5.5, 12.0),
        Actor("garbage", 4.0, 16.0, 6.8, 22.0),
        Actor("uncovered_truck", 8.0, 13.0, -2.0, 32.0, speed=4.0),
    ],
    "reg_distractors.mp4": [
        Actor("covered_truck", 2.0, 8.0, -2.0, 34.0, speed=4.0),
        Actor("garbage_bin", 0.0, 16.0, 6.0, 14.0),
    ],
}


def write_regression_set(out: Path, duration: float = 16.0, fps: float = 5.0, width: int = 640,
                         height: int = 360) -> Path:
    """Render the small labelled regression set used by CI; returns the labels path."""
    out.mkdir(parents=True, exist_ok=True)
    db: dict[str, object] = {}
    for i, (name, script) in enumerate(REGRESSION_SCRIPTS.items()):
        db[name] = render_clip(out / name, duration, fps, width, height, seed=100 + i, script=script,
                               frame_labels=out / "frames" / Path(name).stem)
    labels = out / "labels.json"
    labels.write_text(json.dumps({"version": "streetwatch-regression-1", "database": db}, indent=1))
    return labels
