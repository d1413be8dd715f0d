"""Batch analysis of recorded video: ``streetwatch analyze``.

Each input file is matched to a camera of the config (by its ``source``
pattern, or the only camera, or a whole-frame default), run through the shared
:class:`~pipelines.runner.CameraPipeline`, and its cases are committed to
``DIR/cases.db``. A bad input is reported in ``errors`` and never stops the
others. With ``workers > 1`` files are analysed in parallel processes, each
with its own detector session and a share of the CPU threads. With ``ray`` set
(``HOST:PORT`` of a Ray head) each file is one Ray task on the cluster; the task's
pipeline writes an :class:`~pipelines.distributed.OpLog` that is applied here to
the one ``cases.db`` and evidence folder (see :mod:`pipelines.distributed`).
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any, cast

from tqdm import tqdm

from detector.backends.base import (
    DetectorBackend,
    ModelLoadError,
    config_for,
    copy_weights,
    create_backend,
    model_file,
)
from detector.plate_reader import PlateReader, PlateReaderUnavailable
from detector.reminders import shop_stats
from detector.warnings import warning_stats
from pipelines.config import AppConfig, CameraConfig, ConfigError, load_config_lenient
from pipelines.distributed import Applier, OpLog, RayUnavailable, connect, node_id
from pipelines.model_pool import ModelPool
from pipelines.muck_register import MuckRegister, Vehicle, read_register
from pipelines.plate_sink import PlateSetup
from pipelines.privacy import EvidenceMasker, MaskerSettings
from pipelines.reminders import ReminderLogRow, ReminderSetup
from pipelines.report import RunStats, SourceSummary, write_cases_csv, write_cases_json, write_report
from pipelines.runner import build_pipeline, run_source
from pipelines.shops import RegistryError, Shop, read_shops
from pipelines.sinks.evidence import EvidenceRecorder
from pipelines.sinks.store import CaseStore, CaseWriter
from pipelines.sinks.video import AnnotatedVideoWriter
from pipelines.source_kinds import FileSourceConfig, open_source
from pipelines.sources import DecodeMode, InputError, SourceError, expand_inputs, probe
from pipelines.tables import TableError

log = logging.getLogger(__name__)


@dataclass
class AnalyzeOptions:
    """Options of a batch run (the CLI flags)."""

    inputs: list[str]
    out: Path
    model: Path
    config: Path | None = None
    annotate: bool = False
    workers: int = 1
    dwell: float | None = None
    decode: DecodeMode | None = None
    conf: float = 0.25
    imgsz: int | None = None  # detector input side; None: the model's own (its card gives AP per size)
    progress: bool = True
    ray: str | None = None  # HOST:PORT of a Ray head: one task per input file on the cluster
    ray_cpus: float = 1.0  # CPUs a Ray task asks for (its detector uses as many threads)
    started: datetime | None = None  # local time the recordings start at (texts, quiet hours); None: now
    mask: bool = True  # the report shows evidence with faces and other vehicles' plates masked


@dataclass
class AnalyzeResult:
    """What a batch run produced."""

    cases: list[dict[str, Any]]
    errors: list[InputError]
    stats: RunStats
    settings: dict[str, Any]
    exit_code: int
    report: Path | None = None
    sources_ok: list[str] = field(default_factory=list)


def _matches(path: Path, pattern: str) -> bool:
    return (Path(pattern).resolve() == path.resolve() or fnmatch.fnmatch(path.name, pattern)
            or fnmatch.fnmatch(str(path), pattern))


def camera_for(path: Path, cfg: AppConfig) -> CameraConfig:
    """Pick the camera of a file: matching ``source``, the only camera, or a whole-frame default."""
    for cam in cfg.cameras:
        if cam.source and _matches(path, cam.source):
            return cam
    if len(cfg.cameras) == 1 and not cfg.cameras[0].source:
        return cfg.cameras[0]
    stem = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in path.stem)[:64] or "camera"
    return CameraConfig(id=stem)


@dataclass(frozen=True)
class Registries:
    """The registers a camera file names: shops (texted first) and licensed muck trucks (None: no register)."""

    shops: tuple[Shop, ...] = ()
    vehicles: tuple[Vehicle, ...] | None = None


@cache
def _plate_reader() -> PlateReader | None:
    """One plate reader per process (it holds the OCR models); None when the OCR package is missing."""
    try:
        return PlateReader()
    except PlateReaderUnavailable as exc:
        log.error("plates are not read: %s", exc)
        return None


def _plate_setup(cam: CameraConfig, registries: Registries, clock: Callable[[float], datetime]
                 ) -> PlateSetup | None:
    reader = _plate_reader() if cam.plates else None
    if reader is None:
        return None
    register = MuckRegister(registries.vehicles) if registries.vehicles is not None else None
    return PlateSetup(reader, register, clock)


#: Samples per detector call in batch analysis, and frames decoded ahead (bench/README.md: the batch profile).
READ_BATCH = 4
READ_AHEAD = 8


def _analyze_one(path: Path, opts: AnalyzeOptions, cfg: AppConfig, backend: DetectorBackend,
                 store: CaseWriter, bar_position: int | None, registries: Registries = Registries()
                 ) -> SourceSummary:
    cam = camera_for(path, cfg)
    rules = cfg.rules_for(cam)
    settings = rules.settings(opts.dwell)
    info = probe(path)
    # Read-ahead keeps up to ~24 s of packets beyond the rules' time in the ring: a larger bound than live.
    evidence = EvidenceRecorder(opts.out / "evidence", long_s=max(settings.dwell_s.values()) + 30, max_ring_mb=192)
    started = opts.started or datetime.now()

    def clock(ts: float) -> datetime:
        return started + timedelta(seconds=ts)

    shops = registries.shops
    reminders = ReminderSetup(shops, cfg.reminders, clock=clock) if any(s.camera == cam.id for s in shops) else None
    pipeline = build_pipeline(cam, settings, backend.names, store, str(path), evidence, opts.out,
                              dwell_override=opts.dwell, reminders=reminders,
                              plates=_plate_setup(cam, registries, clock), model=backend.identity)
    writer = None
    if opts.annotate:
        writer = AnnotatedVideoWriter(opts.out / "annotated" / f"{path.stem}.mp4", backend.names,
                                      piles=pipeline.scene_settings)
    bar = None
    if bar_position is not None and info.duration_s > 0:
        bar = tqdm(total=round(info.duration_s, 1), desc=path.name[:30], unit="s", position=bar_position,
                   leave=False, mininterval=0.5)
    last = [0.0]

    def progress(ts: float) -> None:
        if bar is not None and ts - last[0] >= 0.5:
            bar.update(round(ts - last[0], 1))
            last[0] = ts

    mode, interval, reason = (cam.model_copy(update={"decode": opts.decode}) if opts.decode else cam).decode_plan()
    decided = {"decode": "keyframes" if mode == "keyframes" else "all", "decode_detail": reason}

    def on_decode(decoding: str, why: str) -> None:
        decided.update(decode=decoding, decode_detail=why)

    try:
        tap = functools.partial(pipeline.packet, "detect") if pipeline.keeps_packets else None
        frames = open_source(FileSourceConfig(path=path)).frames(mode, threading.Event(), interval, on_decode, tap)
        # Decoding runs in a thread of its own while the detector works; samples go to the detector four at a
        # time (one at a time with the motion gate, which compares each sample with the last one detected).
        stats = run_source(frames, pipeline, backend, on_frame=writer, progress=progress,
                           batch=1 if cam.motion_gate else READ_BATCH, read_ahead=READ_AHEAD)
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    out = cast(SourceSummary, asdict(stats))
    out["camera"] = cam.id
    out["decode"], out["decode_detail"] = decided["decode"], decided["decode_detail"]
    if pipeline.warnings is not None:
        out["warnings"] = warning_stats(pipeline.warning_actions)
        out["warning_log"] = pipeline.warnings.log_rows
    if pipeline.reminders is not None:
        out["reminder_log"] = pipeline.reminders.rows
        out["reminder_records"] = pipeline.reminders.records
    return out


def _worker(paths: list[str], opts: AnalyzeOptions, cfg_json: str, threads: int, registries: Registries
            ) -> tuple[dict[str, SourceSummary], list[InputError]]:
    """Analyse files in a worker process (own detector session, own store connection)."""
    cfg = AppConfig.model_validate_json(cfg_json)
    pool = model_pool(opts, threads)
    store = CaseStore(opts.out / "cases.db")
    results: dict[str, SourceSummary] = {}
    errors: list[InputError] = []
    try:
        for p in paths:
            try:
                results[p] = _analyze_one(Path(p), opts, cfg, camera_backend(pool, Path(p), cfg), store, None,
                                          registries)
            except (SourceError, ModelLoadError) as exc:
                errors.append({"source": p, "error": str(exc)})
    finally:
        store.close()
    return results, errors


def model_pool(opts: AnalyzeOptions, threads: int) -> ModelPool:
    """The run's detectors: ``--model`` and, loaded when a camera first needs it, each camera's own ``model``.
    No spinning between detector calls: their CPU goes to decoding, evidence and rules (bench/README).

    Raises:
        ModelLoadError: ``--model`` cannot be loaded.
    """
    def load(model: Path) -> DetectorBackend:
        return create_backend(config_for(model, conf=opts.conf, imgsz=opts.imgsz, threads=threads, spinning=False))

    return ModelPool(load(opts.model), opts.model, load)


def camera_backend(pool: ModelPool, path: Path, cfg: AppConfig) -> DetectorBackend:
    """The detector of the camera an input belongs to.

    Raises:
        ModelLoadError: The camera's own model cannot be loaded (its inputs fail; the others go on).
    """
    cam = camera_for(path, cfg)
    try:
        return pool.backend(cam.model)
    except ModelLoadError as exc:
        raise ModelLoadError(f"camera {cam.id}: its model: {exc}") from exc


def _ray_file(path: str, opts: AnalyzeOptions, cfg_json: str, threads: int, model: bytes, origin: str,
              registries: Registries = Registries()) -> dict[str, Any]:
    """One input file as a Ray task: the pipeline runs here, into a scratch folder and an op log.

    The model of the file's camera comes as bytes (a node needs no copy of it; ``origin``: its file on the
    driver, which names it in cases). Returns the file's stats, the op log (cases and evidence bytes) and any
    extra output files (annotated video), or ``error`` for a file that could not be read.
    """
    with tempfile.TemporaryDirectory(prefix="streetwatch-ray-") as tmp:
        local = replace(opts, out=Path(tmp), progress=False)
        cfg = AppConfig.model_validate_json(cfg_json)
        oplog = OpLog(Path(tmp))
        weights = copy_weights(model, Path(origin), Path(tmp) / "models")
        try:
            backend = create_backend(config_for(weights, conf=opts.conf, imgsz=opts.imgsz, threads=threads,
                                                spinning=False))  # see model_pool
        except ModelLoadError as exc:  # named by the file the driver read, not the node's copy
            return {"error": f"model {origin}: {str(exc).replace(str(weights), 'its copy')}", "node": node_id()}
        try:
            stats = _analyze_one(Path(path), local, cfg, backend, oplog, None, registries)
        except SourceError as exc:
            return {"error": str(exc), "node": node_id()}
        files = {f.relative_to(tmp).as_posix(): f.read_bytes()
                 for f in (Path(tmp) / "annotated").glob("*.mp4")} if opts.annotate else {}
        return {"stats": stats, "ops": oplog.take(0), "files": files, "node": node_id()}


def _analyze_on_ray(files: list[Path], opts: AnalyzeOptions, cfg: AppConfig, store: CaseStore,
                    registries: Registries = Registries()) -> tuple[dict[str, SourceSummary], list[InputError]]:
    """Run one Ray task per file and apply each task's op log to ``store`` as it finishes."""
    try:
        ray = connect(opts.ray or "")
    except RayUnavailable as exc:
        return {}, [{"source": str(f), "error": str(exc)} for f in files]
    task = ray.remote(num_cpus=opts.ray_cpus, max_retries=1)(_ray_file)
    threads = max(1, round(opts.ray_cpus))
    cfg_json = cfg.model_dump_json()
    refs: dict[Path, Any] = {}  # one copy of each model in the object store, fetched once per node
    pending = {}
    per_source: dict[str, SourceSummary] = {}
    errors: list[InputError] = []
    for f in files:
        cam = camera_for(f, cfg)
        weights = model_file(cam.model or opts.model)
        try:
            if weights not in refs:
                refs[weights] = ray.put(weights.read_bytes())
        except OSError as exc:
            errors.append({"source": str(f), "error": f"camera {cam.id}: its model: cannot read {weights}: {exc}"})
            continue
        pending[task.remote(str(f), opts, cfg_json, threads, refs[weights], str(weights), registries)] = f
    applier = Applier(store, opts.out)
    bar = tqdm(total=len(pending), desc="ray tasks", unit="file", disable=not opts.progress)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        path = pending.pop(done[0])
        try:
            res = ray.get(done[0])
        except Exception as exc:  # a task or its node died: this file failed, the others go on
            errors.append({"source": str(path), "error": f"Ray task failed: {exc}"})
            continue
        finally:
            bar.update(1)
        if "error" in res:
            errors.append({"source": str(path), "error": res["error"]})
            continue
        last = applier.apply(res["ops"], 0)
        if res["ops"] and last < res["ops"][-1].seq:
            errors.append({"source": str(path), "error": "the case store failed; some cases of this file are "
                           "not stored (see the log)"})
        for rel, data in res["files"].items():
            target = opts.out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        summary: SourceSummary = res["stats"]
        per_source[str(path)] = {**summary, "ray_node": res["node"]}
    bar.close()
    return per_source, errors


def _inputs(opts: AnalyzeOptions) -> tuple[list[Path], list[InputError], AppConfig]:
    """The input files, the errors found so far, and the camera config they are analysed with.

    A bad camera entry of the config stops only the inputs it would have applied to.
    """
    files, errors = expand_inputs(opts.inputs)
    cfg = AppConfig()
    if opts.config is None:
        return files, errors, cfg
    try:
        cfg, bad = load_config_lenient(opts.config)
    except ConfigError as exc:  # the file itself is unusable: nothing can be analysed as configured
        errors.append({"source": str(opts.config), "error": str(exc)})
        return [], errors, cfg
    for b in bad:
        errors.append({"source": str(opts.config), "error": b.error})
        hit = [f for f in files if _matches(f, b.source)] if b.source else (
            files if not cfg.cameras and len(bad) == 1 else [])
        for f in hit:
            errors.append({"source": str(f), "error": f"not analysed: its camera '{b.id}' has an invalid config"})
        files = [f for f in files if f not in hit]
    return files, errors, cfg


def _shops(cfg: AppConfig, errors: list[InputError]) -> tuple[Shop, ...]:
    """The shop registry the camera file names; its bad rows (or an unreadable file) become input errors."""
    if cfg.shops is None:
        return ()
    try:
        shops, bad = read_shops(cfg.shops)
    except RegistryError as exc:
        errors.append({"source": str(cfg.shops), "error": str(exc)})
        return ()
    errors.extend({"source": str(cfg.shops), "error": b} for b in bad)
    cameras = {c.id for c in cfg.cameras}
    for s in shops:
        if cameras and s.camera not in cameras:
            log.warning("%s: shop %s names camera %s, which the camera file does not have", cfg.shops, s.id,
                        s.camera)
    return tuple(shops)


def _vehicles(cfg: AppConfig, errors: list[InputError]) -> tuple[Vehicle, ...] | None:
    """The muck-transport register the camera file names; its bad rows (or an unreadable file) become errors."""
    if cfg.muck_register is None:
        return None
    try:
        vehicles, bad = read_register(cfg.muck_register)
    except TableError as exc:
        errors.append({"source": str(cfg.muck_register), "error": str(exc)})
        return None
    errors.extend({"source": str(cfg.muck_register), "error": b} for b in bad)
    return tuple(vehicles)


def share_evidence(cases: list[dict[str, Any]], out: Path, model: Path) -> None:
    """Masked copies of every case's snapshot and clip (:mod:`pipelines.privacy`), as ``case["shared"]``: paths
    under ``out``, or None where masking failed (the report then shows no evidence rather than the original)."""
    try:
        masker = EvidenceMasker(model, MaskerSettings(threads=os.cpu_count() or 1))  # the analysis is done
    except Exception as exc:  # masking is for the shared report: it never costs the run its cases
        log.error("evidence not masked: %s", exc)
        for c in cases:
            c["shared"] = {"snapshot": None, "clip": None}
        return
    for c in cases:
        c["shared"] = {}
        for kind in ("snapshot", "clip"):
            c["shared"][kind] = None
            if not c[kind]:
                continue
            try:
                c["shared"][kind] = masker.shared(out / c[kind], c["violation"]).relative_to(out).as_posix()
            except Exception as exc:  # MaskingError, a vanished file...: that case's report entry shows none
                log.error("case %s: %s not masked: %s", c["id"], kind, exc)


def _fresh_store(out: Path) -> CaseStore:
    """A new ``out/cases.db``; a previous run's database is kept beside it under a time stamp, never mixed."""
    db = out / "cases.db"
    if db.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            if Path(str(db) + suffix).exists():
                shutil.move(str(db) + suffix, str(out / f"cases.{stamp}.db{suffix}"))
    return CaseStore(db)


def analyze(opts: AnalyzeOptions) -> AnalyzeResult:
    """Run a batch analysis and write cases.json, cases.csv, report.html and evidence under ``opts.out``."""
    started = time.perf_counter()
    opts.out.mkdir(parents=True, exist_ok=True)
    files, errors, cfg = _inputs(opts)
    for message in cfg.unreachable_thresholds(opts.conf):
        log.warning("%s", message)
    registries = Registries(_shops(cfg, errors), _vehicles(cfg, errors))
    shops = registries.shops
    store = _fresh_store(opts.out)
    per_source: dict[str, SourceSummary] = {}
    model_info: dict[str, Any] = {"path": str(opts.model)}
    own = {c.id: str(c.model) for c in cfg.cameras if c.model is not None}
    if own:
        model_info["cameras"] = own  # the cameras with a model of their own
    if files:
        try:
            detectors = model_pool(opts, max(1, (os.cpu_count() or 2) // max(1, opts.workers)))
            backend = detectors.default
            model_info.update(names=backend.names, imgsz=backend.imgsz)
            if backend.identity is not None:
                model_info.update(name=backend.identity.name, sha256=backend.identity.sha256)
        except (ModelLoadError, ValueError) as exc:
            errors.append({"source": str(opts.model), "error": str(exc)})
            files = []
    if files and opts.ray:
        per_source, ray_errors = _analyze_on_ray(files, opts, cfg, store, registries)
        errors.extend(ray_errors)
    elif files and opts.workers <= 1:
        bar = tqdm(files, desc="inputs", unit="file", position=0, disable=not opts.progress)
        for path in bar:
            try:
                per_source[str(path)] = _analyze_one(path, opts, cfg, camera_backend(detectors, path, cfg), store,
                                                     1 if opts.progress else None, registries)
            except (SourceError, ModelLoadError) as exc:
                errors.append({"source": str(path), "error": str(exc)})
        bar.close()
    elif files:
        threads = max(1, (os.cpu_count() or 2) // opts.workers)
        chunks = [[str(f) for f in files[i :: opts.workers]] for i in range(opts.workers)]
        with ProcessPoolExecutor(max_workers=opts.workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_worker, c, opts, cfg.model_dump_json(), threads, registries) for c in chunks if c]
            for fut in tqdm(as_completed(futures), total=len(futures), desc="workers", disable=not opts.progress):
                res, errs = fut.result()
                per_source.update(res)
                errors.extend(errs)
    cases = [c.as_dict() for c in store.cases()]
    store.close()
    if opts.mask and cases:
        share_evidence(cases, opts.out, opts.model)
    stats: RunStats = {
        "inputs": len(files) + sum(1 for e in errors if e["source"] not in per_source),
        "analysed": len(per_source),
        "failed": len(errors),
        "frames_decoded": sum(s.get("frames_decoded", 0) for s in per_source.values()),
        "frames_inferred": sum(s.get("frames_inferred", 0) for s in per_source.values()),
        "frames_gated": sum(s.get("frames_gated", 0) for s in per_source.values()),
        "video_s": round(sum(s.get("video_s", 0.0) for s in per_source.values()), 3),
        "wall_s": round(time.perf_counter() - started, 3),
        "sources": per_source,
    }
    settings: dict[str, Any] = {
        "model": model_info, "config": str(opts.config) if opts.config else None,
        "dwell_override_s": opts.dwell, "decode": opts.decode or "per camera", "conf": opts.conf,
        "workers": opts.workers, "ray": opts.ray, "cameras": [c.model_dump(mode="json") for c in cfg.cameras],
        "rules": cfg.rules.model_dump(),
    }
    reminders: list[ReminderLogRow] | None = None
    shop_records = None
    if cfg.shops is not None:
        reminders = [r for s in per_source.values() for r in s.get("reminder_log", [])]
        shop_records = shop_stats(r for s in per_source.values() for r in s.get("reminder_records", []))
        settings["shops"] = {"registry": str(cfg.shops), "registered": len(shops)}
    write_cases_json(opts.out / "cases.json", cases, errors, stats, settings, reminders, shop_records)
    write_cases_csv(opts.out / "cases.csv", cases)
    report = write_report(opts.out, cases, errors, stats, settings, reminders, shop_records)
    code = 0 if per_source else 2
    return AnalyzeResult(cases, errors, stats, settings, code, report, list(per_source))
