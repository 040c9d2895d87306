"""The audit log (SPEC §13): every admin action recorded with the action, ``GET
/api/v1/audit-log`` newest first with cursor paging (admin only, append-only), the console's
"Audit log" page, and the CLI's actions; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import InProcessServer, OnDatabase, Tenant
from tests.console.support import console_client, make_console_user, page_csrf
from tests.factories import assert_error, make_user
from tests.test_cli import as_json, cli


def audit_log(api: httpx.Client, limit: int = 3) -> list[dict[str, Any]]:
    """Every entry, page by page (small pages, so the cursor is exercised)."""
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        r = api.get("/api/v1/audit-log", params=params)
        assert r.status_code == 200, r.text
        out += r.json()["data"]
        if not r.json()["next_cursor"]:
            return out
        params = {"limit": limit, "cursor": r.json()["next_cursor"]}


def test_api_admin_actions_are_recorded_newest_first(on_each_database: OnDatabase) -> None:
    db = on_each_database
    api = db.api
    token = api.post("/api/v1/api-tokens", json={"name": "crm", "scopes": ["read"]}).json()
    api.delete(f"/api/v1/api-tokens/{token['id']}")
    ep = api.post("/api/v1/webhook-endpoints", json={"url": "https://hooks.example.com/a"}).json()
    api.patch(f"/api/v1/webhook-endpoints/{ep['id']}", json={"description": "CRM"})
    api.post(f"/api/v1/webhook-endpoints/{ep['id']}/rotate-secret", json={})
    api.delete(f"/api/v1/webhook-endpoints/{ep['id']}")
    api.patch("/api/v1/widget-settings", json={"greeting": "Hello"})
    api.patch("/api/v1/workspace", json={"retention_days": 90})
    user = make_user(api, name="Gone")
    assert api.delete(f"/api/v1/users/{user['id']}").status_code == 204
    # Refused or not admin actions leave nothing.
    assert_error(api.patch("/api/v1/workspace", json={"retention_days": 0}), 422)
    api.get("/api/v1/users")

    entries = audit_log(api)
    assert [(e["action"], e["target"]) for e in entries] == [
        ("user.erased", {"type": "user", "id": user["id"]}),
        ("workspace.updated", {"type": "workspace", "id": db.tenant.workspace_id}),
        ("widget_settings.updated", {"type": "workspace", "id": db.tenant.workspace_id}),
        ("webhook_endpoint.deleted", {"type": "webhook_endpoint", "id": ep["id"]}),
        ("webhook_endpoint.secret_rotated", {"type": "webhook_endpoint", "id": ep["id"]}),
        ("webhook_endpoint.updated", {"type": "webhook_endpoint", "id": ep["id"]}),
        ("webhook_endpoint.created", {"type": "webhook_endpoint", "id": ep["id"]}),
        ("api_token.revoked", {"type": "api_token", "id": token["id"]}),
        ("api_token.created", {"type": "api_token", "id": token["id"]}),
    ]
    first = entries[-1]
    assert first["actor"]["type"] == "token" and first["actor"]["name"] == "test" and first["actor"]["id"]
    assert first["ip"] and first["at"].endswith("Z") and first["id"].startswith("aud_")
    assert len({e["id"] for e in entries}) == len(entries)
    # A secret never lands in the log.
    assert "whsec_" not in str(entries) and "bch_" not in str(entries)


def test_the_log_is_admin_only_append_only_and_per_workspace(on_each_database: OnDatabase) -> None:
    db = on_each_database
    db.api.patch("/api/v1/workspace", json={"name": "Renamed"})
    reader = db.server.new_tenant("Other", scopes=["read", "write"])
    with db.server.client(reader) as not_admin:
        assert_error(not_admin.get("/api/v1/audit-log"), 403)
    other = db.server.new_tenant("Other admin")
    with db.server.client(other) as other_api:
        assert audit_log(other_api) == []  # Acme's entries are invisible here
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert_error(db.api.request(method, "/api/v1/audit-log"), 405)
    [entry] = audit_log(db.api)
    assert_error(db.api.delete(f"/api/v1/audit-log/{entry['id']}"), 404)
    assert_error(db.api.get("/api/v1/audit-log", params={"cursor": "nonsense"}), 422)
    assert audit_log(db.api) == [entry]


def test_console_logins_reveals_and_changes_are_recorded(app_server: InProcessServer, app_tenant: Tenant,
                                                         app_api: httpx.Client) -> None:  # fmt: skip
    email = make_console_user(app_server, app_tenant, "grace@example.com")
    with app_server.client(headers={"origin": app_server.url}) as stranger:
        page = stranger.get("/console/login")
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        r = stranger.post("/console/login", data={"email": email, "password": "wrong password", "csrf_token": token})
        assert r.status_code == 401
    console = console_client(app_server, email)
    ep = app_api.post("/api/v1/webhook-endpoints", json={"url": "https://hooks.example.com/b"}).json()
    csrf = page_csrf(console, "/console/settings/webhooks")
    r = console.post(f"/console/settings/webhooks/{ep['id']}/reveal-secret", data={"csrf_token": csrf, "back": "endpoint"})
    assert r.status_code == 200 and "whsec_" in r.text
    r = console.post("/console/settings/widget/reveal-secret", data={"csrf_token": csrf})
    assert r.status_code == 200
    r = console.post("/console/settings/team", data={"csrf_token": csrf, "name": "Lin", "email": "lin@example.com",
                                                      "password": "a long enough password", "role": "agent"})  # fmt: skip
    assert r.status_code == 303, r.text
    r = console.post("/console/settings/retention", data={"csrf_token": csrf, "retention_days": "45"})
    assert r.status_code == 303, r.text
    assert app_api.get("/api/v1/workspace").json()["retention_days"] == 45

    entries = audit_log(app_api)
    console_entries = [e for e in entries if e["actor"]["type"] == "console_user"]
    assert [e["action"] for e in console_entries] == [
        "workspace.updated",
        "console_user.created",
        "widget.identity_secret_revealed",
        "webhook_endpoint.secret_revealed",
        "console.login",
        "console.login_failed",
    ]
    failed = console_entries[-1]
    assert failed["actor"]["id"] is None and failed["actor"]["name"] == email and failed["target"]["type"] == "console_user"
    assert console_entries[-2]["actor"]["name"] == email and console_entries[-2]["actor"]["id"]

    page = console.get("/console/settings/audit-log")
    assert page.status_code == 200
    for action in ("webhook_endpoint.secret_revealed", "console.login_failed", "webhook_endpoint.created"):
        assert action in page.text
    assert 'href="/console/settings/audit-log" aria-current="page"' in page.text  # the "Audit log" nav link


def test_the_clis_admin_actions_are_recorded(tmp_path: Any) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    cli(db, "migrate")
    ws = as_json(cli(db, "workspaces", "create", "Acme", "--json"))
    tok = as_json(cli(db, "tokens", "create", "--workspace", ws["id"], "--name", "ops", "--json"))
    cli(db, "tokens", "revoke", tok["id"], "--workspace", ws["id"])
    admin = as_json(cli(db, "tokens", "create", "--workspace", ws["id"], "--name", "reader", "--json"))
    server = InProcessServer(db, tmp_path, {}).start()
    try:
        with server.client(Tenant(ws["id"], "", admin["token"])) as api:
            entries = audit_log(api)
    finally:
        server.stop()
    assert [(e["action"], e["actor"]["type"], e["target"]["id"]) for e in entries] == [
        ("api_token.created", "cli", admin["id"]),
        ("api_token.revoked", "cli", tok["id"]),
        ("api_token.created", "cli", tok["id"]),
        ("workspace.created", "cli", ws["id"]),
    ]
