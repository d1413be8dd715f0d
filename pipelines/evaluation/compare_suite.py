"""A decision rule for a candidate model, written down before the candidate is measured (``evaluate compare --suite``).

A suite file lists measures. Each measure is one class on one labelled split, scored the way ``evaluate compare``
scores it, with the limits the candidate must keep against the baseline:

    rounds: 200
    measures:
      - name: smoke_videos                 # how the verdict names it
        data: ../shared/data/smoke/data.yaml
        class: smoke
        max_loss: 0.05                     # the difference may not fall below -0.05
        fail_if_worse: true                # nor may the whole 95 % interval of the difference lie below zero
      - name: roadside_heaps
        data: ../shared/data/garbage_roadside_in/data.yaml
        class: garbage
        label_piles: true
        fail_if_worse: true

Data paths are taken as given (relative ones from where the command runs, the repository root in the README).
A measure whose data is missing fails the suite: no decision is made on part of the rule. Splits shared by several
measures are scored once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.evaluation.compare import ClassDelta, compare_split
from pipelines.evaluation.score import scoring_backend


class Measure(BaseModel):
    """One class on one split, and what the candidate may not do there."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    data: Path
    cls: str = Field(alias="class")
    split: str = "val"
    view: Literal["product", "detector"] = "product"
    label_piles: bool = False
    max_loss: float | None = Field(default=None, ge=0, description="the largest drop of AP50 allowed")
    fail_if_worse: bool = Field(default=False, description="fail when the 95 % interval lies below zero")


class Suite(BaseModel):
    """The whole suite file."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(default=200, ge=1)
    seed: int = 0
    imgsz: int | None = None
    measures: list[Measure] = Field(min_length=1)


class SuiteError(ValueError):
    """The suite file cannot be read or does not say what a suite must."""


def load_suite(path: Path) -> Suite:
    """Read and check a suite file."""
    try:
        return Suite.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise SuiteError(f"{path}: {exc}") from exc


def verdict(m: Measure, d: ClassDelta | None) -> list[str]:
    """Why ``m`` fails for the comparison ``d`` (empty: it passes); None: the class was not scored."""
    if d is None:
        return [f"no {m.cls} in both models or in the data"]
    if d["instances"] == 0:
        return [f"no labelled {m.cls} box in {m.data}"]
    reasons = []
    if m.max_loss is not None and d["delta"] < -m.max_loss:
        reasons.append(f"AP50 fell by {-d['delta']:.3f}, more than {m.max_loss}")
    if m.fail_if_worse and d["delta_ci95"][1] < 0:
        reasons.append(f"worse beyond chance: 95 % interval {d['delta_ci95'][0]:+.3f} … {d['delta_ci95'][1]:+.3f}")
    return reasons


def run_suite(suite: Suite, model: Path, against: Path, out: Path) -> dict[str, Any]:
    """Measure ``model`` (the candidate) beside ``against`` on every measure of ``suite``; writes ``suite.json`` and
    ``suite.md`` to ``out`` and returns what they hold (``passed``: every measure kept its limits)."""
    backends = {w: {v: scoring_backend(w, suite.imgsz, v) for v in {m.view for m in suite.measures}}
                for w in (against, model)}
    scored: dict[tuple[str, str, str, bool], dict[str, ClassDelta]] = {}
    rows: list[dict[str, Any]] = []
    for m in suite.measures:
        key = (str(m.data), m.split, m.view, m.label_piles)
        if not m.data.is_file():
            rows.append({"name": m.name, "data": str(m.data), "class": m.cls, "verdict": "missing",
                         "reasons": [f"{m.data} not found (materialize the source first)"]})
            continue
        if key not in scored:
            pair = (backends[against][m.view], backends[model][m.view])
            _, scored[key] = compare_split(pair, m.data, m.split, {}, m.label_piles, suite.rounds, suite.seed)
        d = scored[key].get(m.cls)
        reasons = verdict(m, d)
        row: dict[str, Any] = {"name": m.name, "data": str(m.data), "class": m.cls, "label_piles": m.label_piles}
        row.update(d or {})
        rows.append({**row, "verdict": "fail" if reasons else "pass", "reasons": reasons})
    result = {"candidate": str(model), "baseline": str(against), "rounds": suite.rounds, "seed": suite.seed,
              "measures": rows, "passed": all(r["verdict"] == "pass" for r in rows)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    (out / "suite.md").write_text(suite_table(result) + "\n", encoding="utf-8")
    return result


def suite_table(result: dict[str, Any]) -> str:
    """The suite's verdict as a Markdown table, one row per measure."""
    lines = ["| measure | boxes | baseline | candidate | difference | 95 % interval | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in result["measures"]:
        if "delta" not in r:
            lines.append(f"| {r['name']} | – | – | – | – | – | {r['verdict']}: {'; '.join(r['reasons'])} |")
            continue
        lo, hi = r["delta_ci95"]
        why = f": {'; '.join(r['reasons'])}" if r["reasons"] else ""
        lines.append(f"| {r['name']} | {r['instances']} | {r['baseline']:.3f} | {r['candidate']:.3f} | "
                     f"{r['delta']:+.3f} | {lo:+.3f} … {hi:+.3f} | {r['verdict']}{why} |")
    lines.append(f"\n**{'passed' if result['passed'] else 'not passed'}**")
    return "\n".join(lines)
