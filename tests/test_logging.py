"""Logging as an operator sees it: a real ``backchannel serve`` process, its output read back.

One line per request (method, path without the query string, status, duration, request id,
client), ``X-Request-Id`` accepted when sane or made, and echoed; ``LOG_FORMAT=json`` parses;
``LOG_LEVEL`` filters; a query-string token never appears; an unhandled exception is logged
as its type, place and request id, never its message (a sentinel value proves it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import ROOT, TEST_ENV, Tenant, free_port, migrated_sqlite
from tests.crashing_app import SENTINEL

ORIGIN = "http://shop.test"


@dataclass
class Served:
    """One server process started the way an operator starts it; ``output()`` is what it printed."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    database_url: str

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines_with(self, needle: str, at_least: int = 1, timeout: float = 5) -> list[str]:
        """The lines containing ``needle``, once there are ``at_least`` of them (an access line
        is written just after its response is sent) or the time is up."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.output().splitlines() if needle in line]
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def new_tenant(self) -> Tenant:
        from tests.conftest import LiveServer

        return LiveServer(self.database_url, self.log_path.parent).new_tenant()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    procs: list[Served] = []

    def start(env: dict[str, str] | None = None, command: list[str] | None = None) -> Served:
        port = free_port()
        database_url = migrated_sqlite(tmp_path)
        log_path = tmp_path / f"serve-{port}.log"
        full_env = {**os.environ, **TEST_ENV, "BACKCHANNEL_DATABASE_URL": database_url, **(env or {})}
        full_env["BACKCHANNEL_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        cmd = command or [sys.executable, "-m", "app.cli", "serve", "--port"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([*cmd, str(port)], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        served = Served(proc, f"http://127.0.0.1:{port}", log_path, database_url)
        procs.append(served)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, served.output()
            try:
                if httpx.get(served.url + "/healthz", timeout=0.5).status_code == 200:
                    return served
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"server did not start:\n{served.output()}")

    yield start
    for served in procs:
        if served.proc.poll() is None:
            served.proc.send_signal(signal.SIGTERM)
            try:
                served.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                served.proc.kill()
                served.proc.wait()


def test_text_lines_one_per_request_with_request_id_and_never_a_query_string(serve: Any) -> None:
    srv = serve()
    tenant = srv.new_tenant()
    r = httpx.get(srv.url + "/healthz", headers={"X-Request-Id": "lb-7f3a.9c:01"})
    assert r.headers["x-request-id"] == "lb-7f3a.9c:01"  # a sane incoming id is kept and echoed
    # An id that is not sane (too long, odd characters, header injection) is replaced.
    for bad in ("x" * 200, "a b", "<script>", "id\tinjected"):
        made = httpx.get(srv.url + "/healthz", headers={"X-Request-Id": bad}).headers["x-request-id"]
        assert made != bad and len(made) == 32 and made.isalnum()
    # A hosted-form link and an API call carrying a token in the query string.
    secret = "qs-token-5b1e8d-never-logged"
    httpx.get(srv.url + f"/webview/forms/abc?t={secret}")
    httpx.get(srv.url + f"/api/v1/users?external_id={secret}", headers={"Authorization": f"Bearer {tenant.token}"})
    [line] = srv.lines_with("request_id=lb-7f3a.9c:01")
    assert " INFO backchannel.access GET /healthz 200 " in line and "ms request_id=" in line
    assert "client=127.0.0.1" in line
    assert srv.lines_with("GET /api/v1/users 200 ")
    assert srv.lines_with("GET /webview/forms/abc ")
    output = srv.output()
    assert secret not in output and "?" not in "".join(srv.lines_with("backchannel.access"))
    assert tenant.token not in output
    assert (
        len(srv.lines_with("GET /healthz ", at_least=6)) == 1 + 5
    )  # one line per request: the start-up probe, then ours


def test_json_lines_parse_and_carry_the_fields(serve: Any) -> None:
    srv = serve({"BACKCHANNEL_LOG_FORMAT": "json"})
    r = httpx.get(srv.url + "/healthz?token=abc123secret", headers={"X-Request-Id": "req-1"})
    assert r.headers["x-request-id"] == "req-1"
    httpx.get(srv.url + "/nope")
    lines = srv.lines_with('"backchannel.access"', at_least=3)
    records = [json.loads(line) for line in srv.output().splitlines() if line.startswith("{")]
    assert len(records) == len(srv.output().strip().splitlines())  # every line is JSON, uvicorn's too
    access = [rec for rec in records if rec["logger"] == "backchannel.access"]
    assert len(access) == len(lines) == 1 + 2  # the start-up probe, then ours
    first = access[1]
    assert first["method"] == "GET" and first["path"] == "/healthz" and first["status"] == 200
    assert first["request_id"] == "req-1" and first["client"] == "127.0.0.1" and first["level"] == "INFO"
    assert isinstance(first["duration_ms"], float) and first["time"].endswith("Z")
    assert access[2]["status"] == 404 and access[2]["path"] == "/nope"
    assert "abc123secret" not in srv.output()
    assert any(rec["logger"] == "uvicorn.error" and "startup complete" in rec["message"] for rec in records)


def test_log_level_warning_hides_the_access_lines(serve: Any) -> None:
    srv = serve({"BACKCHANNEL_LOG_LEVEL": "WARNING"})
    httpx.get(srv.url + "/healthz")
    time.sleep(0.3)
    assert "backchannel.access" not in srv.output()


def test_a_widget_socket_handshake_gets_a_line_too(serve: Any) -> None:
    srv = serve({"BACKCHANNEL_TRUSTED_PROXIES": "127.0.0.1"})
    tenant = srv.new_tenant()
    session = httpx.post(
        srv.url + "/widget/v1/session", json={"widget_key": tenant.widget_key}, headers={"Origin": ORIGIN}
    ).json()
    ws_url = srv.url.replace("http", "ws") + session["socket_path"]
    headers = {"X-Forwarded-For": "203.0.113.44", "X-Request-Id": "ws-1"}
    with connect(ws_url, origin=ORIGIN, additional_headers=headers) as ws:  # type: ignore[arg-type]
        ws.send(json.dumps({"type": "auth", "token": session["session_token"]}))
        assert ws.response.headers["x-request-id"] == "ws-1"
    [line] = srv.lines_with("request_id=ws-1")
    assert "widget_key" not in srv.output()  # uvicorn's own socket lines (with the query) are gone
    assert f"WS {session['socket_path'].split('?')[0]} 101 accepted" in line and "client=203.0.113.44" in line
    # A handshake the app refuses is logged with its outcome.
    with pytest.raises(InvalidStatus):
        connect(srv.url.replace("http", "ws") + "/widget/v1/ws?widget_key=wk_nope", origin=ORIGIN)
    assert srv.lines_with(" refused")


def test_an_unhandled_exception_logs_its_type_and_request_id_never_its_values(serve: Any) -> None:
    srv = serve(command=[sys.executable, "-m", "tests.crashing_app"])
    r = httpx.post(srv.url + "/api/v1/crash", headers={"X-Request-Id": "crash-1"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "crash-1"
    assert r.json() == {"error": {"code": "internal", "message": "Something went wrong on our side.", "details": None}}
    page = httpx.get(srv.url + f"/crash?card={SENTINEL}", headers={"X-Request-Id": "crash-2"})
    assert page.status_code == 500 and page.text == "Internal Server Error"
    with pytest.raises(ConnectionClosed), connect(srv.url.replace("http", "ws") + "/crash-ws") as ws:
        ws.recv(timeout=5)
    [sql] = srv.lines_with("unhandled IntegrityError")
    assert "POST /api/v1/crash" in sql and "request id crash-1" in sql
    assert "at tests/crashing_app.py:" in sql  # the innermost frame of our code, not SQLAlchemy's
    assert srv.lines_with("unhandled ValueError in GET /crash at tests/crashing_app.py:")
    assert srv.lines_with("request_id=crash-2")  # the access line of that request
    assert srv.lines_with("builtins.KeyError")  # uvicorn's own report of the socket's error: type only
    # The edge itself failing (before it answers): the same error shape, the same log line.
    edge = httpx.get(srv.url + "/api/v1/conversations", headers={"X-Crash-Edge": "1"})
    assert edge.status_code == 500 and edge.json() == r.json()
    assert srv.lines_with("unhandled RuntimeError on GET /api/v1/conversations at tests/crashing_app.py:")
    output = srv.output()
    assert SENTINEL not in output, output
    assert "INSERT INTO" not in output  # nor the SQL
