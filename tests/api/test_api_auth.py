"""Tokens: required, hashed, scoped, revocable, with last_used_at."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import InProcessServer, Tenant
from tests.factories import assert_error


def test_requests_without_a_valid_token_are_401(app_server: InProcessServer, app_tenant: Tenant) -> None:
    with app_server.client() as anon:
        assert_error(anon.get("/api/v1/conversations"), 401, "unauthorized")
        assert_error(anon.get("/api/v1/users", headers={"Authorization": "Bearer bch_nope"}), 401, "invalid_token")
        assert_error(anon.get("/api/v1/users", headers={"Authorization": "Basic abc"}), 401)


def test_token_is_stored_only_as_a_hash(app_server: InProcessServer, app_tenant: Tenant) -> None:
    db_path = app_server.database_url.removeprefix("sqlite:///")
    app_server.stop()
    for suffix in ("", "-wal"):
        path = Path(db_path + suffix)
        if path.exists():
            assert app_tenant.token.encode() not in path.read_bytes()
    app_server.start()


def test_scopes_are_enforced(app_server: InProcessServer, app_tenant: Tenant) -> None:
    read_only = app_server.token_for(app_tenant.workspace_id, ["read"])
    writer = app_server.token_for(app_tenant.workspace_id, ["read", "write"])
    with app_server.client() as c:
        ro = {"Authorization": f"Bearer {read_only}"}
        rw = {"Authorization": f"Bearer {writer}"}
        assert c.get("/api/v1/users", headers=ro).status_code == 200
        err = assert_error(c.post("/api/v1/users", json={}, headers=ro), 403, "forbidden")
        assert err["details"] == {"required_scope": "write"}
        assert c.post("/api/v1/users", json={}, headers=rw).status_code == 201
        assert_error(c.get("/api/v1/api-tokens", headers=rw), 403)
        assert_error(c.post("/api/v1/api-tokens", json={"name": "x"}, headers=rw), 403)
        assert c.get("/api/v1/api-tokens", headers=app_tenant.headers).status_code == 200


def test_generate_list_use_and_revoke_tokens(app_api: httpx.Client, app_server: InProcessServer) -> None:
    r = app_api.post("/api/v1/api-tokens", json={"name": "bot", "scopes": ["read"]})
    assert r.status_code == 201
    created = r.json()
    assert created["token"].startswith("bch_") and created["scopes"] == ["read"]
    listed = app_api.get("/api/v1/api-tokens").json()["data"]
    row = next(t for t in listed if t["id"] == created["id"])
    assert "token" not in row and "token_hash" not in row
    assert row["prefix"] == created["token"][:10] and row["last_used_at"] is None

    with app_server.client() as c:
        assert c.get("/api/v1/users", headers={"Authorization": f"Bearer {created['token']}"}).status_code == 200
    row = next(t for t in app_api.get("/api/v1/api-tokens").json()["data"] if t["id"] == created["id"])
    assert row["last_used_at"] is not None

    assert app_api.delete(f"/api/v1/api-tokens/{created['id']}").status_code == 204
    with app_server.client() as c:
        r = c.get("/api/v1/users", headers={"Authorization": f"Bearer {created['token']}"})
        assert_error(r, 401, "invalid_token")
    assert_error(app_api.delete("/api/v1/api-tokens/tok_missing"), 404)


def test_unknown_scope_is_422(app_api: httpx.Client) -> None:
    err = assert_error(app_api.post("/api/v1/api-tokens", json={"name": "x", "scopes": ["root"]}), 422)
    assert err["details"][0]["field"].startswith("scopes")
