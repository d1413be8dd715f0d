"""The warning loop simulated on recordings: a stall that leaves after the warning, a pile that stays."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from datasets.clips import Actor, render_clip
from pipelines.analyze import AnalyzeOptions, analyze
from pipelines.sinks.store import CaseStore

CONFIG = """\
cameras:
  - id: warn-cam
    detect_fps: 2
    zones:
      - id: pavement
        polygon: [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]]
        violations: [street_stall, garbage]
        warnings: {violations: [street_stall, garbage], recheck_s: 7, cooldown_s: 0, max_repeats: 1,
                   quiet_hours: ["23:59-00:00"]}
rules:
  gap_tolerance_s: 2
"""


def test_closed_loop_outcomes_in_batch(tmp_path: Path, default_model: Path) -> None:
    clip = tmp_path / "warn.mp4"
    render_clip(clip, duration=16.0, fps=5.0, width=640, height=360, seed=7, script=[
        Actor("street_stall", 1.0, 7.0, 5.5, 12.0),  # packs up soon after the warning
        Actor("garbage", 1.0, 16.0, 6.8, 22.0),  # stays
    ])
    (tmp_path / "cams.yaml").write_text(CONFIG)
    res = analyze(AnalyzeOptions(inputs=[str(clip)], out=tmp_path / "out", model=default_model,
                                 config=tmp_path / "cams.yaml", dwell=2.0, progress=False))
    assert res.exit_code == 0
    src = res.stats["sources"][str(clip)]
    log = src["warning_log"]
    plays = {w["violation"] for w in log if w["kind"] == "play"}
    outcomes = {w["violation"]: w["outcome"] for w in log if w["kind"] == "outcome"}
    assert plays == {"street_stall", "garbage"}
    assert outcomes == {"street_stall": "resolved_by_warning", "garbage": "warned_no_effect"}
    assert src["warnings"]["pavement/street_stall"]["share_resolved"] == 1.0
    store = CaseStore(tmp_path / "out" / "cases.db")
    states = {c.violation: c for c in store.cases()}
    assert states["street_stall"].state == "closed" and states["garbage"].state == "registered"
    notes = [h["note"] for h in store.history(states["garbage"].id)]
    assert "warned_no_effect" in notes
    assert "resolved_by_warning" in [h["note"] for h in store.history(states["street_stall"].id)]
    store.close()
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Voice warnings (simulated" in html and "resolved_by_warning" in html
    data = json.loads((tmp_path / "out" / "cases.json").read_text())
    assert {c["violation"]: c["state"] for c in data["cases"]} == {"street_stall": "closed", "garbage": "registered"}


def test_quiet_hours_silence_the_simulation(tmp_path: Path, default_model: Path,
                                            street_clip: tuple[Path, dict]) -> None:
    from detector.backends.base import config_for, create_backend
    from detector.rules import RuleSettings
    from detector.types import CANONICAL_LABELS
    from pipelines.config import parse_config
    from pipelines.runner import build_pipeline, run_source
    from pipelines.sources import read_frames

    cfg = parse_config(CONFIG.replace('"23:59-00:00"', '"00:00-23:59"'))
    pipe = build_pipeline(cfg.cameras[0], RuleSettings(dwell_s={"street_stall": 2, "garbage": 2}),
                          list(CANONICAL_LABELS), CaseStore(tmp_path / "c.db"), "clip",
                          time_of_day=lambda: dt.time(12, 0))
    run_source(read_frames(street_clip[0]), pipe, create_backend(config_for(default_model)))
    assert pipe.stats.events > 0 and pipe.warnings is not None and pipe.warnings.log_rows == []
