"""Scale-out on Ray: camera pipelines on cluster nodes, cases in one central store.

A pipeline that runs on a Ray worker does not write to a database. It writes an
:class:`OpLog`: the same calls a :class:`~pipelines.sinks.store.CaseStore` takes
(record, add_evidence, transition, ...), numbered, with the bytes of each
evidence file attached, plus the notifications the service publishes (events,
camera health, voice warnings). The driver (``analyze --ray`` or ``serve --ray``)
applies the log to its store with :meth:`Applier.apply`, so the store, the API and the
evidence folder stay on one machine and a worker needs neither database
credentials nor a shared disk.

Nothing is lost between the two: ops stay in the worker's log until the driver
acknowledges their sequence number, and applying the same op twice is harmless
(:class:`Applier` skips sequence numbers it has seen). Case ids are chosen by the
worker (``uuid4``), so a case keeps one id from the first frame to the report.

Real cluster: install the same streetwatch version on every node (``pip install
'streetwatch[ray]'``), start ``ray start --head`` on one machine and ``ray start
--address HEAD:6379`` on the others, and pass ``--ray HEAD:6379`` to ``analyze``
or ``serve``. Batch inputs must be readable at the same path on every node (a
shared mount); live cameras only need to be reachable from the nodes.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from detector.events import ViolationEvent
from detector.warnings import WarningAction
from pipelines.sinks.store import CaseContext, CaseStore, TransitionError

if TYPE_CHECKING:
    from pipelines.sinks.shop_store import ShopBook

log = logging.getLogger(__name__)

#: Op kinds that notify the service (no store call): made even while the store calls wait.
NOTIFICATION_KINDS = frozenset({"event", "health", "warn"})

RAY_EXTRA_HINT = "Ray is not installed: pip install 'streetwatch[ray]' (ray==2.60.0) on the driver and every node"


class RayUnavailable(RuntimeError):
    """Ray is not installed or the cluster cannot be reached."""


def connect(address: str) -> Any:
    """Connect this process to the Ray cluster at ``address`` (``HOST:PORT`` of the head); returns ``ray``.

    Raises:
        RayUnavailable: Ray is missing or the head does not answer.
    """
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(RAY_EXTRA_HINT) from exc
    if ray.is_initialized():
        return ray
    host, _, port = address.rpartition(":")
    try:  # Ray itself retries an absent head for minutes; an operator wants the answer now
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise RayUnavailable(f"cannot connect to the Ray cluster at {address!r}: {exc}") from exc
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # air-gapped networks: no telemetry attempts
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except Exception as exc:  # ConnectionError, RuntimeError, ...: all mean "no cluster here"
        raise RayUnavailable(f"cannot connect to the Ray cluster at {address}: {exc}") from exc
    finally:
        if main:  # Ray's driver exits on SIGTERM; the service's own handler shuts down gracefully
            signal.signal(signal.SIGTERM, previous)
    return ray


@dataclass
class Op:
    """One numbered call for the central store or service.

    ``kind``: record | evidence | transition | dispatch | annotate | vehicle (store calls), event | health | warn
    (notifications). ``args`` holds the call's arguments; ``data`` the bytes of an evidence file.
    """

    seq: int
    kind: str
    case_id: str = ""
    camera: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    data: bytes | None = None


class OpLog:
    """A :class:`~pipelines.sinks.store.CaseWriter` that queues the calls for a central store.

    Args:
        evidence_root: The folder the worker's evidence recorder writes into; evidence paths are relative
            to it and their bytes travel with the op (the local file is deleted once acknowledged).
    """

    def __init__(self, evidence_root: Path) -> None:
        self.evidence_root = evidence_root
        self.lock = threading.Lock()
        self.ops: list[Op] = []
        self.seq = 0
        self.case_ids: dict[str, str] = {}  # place key -> case id chosen here
        self.pending_files: dict[int, Path] = {}

    def _add(self, op_kind: str, case_id: str = "", camera: str = "", data: bytes | None = None, /,
             **args: Any) -> Op:
        with self.lock:
            self.seq += 1
            op = Op(self.seq, op_kind, case_id, camera, args, data)
            self.ops.append(op)
            return op

    # -- CaseWriter --------------------------------------------------------------------------------
    def record(self, event: ViolationEvent, source: str, context: CaseContext | None = None) -> str:
        """Queue a lifecycle event; the case id is chosen here on the place's first event."""
        key = f"{source}|{event.key}"
        with self.lock:
            case_id = self.case_ids.setdefault(key, uuid.uuid4().hex[:16])
        self._add("record", case_id, event.camera, event=event, source=source, context=context)
        return case_id

    def add_evidence(self, case_id: str, kind: str, path: str, sha256: str) -> None:
        """Queue an evidence file with its bytes (read now; the file goes once the driver has it).

        A ``.json`` sidecar of the same name (the clean frame's box, read by reviews) travels with it.
        """
        local = self.evidence_root / path
        data = local.read_bytes()
        sidecar = local.with_suffix(".json")
        extra = sidecar.read_bytes() if sidecar.is_file() and local.suffix != ".json" else None
        op = self._add("evidence", case_id, "", data, kind=kind, path=path, sha256=sha256, sidecar=extra)
        with self.lock:
            self.pending_files[op.seq] = local

    def transition(self, case_id: str, to_state: str, who: str, note: str = "") -> None:
        """Queue a state change."""
        self._add("transition", case_id, to_state=to_state, who=who, note=note)

    def enqueue_dispatch(self, case_id: str, context: CaseContext, note: str = "") -> None:
        """Queue a dispatch."""
        self._add("dispatch", case_id, context=context, note=note)

    def annotate(self, case_id: str, who: str, note: str) -> None:
        """Queue a history note."""
        self._add("annotate", case_id, who=who, note=note)

    # -- notifications -----------------------------------------------------------------------------
    def set_vehicle(self, case_id: str, vehicle: dict[str, Any]) -> None:
        """Queue a truck case's vehicle."""
        self._add("vehicle", case_id, vehicle=dict(vehicle))

    def event(self, camera: str, event: ViolationEvent, case_id: str, clock_epoch: float) -> None:
        """Queue a violation event for the service's event stream."""
        self._add("event", case_id, camera, event=event, clock_epoch=clock_epoch)

    def health(self, camera: str, state: str, detail: str) -> None:
        """Queue a camera health change."""
        self._add("health", "", camera, state=state, detail=detail)

    def warn(self, camera: str, action: WarningAction, case_id: str) -> None:
        """Queue a voice warning (the loudspeakers are driven by the central service)."""
        self._add("warn", case_id, camera, action=action)

    # -- transport ---------------------------------------------------------------------------------
    def take(self, ack: int) -> list[Op]:
        """Forget ops up to ``ack`` (the driver has applied them) and return the rest, oldest first.

        Unacknowledged ops are returned again on the next call: a lost reply loses nothing.
        """
        with self.lock:
            self.ops = [op for op in self.ops if op.seq > ack]
            done = [s for s in self.pending_files if s <= ack]
            files = [self.pending_files.pop(s) for s in done]
            ops = list(self.ops)
        for f in files:
            f.unlink(missing_ok=True)
            f.with_suffix(".json").unlink(missing_ok=True)
        return ops


def _safe_relative(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"evidence path {path!r} leaves the evidence folder")
    return rel


class Applier:
    """Applies ops of one or more workers to the central store and evidence folder.

    Args:
        store: The central case store.
        evidence_root: Where evidence files are written (paths of the ops are relative to it).
        on_event: Called with (camera, event, case id, clock epoch) for ``event`` ops.
        on_health: Called with (camera, state, detail) for ``health`` ops.
        on_warn: Called with (camera, action, case id) for ``warn`` ops.
        shops: The shop registry, for ``reminder`` and ``reminder_outcome`` ops (a service's spool).
    """

    def __init__(self, store: CaseStore, evidence_root: Path,
                 on_event: Callable[[str, ViolationEvent, str, float], None] | None = None,
                 on_health: Callable[[str, str, str], None] | None = None,
                 on_warn: Callable[[str, WarningAction, str], None] | None = None,
                 shops: ShopBook | None = None) -> None:
        self.store = store
        self.shops = shops
        self.evidence_root = evidence_root
        self.on_event = on_event
        self.on_health = on_health
        self.on_warn = on_warn
        self.alias: dict[str, str] = {}  # worker's case id -> the store's (when the place already had a case)

    def apply(self, ops: list[Op], after: int, notified: set[int] | None = None) -> int:
        """Apply the ops numbered above ``after``, in order; returns the last sequence number applied.

        A store call that fails for good (a state change the flow no longer allows, an unwritable
        evidence file, a row the database's constraints refuse) is logged and skipped; any other failure (the
        database itself) stops the store calls there, and the ops after the last one applied come again on the
        next poll.

        ``notified``: the caller's record of notifications (events, camera health, voice warnings) already
        made out of order. With it, the notifications after a store call that stopped are made all the same,
        once: the event stream, camera health and loudspeakers do not wait for the database.
        """
        last = after
        blocked = False
        for op in ops:
            if op.seq <= after:
                continue
            notice = op.kind in NOTIFICATION_KINDS
            if notified is not None and notice and op.seq in notified:  # made while the store was away
                if not blocked:
                    notified.discard(op.seq)
                    last = op.seq
                continue
            if blocked and not (notice and notified is not None):
                continue
            case_id = self.alias.get(op.case_id, op.case_id)
            try:
                self._apply(op, case_id)
            except (TransitionError, KeyError, ValueError, OSError, IntegrityError) as exc:
                log.error("op %d (%s) of case %s not applied: %s", op.seq, op.kind, case_id, exc)
            except Exception as exc:
                if blocked:  # a notification that failed on its own: made again, in order, once the store answers
                    log.error("op %d (%s) of case %s failed: %s", op.seq, op.kind, case_id, exc)
                    continue
                log.error("central store unavailable at op %d (%s): %s; retrying on the next poll",
                          op.seq, op.kind, exc)
                if notified is None:
                    break
                blocked = True
                continue
            if not blocked:
                last = op.seq
            elif notified is not None:
                notified.add(op.seq)
        return last

    def _apply(self, op: Op, case_id: str) -> None:
        a = op.args
        if op.kind == "record":
            got = self.store.record(a["event"], a["source"], a["context"], case_id=case_id)
            if got != case_id:
                self.alias[op.case_id] = got
        elif op.kind == "evidence":
            rel = _safe_relative(a["path"])
            target = self.evidence_root / rel
            for path, data in ((target.with_suffix(".json"), a.get("sidecar")), (target, op.data)):
                if data is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    part = path.with_name(path.name + ".part")
                    part.write_bytes(data)
                    part.replace(path)  # never a half-written evidence file under its real name
            self.store.add_evidence(case_id, a["kind"], rel.as_posix(), a["sha256"])
        elif op.kind == "transition":
            self.store.transition(case_id, a["to_state"], a["who"], a["note"])
        elif op.kind == "dispatch":
            self.store.enqueue_dispatch(case_id, a["context"], a["note"])
        elif op.kind == "annotate":
            self.store.annotate(case_id, a["who"], a["note"])
        elif op.kind == "vehicle":
            self.store.set_vehicle(case_id, a["vehicle"])
        elif op.kind in ("reminder", "reminder_outcome"):
            if self.shops is None:
                raise ValueError("no shop registry to record a reminder in")
            if op.kind == "reminder":
                self.shops.add_reminder(case_id, a["shop"], a["camera"], a["zone"], a["violation"], sent=a["sent"],
                                        reason=a["reason"], channels=a["channels"], message=a["message"],
                                        offence=a["offence"], deadline_in_s=a["deadline_in_s"],
                                        created=datetime.fromisoformat(a["created"]))
            else:
                self.shops.set_outcome(case_id, a["shop"], a["outcome"], a["time_to_clear_s"])
        elif op.kind == "event" and self.on_event is not None:
            self.on_event(op.camera, a["event"], case_id, a["clock_epoch"])
        elif op.kind == "health" and self.on_health is not None:
            self.on_health(op.camera, a["state"], a["detail"])
        elif op.kind == "warn" and self.on_warn is not None:
            self.on_warn(op.camera, a["action"], case_id)


def node_id() -> str:
    """The Ray node this code runs on ("" outside Ray)."""
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""
    except Exception:
        return ""
