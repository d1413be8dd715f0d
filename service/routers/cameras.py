"""Cameras: list with health, add, change and remove at run time (written back to the service's YAML file)."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response

from detector.backends.base import ModelLoadError
from pipelines.config import CameraConfig
from service.deps import Admin, ConfigPathDep, ErrorBody, RuntimeDep, Viewer
from service.models_api import CameraIn, CameraSaved, CameraStatus
from service.runtime import CameraChangeError, Runtime
from service.settings import write_camera_back

log = logging.getLogger(__name__)

router = APIRouter(tags=["cameras"])


def save(config_path: Path | None, camera_id: str, cam: CameraConfig | None) -> bool | None:
    """Write an API change of a camera back to the config file; ``None`` when there is no file."""
    if config_path is None:
        return None
    try:
        write_camera_back(config_path, camera_id, cam.model_dump(mode="json", exclude_defaults=True)
                          if cam is not None else None)
        return True
    except Exception as exc:  # the running change stands; the operator sees config_saved: false
        log.error("camera %s changed but not written back to %s: %s", camera_id, config_path, exc)
        return False


def saved(rt: Runtime, config_path: Path | None, cam: CameraConfig) -> CameraSaved:
    """A running camera's status after an API change, with whether the change reached the config file."""
    return CameraSaved.model_validate({**rt.camera_status(cam.id), "config_saved": save(config_path, cam.id, cam)})


@router.get("/api/cameras", response_model=list[CameraStatus])
def cameras(rt: RuntimeDep, _: Viewer) -> list[CameraStatus]:
    """Cameras with health and counters; a camera of the config that did not start (its own model did not
    load) is listed as ``failed`` with the reason, until it is changed or removed."""
    out = []
    for cid in rt.camera_ids():
        try:
            out.append(CameraStatus.model_validate(rt.camera_status(cid)))
        except KeyError:  # removed meanwhile
            continue
    return out


@router.post("/api/cameras", status_code=201, response_model=CameraSaved,
             responses={409: {"model": ErrorBody}})
def add_camera(cam: CameraIn, rt: RuntimeDep, _: Admin, config_path: ConfigPathDep) -> CameraSaved:
    """Add a camera at run time (validated like the YAML config)."""
    try:
        rt.check_camera(cam)
    except (ValueError, ModelLoadError) as exc:
        raise HTTPException(422, str(exc)) from exc
    try:
        rt.add_camera(cam)
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from exc
    except Exception as exc:  # checked, yet it did not start: nothing of it runs or is written back
        log.exception("camera %s: not added", cam.id)
        raise HTTPException(503, f"camera {cam.id} did not start: {exc}") from exc
    return saved(rt, config_path, cam)


@router.put("/api/cameras/{camera_id}", response_model=CameraSaved,
            responses={404: {"model": ErrorBody}})
def change_camera(camera_id: str, cam: CameraIn, rt: RuntimeDep, _: Admin, config_path: ConfigPathDep) -> CameraSaved:
    """Replace a camera's settings (the reader restarts; its cases stay). A camera that did not start is started
    with them. If the checked change still does not start (503), the previous settings come back."""
    if camera_id != cam.id:
        raise HTTPException(422, "id: the body's id must match the path")
    try:
        rt.replace_camera(cam)
    except KeyError as exc:
        raise HTTPException(404, "no such camera") from exc
    except (ValueError, ModelLoadError) as exc:  # checked before the running camera is stopped
        raise HTTPException(422, str(exc)) from exc
    except CameraChangeError as exc:  # not written back: the file keeps what runs (or failed) now
        raise HTTPException(503, str(exc)) from exc
    return saved(rt, config_path, cam)


@router.delete("/api/cameras/{camera_id}", status_code=204, responses={404: {"model": ErrorBody}})
def delete_camera(camera_id: str, rt: RuntimeDep, _: Admin, config_path: ConfigPathDep) -> Response:
    """Stop and remove a camera (its cases stay)."""
    if rt.camera_config(camera_id) is None:
        raise HTTPException(404, "no such camera")
    rt.remove_camera(camera_id)
    save(config_path, camera_id, None)
    return Response(status_code=204)
