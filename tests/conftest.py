"""Shared fixtures: the app on a fresh database per test, in this process or as a real server.

``app_server`` (with ``app_tenant`` and ``app_api``) runs ``create_app(settings)`` with its
lifespan in this process, reached through httpx's ``ASGITransport``: the default for API
behaviour, where no socket, process or browser matters. ``server`` (with ``tenant`` and
``api``) starts ``uvicorn app.main:create_app`` as a subprocess instead, for what needs a
real one: WebSockets, a browser, SIGKILL and restarts across processes, bytes on the wire
(streamed bodies, what uvicorn itself answers), several processes on one database. Both hand
tests the same things: a workspace with an admin-scoped token, ``client(tenant)`` giving a
plain ``httpx.Client``, direct store access (``in_tx``), the server's log printed when a
test fails, and a stop that always runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
from starlette.applications import Starlette

from app.main import create_app
from app.settings import Settings
from app.store.engine import make_engine, session_scope
from app.store.migrate import upgrade
from app.store.runner import Tx
from app.tokens import create_token
from app.workspaces import create_workspace
from tests.mail.smtp import Inbox, smtp_server

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

# Fast retry schedule and short timeouts so webhook tests finish in seconds.
TEST_ENV = {
    "BACKCHANNEL_ENV": "test",
    "BACKCHANNEL_SECRET_KEY": "test-secret-key-0123456789-abcdefghijklmnop",
    "BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "BACKCHANNEL_WEBHOOK_RETRY_SCHEDULE": "[0.3, 0.6, 1, 2, 4]",
    "BACKCHANNEL_WEBHOOK_POLL_SECONDS": "0.2",
    "BACKCHANNEL_WEBHOOK_LEASE_SECONDS": "5",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tenant:
    workspace_id: str
    widget_key: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class StoreAccess:
    """What both kinds of server give a test besides HTTP: the database, opened from the test."""

    database_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        raise NotImplementedError

    def full_env(self) -> dict[str, str]:
        """The app's settings, as the environment of a server process says them."""
        return {
            **TEST_ENV,
            "BACKCHANNEL_DATABASE_URL": self.database_url,
            "BACKCHANNEL_PUBLIC_URL": self.url,
            "BACKCHANNEL_FILE_STORAGE": f"file://{self.workdir}/files",  # never the checkout's folder
            **self.env,
        }

    def settings(self) -> Settings:
        """Enough settings to open the same database from the test process."""
        return Settings(database_url=self.database_url, env="test")

    def in_tx(self, fn: Any, *args: Any) -> Any:
        engine = make_engine(self.settings())
        try:
            with session_scope(engine) as session:
                return fn(Tx(session), *args)
        finally:
            engine.dispose()

    def new_tenant(self, name: str = "Acme", scopes: list[str] | None = None) -> Tenant:
        def make(tx: Tx) -> Tenant:
            ws = create_workspace(tx, name)
            _, secret = create_token(tx, ws.id, "test", scopes or ["read", "write", "admin"])
            return Tenant(ws.id, ws.widget_key, secret)

        return self.in_tx(make)

    def token_for(self, workspace_id: str, scopes: list[str]) -> str:
        return self.in_tx(lambda tx: create_token(tx, workspace_id, "scoped", scopes)[1])


@dataclass
class LiveServer(StoreAccess):
    """One uvicorn process. ``restart()`` keeps the database; ``kill()`` is SIGKILL."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.log_path = self.workdir / f"server-{self.port}-{int(time.time() * 1000)}.log"
        env = {**os.environ, **self.full_env(), "PYTHONUNBUFFERED": "1"}
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            # As `backchannel serve` runs it: forwarded headers are the app's to judge
            # (BACKCHANNEL_TRUSTED_PROXIES), never uvicorn's own.
            "--no-proxy-headers",
            "--ws-max-size",
            "65536",
            # Backchannel's own WebSocket and HTTP protocols, as `backchannel serve` runs them (app.logs).
            "--ws",
            "app.realtime.uvicorn_protocol:WebSocketProtocol",
            "--http",
            "app.http_protocol:HttpProtocol",
            "--ws-ping-interval",
            "0",
            "--log-level",
            "info",
        ]
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._log_file = log
        deadline = time.monotonic() + 60  # a loaded CI machine can take 20 s to import and bind
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log_file", None):
            self._log_file.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._log_file.close()

    def restart(self) -> LiveServer:
        self.stop()
        return self.start()

    def log(self) -> str:
        logs = sorted(self.workdir.glob(f"server-{self.port}-*.log"))
        return "\n".join(p.read_text(errors="replace") for p in logs)

    def client(self, tenant: Tenant | None = None, **kw: Any) -> httpx.Client:
        headers = {**(tenant.headers if tenant else {}), **kw.pop("headers", {})}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, **kw)


# In this process: why httpx's ASGITransport on a blocking portal, not Starlette's TestClient.
# Tests stay synchronous with the same ``httpx.Client`` they use against uvicorn, and the app
# needs one event loop that outlives each request: its lifespan starts the runner, the webhook
# dispatcher and the hub, which go on working between requests, as under uvicorn. An anyio
# blocking portal is that loop, in a thread; the server enters the app's lifespan there, and
# ``PortalTransport`` hands each request to ``httpx.ASGITransport`` on it. TestClient works
# the same way underneath, but each TestClient runs its own lifespan on its own loop, while a
# test here opens several clients (two tenants, twenty concurrent writers) on one running app.
# What it cannot show, so those tests keep ``LiveServer``: bytes on the wire (the transport
# hands the app the whole body at once and reads the whole response before returning it),
# WebSockets, the client's address (always 127.0.0.1 here), what uvicorn itself answers or
# adds, and a process that dies or restarts.


class PortalTransport(httpx.BaseTransport):
    """A synchronous transport that runs each request through the app on the portal's loop."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, app: Starlette) -> None:
        self.portal = portal
        self.asgi = httpx.ASGITransport(app=app)  # the client is 127.0.0.1, as for uvicorn on loopback

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        answer = self.portal.start_task_soon(self._send, request, body)
        # The timeout is kept here, on the test's side, as a socket's would be: an app that
        # blocks its own event loop still times out.
        try:
            return answer.result(timeout=request.extensions.get("timeout", {}).get("read"))
        except TimeoutError:
            answer.cancel()
            raise httpx.ReadTimeout("the app did not answer in time", request=request) from None

    async def _send(self, request: httpx.Request, body: bytes) -> httpx.Response:
        forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=body)
        response = await self.asgi.handle_async_request(forwarded)
        content = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=content)


class LogLines(logging.Handler):
    """What a server process would print: warnings and errors, tracebacks included."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def settings_from_env(env: dict[str, str]) -> Settings:
    """Settings read as a server process reads them: from ``BACKCHANNEL_*`` variables."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return Settings()


@dataclass
class InProcessServer(StoreAccess):
    """``create_app(settings)`` with its lifespan, in this process. ``restart()`` keeps the database."""

    app: Starlette | None = None
    transport: PortalTransport | None = None
    _stack: contextlib.ExitStack | None = None
    _log: LogLines = field(default_factory=LogLines)

    @property
    def url(self) -> str:
        # Not a host anyone serves: a request that bypasses ``client()`` fails loudly.
        return "http://backchannel.test"

    def start(self) -> InProcessServer:
        with contextlib.ExitStack() as stack:
            logging.getLogger().addHandler(self._log)
            stack.callback(logging.getLogger().removeHandler, self._log)
            portal = stack.enter_context(anyio.from_thread.start_blocking_portal("asyncio"))
            app = create_app(settings_from_env(self.full_env()))
            # The lifespan itself, as Starlette's router runs it for uvicorn's lifespan messages.
            stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
            self.app, self.transport = app, PortalTransport(portal, app)
            self._stack = stack.pop_all()
        return self

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = self.app = self.transport = None

    def restart(self) -> InProcessServer:
        self.stop()
        return self.start()

    def log(self) -> str:
        return "\n".join(self._log.lines)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        """One request from a fresh client, as ``httpx.get`` would make it to a real server."""
        with self.client() as client:
            return client.get(url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        with self.client() as client:
            return client.post(url, **kw)

    def client(self, tenant: Tenant | None = None, **kw: Any) -> httpx.Client:
        assert self.transport is not None, "the app is not running"
        headers = {**(tenant.headers if tenant else {}), **kw.pop("headers", {})}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, transport=self.transport, **kw)


# Helpers that work with either kind take a ``Server``.
Server = LiveServer | InProcessServer

_TEMPLATE: dict[str, Path] = {}


def migrated_sqlite(tmp_path: Path) -> str:
    """A fresh, migrated SQLite file: migrated once per session, then copied."""
    if "db" not in _TEMPLATE:
        template_dir = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"bc-template-{uuid.uuid4().hex}"
        template_dir.mkdir(parents=True)
        path = template_dir / "template.db"
        upgrade(Settings(database_url=f"sqlite:///{path}", env="test"))
        _TEMPLATE["db"] = path
    target = tmp_path / "backchannel.db"
    shutil.copy(_TEMPLATE["db"], target)
    return f"sqlite:///{target}"


def stop_and_report(servers: list[Any], request: pytest.FixtureRequest) -> None:
    """Stop every server a test started; print their logs if the test failed."""
    failed = getattr(request.node, "rep_call", None)
    for srv in servers:
        srv.stop()
        if failed is not None and failed.failed:
            print(f"\n----- server log ({srv.url}) -----\n{srv.log()[-20000:]}")


@pytest.fixture
def app_server_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """In-process apps on demand: ``app_server_factory(env={...}, database_url=...)``."""
    started: list[InProcessServer] = []

    def make(env: dict[str, str] | None = None, database_url: str | None = None, start: bool = True) -> InProcessServer:
        srv = InProcessServer(database_url or migrated_sqlite(tmp_path), tmp_path, env or {})
        started.append(srv)
        return srv.start() if start else srv

    yield make
    stop_and_report(started, request)


@pytest.fixture
def app_server(app_server_factory: Any) -> InProcessServer:
    return app_server_factory()  # type: ignore[no-any-return]


@pytest.fixture
def app_tenant(app_server: InProcessServer) -> Tenant:
    return app_server.new_tenant()


@pytest.fixture
def app_api(app_server: InProcessServer, app_tenant: Tenant) -> Iterator[httpx.Client]:
    with app_server.client(app_tenant) as client:
        yield client


@pytest.fixture(scope="module")
def module_app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """One in-process app shared by a module's tests, for many small read-only-ish checks."""
    workdir = tmp_path_factory.mktemp("module-app")
    srv = InProcessServer(migrated_sqlite(workdir), workdir).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def module_app_tenant(module_app_server: InProcessServer) -> Tenant:
    return module_app_server.new_tenant()


@pytest.fixture
def module_app_api(module_app_server: InProcessServer, module_app_tenant: Tenant) -> Iterator[httpx.Client]:
    with module_app_server.client(module_app_tenant) as client:
        yield client


@pytest.fixture
def server_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Make servers on demand: ``server_factory(env={...}, database_url=...)``."""
    started: list[LiveServer] = []

    def make(env: dict[str, str] | None = None, database_url: str | None = None, start: bool = True) -> LiveServer:
        srv = LiveServer(database_url or migrated_sqlite(tmp_path), tmp_path, env or {})
        started.append(srv)
        return srv.start() if start else srv

    yield make
    stop_and_report(started, request)


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server shared by a module's tests, for many small read-only-ish checks."""
    workdir = tmp_path_factory.mktemp("module-server")
    srv = LiveServer(migrated_sqlite(workdir), workdir).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def module_tenant(module_server: LiveServer) -> Tenant:
    return module_server.new_tenant()


@pytest.fixture
def module_api(module_server: LiveServer, module_tenant: Tenant) -> Iterator[httpx.Client]:
    with module_server.client(module_tenant) as client:
        yield client


@pytest.fixture
def server(server_factory: Any) -> LiveServer:
    return server_factory()  # type: ignore[no-any-return]


@pytest.fixture
def tenant(server: LiveServer) -> Tenant:
    return server.new_tenant()


@pytest.fixture
def api(server: LiveServer, tenant: Tenant) -> Iterator[httpx.Client]:
    with server.client(tenant) as client:
        yield client


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + rep.when, rep)


# -- external services -------------------------------------------------------------------


def postgres_url() -> str | None:
    return os.environ.get("BACKCHANNEL_TEST_POSTGRES_URL")


def redis_url() -> str | None:
    return os.environ.get("BACKCHANNEL_TEST_REDIS_URL")


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A brand-new PostgreSQL database for one test, dropped afterwards."""
    base = postgres_url()
    if not base:
        pytest.skip("PostgreSQL not configured: set BACKCHANNEL_TEST_POSTGRES_URL (see .ci/run)")
    import psycopg

    name = f"bc_test_{uuid.uuid4().hex[:12]}"
    admin_url = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    head, _, _ = admin_url.rpartition("/")
    try:
        yield f"{head}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_broker_url() -> str:
    url = redis_url()
    if not url:
        pytest.skip("Redis not configured: set BACKCHANNEL_TEST_REDIS_URL (see .ci/run)")
    return url


@dataclass
class OnDatabase:
    """An in-process app on SQLite or PostgreSQL (``on_each_database``), with a tenant and a client."""

    kind: str
    server: InProcessServer
    tenant: Tenant
    api: httpx.Client


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def on_each_database(request: pytest.FixtureRequest, app_server_factory: Any) -> Iterator[OnDatabase]:
    """The same test on a fresh SQLite file and on a fresh PostgreSQL database (skipped, with a
    message, when ``BACKCHANNEL_TEST_POSTGRES_URL`` is unset). A test marked
    ``@pytest.mark.app_env({...})`` gets those settings."""
    marker = request.node.get_closest_marker("app_env")
    env = marker.args[0] if marker else {}
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_database")
        upgrade(Settings(database_url=url, env="test"))
        server = app_server_factory(env=env, database_url=url)
    else:
        server = app_server_factory(env=env)
    tenant = server.new_tenant()
    with server.client(tenant) as api:
        yield OnDatabase(request.param, server, tenant, api)


# -- a real SMTP server on loopback, for the email tests -------------------------------------

@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[Inbox]:
    controller, inbox = smtp_server(smtp_port)
    try:
        yield inbox
    finally:
        controller.stop()
