"""Shop reminders simulated on recordings: a stall that leaves after the text, a pile that stays and is then
warned by voice, a shop that opted out; and the shipped example on the demo clip."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from datasets.clips import Actor, render_clip
from pipelines.analyze import AnalyzeOptions, AnalyzeResult, analyze
from pipelines.sinks.store import CaseStore

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """\
shops: registry/shops.csv
reminders: {deadline_s: 5, quiet_hours: ["21:00-08:00"], channels: [sms-kannel]}
cameras:
  - id: shop-cam
    detect_fps: 2
    location: {address: "解放路12号"}
    zones:
      - id: pavement
        polygon: [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]]
        violations: [street_stall, garbage]
        warnings: {violations: [garbage], recheck_s: 3, cooldown_s: 0, max_repeats: 1, quiet_hours: []}
rules:
  gap_tolerance_s: 2
"""
SHOPS = """\
id,name,address,phone,camera,frontage,violations,opt_out
fruit,水果店,解放路12号,13812345678,shop-cam,0.44 0; 1 0; 1 1; 0.74 1,street_stall garbage,no
quiet,书店,,13800000000,shop-cam,0 0; 0.2 0; 0.2 0.2,garbage,yes
broken,面馆,,1380000,shop-cam,0 0; 0.2 0; 0.2 0.2,garbage,no
"""


def run_scene(tmp_path: Path, model: Path, started: dt.datetime) -> tuple[Path, AnalyzeResult]:
    """A stall that packs up at 7 s and a pile that stays, in front of one shop, analysed as if recorded at
    ``started``."""
    clip = tmp_path / "shop.mp4"
    render_clip(clip, duration=16.0, fps=5.0, width=640, height=360, seed=7, script=[
        Actor("street_stall", 1.0, 7.0, 5.5, 12.0),  # packs up after the text
        Actor("garbage", 1.0, 16.0, 6.8, 22.0),  # stays: no effect, then the voice warning
    ])
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "shops.csv").write_text(SHOPS, encoding="utf-8")
    (tmp_path / "cams.yaml").write_text(CONFIG, encoding="utf-8")
    return clip, analyze(AnalyzeOptions(inputs=[str(clip)], out=tmp_path / "out", model=model,
                                        config=tmp_path / "cams.yaml", dwell=2.0, progress=False, started=started))


def test_reminder_outcomes_then_the_usual_path(tmp_path: Path, default_model: Path) -> None:
    clip, res = run_scene(tmp_path, default_model, dt.datetime(2026, 12, 1, 10, 0))
    assert res.exit_code == 0
    assert [e["error"].split(": ")[:2] for e in res.errors] == [[f"{tmp_path}/registry/shops.csv:4", "phone"]]
    data = json.loads((tmp_path / "out" / "cases.json").read_text())
    by_violation = {r["violation"]: r for r in data["reminders"]}
    assert set(by_violation) == {"street_stall", "garbage"}
    stall, pile = by_violation["street_stall"], by_violation["garbage"]
    assert stall["outcome"] == "resolved_by_reminder" and stall["time_to_clear_s"] is not None
    assert pile["outcome"] == "reminder_no_effect"
    for r in (stall, pile):
        assert r["shop"] == "fruit" and r["to"] == "138****5678" and r["channel"] == "sms-kannel"
        assert r["deadline_s"] == r["sent_s"] + 5 and "水果店" in r["text"] and r["case"] in r["text"]
        assert r["text"].count("10:00") == 2  # the recording's local time (started 10:00), the deadline
    assert data["shops"]["fruit"]["reminders"] == 2 and data["shops"]["fruit"]["share_resolved"] == 0.5
    assert data["shops"]["fruit"]["repeat_offences"] == 1
    # The case the text cleared is closed; the other went on to the zone's voice warning.
    store = CaseStore(tmp_path / "out" / "cases.db")
    cases = {c.violation: c for c in store.cases()}
    assert cases["street_stall"].state == "closed"
    assert "resolved_by_reminder" in [h["note"] for h in store.history(cases["street_stall"].id)]
    assert "reminder_no_effect" in [h["note"] for h in store.history(cases["garbage"].id)]
    store.close()
    warnings = res.stats["sources"][str(clip)]["warning_log"]
    plays = [w for w in warnings if w["kind"] == "play"]
    assert [w["violation"] for w in plays] == ["garbage"] and plays[0]["ts"] >= pile["deadline_s"]
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Shops (门前三包)" in html and "138****5678" in html and "13812345678" not in html


def test_quiet_hours_leave_the_violation_to_the_usual_path(tmp_path: Path, default_model: Path) -> None:
    clip, res = run_scene(tmp_path, default_model, dt.datetime(2026, 12, 1, 23, 0))
    data = json.loads((tmp_path / "out" / "cases.json").read_text())
    assert data["reminders"] == [] and data["shops"]["fruit"]["violations"] == 2
    assert data["shops"]["fruit"]["reminders"] == 0
    plays = [w for w in res.stats["sources"][str(clip)]["warning_log"] if w["kind"] == "play"]
    case = next(c for c in data["cases"] if c["violation"] == "garbage")
    assert [p["case_id"] for p in plays] == [case["id"]]
    assert plays[0]["ts"] == case["confirmed_s"]  # warned at once: no text held it back


def test_the_shipped_example_reminds_a_shop_on_the_demo_scene(tmp_path: Path, default_model: Path) -> None:
    clip = ROOT / "tests" / "data" / "clips" / "reg_violations_a.mp4"  # the demo clip's script, 16 s, 640x360
    res = analyze(AnalyzeOptions(inputs=[str(clip)], out=tmp_path / "out", model=default_model,
                                 config=ROOT / "examples" / "shops" / "cameras.yaml", dwell=4.0, progress=False))
    assert res.exit_code == 0 and res.errors == []
    data = json.loads((tmp_path / "out" / "cases.json").read_text())
    assert len(data["reminders"]) >= 1
    assert {r["shop"] for r in data["reminders"]} <= {"jianshe-06", "jianshe-08"}  # jianshe-10 opted out
