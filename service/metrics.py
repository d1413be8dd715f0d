"""Prometheus text exposition of the service's counters (no client library needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.case_spool import database_down

if TYPE_CHECKING:
    from service.runtime import Runtime

HEALTH_STATES = ("connecting", "live", "stalled", "failed", "stopped")


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(rt: Runtime) -> str:
    """Render all metrics in the Prometheus text format 0.0.4."""
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    views = rt.fleet.views()
    with rt.lock:
        not_started = list(rt.not_started)
    per = [({"camera": v.camera_id}, v) for v in views]
    metric("streetwatch_frames_decoded_total", "counter", "Frames decoded per camera.",
           [(lab, v.pipeline.frames_decoded) for lab, v in per])
    metric("streetwatch_frames_inferred_total", "counter", "Frames sent to the detector per camera.",
           [(lab, v.pipeline.frames_inferred) for lab, v in per])
    metric("streetwatch_frames_gated_total", "counter",
           "Sampled frames unchanged since the last detection (motion gating), detector skipped.",
           [(lab, v.pipeline.frames_gated) for lab, v in per])
    metric("streetwatch_frames_dropped_total", "counter", "Sampled frames dropped because the queue was full.",
           [(lab, v.frames_dropped) for lab, v in per])
    metric("streetwatch_reconnects_total", "counter", "Camera reconnects.",
           [(lab, v.reconnects) for lab, v in per])
    metric("streetwatch_queue_depth", "gauge", "Frames waiting for the detector.",
           [(lab, v.queue) for lab, v in per])
    metric("streetwatch_detect_fps", "gauge", "Configured detection rate per camera.",
           [(lab, v.detect_fps) for lab, v in per])
    metric("streetwatch_detect_fps_now", "gauge", "Detection rate now (lower while the detector is overloaded).",
           [(lab, round(v.detect_fps_now, 4)) for lab, v in per])
    metric("streetwatch_camera_keyframes_only", "gauge", "1 while the camera decodes key frames only.",
           [(lab, 1.0 if v.decode == "keyframes" else 0.0) for lab, v in per])
    metric("streetwatch_camera_record_live", "gauge", "1 while a camera's record (main) stream is read; 0 while it "
           "is down (clips are then cut from the detect stream). Cameras with one stream are not listed.",
           [(lab, 1.0 if v.record == "live" else 0.0) for lab, v in per if v.record])
    metric("streetwatch_decode_seconds_total", "counter", "Time spent decoding.",
           [(lab, round(v.pipeline.decode_s, 4)) for lab, v in per])
    metric("streetwatch_inference_seconds_total", "counter", "Detector time attributed to the camera.",
           [(lab, round(v.pipeline.infer_s, 4)) for lab, v in per])
    metric("streetwatch_camera_model_info", "gauge", "1 for the model detecting the camera (the service's, or the "
           "camera's own site model): its name and version.",
           [({"camera": v.camera_id, "model": v.model}, 1.0) for v in views if v.model])
    metric("streetwatch_camera_health", "gauge", "1 for the camera's current health state.",
           [({"camera": v.camera_id, "state": s}, 1.0 if v.health == s else 0.0) for v in views
            for s in HEALTH_STATES]
           + [({"camera": c, "state": s}, 1.0 if s == "failed" else 0.0) for c in not_started
              for s in HEALTH_STATES])
    try:
        counts: dict[str, Any] | None = rt.store.counts()
    except Exception as exc:  # the database is away: the rest is still worth scraping
        if not database_down(exc):
            raise
        counts = None
    metric("streetwatch_database_up", "gauge", "1 while the case store answers.", [({}, float(counts is not None))])
    metric("streetwatch_case_writes_waiting", "gauge", "Camera case writes waiting for the database (journalled).",
           [({}, float(rt.spool.waiting()))])
    metric("streetwatch_case_writes_replayed_total", "counter", "Case writes applied after waiting for the database.",
           [({}, float(rt.spool.replayed))])
    if counts is not None:
        metric("streetwatch_cases", "gauge", "Cases by violation and state.",
               [({"violation": v, "state": s}, n) for v, s, n in counts["cases"]])
        metric("streetwatch_outbox", "gauge", "Dispatch outbox rows by state.",
               [({"state": s}, counts["outbox"].get(s, 0)) for s in ("pending", "delivered", "dead")])
    stats = rt.warning_stats()

    def labels(key: str) -> dict[str, str]:
        camera, zone, violation = key.split("/", 2)
        return {"camera": camera, "zone": zone, "violation": violation}

    metric("streetwatch_warnings_played_total", "counter", "Voice warnings played.",
           [(labels(k), float(v["played"])) for k, v in stats.items()])
    metric("streetwatch_warnings_resolved_total", "counter", "Violations that cleared after a warning.",
           [(labels(k), float(v["resolved"])) for k, v in stats.items()])
    metric("streetwatch_warnings_no_effect_total", "counter", "Violations still there at the re-check.",
           [(labels(k), float(v["no_effect"])) for k, v in stats.items()])
    shops = rt.shops.stats() if counts is not None else {}
    for name, key, help_ in (("violations", "violations", "Violations attributed to the shop."),
                             ("reminders", "reminders", "Texts sent to the shop."),
                             ("resolved_by_reminder", "resolved", "Violations cleared by the deadline after a text."),
                             ("reminder_no_effect", "no_effect", "Violations still there at the deadline."),
                             ("repeat_offences", "repeat_offences", "Attributed violations after the first.")):
        metric(f"streetwatch_shop_{name}_total", "counter", help_,
               [({"shop": shop}, float(s[key])) for shop, s in shops.items()])  # type: ignore[literal-required]
    metric("streetwatch_sms_sent_total", "counter", "Texts accepted by each SMS gateway.",
           [({"notifier": str(g["name"])}, float(str(g["sent"])))
            for g in (rt.notifications.gateways() if counts is not None else [])])
    metric("streetwatch_sse_clients", "gauge", "Connected event-stream clients.", [({}, rt.bus.subscribers)])
    return "\n".join(out) + "\n"
