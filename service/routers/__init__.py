"""The API's routes, one router per resource; :func:`service.app.create_app` includes them in this order."""

from __future__ import annotations

from fastapi import APIRouter

from service.routers import cameras, cases, dispatch, events, muck, operations, shops, voice

ROUTERS: tuple[APIRouter, ...] = (operations.router, cases.router, cameras.router, voice.router, dispatch.router,
                                  events.router, shops.router, muck.router)
