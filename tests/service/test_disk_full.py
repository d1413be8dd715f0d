"""The evidence disk fills up: cases are still stored, reported and dispatched; evidence resumes when space returns.

Two ways to fill it: a real 256 KiB tmpfs filled to the last byte (needs root with mount rights,
as on CI and this machine), and write errors injected into the evidence writer (runs anywhere).
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest

import pipelines.sinks.evidence as evidence_mod
from service.settings import ServiceConfig
from tests.helpers.data import DATA
from tests.helpers.net import free_port, wait_for
from tests.helpers.service import TOKENS, running_service


def fill_up(folder: Path, name: str) -> None:
    """Write ``folder/name`` until the file system is full."""
    with (folder / name).open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@pytest.fixture(params=["tmpfs", "injected"])
def full_disk(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[tuple[Path, Callable[[], None], Callable[[], None]]]:
    """The evidence folder, full; a call that frees the space, and one that fills it again."""
    folder = tmp_path / "evidence"
    folder.mkdir()
    if request.param == "tmpfs":
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                                 capture_output=True, check=False)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
        try:
            fill_up(folder, "filler")
            yield folder, (folder / "filler").unlink, lambda: fill_up(folder, "filler2")
        finally:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        return
    state = {"full": True}
    real_imwrite, real_clip, real_write_bytes = cv2.imwrite, evidence_mod.write_clip, Path.write_bytes

    def imwrite(path: str, *args: Any, **kwargs: Any) -> bool:
        if state["full"] and str(folder) in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return bool(real_imwrite(path, *args, **kwargs))

    def write_clip(frames: Any, path: Path, *args: Any, **kwargs: Any) -> None:
        if state["full"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_clip(frames, path, *args, **kwargs)

    def write_bytes(path: Path, data: bytes) -> int:
        if state["full"] and str(folder) in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write_bytes(path, data)

    monkeypatch.setattr(cv2, "imwrite", imwrite)
    monkeypatch.setattr(evidence_mod, "write_clip", write_clip)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    yield folder, lambda: state.update(full=False), lambda: state.update(full=True)


def test_cases_survive_a_full_evidence_disk(full_disk: tuple[Path, Callable[[], None], Callable[[], None]],
                                            tmp_path: Path) -> None:
    folder, free_space, fill_again = full_disk
    port = free_port()
    cfg = ServiceConfig.model_validate({
        "server": {"port": port},
        "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]},
        "storage": {"db": str(tmp_path / "cases.db"), "evidence": str(folder)},
        "cameras": [{"id": "cam-b", "source": str(DATA / "clips" / "reg_violations_b.mp4"),
                     "zones": [{"id": "pavement", "polygon": [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]],
                                "violations": ["street_stall", "garbage"]}]}],
        "rules": {"dwell_s": {"street_stall": 2, "garbage": 2}, "gap_tolerance_s": 3},
    })
    with running_service(cfg) as url, httpx.Client(base_url=url, timeout=30,
                                                   headers={"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}) as api:
        def items() -> list[dict[str, Any]]:
            return list(api.get("/api/cases", params={"limit": 100}).json()["items"])

        first = wait_for(lambda: items(), 90, "a case while the disk is full")[-1]
        assert first["evidence"] == {}  # nothing could be written, the case is there all the same
        assert api.get(f"/api/cases/{first['id']}/evidence/snapshot").json()["error"]["message"] == \
            "case has no snapshot (yet)"
        assert api.get("/readyz").status_code == 200
        assert api.get("/api/cameras").json()[0]["health"] == "live"
        free_space()
        # A camera added once space is back (same street, another view) gets its evidence written.
        added = api.post("/api/cameras", json={**cfg.cameras[0].model_dump(mode="json"), "id": "cam-c"})
        assert added.status_code == 201, added.text
        later = wait_for(lambda: [c for c in items() if c["camera"] == "cam-c" and "snapshot" in c["evidence"]],
                         120, "a case with evidence after space returned")
        fill_again()  # before anyone looked at it: its masked copy cannot be stored, the viewer still gets it
        snap = api.get(later[0]["evidence"]["snapshot"])
        assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8", snap.text
        assert not list(folder.rglob("*.shared.jpg*"))  # nothing kept, nothing half-written
        assert any(c["id"] == first["id"] for c in items())  # the case of the full-disk time is still there
