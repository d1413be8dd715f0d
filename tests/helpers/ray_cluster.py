"""A real Ray cluster on 127.0.0.1 for the tests: ``ray start --head`` and two worker nodes.

Ray binds its servers to loopback only when its node address is 127.0.0.1, which it uses when
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; its CLI then refuses to add worker nodes (a guard meant for
laptops), so the workers are started through the same CLI with only that guard lifted. Every
process of this cluster (head, workers and any driver that connects) runs with that variable, and
the cluster is torn down by killing exactly the processes that use its own temp folder (``ray stop``
would stop every Ray cluster on the machine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.helpers.net import free_port

RAY = Path(sys.executable).parent / "ray"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
_JOIN = """
import sys, types
import ray.scripts.scripts as cli
from ray._private import ray_constants as rc
view = types.SimpleNamespace(**{k: getattr(rc, k) for k in dir(rc) if not k.startswith("__")})
view.ENABLE_RAY_CLUSTER = True  # only the CLI's guard; node addresses still resolve to 127.0.0.1
cli.ray_constants = view
sys.argv = ["ray", "start"] + sys.argv[1:]
cli.main()
"""


@dataclass
class RayCluster:
    """A running local cluster: its head address and the environment a driver needs."""

    address: str
    temp_dir: Path
    env: dict[str, str]


def _kill(temp_dir: Path) -> None:
    mine = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(temp_dir) in part for part in (p.info["cmdline"] or [])):
                mine.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    everyone = list(mine)
    for p in mine:
        try:
            everyone += p.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
    for p in everyone:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(everyone, timeout=10)


@contextmanager
def ray_cluster(workers: int = 2, cpus_per_worker: int = 1) -> Iterator[RayCluster]:
    """Start a head (no CPUs: work goes to the workers) and ``workers`` worker nodes on 127.0.0.1."""
    temp_dir = Path(tempfile.mkdtemp(prefix="swray", dir="/tmp"))  # short: Ray's socket paths have a limit
    env = {**os.environ, **LOOPBACK_ENV}
    port = free_port()
    common = ["--disable-usage-stats", "--object-store-memory", str(150 * 2**20)]
    try:
        subprocess.run([str(RAY), "start", "--head", "--port", str(port), "--num-cpus", "0",
                        "--include-dashboard=false", "--temp-dir", str(temp_dir), *common],
                       env=env, check=True, capture_output=True, timeout=120)
        for _ in range(workers):
            subprocess.run([sys.executable, "-c", _JOIN, f"--address=127.0.0.1:{port}",
                            "--num-cpus", str(cpus_per_worker), *common],
                           env=env, check=True, capture_output=True, timeout=120)
        yield RayCluster(f"127.0.0.1:{port}", temp_dir, env)
    finally:
        _kill(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
