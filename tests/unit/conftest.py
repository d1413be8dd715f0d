"""tests/unit is pure: no servers, no network, no subprocesses (those tests live in tests/integration).

An autouse fixture makes any attempt fail at once, with a message that says where such a test belongs.
"""

from __future__ import annotations

import socket
import subprocess
from typing import Any

import numpy.testing  # noqa: F401  (its first import asks lscpu about the CPU: loaded before the guard)
import pytest

WHERE = "tests/unit is pure: a test that {} belongs in tests/integration"


@pytest.fixture(autouse=True)
def _no_servers_network_or_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(what: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(WHERE.format(what))

        return refused

    for name in ("bind", "connect", "connect_ex", "listen", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse(f"uses a socket ({name})"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("starts a subprocess"))
