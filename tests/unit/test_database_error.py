"""The API's answer to a database error: 503 when the store cannot be reached (the cameras' rule), else 500."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from starlette.requests import Request

from service.app import database_error


def _request() -> Request:
    return Request({"type": "http", "method": "GET", "path": "/api/cases", "headers": [], "query_string": b""})


@pytest.mark.parametrize("exc", [
    OperationalError("SELECT 1", {}, Exception("connection refused")),
    DBAPIError("SELECT 1", {}, Exception("server closed the connection"), connection_invalidated=True),
])
def test_unreachable_store_answers_503_with_retry_after(exc: Exception) -> None:
    resp = asyncio.run(database_error(_request(), exc))
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "5"
    assert b"case store unavailable" in resp.body


def test_other_database_errors_are_not_called_unavailable() -> None:
    wrong = IntegrityError("INSERT", {}, Exception("duplicate key"))
    with pytest.raises(IntegrityError):
        asyncio.run(database_error(_request(), wrong))
    still_connected = DBAPIError("SELECT 1", {}, Exception("syntax"), connection_invalidated=False)
    with pytest.raises(DBAPIError):
        asyncio.run(database_error(_request(), still_connected))
