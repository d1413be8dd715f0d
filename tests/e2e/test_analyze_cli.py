"""`streetwatch analyze` end to end on a generated clip with the bundled default model."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import main
from tests.helpers.data import RENDER_IMGSZ


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.fixture(scope="module")
def analysed(street_clip: tuple[Path, dict[str, object]], tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, dict[str, object], subprocess.CompletedProcess[str]]:
    clip, _ = street_clip
    out = tmp_path_factory.mktemp("analyze")
    junk = out.parent / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    config = out.parent / "cams.yaml"
    config.write_text("cameras:\n  - id: test-cam\n    detect_fps: 2\nrules:\n  gap_tolerance_s: 3\n")
    proc = run_cli("analyze", str(clip), str(junk), str(out.parent / "missing.avi"), "--out", str(out / "run"),
                   "--dwell", "2", "--config", str(config), "--annotate", "--imgsz", str(RENDER_IMGSZ), "-q")
    return out / "run", json.loads((out / "run" / "cases.json").read_text()), proc


def test_cases_json_has_cases_with_evidence(analysed: tuple[Path, dict, subprocess.CompletedProcess[str]]) -> None:
    out, data, proc = analysed
    assert proc.returncode == 0, proc.stderr
    violations = sorted(c["violation"] for c in data["cases"])
    assert "garbage" in violations and "street_stall" in violations and "uncovered_truck" in violations
    assert len(violations) == len(set(violations)), "one case per violation: no duplicates"
    for c in data["cases"]:
        assert set(c) >= {"id", "violation", "source", "camera", "zone", "start_s", "end_s", "confidence", "box",
                          "snapshot", "clip", "sha256"}
        assert c["camera"] == "test-cam" and c["start_s"] <= c["end_s"]
        assert c["model"] == "default 0.4.0" and len(c["model_sha256"]) == 64  # the weights that raised it
        for kind in ("snapshot", "clip"):
            f = out / c[kind]
            assert f.is_file(), f
            assert hashlib.sha256(f.read_bytes()).hexdigest() == c["sha256"][kind]
    truck = next(c for c in data["cases"] if c["violation"] == "uncovered_truck")
    assert 2.0 <= truck["start_s"] <= 5.0 and truck["end_s"] <= 8.0


def test_errors_and_stats(analysed: tuple[Path, dict, subprocess.CompletedProcess[str]]) -> None:
    _out, data, proc = analysed
    errs = {Path(e["source"]).name: e["error"] for e in data["errors"]}
    assert set(errs) == {"junk.mp4", "missing.avi"}
    assert "not a readable video" in errs["junk.mp4"]
    assert "junk.mp4" in proc.stderr and "missing.avi" in proc.stderr
    s = data["stats"]
    assert s["frames_decoded"] == 60 and 20 <= s["frames_inferred"] <= 26
    assert s["video_s"] == pytest.approx(11.8, abs=0.3) and s["wall_s"] > 0


def test_csv_report_and_annotated_video(analysed: tuple[Path, dict, subprocess.CompletedProcess[str]]) -> None:
    out, data, proc = analysed
    rows = list(csv.DictReader(open(out / "cases.csv", encoding="utf-8")))
    assert len(rows) == len(data["cases"])
    html = (out / "report.html").read_text()
    assert "street.mp4" in html and "timeline" in html and "junk.mp4" in html
    for c in data["cases"]:  # the report shows the masked copies (faces, other vehicles' plates), never originals
        for kind in ("snapshot", "clip"):
            assert (out / c["shared"][kind]).is_file() and c["shared"][kind] in html
            assert f"'{c[kind]}'" not in html
    assert (out / "report" / "timeline_0.png").stat().st_size > 1000
    assert (out / "annotated" / "street.mp4").stat().st_size > 10_000
    assert f"report: {out / 'report.html'}" in proc.stdout


def test_a_model_folder_names_its_onnx_file(tmp_path: Path, default_model: Path) -> None:
    bad = tmp_path / "zero.mp4"
    bad.write_bytes(b"")
    assert main(["analyze", str(bad), "--out", str(tmp_path / "o"), "--model", str(default_model.parent), "-q"]) == 2
    data = json.loads((tmp_path / "o" / "cases.json").read_text())
    assert data["settings"]["model"]["path"] == str(default_model)


def test_nothing_readable_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "zero.mp4"
    bad.write_bytes(b"")
    assert main(["analyze", str(bad), "--out", str(tmp_path / "o"), "-q"]) == 2
    data = json.loads((tmp_path / "o" / "cases.json").read_text())
    assert data["cases"] == [] and "empty file" in data["errors"][0]["error"]


def test_missing_model_and_bad_config_are_clear_errors(tmp_path: Path, street_clip: tuple[Path, dict]) -> None:
    clip, _ = street_clip
    proc = run_cli("analyze", str(clip), "--out", str(tmp_path / "m"), "--model", str(tmp_path / "nope.onnx"), "-q")
    assert proc.returncode == 2 and "model file not found" in proc.stderr
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("cameras:\n  - id: x\n    zonez: []\n")
    proc = run_cli("analyze", str(clip), "--out", str(tmp_path / "c"), "--config", str(cfg), "-q")
    assert proc.returncode == 2 and "bad.yaml:3: cameras.0.zonez" in proc.stderr


def test_usage_error_exits_1() -> None:
    assert run_cli("analyze", "--out").returncode == 1
    assert run_cli("frobnicate").returncode == 1


def test_keyframe_mode_and_workers_agree(street_clip: tuple[Path, dict], tmp_path: Path) -> None:
    clip, _ = street_clip
    assert main(["analyze", str(clip), str(clip.parent / "*.mp4"), "--out", str(tmp_path / "k"), "--decode",
                 "keyframes", "--dwell", "2", "--imgsz", str(RENDER_IMGSZ), "-q"]) == 0
    data = json.loads((tmp_path / "k" / "cases.json").read_text())
    assert data["stats"]["frames_decoded"] < 60 / 3  # GOP of 2 s at 5 fps: key frames only
    assert main(["analyze", str(clip), "--out", str(tmp_path / "w"), "--workers", "2", "--dwell", "2", "--imgsz",
                 str(RENDER_IMGSZ), "-q"]) == 0
    data = json.loads((tmp_path / "w" / "cases.json").read_text())
    assert {"garbage", "street_stall"} <= {c["violation"] for c in data["cases"]}


def test_a_bad_camera_entry_stops_only_its_own_inputs(tmp_path: Path, street_clip: tuple[Path, dict]) -> None:
    clip, _ = street_clip
    other = tmp_path / "other.mp4"
    other.write_bytes(clip.read_bytes())
    cfg = tmp_path / "cams.yaml"
    cfg.write_text("cameras:\n"
                   "  - id: good\n    source: street.mp4\n"
                   "  - id: broken\n    source: other.mp4\n    detect_fps: -1\n")
    assert main(["analyze", str(clip), str(other), "--out", str(tmp_path / "o"), "--config", str(cfg),
                 "--dwell", "2", "-q"]) == 0
    data = json.loads((tmp_path / "o" / "cases.json").read_text())
    errs = [e["error"] for e in data["errors"]]
    assert any("cams.yaml:6: cameras.1.detect_fps" in e for e in errs)
    assert any("its camera 'broken' has an invalid config" in e for e in errs)
    assert list(data["stats"]["sources"]) == [str(clip)]
    assert data["cases"] and all(c["camera"] == "good" for c in data["cases"])


def test_detector_input_size_is_chosen_per_run(street_clip: tuple[Path, dict], tmp_path: Path) -> None:
    clip, _ = street_clip
    assert main(["analyze", str(clip), "--out", str(tmp_path / "s"), "--imgsz", "480", "--workers", "2",
                 "--dwell", "2", "-q"]) == 0
    data = json.loads((tmp_path / "s" / "cases.json").read_text())
    assert data["settings"]["model"]["imgsz"] == 480
    assert {"garbage", "street_stall"} <= {c["violation"] for c in data["cases"]}
    assert main(["analyze", str(clip), "--out", str(tmp_path / "bad"), "--imgsz", "8", "-q"]) == 2
    errors = json.loads((tmp_path / "bad" / "cases.json").read_text())["errors"]
    assert any("imgsz" in e["error"] for e in errors)
    assert main(["analyze", str(clip), "--out", str(tmp_path / "odd"), "--imgsz", "500", "-q"]) == 2
    errors = json.loads((tmp_path / "odd" / "cases.json").read_text())["errors"]
    assert any("multiple of 32" in e["error"] for e in errors)


def test_a_camera_with_its_own_model(tmp_path: Path, street_clip: tuple[Path, dict], default_model: Path) -> None:
    """A site model for one camera (relative to the camera file); the others keep --model; a camera whose model
    does not load fails its own inputs only. In process and in worker processes alike."""
    clip, _ = street_clip
    north, broken = tmp_path / "north.mp4", tmp_path / "broken.mp4"
    north.write_bytes(clip.read_bytes())
    broken.write_bytes(clip.read_bytes())
    (tmp_path / "models" / "site_north").mkdir(parents=True)
    (tmp_path / "models" / "site_north" / "model.onnx").write_bytes(default_model.read_bytes())
    cfg = tmp_path / "cams.yaml"
    cfg.write_text("cameras:\n"
                   "  - id: south\n    source: street.mp4\n"
                   "  - id: north\n    source: north.mp4\n    model: models/site_north\n"
                   "  - id: broken\n    source: broken.mp4\n    model: models/nowhere.onnx\n")
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        assert main(["analyze", str(clip), str(north), str(broken), "--out", str(out), "--config", str(cfg),
                     "--dwell", "2", "--workers", workers, "--imgsz", str(RENDER_IMGSZ), "-q"]) == 0
        data = json.loads((out / "cases.json").read_text())
        models = {(c["camera"], c["model"].split()[0]) for c in data["cases"]}
        assert models == {("south", "default"), ("north", "site_north")}, workers
        assert [e["source"] for e in data["errors"]] == [str(broken)]
        assert "camera broken: its model: model file not found" in data["errors"][0]["error"]
        assert data["settings"]["model"]["cameras"]["north"] == str(tmp_path / "models" / "site_north")
