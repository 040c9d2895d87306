"""The ``backchannel`` CLI, run as a user would, with ``--json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ROOT, LiveServer


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
