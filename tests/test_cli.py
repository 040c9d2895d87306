"""The ``backchannel`` CLI, run as a user would: ``--json`` anywhere, ``--version``, help for every
option, and ``serve``'s refusals (several workers on ``memory://``, the dev secret beyond loopback)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from app.store.migrate import current_head
from tests.conftest import ROOT, LiveServer, free_port
from tests.outside import demo_widget_key, freddy_greeting


def cli(db_url: str, *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BACKCHANNEL_DATABASE_URL": db_url}
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def test_workspace_token_and_admin_lifecycle(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    assert as_json(cli(db, "migrate", "--json"))["status"] == "ok"
    ws = as_json(cli(db, "workspaces", "create", "Acme Bank", "--json"))
    assert set(ws) == {"id", "name", "widget_key"} and ws["name"] == "Acme Bank"
    tok = as_json(
        cli(db, "tokens", "create", "--workspace", ws["id"], "--name", "bot", "--scopes", "read,write", "--json")
    )
    assert set(tok) == {"id", "name", "token", "scopes"}
    assert tok["token"].startswith("bch_") and tok["scopes"] == ["read", "write"]
    default = as_json(cli(db, "tokens", "create", "--workspace", ws["id"], "--name", "ops", "--json"))
    assert default["scopes"] == ["read", "write", "admin"]
    listed = as_json(cli(db, "tokens", "list", "--workspace", ws["id"], "--json"))
    assert {t["id"] for t in listed} == {tok["id"], default["id"]}
    assert all("token" not in t for t in listed)
    revoked = as_json(cli(db, "tokens", "revoke", tok["id"], "--workspace", ws["id"], "--json"))
    assert revoked["revoked_at"]
    admin = as_json(
        cli(
            db,
            "admins",
            "create",
            "--workspace",
            ws["id"],
            "--email",
            "Ops@Acme.test",
            "--json",
            stdin="correct horse battery\n",
        )
    )
    assert admin["email"] == "ops@acme.test" and admin["role"] == "admin"
    # errors are clear and non-zero
    bad = cli(db, "tokens", "create", "--workspace", "wsp_nope", "--name", "x", ok=False)
    assert bad.returncode != 0 and "workspace" in bad.stderr.lower()
    short = cli(db, "admins", "create", "--workspace", ws["id"], "--email", "x@y.z", stdin="short\n", ok=False)
    assert short.returncode != 0 and "password" in short.stderr.lower()


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "app.cli", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    for command in ("serve", "migrate", "workspaces", "tokens", "admins"):
        assert command in out


def test_a_cli_token_drives_the_api(server: LiveServer) -> None:
    ws = as_json(cli(server.database_url, "workspaces", "create", "Shop", "--json"))
    tok = as_json(cli(server.database_url, "tokens", "create", "--workspace", ws["id"], "--name", "bot", "--json"))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tok['token']}"}) as c:
        user = c.post("/api/v1/users", json={"name": "Ada"}).json()
        conv = c.post("/api/v1/conversations", json={"user_id": user["id"]}).json()
        assert (
            c.post(
                f"/api/v1/conversations/{conv['id']}/messages", json={"message_parts": [{"text": {"content": "Hi"}}]}
            ).status_code
            == 201
        )


def test_json_goes_before_or_after_the_command(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    cli(db, "migrate")
    ws = as_json(cli(db, "--json", "workspaces", "create", "Acme"))
    assert ws["name"] == "Acme"
    made = as_json(cli(db, "--json", "tokens", "create", "--workspace", ws["id"], "--name", "bot"))
    for args in (
        ["--json", "tokens", "list", "--workspace", ws["id"]],
        ["tokens", "--json", "list", "--workspace", ws["id"]],
        ["tokens", "list", "--workspace", ws["id"], "--json"],
        ["tokens", "list", "--json", "--workspace", ws["id"]],
    ):
        assert [t["id"] for t in as_json(cli(db, *args))] == [made["id"]], args
    assert as_json(cli(db, "--json", "migrate"))["status"] == "ok"
    assert as_json(cli(db, "migrate", "--json"))["status"] == "ok"
    text = cli(db, "tokens", "list", "--workspace", ws["id"]).stdout
    assert text.startswith(made["id"]) and "bot" in text  # without --json: text


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    proc = subprocess.run([sys.executable, "-m", "app.cli", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"backchannel {version('backchannel')}"


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, f"{path} {name}")


def test_every_command_and_option_has_help() -> None:
    from app.cli import build_parser

    walked = dict(_walk(build_parser(), "backchannel"))
    assert {"backchannel serve", "backchannel migrate", "backchannel tokens list", "backchannel admins create"} <= set(
        walked
    )
    missing = []
    for path, parser in walked.items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {c.dest}" for c in action._choices_actions if not c.help]
                missing += [f"{path} {name}" for name in action.choices if name not in {c.dest for c in action._choices_actions}]
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == [], f"options and commands without help: {missing}"
    for path, parser in walked.items():  # and every command's --help renders
        assert parser.format_help().startswith(f"usage: {path}"), path


def serve_refusal(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``backchannel serve`` that must refuse to start: non-zero, one ``error:`` line, nothing migrated."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_") and k != "WEB_CONCURRENCY"}
    full_env.update({"BACKCHANNEL_DATABASE_URL": f"sqlite:///{tmp_path}/never.db", **env})
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port()), *args],
        cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not (tmp_path / "never.db").exists()
    return proc


def test_several_workers_with_the_memory_broker_are_refused_however_asked(tmp_path: Path) -> None:
    by_flag = serve_refusal(tmp_path, "--workers", "2", BACKCHANNEL_SECRET_KEY="k" * 40)
    assert "BROKER_URL=redis://" in by_flag.stderr and "2 worker processes" in by_flag.stderr
    by_env = serve_refusal(tmp_path, WEB_CONCURRENCY="3", BACKCHANNEL_SECRET_KEY="k" * 40)
    assert "BROKER_URL=redis://" in by_env.stderr and "3 worker processes" in by_env.stderr
    explicit = serve_refusal(tmp_path, "--workers", "2", BACKCHANNEL_BROKER_URL="memory://", WEB_CONCURRENCY="1")
    assert "2 worker processes" in explicit.stderr
    assert "WEB_CONCURRENCY" in serve_refusal(tmp_path, WEB_CONCURRENCY="lots").stderr
    zero = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--workers", "0"], capture_output=True, text=True)
    assert zero.returncode == 2 and "must be at least 1" in zero.stderr


def test_the_public_dev_secret_never_listens_beyond_loopback(tmp_path: Path) -> None:
    """Issue 15.9: with the built-in development key, only loopback; ENV=production refuses it anyway."""
    for host in ("0.0.0.0", "::", *_this_machines_addresses()):
        refused = serve_refusal(tmp_path, "--host", host)
        assert f"refusing to listen on {host} with the public development secret key" in refused.stderr
        assert "BACKCHANNEL_SECRET_KEY" in refused.stderr
    assert "SECRET_KEY" in serve_refusal(tmp_path, BACKCHANNEL_ENV="production").stderr


def _this_machines_addresses() -> list[str]:
    """The host's own non-loopback addresses (a LAN address is as reachable as 0.0.0.0)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return []
    return sorted({str(i[4][0]) for i in infos if not ipaddress.ip_address(i[4][0]).is_loopback})


def start_serve(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_") and k != "WEB_CONCURRENCY"}
    full_env.update({"BACKCHANNEL_DATABASE_URL": f"sqlite:///{tmp_path}/serve.db", "PYTHONUNBUFFERED": "1", **env})
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *args],
        cwd=tmp_path, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(proc.communicate()[0])


def stop_serve(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def test_the_dev_secret_on_loopback_serves_with_a_loud_warning(tmp_path: Path) -> None:
    proc, url = start_serve(tmp_path, "--host", "127.0.0.1")
    warnings = [line for line in stop_serve(proc).splitlines() if "BACKCHANNEL_SECRET_KEY is not set" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "public development key" in warnings[0]
    proc, url = start_serve(tmp_path, BACKCHANNEL_LOG_FORMAT="json")
    (warning,) = [line for line in stop_serve(proc).splitlines() if "BACKCHANNEL_SECRET_KEY is not set" in line]
    assert json.loads(warning)["level"] == "WARNING"  # the server's own log format
    proc, url = start_serve(tmp_path, BACKCHANNEL_SECRET_KEY="a-real-key-" + "x" * 40)
    assert "BACKCHANNEL_SECRET_KEY is not set" not in stop_serve(proc)


def test_serve_migrates_first_unless_told_not_to(tmp_path: Path) -> None:
    key = {"BACKCHANNEL_SECRET_KEY": "a-real-key-" + "x" * 40}
    proc, url = start_serve(tmp_path, "--no-migrate", **key)
    try:
        assert httpx.get(url + "/readyz").status_code == 200
    finally:
        stop_serve(proc)
    with sqlite3.connect(tmp_path / "serve.db") as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'alembic_version'").fetchall() == []
    proc, url = start_serve(tmp_path, **key)
    stop_serve(proc)
    with sqlite3.connect(tmp_path / "serve.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(current_head(),)]


def test_a_bad_setting_is_one_line_that_names_it_and_shows_no_value(tmp_path: Path) -> None:
    refused = serve_refusal(
        tmp_path,
        BACKCHANNEL_DATABASE_URL="postgresql://bc:hunter2-sentinel@db.invalid/bc",
        BACKCHANNEL_DATABASE_WRITERS="99",
    )
    assert "BACKCHANNEL_DATABASE_WRITERS" in refused.stderr and "hunter2" not in refused.stderr


def test_serve_demo_on_another_port_links_everything_to_that_port(tmp_path: Path) -> None:
    """``backchannel serve --demo --port P`` without PUBLIC_URL: links and the demo bot use port P
    (PUBLIC_URL defaults to where the server listens), and Freddy greets a customer."""
    proc, url = start_serve(tmp_path, "--demo", BACKCHANNEL_SECRET_KEY="a-real-key-" + "x" * 40)
    try:
        greeting = freddy_greeting(url, demo_widget_key(url))
        assert "I'm Freddy" in greeting["message_parts"][0]["text"]["content"]
    finally:
        stop_serve(proc)


def test_a_database_never_migrated_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    done = cli(f"sqlite:///{tmp_path / 'fresh.db'}", "workspaces", "create", "Acme", ok=False)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "backchannel migrate" in done.stderr and "Traceback" not in done.stderr
