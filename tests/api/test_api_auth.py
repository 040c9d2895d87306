"""Tokens: required, hashed, scoped, revocable, with last_used_at."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import LiveServer, Tenant
from tests.factories import assert_error


def test_requests_without_a_valid_token_are_401(server: LiveServer, tenant: Tenant) -> None:
    with server.client() as anon:
        assert_error(anon.get("/api/v1/conversations"), 401, "unauthorized")
        assert_error(anon.get("/api/v1/users", headers={"Authorization": "Bearer bch_nope"}), 401, "invalid_token")
        assert_error(anon.get("/api/v1/users", headers={"Authorization": "Basic abc"}), 401)


def test_token_is_stored_only_as_a_hash(server: LiveServer, tenant: Tenant) -> None:
    db_path = server.database_url.removeprefix("sqlite:///")
    server.stop()
    for suffix in ("", "-wal"):
        path = Path(db_path + suffix)
        if path.exists():
            assert tenant.token.encode() not in path.read_bytes()
    server.start()


def test_scopes_are_enforced(server: LiveServer, tenant: Tenant) -> None:
    read_only = server.token_for(tenant.workspace_id, ["read"])
    writer = server.token_for(tenant.workspace_id, ["read", "write"])
    with server.client() as c:
        ro = {"Authorization": f"Bearer {read_only}"}
        rw = {"Authorization": f"Bearer {writer}"}
        assert c.get("/api/v1/users", headers=ro).status_code == 200
        err = assert_error(c.post("/api/v1/users", json={}, headers=ro), 403, "forbidden")
        assert err["details"] == {"required_scope": "write"}
        assert c.post("/api/v1/users", json={}, headers=rw).status_code == 201
        assert_error(c.get("/api/v1/api-tokens", headers=rw), 403)
        assert_error(c.post("/api/v1/api-tokens", json={"name": "x"}, headers=rw), 403)
        assert c.get("/api/v1/api-tokens", headers=tenant.headers).status_code == 200


def test_generate_list_use_and_revoke_tokens(api: httpx.Client, server: LiveServer) -> None:
    r = api.post("/api/v1/api-tokens", json={"name": "bot", "scopes": ["read"]})
    assert r.status_code == 201
    created = r.json()
    assert created["token"].startswith("bch_") and created["scopes"] == ["read"]
    listed = api.get("/api/v1/api-tokens").json()["data"]
    row = next(t for t in listed if t["id"] == created["id"])
    assert "token" not in row and "token_hash" not in row
    assert row["prefix"] == created["token"][:10] and row["last_used_at"] is None

    with server.client() as c:
        assert c.get("/api/v1/users", headers={"Authorization": f"Bearer {created['token']}"}).status_code == 200
    row = next(t for t in api.get("/api/v1/api-tokens").json()["data"] if t["id"] == created["id"])
    assert row["last_used_at"] is not None

    assert api.delete(f"/api/v1/api-tokens/{created['id']}").status_code == 204
    with server.client() as c:
        r = c.get("/api/v1/users", headers={"Authorization": f"Bearer {created['token']}"})
        assert_error(r, 401, "invalid_token")
    assert_error(api.delete("/api/v1/api-tokens/tok_missing"), 404)


def test_unknown_scope_is_422(api: httpx.Client) -> None:
    err = assert_error(api.post("/api/v1/api-tokens", json={"name": "x", "scopes": ["root"]}), 422)
    assert err["details"][0]["field"].startswith("scopes")
