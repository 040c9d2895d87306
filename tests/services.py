"""Private Redis and PostgreSQL servers a test may restart without disturbing anyone else.

The shared services on 127.0.0.1:6379/5432 serve every test; a test that restarts its
broker or database starts its own on a free port, from the same binaries.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port


@dataclass
class PrivateRedis:
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout.strip() != b"PONG":
            assert time.monotonic() < deadline, "private redis did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def private_redis(tmp_path: Path) -> PrivateRedis:
    if not os.environ.get("BACKCHANNEL_TEST_REDIS_URL"):
        pytest.skip("Redis not configured: set BACKCHANNEL_TEST_REDIS_URL (see .ci/run)")
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    return PrivateRedis(tmp_path).start()


@dataclass
class PrivatePostgres:
    """A throwaway cluster run as the ``postgres`` user (initdb refuses root)."""

    datadir: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=60)

    def init(self) -> PrivatePostgres:
        bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
        self.pg_ctl = str(bindir / "pg_ctl")
        self._run(str(bindir / "initdb"), "-D", str(self.datadir), "-A", "trust", "-U", "postgres")
        return self.start()

    def start(self) -> PrivatePostgres:
        opts = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(self.pg_ctl, "-D", str(self.datadir), "-o", opts, "-w", "-l", str(self.datadir / "log"), "start")
        return self

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.datadir), "-m", "fast", "-w", "stop")


def private_postgres() -> PrivatePostgres:
    if not os.environ.get("BACKCHANNEL_TEST_POSTGRES_URL"):
        pytest.skip("PostgreSQL not configured: set BACKCHANNEL_TEST_POSTGRES_URL (see .ci/run)")
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") or os.geteuid() != 0:
        pytest.skip("a private PostgreSQL needs the server binaries and root (to run initdb as postgres)")
    datadir = Path(tempfile.mkdtemp(prefix="bc-pg-"))
    shutil.chown(datadir, "postgres", "postgres")
    return PrivatePostgres(datadir).init()
