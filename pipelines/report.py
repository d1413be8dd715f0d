"""Batch outputs: cases.json, cases.csv and a self-contained HTML report.

The report has, per source, a timeline picture (one row per violation type,
one bar per case from first sighting to end, a tick at confirmation), a table
of cases with snapshot thumbnails and clip links, and the settings used.
Everything is local files: no CDN, no scripts.
"""

from __future__ import annotations

import csv
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import cv2
import numpy as np

from detector.events import OPTIONAL_VIOLATIONS, VIOLATIONS
from detector.reminders import ReminderRecord, ShopStats
from detector.warnings import WarningStats
from pipelines.muck_register import company_stats
from pipelines.reminders import ReminderLogRow
from pipelines.sources import InputError

COLORS: dict[str, tuple[int, int, int]] = {
    "street_stall": (60, 120, 230),
    "uncovered_truck": (40, 160, 240),
    "garbage": (60, 170, 60),
    "barbecue": (40, 40, 210),
    "overflowing_bin": (170, 110, 40),
    "unlicensed_muck_truck": (120, 40, 160),
}


class SourceSummary(TypedDict, total=False):
    """One analysed input: the pipeline's counters (:class:`~pipelines.runner.SourceStats`), its camera, the
    simulated voice warnings, and the Ray node that ran it (``analyze --ray``)."""

    frames_decoded: int
    frames_inferred: int
    frames_gated: int
    video_s: float
    wall_s: float
    decode_s: float
    infer_s: float
    width: int
    height: int
    events: int
    detections_per_class: dict[str, int]
    camera: str
    decode: str  # what was decoded: all or keyframes
    decode_detail: str  # why (decode: auto says what it measured)
    warnings: dict[str, WarningStats]
    warning_log: list[dict[str, object]]
    reminder_log: list[ReminderLogRow]
    reminder_records: list[ReminderRecord]
    ray_node: str


class RunStats(TypedDict):
    """A batch run's totals and each input's summary."""

    inputs: int
    analysed: int
    failed: int
    frames_decoded: int
    frames_inferred: int
    frames_gated: int
    video_s: float
    wall_s: float
    sources: dict[str, SourceSummary]


STYLE = ("body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}img.t{height:72px}"
         ".err{color:#b00}h2{margin-top:2em}code{background:#f4f4f4}")


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page in the product's one style (reports of analyze and evaluate)."""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>")


@dataclass(frozen=True)
class Bar:
    """One interval on a timeline: its row (a violation), span, colour, optional tick, and lane of the row."""

    row: str
    start: float
    end: float
    color: tuple[int, int, int]
    tick: float | None = None  # e.g. when the case was confirmed (the alert)
    lane: Literal["full", "top", "bottom"] = "full"  # evaluation: labelled on top, predicted below


def draw_timeline(bars: list[Bar], span_s: float, path: Path, caption: str = "", width: int = 900) -> None:
    """Draw bars on one row per violation with a time axis, and save the PNG."""
    rows = list(VIOLATIONS) + [v for v in OPTIONAL_VIOLATIONS if any(b.row == v for b in bars)]
    left, top, row_h = 150, 20, 28
    img = np.full((top + row_h * len(rows) + (60 if caption else 40), width, 3), 255, np.uint8)
    span = max(span_s, max((b.end for b in bars), default=0.0), 1.0)
    plot_w = width - left - 20

    def x_of(t: float) -> int:
        return left + int(plot_w * t / span)

    for i, name in enumerate(rows):
        y = top + i * row_h
        cv2.putText(img, name, (8, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (40, 40, 40), 1, cv2.LINE_AA)
        cv2.line(img, (left, y + row_h - 2), (left + plot_w, y + row_h - 2), (225, 225, 225), 1)
    lanes = {"full": (5, row_h - 7), "top": (3, 12), "bottom": (14, row_h - 4)}
    for b in bars:
        y = top + (rows.index(b.row) if b.row in rows else 0) * row_h
        y1, y2 = lanes[b.lane]
        x1 = x_of(b.start)
        cv2.rectangle(img, (x1, y + y1), (max(x_of(b.end), x1 + 3), y + y2), b.color, -1)
        if b.tick is not None:
            cv2.line(img, (x_of(b.tick), y + y1 - 3), (x_of(b.tick), y + y2 + 3), (0, 0, 0), 2)
    axis_y = top + row_h * len(rows) + 5
    for k in range(6):
        t = span * k / 5
        x = x_of(t)
        cv2.line(img, (x, axis_y), (x, axis_y + 5), (0, 0, 0), 1)
        cv2.putText(img, f"{t:.0f}s", (x - 10, axis_y + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if caption:
        cv2.putText(img, caption, (8, axis_y + 45), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def timeline_png(cases: list[dict[str, Any]], duration: float, path: Path, width: int = 900) -> None:
    """Draw a per-violation timeline of cases (tick: confirmed) and save it as PNG."""
    draw_timeline([Bar(c["violation"], c["start_s"], c["end_s"], COLORS.get(c["violation"], (100, 100, 100)),
                       c["confirmed_s"]) for c in cases], duration, path, width=width)


def write_cases_json(path: Path, cases: list[dict[str, Any]], errors: list[InputError], stats: RunStats,
                     settings: dict[str, Any], reminders: list[ReminderLogRow] | None = None,
                     shops: dict[str, ShopStats] | None = None) -> None:
    """Write ``cases.json`` (with the texts to shops and each shop's record when shops are registered, and each
    muck-transport company's trucks when plates were read)."""
    body: dict[str, Any] = {"cases": cases, "errors": errors, "stats": stats, "settings": settings}
    if reminders is not None:
        body["reminders"] = reminders
    if shops is not None:
        body["shops"] = shops
    companies = company_stats(cases)
    if companies:
        body["companies"] = companies
    path.write_text(json.dumps(body, indent=1, ensure_ascii=False))


def write_cases_csv(path: Path, cases: list[dict[str, Any]]) -> None:
    """Write ``cases.csv`` (one row per case)."""
    cols = ["id", "violation", "source", "camera", "zone", "start_s", "confirmed_s", "end_s", "confidence",
            "box", "snapshot", "clip", "snapshot_sha256", "clip_sha256", "found_by", "load_state", "alternatives",
            "plate", "licence", "model"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for c in cases:
            d = c.get("details", {})
            w.writerow([c["id"], c["violation"], c["source"], c["camera"], c["zone"], c["start_s"], c["confirmed_s"],
                        c["end_s"], c["confidence"], " ".join(str(v) for v in c["box"]), c["snapshot"] or "",
                        c["clip"] or "", c["sha256"]["snapshot"] or "", c["sha256"]["clip"] or "",
                        " ".join(d.get("paths", [])), d.get("load_state") or "",
                        " ".join(a["violation"] for a in d.get("alternatives", [])),
                        (c.get("vehicle") or {}).get("plate") or "", (c.get("vehicle") or {}).get("licence") or "",
                        c.get("model", "")])


def perception_summary(details: dict[str, Any]) -> str:
    """One line on how a case was seen: load state, second path, alternative classes (plain text)."""
    parts = []
    if details.get("load_state"):
        p = details.get("load_probability", {}).get(details["load_state"])
        parts.append(f"load {details['load_state']}" + (f" {p:.2f}" if p is not None else "")
                     + f" over {details.get('load_samples', 0)} frames")
    if "context" in details.get("paths", []):
        parts.append("people with " + ", ".join(details.get("context_objects", [])))
    alts = details.get("alternatives", [])
    if alts:
        parts.append("also taken for " + ", ".join(f"{a['violation']} {a['confidence']:.2f}" for a in alts))
    return "; ".join(parts)


def shops_section(reminders: list[ReminderLogRow], shops: dict[str, ShopStats]) -> list[str]:
    """The report's section on shop frontage responsibility: each shop's record, then every text sent."""
    e = html.escape
    parts = ["<h2>Shops (门前三包): reminders simulated on the recordings</h2><table><tr><th>shop</th>"
             "<th>violations</th><th>reminders</th><th>resolved by reminder</th><th>no effect</th><th>share resolved"
             "</th><th>median time to clear</th><th>repeat offences</th></tr>"]
    for shop, s in sorted(shops.items()):
        share = "–" if s["share_resolved"] is None else f"{s['share_resolved']:.0%}"
        clear = "–" if s["median_time_to_clear_s"] is None else f"{s['median_time_to_clear_s']:.0f} s"
        parts.append(f"<tr><td><code>{e(shop)}</code></td><td>{s['violations']}</td><td>{s['reminders']}</td>"
                     f"<td>{s['resolved']}</td><td>{s['no_effect']}</td><td>{share}</td><td>{clear}</td>"
                     f"<td>{s['repeat_offences']}</td></tr>")
    parts.append("</table>")
    if reminders:
        parts.append("<table><tr><th>sent</th><th>shop</th><th>to</th><th>channel</th><th>text</th><th>re-check</th>"
                     "<th>outcome</th><th>case</th></tr>")
        for r in reminders:
            outcome = e(r["outcome"] or "waiting")
            if r["time_to_clear_s"] is not None:
                outcome += f" (cleared {r['time_to_clear_s']:.0f} s after the text)"
            parts.append(f"<tr><td>{r['sent_s']:.1f}s</td><td>{e(r['shop_name'])}</td><td>{e(r['to'])}</td>"
                         f"<td>{e(r['channel'])}</td><td>{e(r['text'])}</td><td>{r['deadline_s']:.1f}s</td>"
                         f"<td>{outcome}</td><td><code>{e(r['case'])}</code></td></tr>")
        parts.append("</table>")
    return parts


def evidence_shown(case: dict[str, Any]) -> dict[str, str | None]:
    """The evidence a report shows: the masked copies where the run made them (``case["shared"]``, never the
    original in their place), else the originals (``analyze --no-mask``)."""
    if "shared" in case:
        return {"snapshot": case["shared"].get("snapshot"), "clip": case["shared"].get("clip")}
    return {"snapshot": case["snapshot"], "clip": case["clip"]}


def seen_as(case: dict[str, Any]) -> str:
    """How a case was seen, with its vehicle's plate and licence where it has one (plain text)."""
    parts = [perception_summary(case.get("details", {}))]
    vehicle = case.get("vehicle") or {}
    if vehicle.get("plate"):
        licence = vehicle.get("licence")
        company = vehicle.get("company")
        parts.append(f"plate {vehicle['plate']}" + (f" ({licence}{', ' + company if company else ''})"
                                                   if licence else ""))
    return "; ".join(p for p in parts if p)


def write_report(out: Path, cases: list[dict[str, Any]], errors: list[InputError], stats: RunStats,
                 settings: dict[str, Any], reminders: list[ReminderLogRow] | None = None,
                 shops: dict[str, ShopStats] | None = None) -> Path:
    """Write ``report.html`` with a timeline per source (and the shops' section); returns its path."""
    e = html.escape
    parts = ["<h1>streetwatch — violation report</h1>",
             f"<p>{len(cases)} cases from {len(stats.get('sources', {}))} sources; "
             f"{stats.get('frames_decoded', 0)} frames decoded, {stats.get('frames_inferred', 0)} inferred, "
             f"{stats.get('video_s', 0):.1f} s of video in {stats.get('wall_s', 0):.1f} s.</p>"]
    if errors:
        parts.append("<h2>Inputs that could not be analysed</h2><ul>")
        parts += [f"<li class='err'><code>{e(x['source'])}</code>: {e(x['error'])}</li>" for x in errors]
        parts.append("</ul>")
    for i, (source, st) in enumerate(sorted(stats.get("sources", {}).items())):
        sc = [c for c in cases if c["source"] == source]
        png = Path("report") / f"timeline_{i}.png"
        timeline_png(sc, float(st.get("video_s", 0.0)), out / png)
        parts.append(f"<h2>{e(source)}</h2><p>camera <code>{e(str(st.get('camera')))}</code>, "
                     f"{st.get('width')}×{st.get('height')}, {st.get('video_s', 0):.1f} s, "
                     f"{st.get('frames_decoded')} frames decoded, {st.get('frames_inferred')} inferred; "
                     f"{len(sc)} cases.</p><img src='{png.as_posix()}' alt='timeline of violations'>")
        if sc:
            parts.append("<table><tr><th>snapshot</th><th>violation</th><th>zone</th><th>start</th>"
                         "<th>confirmed</th><th>end</th><th>confidence</th><th>seen as</th><th>clip</th>"
                         "<th>case</th></tr>")
            for c in sc:
                shown = evidence_shown(c)
                s = e(shown["snapshot"] or "")
                snap = f"<a href='{s}'><img class='t' src='{s}'></a>" if s else ""
                clip = f"<a href='{e(shown['clip'])}'>clip</a>" if shown["clip"] else ""
                if "shared" in c and ((c["snapshot"] and not s) or (c["clip"] and not shown["clip"])):
                    clip += " (masking failed: see the operator's copy)"
                parts.append(f"<tr><td>{snap}</td><td>{e(c['violation'])}</td><td>{e(c['zone'])}</td>"
                             f"<td>{c['start_s']:.1f}s</td><td>{c['confirmed_s']:.1f}s</td><td>{c['end_s']:.1f}s</td>"
                             f"<td>{c['confidence']:.2f}</td><td>{e(seen_as(c))}</td>"
                             f"<td>{clip}</td><td><code>{e(c['id'])}</code></td></tr>")
            parts.append("</table>")
        log_rows = st.get("warning_log") or []
        if log_rows:
            parts.append("<h3>Voice warnings (simulated on the recording)</h3><table><tr><th>time</th><th>zone</th>"
                         "<th>violation</th><th>step</th><th>message / outcome</th><th>case</th></tr>")
            for w in log_rows:
                what = e(str(w["text"])) if w["kind"] == "play" else e(str(w["outcome"]))
                if w.get("time_to_clear_s") is not None:
                    what += f" (cleared {w['time_to_clear_s']:.0f} s after the warning)"
                step = f"warning #{w['repeat']}" if w["kind"] == "play" else "re-check"
                parts.append(f"<tr><td>{w['ts']:.1f}s</td><td>{e(str(w['zone']))}</td><td>{e(str(w['violation']))}"
                             f"</td><td>{step}</td><td>{what}</td><td><code>{e(str(w['case_id']))}</code></td></tr>")
            parts.append("</table><p>" + "; ".join(
                f"{e(k)}: {v['played']} played, resolved by warning {v['share_resolved']}, median time to clear "
                f"{v['median_time_to_clear_s']} s" for k, v in (st.get("warnings") or {}).items()) + "</p>")
    if shops is not None:
        parts += shops_section(reminders or [], shops)
    companies = company_stats(cases)
    if companies:
        parts.append("<h2>Muck-transport companies</h2><table><tr><th>company</th><th>truck cases with a plate</th>"
                     "<th>uncovered loads</th><th>unlicensed</th></tr>")
        parts += [f"<tr><td>{e(k)}</td><td>{v['truck_cases']}</td><td>{v['uncovered_loads']}</td>"
                  f"<td>{v['unlicensed']}</td></tr>" for k, v in sorted(companies.items())]
        parts.append("</table>")
    parts.append("<h2>Settings</h2><pre>" + e(json.dumps(settings, indent=1, ensure_ascii=False)) + "</pre>")
    path = out / "report.html"
    path.write_text(html_page("streetwatch report", "\n".join(parts)), encoding="utf-8")
    return path
