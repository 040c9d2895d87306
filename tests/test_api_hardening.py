"""The API against a hostile client: deep JSON, secrets kept by idempotency records, and what
a leaked `write` token can do (issue 15, points 5, 6 and 11)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from app.actions import Tx
from app.api import MAX_JSON_DEPTH
from app.ids import utcnow
from app.models import IdempotencyRecord
from tests.conftest import LiveServer, Tenant
from tests.factories import assert_error, make_conversation, make_user
from tests.test_api_errors import all_operations, fill
from tests.webview_support import files_containing


def nested(depth: int) -> Any:
    """A value of ``depth`` levels of objects and arrays: ``{"a": [{"a": [...]}]}``."""
    value: Any = "leaf"
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def deep_text(depth: int) -> str:
    """``nested(depth)`` as JSON text, written by hand (json.dumps recurses past its stack)."""
    opens = "".join('{"a":' if level % 2 else "[" for level in reversed(range(depth)))
    closes = "".join("}" if level % 2 else "]" for level in range(depth))
    return opens + '"leaf"' + closes


def post_json(client: httpx.Client, method: str, url: str, text: str) -> httpx.Response:
    return client.request(method, url, content=text, headers={"content-type": "application/json"})


# --- 11. JSON depth is bounded where bodies are parsed ----------------------------------------


def test_properties_nested_300_levels_are_a_422_not_a_500(module_api: httpx.Client, module_server: LiveServer) -> None:
    for depth in (300, 2_000):
        r = post_json(module_api, "POST", "/api/v1/users", '{"name": "Deep", "properties": {"p": %s}}' % deep_text(depth))
        error = assert_error(r, 422, "json_too_deep")
        assert error["details"] == [{"field": "body", "message": f"at most {MAX_JSON_DEPTH} levels of objects and arrays"}]
    user = make_user(module_api)
    r = post_json(module_api, "PATCH", f"/api/v1/users/{user['id']}", '{"properties": {"p": %s}}' % deep_text(300))
    assert_error(r, 422, "json_too_deep")
    assert module_api.get(f"/api/v1/users/{user['id']}").json()["properties"] == {}

    # The body itself is level 1: properties may nest to the limit, and read back intact.
    fits = nested(MAX_JSON_DEPTH - 2)
    r = module_api.post("/api/v1/users", json={"properties": {"p": fits}})
    assert r.status_code == 201, r.text
    assert module_api.get(f"/api/v1/users/{r.json()['id']}").json()["properties"] == {"p": fits}
    assert_error(module_api.post("/api/v1/users", json={"properties": {"p": nested(MAX_JSON_DEPTH - 1)}}), 422)
    assert "Traceback" not in module_server.log()


def test_every_api_body_and_the_widget_session_refuse_deep_json(module_server: LiveServer, module_tenant: Tenant) -> None:
    spec = httpx.get(module_server.url + "/api/v1/openapi.json").json()
    deep = '{"x": %s}' % deep_text(500)
    checked = 0
    with module_server.client(module_tenant) as c:
        for method, path in all_operations(spec):
            if "requestBody" not in spec["paths"][path][method.lower()]:
                continue
            r = c.request(method, fill(path, "nope_0000"), content=deep, headers={"content-type": "application/json"})
            assert_error(r, 422, "json_too_deep")
            checked += 1
    assert checked >= 8
    body = '{"widget_key": "%s", "x": %s}' % (module_tenant.widget_key, deep_text(500))
    r = httpx.post(module_server.url + "/widget/v1/session", content=body)
    assert_error(r, 422, "json_too_deep")


def test_a_deep_widget_frame_closes_the_socket_1007(module_server: LiveServer, module_tenant: Tenant) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    session = httpx.post(module_server.url + "/widget/v1/session", json={"widget_key": module_tenant.widget_key}).json()
    with connect(module_server.ws_url + session["socket_path"]) as ws:
        ws.send(json.dumps({"type": "auth", "token": session["session_token"]}))
        assert json.loads(ws.recv(timeout=5))["type"] == "ready"
        ws.send('{"type": "typing", "on": true, "x": %s}' % deep_text(200))
        with pytest.raises(ConnectionClosed) as info:
            while True:
                ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1007


def test_a_deeply_nested_web_view_context_is_a_422(module_api: httpx.Client) -> None:
    import base64

    # Python's json recursed past its stack on this header: a 500 before.
    header = base64.urlsafe_b64encode(b"[" * 2_900).rstrip(b"=").decode()
    r = module_api.post("/api/v1/webview-contexts/verify", json={"token": f"{header}.e30.c2ln"})
    assert_error(r, 422)


# --- 5. idempotency records never keep a secret, and age out ----------------------------------


def idempotency_rows(server: LiveServer) -> list[IdempotencyRecord]:
    def read(tx: Tx) -> list[IdempotencyRecord]:
        rows = list(tx.session.exec(select(IdempotencyRecord)))
        for row in rows:
            tx.session.expunge(row)
        return rows

    return server.in_tx(read)  # type: ignore[no-any-return]


def test_a_created_token_or_secret_is_never_kept_for_a_replay(
    server: LiveServer, tenant: Tenant, api: httpx.Client, tmp_path: Path
) -> None:
    key = {"Idempotency-Key": "create-token-1"}
    first = api.post("/api/v1/api-tokens", json={"name": "ci"}, headers=key)
    assert first.status_code == 201
    token = first.json()["token"]
    assert token.startswith("bch_")

    replay = api.post("/api/v1/api-tokens", json={"name": "ci"}, headers=key)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert "token" not in replay.json()
    assert replay.json() == {k: v for k, v in first.json().items() if k != "token"}
    assert len(api.get("/api/v1/api-tokens").json()["data"]) == 2  # the fixture's and this one: one create

    endpoint = api.post("/api/v1/webhook-endpoints", json={"url": "https://bot.example.com/hooks"},
                        headers={"Idempotency-Key": "create-endpoint-1"})
    assert endpoint.status_code == 201
    secret = endpoint.json()["secret"]
    rotated = api.post(f"/api/v1/webhook-endpoints/{endpoint.json()['id']}/rotate-secret", json={},
                       headers={"Idempotency-Key": "rotate-1"})
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    again = api.post(f"/api/v1/webhook-endpoints/{endpoint.json()['id']}/rotate-secret", json={},
                     headers={"Idempotency-Key": "rotate-1"})
    assert again.headers["idempotent-replayed"] == "true" and "secret" not in again.json()

    stored = " ".join(r.response_body for r in idempotency_rows(server))
    assert len(idempotency_rows(server)) == 3
    for needle in (token, secret, new_secret, secret.removeprefix("whsec_"), new_secret.removeprefix("whsec_")):
        assert needle not in stored
    # The API token is nowhere on disk (it is stored as a hash), the WAL included.
    server.stop()
    assert files_containing(tmp_path, [token, token.removeprefix("bch_")]) == {}


def test_idempotency_records_age_out_after_a_day(server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    key = {"Idempotency-Key": "old-key"}
    first = api.post("/api/v1/users", json={"name": "Ann"}, headers=key)
    assert first.status_code == 201

    def age(tx: Tx, *keys: str) -> None:
        for row in tx.session.exec(select(IdempotencyRecord)):
            if row.key in keys:
                row.created_at = utcnow() - timedelta(days=1, minutes=1)
                tx.session.add(row)

    # Within the day the key replays; after it, the same key is a new request.
    assert api.post("/api/v1/users", json={"name": "Ann"}, headers=key).json()["id"] == first.json()["id"]
    server.in_tx(age, "old-key")
    second = api.post("/api/v1/users", json={"name": "Ann"}, headers=key)
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in second.headers

    # Any idempotent write prunes old records (of every workspace), a bounded batch at a time.
    other = server.new_tenant("Other")
    with server.client(other) as other_api:
        for i in range(3):
            assert other_api.post("/api/v1/users", json={}, headers={"Idempotency-Key": f"o-{i}"}).status_code == 201
    server.in_tx(age, "o-0", "o-1", "o-2", "old-key")
    assert len(idempotency_rows(server)) == 4
    assert api.post("/api/v1/users", json={}, headers={"Idempotency-Key": "fresh"}).status_code == 201
    assert [r.key for r in idempotency_rows(server)] == ["fresh"]


# --- 6. a leaked write token cannot add a phishing callback -----------------------------------
