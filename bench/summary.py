"""Collect the benchmark results into ``bench/results/summary.json`` and the headline table of bench/README.md.

Every figure is a ratio or a count measured against a baseline in the same run of its own benchmark
(see each ``bench/*.py``); this script only gathers them, with the machine they were measured on.

    python bench/summary.py
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
START, END = "<!-- summary:start -->", "<!-- summary:end -->"
log = logging.getLogger("bench.summary")


def machine() -> str:
    """CPU model, cores and memory of this machine."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
        mem = f", {mem_kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        mem = ""
    return f"{model}, {os.cpu_count()} cores{mem}, no GPU"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _best_held(result: dict[str, Any]) -> dict[str, Any] | None:
    """The held run with the most streams of a live benchmark's results, or None."""
    held = [r for r in result["results"] if r["held"]]
    return max(held, key=lambda r: r["streams"]) if held else None


#: Each live result file's figures in the summary, taken from its best held run: ``{summary key: run field}``
#: (a count held is 0, the other figures None, when no run held).
LIVE_FIGURES: dict[str, dict[str, str]] = {
    "live": {"live_streams_held": "streams", "live_p95_alert_latency_s": "alert_latency_p95_s",
             "rss_mb_per_stream": "rss_mb_per_stream"},
    "live_keyframes": {"live_cameras_held_keyframes": "streams", "rss_mb_per_camera_keyframes": "rss_mb_per_stream",
                       "load_generator_cpu_cores_keyframes": "load_generator_cpu_cores"},
    "live_dual": {"live_cameras_held_dual": "streams", "rss_mb_per_camera_dual": "rss_mb_per_stream",
                  "live_p95_alert_latency_s_dual": "alert_latency_p95_s",
                  "load_generator_cpu_cores_dual": "load_generator_cpu_cores"},
}


def collect() -> dict[str, Any]:
    """The headline figures of whatever benchmark results exist."""
    out: dict[str, Any] = {"machine": machine()}
    inf = _load("inference")
    if inf:
        rows = inf["results"]
        out["inference_speedup_vs_ultralytics"] = min(r["speedup"] for r in rows)
        out["inference_speedup_vs_ultralytics_by_setting"] = {f"{r['imgsz']}px/{r['threads']}t": r["speedup"]
                                                              for r in rows}
    batch = _load("batch")
    if batch:
        out["batch_realtime_factor"] = batch["realtime_factor"]["product"]
        out["batch_realtime_factor_naive"] = batch["realtime_factor"]["naive"]
        out["batch_speedup_vs_naive"] = batch["batch_speedup_vs_naive"]
        out["batch_cases_missed_vs_naive"] = batch["batch_cases_missed_vs_naive"]
        if "product_masked" in batch["realtime_factor"]:
            out["batch_realtime_factor_masked"] = batch["realtime_factor"]["product_masked"]
            out["batch_mask_s_per_case"] = batch["mask_s_per_case"]
    for name, fields in LIVE_FIGURES.items():
        rows = _load(name)
        if rows:
            best = _best_held(rows)
            for key, field in fields.items():
                out[key] = best.get(field) if best else (0 if field == "streams" else None)
    render = _load("render")
    if render:
        out["render_speedup_gl_vs_painter"] = render["speedup_gl_vs_painter_objects"]
        out["render_painter_labels_on_hidden_objects_pct"] = render["painter_labels_on_hidden_objects_pct"]
    tech = _load("techniques")
    if tech:
        out["rect_input_speedup"] = tech["rect_input"]["1_threads"]["speedup"]
        out["batching_8_speedup"] = tech["batching"]["8"]["speedup"]
    roi = _load("roi")
    if roi:
        out["roi_crop_speedup"] = roi["crop_speedup_per_call"]
        out["per_zone_rates_speedup"] = roi["per_zone_rates_speedup"]
    tracker = _load("tracker")
    if tracker:
        out["tracker_speedup_vs_norfair"] = tracker["tracker_speedup_vs_norfair"]
    ingest = _load("ingest")
    if ingest:
        for kind in ("record", "detect_360p", "detect_720p"):
            out[f"ingest_cpu_ratio_{kind}"] = ingest[f"ingest_cpu_ratio_{kind}"]
    plates = _load("plates")
    if plates:
        out["plate_read_vs_detector"] = plates["plate_read_vs_detector"]
    return out


def table(s: dict[str, Any]) -> str:
    """The headline table in Markdown."""
    targets = {"inference_speedup_vs_ultralytics": ("≥ 1.5×", "×"), "batch_realtime_factor": ("≥ 100×", "×"),
               "batch_speedup_vs_naive": ("", "×"), "batch_cases_missed_vs_naive": ("0", ""),
               "batch_realtime_factor_masked": ("", "×"), "batch_mask_s_per_case": ("", " s"),
               "live_streams_held": ("≥ 16", ""), "live_p95_alert_latency_s": ("≤ 3 s", " s"),
               "rss_mb_per_stream": ("≤ 150 MB", " MB"), "live_cameras_held_keyframes": ("", ""),
               "rss_mb_per_camera_keyframes": ("", " MB"), "live_cameras_held_dual": ("≥ 32", ""),
               "rss_mb_per_camera_dual": ("≤ 80 MB", " MB"), "live_p95_alert_latency_s_dual": ("≤ 3 s", " s"),
               "render_speedup_gl_vs_painter": ("", "×"),
               "rect_input_speedup": ("", "×"), "batching_8_speedup": ("", "×"), "roi_crop_speedup": ("", "×"),
               "per_zone_rates_speedup": ("", "×"), "plate_read_vs_detector": ("", "×"),
               "tracker_speedup_vs_norfair": ("", "×"), "ingest_cpu_ratio_record": ("", "×"),
               "ingest_cpu_ratio_detect_360p": ("", "×"), "ingest_cpu_ratio_detect_720p": ("", "×")}
    lines = [f"Machine: {s['machine']}.", "", "| figure | measured | target |", "|---|---|---|"]
    for key, (target, unit) in targets.items():
        if key in s and s[key] is not None:
            lines.append(f"| `{key}` | {s[key]}{unit} | {target} |")
    return "\n".join(lines)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    s = collect()
    (RESULTS / "summary.json").write_text(json.dumps(s, indent=1, ensure_ascii=False) + "\n")
    block = f"{START}\n{table(s)}\n{END}"
    for readme in (ROOT / "bench" / "README.md", ROOT / "README.md"):  # the project README quotes the table
        text = readme.read_text()
        if START in text and END in text:
            text = text[:text.index(START)] + block + text[text.index(END) + len(END):]
        elif readme.parent.name == "bench":
            head, _, rest = text.partition("\n\n")
            text = f"{head}\n\n## Headline figures (`make bench`, `bench/summary.py`)\n\n{block}\n\n{rest}"
        readme.write_text(text)
    log.info("%s", json.dumps(s, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
