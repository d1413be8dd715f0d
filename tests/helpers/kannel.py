"""A real Kannel SMS gateway on 127.0.0.1 for tests (Debian's kannel and kannel-extras packages).

``running_kannel`` writes a kannel.conf, then starts bearerbox (with a ``smsc = fake`` link listening on a loopback
port), kannel-extras' ``fakesmsc`` (the "operator": it connects to that link and logs every message that reaches
it) and smsbox (the HTTP ``sendsms`` interface). Delivery reports come from bearerbox itself: for a message with
``dlr-mask`` and ``dlr-url`` the fake link reports type 8 (SMSC accepted, ``%A`` = ``ACK/``) when it hands the
message over and type 1 (delivered) right after; smsbox calls ``dlr-url`` with Kannel's escapes filled in.

How fakesmsc shows a message that reached it (its log, one line per message)::

    ... DEBUG: Got message 2: <12345 13800138000 ucs-2 %60%A8Y%7D%FF%0C...>
    ... DEBUG: Got message 3: <12345 13800138000 text plain ascii>
    ... DEBUG: Got message 5: <12345 13800138000 data %01%02bin>
    ... DEBUG: Got message 7: <12345 13800138000 udh %05%00%03%04%05%01 data %60%A8Y%7D...>

``sender receiver kind payload``: ``text`` is the raw (UTF-8) text, ``data`` url-encoded 8-bit bytes, ``ucs-2``
url-encoded UTF-16BE (``coding=2``), ``udh`` a url-encoded user data header followed by ``data`` and the part's
url-encoded bytes (a split message's parts; the part's coding is not shown, UCS-2 parts are UTF-16BE).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from service.loops import wait_until
from tests.helpers.net import free_port

log = logging.getLogger(__name__)

#: The core box: the SMSC links, the admin HTTP interface (status.txt) and the box connections.
BEARERBOX = Path("/usr/sbin/bearerbox")
#: The SMS box: the HTTP sendsms interface and the delivery-report callbacks.
SMSBOX = Path("/usr/sbin/smsbox")
#: kannel-extras' fake SMSC client (the "operator" end of a ``smsc = fake`` link).
FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
INSTALL_HINT = "scripts/install-kannel.sh"

_GOT = re.compile(r"Got message \d+: <(.*)>$")


def kannel_available() -> bool:
    """Whether bearerbox, smsbox and the fake SMSC are installed (and executable)."""
    return all(os.access(p, os.X_OK) for p in (BEARERBOX, SMSBOX, FAKESMSC))


def kannel_or_skip() -> None:
    """Skip where Kannel is absent (a failure in CI, which installs it)."""
    if not kannel_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Kannel (bearerbox, smsbox, {FAKESMSC}) is required in CI ({INSTALL_HINT})")
        pytest.skip(f"Kannel not installed: kannel and kannel-extras ({INSTALL_HINT})")


@dataclass(frozen=True)
class ReceivedSms:
    """One message as it reached the fake SMSC (one part of a split message)."""

    sender: str
    to: str
    #: The payload decoded: UTF-16BE for ``ucs-2``, else UTF-8 (undecodable bytes replaced).
    text: str
    #: How fakesmsc showed it: ``text``, ``data`` or ``ucs-2`` (for a part with a UDH, the kind after it).
    kind: str
    payload: bytes
    #: The user data header (concatenation: ``05 00 03 ref total seq``); empty when none.
    udh: bytes = b""


def _url_bytes(value: str) -> bytes:
    """Kannel's url-encoding (space as ``+``) back to bytes."""
    return urllib.parse.unquote_to_bytes(value.replace("+", " "))


def parse_fakesmsc_line(line: str) -> ReceivedSms | None:
    """The message in one line of fakesmsc's log, or None for any other line (start-up, statistics)."""
    found = _GOT.search(line.rstrip("\r\n"))
    if found is None:
        return None
    parts = found.group(1).split(" ", 3)
    if len(parts) < 3:  # a continuation of a text message that held a newline: fakesmsc prints it as a new line
        return None
    sender, to, kind = parts[:3]
    rest = parts[3] if len(parts) > 3 else ""
    udh = b""
    if kind == "udh":
        udh_enc, _, rest = rest.partition(" ")
        kind, _, rest = rest.partition(" ")
        udh = _url_bytes(udh_enc)
    payload = rest.encode() if kind == "text" else _url_bytes(rest)
    text = payload.decode("utf-16-be" if kind == "ucs-2" else "utf-8", errors="replace")
    return ReceivedSms(sender=sender, to=to, text=text, kind=kind, payload=payload, udh=udh)


@dataclass
class Kannel:
    """A running gateway: where to send, with which credentials, and what reached the operator."""

    workdir: Path
    admin_port: int
    smsbox_port: int
    sendsms_port: int
    smsc_port: int
    username: str
    password: str
    admin_password: str
    #: The sender the gateway puts on a message without ``from`` (the sendsms-user's ``default-sender``).
    default_sender: str

    @property
    def sendsms_url(self) -> str:
        """smsbox's sendsms interface (HTTP GET with url-encoded parameters)."""
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    @property
    def status_url(self) -> str:
        """bearerbox's plain-text status page (links, boxes, queues)."""
        return f"http://127.0.0.1:{self.admin_port}/status.txt"

    @property
    def fakesmsc_log(self) -> Path:
        return self.workdir / "fakesmsc.log"

    def received(self) -> list[ReceivedSms]:
        """Every message that has reached the fake SMSC so far, in order."""
        try:
            lines = self.fakesmsc_log.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        return [sms for sms in map(parse_fakesmsc_line, lines) if sms is not None]

    def wait_received(self, n: int, timeout: float = 10.0) -> list[ReceivedSms]:
        """Poll until at least ``n`` messages reached the fake SMSC and return them all.

        Raises:
            AssertionError: fewer arrived within ``timeout`` seconds (the message says which did).
        """
        def enough() -> list[ReceivedSms]:
            got = self.received()
            return got if len(got) >= n else []

        try:
            return wait_until(enough, timeout, f"{n} message(s) at the fake SMSC", every=0.05)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; received: {self.received()!r}") from exc

    def status(self) -> str:
        """bearerbox's status.txt."""
        return httpx.get(self.status_url, params={"password": self.admin_password}, timeout=5.0).text

    def logs(self, tail: int = 40) -> str:
        """The last lines of every log in the work folder, for failure messages."""
        out = []
        for path in sorted(self.workdir.glob("*.log")):
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-tail:]
            out.append(f"== {path.name}\n" + "\n".join(lines))
        return "\n".join(out)


def _distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _config(k: Kannel, max_messages: int | None) -> str:
    w = k.workdir
    split = "" if max_messages is None else f"max-messages = {max_messages}\nconcatenation = true\n"
    return f"""\
# Written by tests/helpers/kannel.py: everything on 127.0.0.1, logs in this folder, nothing stored on disk.
group = core
admin-port = {k.admin_port}
admin-interface = 127.0.0.1
admin-password = "{k.admin_password}"
admin-allow-ip = 127.0.0.1
smsbox-port = {k.smsbox_port}
smsbox-interface = 127.0.0.1
box-allow-ip = 127.0.0.1
dlr-storage = internal
log-file = "{w / 'bearerbox.log'}"
log-level = 0

group = smsc
smsc = fake
smsc-id = fake
port = {k.smsc_port}
our-host = 127.0.0.1
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {k.smsbox_port}
sendsms-port = {k.sendsms_port}
sendsms-interface = 127.0.0.1
log-file = "{w / 'smsbox.log'}"
log-level = 0

group = sendsms-user
username = "{k.username}"
password = "{k.password}"
default-sender = "{k.default_sender}"
{split}"""


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes], name: str, timeout: float) -> None:
    """SIGTERM (unless it already exited), then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("kannel: %s did not stop within %g s; killing it", name, timeout)
        proc.kill()
        proc.wait(5)


@contextmanager
def running_kannel(tmp_path: Path, *, username: str = "streetwatch", password: str = "sms-secret-42",
                   default_sender: str = "10690000", max_messages: int | None = None,
                   timeout: float = 20.0) -> Iterator[Kannel]:
    """Start bearerbox, the fake SMSC and smsbox on free loopback ports, configured in ``tmp_path``; yield the
    running :class:`Kannel` once sendsms answers and the fake link is online, and stop them all on exit.

    ``max_messages``: None keeps Kannel's default (one SMS: a longer text is silently cut to 140 bytes, 70 UCS-2
    characters); N sets the sendsms-user's ``max-messages = N`` and ``concatenation = true``: a long text goes as
    up to N parts, each with a 6-byte concatenation UDH and 134 bytes (67 UCS-2 characters), the rest silently cut
    (N = 1: one 67-character part). Either way sendsms answers "202 0: Accepted for delivery".

    Kannel's logs (``bearerbox.log``, ``smsbox.log``, ``fakesmsc.log``, each box's ``*.console.log``) stay in
    ``tmp_path``.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    admin, smsbox_port, sendsms, smsc = _distinct_ports(4)
    k = Kannel(workdir=tmp_path, admin_port=admin, smsbox_port=smsbox_port, sendsms_port=sendsms, smsc_port=smsc,
               username=username, password=password, admin_password="admin-secret-42", default_sender=default_sender)
    conf = tmp_path / "kannel.conf"
    conf.write_text(_config(k, max_messages), encoding="utf-8")
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, argv: list[str], out: IO[bytes]) -> None:
        proc = subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        procs.append((name, proc))

    def alive(check: bool) -> bool:
        for name, proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"kannel: {name} exited with {proc.returncode}\n{k.logs()}")
        return check

    def ready() -> bool:
        if not alive(_port_open(sendsms)):
            return False
        try:
            status = k.status()
        except httpx.HTTPError:
            return False
        return "smsbox:" in status and "(online" in status

    started = time.monotonic()
    with ExitStack() as files:
        try:
            # -v 4: only panics (a bad configuration) on the console; the boxes log to their log-file.
            start("bearerbox", [str(BEARERBOX), "-v", "4", str(conf)],
                  files.enter_context((tmp_path / "bearerbox.console.log").open("wb")))
            wait_until(lambda: alive(_port_open(smsc)), timeout, "bearerbox's fake SMSC port", every=0.02)
            # "-m 0" and a message: generate no MO traffic and block on the link, so a message is logged the
            # moment it arrives (interactive fakesmsc, with no message given, reads MO lines from stdin and looks
            # at the link only once a second). It logs each message it receives on stderr; it exits when
            # bearerbox closes the link.
            start("fakesmsc", [str(FAKESMSC), "-H", "127.0.0.1", "-r", str(smsc), "-m", "0", "0 0 text unused"],
                  files.enter_context(k.fakesmsc_log.open("wb")))
            start("smsbox", [str(SMSBOX), "-v", "4", str(conf)],
                  files.enter_context((tmp_path / "smsbox.console.log").open("wb")))
            wait_until(ready, timeout, "Kannel's sendsms and its fake SMSC link", every=0.02)
            log.info("kannel: up in %.2f s: sendsms %s, admin %d, fake SMSC %d", time.monotonic() - started,
                     k.sendsms_url, admin, smsc)
            yield k
        finally:
            stopping = time.monotonic()
            by_name = dict(procs)
            # bearerbox's shutdown also takes the connected smsbox and fakesmsc down (about a second).
            if "bearerbox" in by_name:
                _stop(by_name["bearerbox"], "bearerbox", 10.0)
            for name in ("smsbox", "fakesmsc"):
                if name in by_name:
                    proc = by_name[name]
                    try:
                        proc.wait(5.0)
                    except subprocess.TimeoutExpired:
                        _stop(proc, name, 5.0)
            log.info("kannel: stopped in %.2f s", time.monotonic() - stopping)
