"""Settings > Team and Your account over plain HTTP (in process): invite errors in one submit,
role changes, password resets, removal, each user's own name and password, the audit trail
of each, and another workspace's members out of reach."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import InProcessServer, Tenant
from tests.console.support import PASSWORD, console_client, csrf_from, make_console_user, page_csrf

TEAM = "/console/settings/team"


def _members(server: InProcessServer, workspace_id: str) -> dict[str, dict[str, Any]]:
    def read(tx: Any) -> dict[str, dict[str, Any]]:
        rows = tx.db.run("SELECT id, email, role, agent_id FROM console_user WHERE workspace_id = ?", (workspace_id,))
        return {r[1]: {"id": r[0], "role": r[2], "agent_id": r[3]} for r in rows}

    return server.in_tx(read)  # type: ignore[no-any-return]


def _can_log_in(server: InProcessServer, email: str, password: str) -> bool:
    with server.client(headers={"origin": server.url}) as c:
        page = c.get("/console/login")
        r = c.post("/console/login", data={"email": email, "password": password, "csrf_token": csrf_from(page.text)})
        return r.status_code == 303


def _audit_actions(api: httpx.Client) -> list[str]:
    return [e["action"] for e in api.get("/api/v1/audit-log").json()["data"]]


def test_an_invite_names_every_wrong_field_at_once(app_server: InProcessServer, app_tenant: Tenant) -> None:
    c = console_client(app_server, make_console_user(app_server, app_tenant))
    r = c.post(
        TEAM,
        data={
            "csrf_token": page_csrf(c, TEAM),
            "name": "N" * 121,
            "email": "not-an-email",
            "password": "short",
            "role": "agent",
        },
    )
    assert r.status_code == 422
    for field in ("name", "email", "password"):
        assert f'id="invite-{field}-error"' in r.text, field
    assert "not-an-email" in r.text and "this one has 5" in r.text  # the bad values, named
    assert "Value error" not in r.text


def test_roles_passwords_and_removal(app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client) -> None:
    admin = make_console_user(app_server, app_tenant, "ada@example.com", name="Ada")
    make_console_user(app_server, app_tenant, "alan@example.com", role="agent", name="Alan")
    members = _members(app_server, app_tenant.workspace_id)
    alan, ada = members["alan@example.com"], members["ada@example.com"]
    c = console_client(app_server, admin)
    alans_session = console_client(app_server, "alan@example.com")
    csrf = page_csrf(c, TEAM)

    # The last admin cannot be demoted (not even by themself through the form).
    r = c.post(f"{TEAM}/{ada['id']}/role", data={"csrf_token": csrf, "role": "agent"})
    assert r.status_code == 303
    assert _members(app_server, app_tenant.workspace_id)["ada@example.com"]["role"] == "admin"
    assert "at least one admin" in c.get(TEAM).text

    assert c.post(f"{TEAM}/{alan['id']}/role", data={"csrf_token": csrf, "role": "admin"}).status_code == 303
    assert _members(app_server, app_tenant.workspace_id)["alan@example.com"]["role"] == "admin"
    assert "Alan is now an admin" in c.get(TEAM).text

    # A reset password: the old one stops working, the new one works, Alan's sessions end.
    r = c.post(f"{TEAM}/{alan['id']}/password", data={"csrf_token": csrf, "password": "short"})
    assert r.status_code == 303 and "not changed" in c.get(TEAM).text
    assert _can_log_in(app_server, "alan@example.com", PASSWORD)
    assert (
        c.post(f"{TEAM}/{alan['id']}/password", data={"csrf_token": csrf, "password": "a brand new one"}).status_code
        == 303
    )
    assert not _can_log_in(app_server, "alan@example.com", PASSWORD)
    assert _can_log_in(app_server, "alan@example.com", "a brand new one")
    assert alans_session.get("/console/inbox").status_code == 303  # back to the login page

    # Removal: never yourself; Alan's open conversation goes back to the queue, unassigned.
    assert c.post(f"{TEAM}/{ada['id']}/remove", data={"csrf_token": csrf}).status_code == 303
    assert "ada@example.com" in _members(app_server, app_tenant.workspace_id)
    user = app_api.post("/api/v1/users", json={"name": "Bea"}).json()
    conv = app_api.post(
        "/api/v1/conversations",
        json={
            "user_id": user["id"],
            "messages": [{"actor": {"type": "user"}, "message_parts": [{"text": {"content": "hello"}}]}],
        },
    ).json()
    assert (
        app_api.patch(f"/api/v1/conversations/{conv['id']}", json={"assignee_id": alan["agent_id"]}).status_code == 200
    )
    assert c.post(f"{TEAM}/{alan['id']}/remove", data={"csrf_token": csrf}).status_code == 303
    assert "alan@example.com" not in _members(app_server, app_tenant.workspace_id)
    assert not _can_log_in(app_server, "alan@example.com", "a brand new one")
    assert app_api.get(f"/api/v1/conversations/{conv['id']}").json()["assignee_id"] is None
    agent = app_api.get(f"/api/v1/agents/{alan['agent_id']}").json()
    assert agent["name"] == "Alan" and agent["status"] == "away"  # earlier replies keep their name

    actions = _audit_actions(app_api)
    for action in ("console_user.role_changed", "console_user.password_reset", "console_user.removed"):
        assert action in actions, action
    assert actions.count("console_user.role_changed") == 1  # the refused demotion left no entry


def test_each_user_changes_their_own_name_and_password(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    email = make_console_user(app_server, app_tenant, "grace@example.com", role="agent", name="Grace")
    me = _members(app_server, app_tenant.workspace_id)[email]
    c = console_client(app_server, email)
    csrf = page_csrf(c, "/console/account")
    assert c.post("/console/account/name", data={"csrf_token": csrf, "name": ""}).status_code == 422
    assert c.post("/console/account/name", data={"csrf_token": csrf, "name": "Grace Hopper"}).status_code == 303
    assert app_api.get(f"/api/v1/agents/{me['agent_id']}").json()["name"] == "Grace Hopper"

    r = c.post(
        "/console/account/password",
        data={
            "csrf_token": csrf,
            "current_password": "wrong password",
            "new_password": "tiny",
            "new_password_again": "tiny",
        },
    )
    assert r.status_code == 422
    assert "not your current password" in r.text and "at least 8 characters" in r.text
    r = c.post(
        "/console/account/password",
        data={
            "csrf_token": csrf,
            "current_password": PASSWORD,
            "new_password": "a good new password",
            "new_password_again": "different",
        },
    )
    assert r.status_code == 422 and "differ" in r.text
    r = c.post(
        "/console/account/password",
        data={
            "csrf_token": csrf,
            "current_password": PASSWORD,
            "new_password": "a good new password",
            "new_password_again": "a good new password",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert c.get("/console/inbox").status_code == 303  # this session ended too
    assert _can_log_in(app_server, email, "a good new password") and not _can_log_in(app_server, email, PASSWORD)
    assert "console_user.password_changed" in _audit_actions(app_api)
    # An agent cannot touch the team.
    agent = console_client(app_server, email, "a good new password")
    r = agent.post(
        f"{TEAM}/{me['id']}/role", data={"csrf_token": page_csrf(agent, "/console/account"), "role": "admin"}
    )
    assert r.status_code == 403
    assert _members(app_server, app_tenant.workspace_id)[email]["role"] == "agent"


def test_another_workspaces_members_are_out_of_reach(app_server: InProcessServer, app_tenant: Tenant) -> None:
    other = app_server.new_tenant("Other Co")
    make_console_user(app_server, other, "them@example.com", role="agent")
    theirs = _members(app_server, other.workspace_id)["them@example.com"]
    c = console_client(app_server, make_console_user(app_server, app_tenant))
    csrf = page_csrf(c, TEAM)
    for action, data in (("role", {"role": "admin"}), ("password", {"password": "taken over!"}), ("remove", {})):
        r = c.post(f"{TEAM}/{theirs['id']}/{action}", data={"csrf_token": csrf, **data})
        assert r.status_code == 404, action
    assert _members(app_server, other.workspace_id)["them@example.com"]["role"] == "agent"
    assert _can_log_in(app_server, "them@example.com", PASSWORD)
