"""Renderer benchmark: the OpenGL renderer (Mesa llvmpipe via EGL) vs the painter's renderer.

Both draw the very same scenes (same camera, street, objects and random stream) at the
training-image size. Reported per renderer: median milliseconds to draw the objects of one
scene (the shared background ray-cast and domain randomisation excluded) and per whole image.
Label quality of the painter's renderer is measured against the OpenGL one, whose boxes come
from the object-id buffer (what is really visible): the share of painter labels given to
objects that are mostly hidden (< 35 % of their silhouette visible), the share of visible
objects it misses, and the median IoU of the boxes both give.

    python bench/render.py --n 60 --out bench/results/render.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench.render")


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def run(n: int, width: int, height: int, seed: int) -> dict[str, object]:
    """Render ``n`` scenes with both renderers; return timings and label agreement."""
    import numpy as np

    from datasets.render import draw_objects, render_background
    from datasets.render_gl import Light, get_renderer
    from datasets.synth import Layout, populate, randomise, sample_camera, sample_palette

    gl = get_renderer()
    focus = ["street_stall", "barbecue", "truck", "garbage", "bin", None]
    times: dict[str, list[float]] = {"gl": [], "cpu": [], "background": [], "randomise": []}
    painter_labels = hidden = missed = visible_total = 0
    ious: list[float] = []
    for i in range(n):
        rng = np.random.default_rng((seed, i))
        cam = sample_camera(rng, width, height)
        lay = Layout(float(rng.uniform(-6, 2)), float(rng.uniform(6, 14)), float(rng.uniform(3, 7)))
        t0 = time.perf_counter()
        bg = render_background(cam, rng, lay.road_x, lay.road_w, lay.walk_w, sample_palette(rng))
        times["background"].append((time.perf_counter() - t0) * 1000)
        objs = populate(rng, cam, lay, focus[i % len(focus)])
        light = Light.sample(rng)
        a, b = bg.copy(), bg.copy()
        t0 = time.perf_counter()
        gl_boxes = gl.draw(a, cam, objs, np.random.default_rng(i), light)
        times["gl"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        cpu_boxes = draw_objects(b, cam, objs, np.random.default_rng(i))
        times["cpu"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        randomise(a, gl_boxes, rng)
        times["randomise"].append((time.perf_counter() - t0) * 1000)
        # Match labels of the same class one-to-one by IoU.
        free = list(gl_boxes)
        visible_total += len(gl_boxes)
        for name, box in cpu_boxes:
            painter_labels += 1
            cands = [(j, _iou(box, g)) for j, (gn, g) in enumerate(free) if gn == name]
            best = max(cands, key=lambda t: t[1], default=None)
            if best is None or best[1] < 0.1:
                hidden += 1  # labelled by the painter, but not visible enough to be labelled
                continue
            ious.append(best[1])
            free.pop(best[0])
        missed += len(free)
    med = {k: round(statistics.median(v), 1) for k, v in times.items()}
    return {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "gl_renderer": gl.info,
        "images": n, "size": [width, height],
        "median_ms_objects": {"gl": med["gl"], "painter": med["cpu"]},
        "median_ms_image": {"gl": round(med["background"] + med["gl"] + med["randomise"], 1),
                            "painter": round(med["background"] + med["cpu"] + med["randomise"], 1)},
        "speedup_gl_vs_painter_objects": round(med["cpu"] / med["gl"], 2),
        "painter_labels": painter_labels,
        "painter_labels_on_hidden_objects_pct": round(100 * hidden / max(1, painter_labels), 1),
        "visible_objects": visible_total,
        "painter_missed_visible_pct": round(100 * missed / max(1, visible_total), 1),
        "median_box_iou_painter_vs_gl": round(statistics.median(ious), 3) if ious else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "render.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run(args.n, args.width, args.height, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log.info("%s", json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
