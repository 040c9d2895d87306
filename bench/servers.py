"""Servers under test: uvicorn subprocesses for Backchannel and the baseline, on the same flags.

Also the store work a benchmark needs before it starts: a migrated SQLite file or a fresh
PostgreSQL database, a workspace with a token, and N widget visitors (users, conversations
and signed session tokens made directly in the store, as ``POST /widget/v1/session`` would,
so that seeding 10,000 visitors does not trip the per-address session limit).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-" + secrets.token_urlsafe(40)
HEARTBEAT = 20.0


def uvicorn_flags() -> list[str]:
    """What ``backchannel serve`` passes uvicorn (``app.logs.uvicorn_options``), for both servers
    alike but two: Backchannel's own WebSocket and HTTP protocols (``Server.command``); the bare
    relay runs uvicorn's stock ones, as a plain Starlette app would. No protocol-level pings for
    either: each pings in its frames."""
    return [
        "--no-access-log",
        "--no-proxy-headers",  # forwarded headers are the app's to judge (TRUSTED_PROXIES)
        "--ws-max-size",
        "65536",
        "--ws-per-message-deflate",
        "false",
        "--ws-ping-interval",
        "0",
        "--log-level",
        "warning",
        "--backlog",
        "4096",
    ]


def is_loopback(url: str) -> bool:
    """True when ``url`` names this machine (127.0.0.0/8, ::1 or ``localhost``), or has no
    host at all (a Unix socket): the bench sends load nowhere else."""
    host = urlsplit(url).hostname
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """Linux: the child (a server, a load generator) gets SIGTERM if the bench dies without
    stopping it (kill -9)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backchannel_env(database_url: str, broker_url: str = "memory://", heartbeat: float = HEARTBEAT) -> dict[str, str]:
    return {
        "BACKCHANNEL_ENV": "production",
        "BACKCHANNEL_SECRET_KEY": SECRET_KEY,
        "BACKCHANNEL_DATABASE_URL": database_url,
        "BACKCHANNEL_BROKER_URL": broker_url,
        # One bench token sends thousands of requests a second: lift the per-token limit
        # (1,200 a minute by default) so the bench measures the server, not the limiter.
        "BACKCHANNEL_API_RATE_PER_MINUTE": "100000000",
        # The webhook receiver is on the loopback.
        "BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "BACKCHANNEL_WS_HEARTBEAT_SECONDS": str(heartbeat),
    }


@dataclass
class Server:
    """One uvicorn process: ``kind`` is ``backchannel`` or ``baseline``."""

    kind: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    heartbeat: float = HEARTBEAT
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        from app.logs import HTTP_PROTOCOL, WS_PROTOCOL

        target = "app.main:create_app" if self.kind == "backchannel" else "bench.baseline:create_app"
        ws = ["--ws", WS_PROTOCOL, "--http", HTTP_PROTOCOL] if self.kind == "backchannel" else []
        return [
            sys.executable, "-m", "uvicorn", target, "--factory",
            "--host", "127.0.0.1", "--port", str(self.port),
            *uvicorn_flags(), *ws, *self.extra_args,
        ]  # fmt: skip

    def launch(self) -> Server:
        """Start the process without waiting for it (see ``wait_ready``; ``start`` does both).
        Call from the main thread: the child's parent-death signal follows the launching thread."""
        self.log_path = self.workdir / f"{self.kind}-{self.port}.log"
        env = {**os.environ, **self.env, "BENCH_HEARTBEAT": str(self.heartbeat), "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(), cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
        return self

    def ready(self) -> bool:
        """One bounded health check; raises if the process has exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} server exited early:\n{self.log_tail()}")
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 60) -> Server:
        wait_ready([self.launch()], timeout)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- what the process uses --------------------------------------------------------

    def rss_kib(self) -> int:
        assert self.proc is not None
        return proc_rss_kib(self.proc.pid)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return proc_cpu_seconds(self.proc.pid)


def wait_ready(servers: list[Server], timeout: float = 60) -> None:
    """Wait for launched servers (started together, so they boot in parallel); stop them all
    and raise if one exits or is not answering ``/healthz`` within ``timeout`` seconds."""
    pending = list(servers)
    deadline = time.monotonic() + timeout
    try:
        while pending:
            pending = [s for s in pending if not s.ready()]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"{pending[0].kind} server did not start in {timeout:g} s:\n{pending[0].log_tail()}")
            if pending:
                time.sleep(0.1)
    except BaseException:
        for s in servers:
            s.stop()
        raise


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux ``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PostgresCpu:
    """CPU seconds used so far by the PostgreSQL backends serving some databases (those of the
    servers under test), read from ``/proc`` (PostgreSQL runs on this machine: the bench talks
    to 127.0.0.1 only). A backend that ends keeps its last reading, so the sum never goes back.
    Not counted: PostgreSQL's own background processes (WAL writer, checkpointer), which other
    users of the same server share."""

    def __init__(self, admin_url: str, databases: list[str]) -> None:
        self.admin_url = admin_url.replace("postgresql+psycopg://", "postgresql://")
        self.databases = databases
        self.seen: dict[int, float] = {}

    def __call__(self) -> float:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            pids = [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                (self.databases,),
            )]  # fmt: skip
        for pid in pids:
            with contextlib.suppress(OSError):
                self.seen[pid] = proc_cpu_seconds(pid)
        return sum(self.seen.values())


class RedisCpu:
    """CPU seconds used so far by the Redis server (``INFO cpu``): all of it, so other users of
    the same Redis count too (none, on a machine of its own)."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_connect_timeout=3)

    def __call__(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def service_meters(servers: list[Server]) -> dict[str, Any]:
    """What the servers lean on, as CPU counters: ``{"pg": PostgresCpu, "redis": RedisCpu}``
    where they use PostgreSQL or Redis."""
    meters: dict[str, Any] = {}
    urls = {s.env.get("BACKCHANNEL_DATABASE_URL", "") for s in servers}
    pg = sorted(u for u in urls if u.startswith("postgresql"))
    if pg:
        admin = pg[0].rpartition("/")[0] + "/postgres"
        meters["pg"] = PostgresCpu(admin, [u.rpartition("/")[2] for u in pg])
    brokers = {s.env.get("BACKCHANNEL_BROKER_URL", "") for s in servers}
    redis_urls = sorted(b for b in brokers if b.startswith("redis"))
    if redis_urls:
        meters["redis"] = RedisCpu(redis_urls[0])
    return meters


# -- databases ---------------------------------------------------------------------------


def _settings(database_url: str) -> Any:
    from app.settings import Settings

    return Settings(database_url=database_url, env="test")


def sqlite_database(workdir: Path) -> str:
    """A fresh, migrated SQLite file: migrated once per bench run (``template.db``), then
    copied with SQLite's backup API (which carries the WAL along)."""
    from app.store.migrate import upgrade

    template = workdir / "template.db"
    if not template.exists():
        upgrade(_settings(f"sqlite:///{template}"))
    path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
    src, dst = sqlite3.connect(template), sqlite3.connect(path)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return f"sqlite:///{path}"


class PostgresDatabase:
    """A fresh PostgreSQL database for one benchmark, dropped at the end. With ``template``
    (a migrated ``PostgresDatabase``) it is a copy of it (``CREATE DATABASE … TEMPLATE``),
    which is quicker than running the migrations again."""

    def __init__(self, base_url: str, template: PostgresDatabase | None = None) -> None:
        import psycopg

        self.admin_url = base_url.replace("postgresql+psycopg://", "postgresql://")
        self.name = f"bc_bench_{uuid.uuid4().hex[:10]}"
        clause = f' TEMPLATE "{template.name}"' if template is not None else ""
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"{clause}')
        self.url = f"{self.admin_url.rpartition('/')[0]}/{self.name}"
        if template is None:
            from app.store.migrate import upgrade

            try:
                upgrade(_settings(self.url))
            except BaseException:
                self.drop()
                raise

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def postgres_available(url: str) -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3):
            return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def redis_available(url: str) -> str | None:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


# -- seeding -----------------------------------------------------------------------------


@dataclass
class Tenant:
    workspace_id: str
    widget_key: str
    token: str
    widgets: list[dict[str, Any]] = field(default_factory=list)  # {session_token, conversation_id}


def seed(database_url: str, widgets: int) -> Tenant:
    """A workspace, an admin token and ``widgets`` visitors, each with a conversation."""
    from sqlalchemy import insert

    from app.ids import new_id, utcnow
    from app.realtime.identity import TokenSigner, WidgetIdentity
    from app.store.engine import make_engine, session_scope
    from app.store.runner import Tx
    from app.store.tables import Conversation, User
    from app.tokens import create_token
    from app.workspaces import create_workspace

    engine = make_engine(_settings(database_url))
    try:
        with session_scope(engine) as session:
            ws = create_workspace(Tx(session), "Bench")
            _, token = create_token(Tx(session), ws.id, "bench", ["read", "write", "admin"])
            tenant = Tenant(ws.id, ws.widget_key, token)
        signer = TokenSigner(SECRET_KEY)
        now = utcnow()
        users, convs = [], []
        for _ in range(widgets):
            uid, cid = new_id("usr"), new_id("cnv")
            users.append({"id": uid, "workspace_id": ws.id, "properties": {}, "created_at": now, "updated_at": now})
            convs.append(
                {
                    "id": cid, "workspace_id": ws.id, "user_id": uid, "status": "open",
                    "last_message_seq": 0, "user_read_seq": 0, "agent_read_seq": 0,
                    "created_at": now, "updated_at": now,
                }
            )  # fmt: skip
            tenant.widgets.append(
                {"session_token": signer.session_token(WidgetIdentity(ws.id, uid)), "conversation_id": cid}
            )
        with session_scope(engine) as session:
            for i in range(0, widgets, 2000):
                session.execute(insert(User), users[i : i + 2000])
                session.execute(insert(Conversation), convs[i : i + 2000])
        return tenant
    finally:
        engine.dispose()
