"""A throw-away PostgreSQL cluster on 127.0.0.1 for tests (Debian's postgresql package)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PgCluster:
    """A running throw-away cluster that a test can stop and start again (a database outage)."""

    def __init__(self, bindir: Path, data: Path, port: int, as_user: list[str]) -> None:
        self.bindir, self.data, self.port, self.as_user = bindir, data, port, as_user
        self.url = f"postgresql+psycopg://sw@127.0.0.1:{port}/streetwatch"

    def run(self, *cmd: str) -> None:
        """Run a PostgreSQL program as the cluster's owner."""
        subprocess.run([*self.as_user, *cmd], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Start the server (returns once it accepts connections)."""
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data / "db"), "-w", "-l", str(self.data / "log"), "-o",
                 f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate``: as if it crashed; its clients' connections break)."""
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data / "db"), "-m", mode, "stop")


@contextmanager
def restartable_postgres(port: int) -> Iterator[PgCluster]:
    """Start a cluster with an empty database ``streetwatch``; skips where PostgreSQL is absent (fails in CI)."""
    bindir = _bindir()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is required in CI (scripts/install-test-services.sh)")
        pytest.skip("PostgreSQL server not installed (scripts/install-test-services.sh)")
    data = Path(tempfile.mkdtemp(prefix="sw-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    cluster = PgCluster(bindir, data, port, as_user)
    cluster.run(str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "sw", "--no-sync")
    cluster.start()
    try:
        cluster.run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "sw", "streetwatch")
        yield cluster
    finally:
        try:
            cluster.stop()
        except subprocess.CalledProcessError:  # the test left it stopped
            pass
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def postgres_cluster(port: int) -> Iterator[str]:
    """Start a cluster and yield a SQLAlchemy URL of an empty database; skips where PostgreSQL is absent."""
    with restartable_postgres(port) as cluster:
        yield cluster.url
