"""Nothing one workspace stores can stop delivery for another (SPEC §5, issue 15.1).

Poisoned rows are written straight into the database, as a bug, a bad migration or a
hand edit could leave them, next to a healthy endpoint of another workspace: a secret
that is not base64 (yet matched the old schema pattern), an ed25519 key that is not one,
a URL that is no URL, a timestamp that cannot be read, an event that is not JSON. The
healthy endpoint keeps receiving; each poisoned endpoint is disabled (or its one bad
delivery failed) with the reason in its delivery log.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.ids import new_id, utcnow
from app.settings import Settings
from app.store.engine import make_engine
from app.store.migrate import upgrade
from tests.conftest import LiveServer, Tenant
from tests.receivers import Receiver, eventually
from tests.webhooks.test_webhooks import EP, add_endpoint, deliveries

GOOD_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _ts() -> str:
    return utcnow().replace(tzinfo=None).isoformat(" ", "microseconds")


def _poison(server: LiveServer, workspace_id: str, url: str, postgres: bool) -> dict[str, str]:
    """Endpoints (and their queued deliveries) that no dispatcher can sign or send with."""
    engine = make_engine(server.settings())
    now: Any = utcnow().replace(tzinfo=None) if postgres else _ts()
    endpoints: dict[str, dict[str, Any]] = {
        # matched the schema's pattern (``whsec_`` + 32–88 base64 characters) but is not base64
        "secret": {"secret": "whsec_" + "A" * 33},
        "ed25519": {"ed25519_private_key": "whsk_bm90IGEga2V5"},
        "url": {"url": "not a url at all"},
        "payload": {},  # a sound endpoint with one event that cannot be decoded
    }
    if not postgres:  # PostgreSQL refuses to store these
        endpoints["timestamp"] = {"previous_secret": GOOD_SECRET, "previous_secret_expires_at": "yesterday-ish"}
    ids = {}
    with engine.begin() as c:
        for name, overrides in endpoints.items():
            row = {
                "id": new_id("whe"), "workspace_id": workspace_id, "url": url + "/" + name, "description": name,
                "events": '["*"]', "enabled": True, "secret": GOOD_SECRET, "previous_secret": None,
                "previous_secret_expires_at": None, "ed25519_private_key": None,
                "previous_ed25519_private_key": None, "created_at": now, "updated_at": now, **overrides,
            }
            c.execute(text(
                "INSERT INTO webhook_endpoint (id, workspace_id, url, description, events, enabled, secret,"
                " previous_secret, previous_secret_expires_at, ed25519_private_key, previous_ed25519_private_key,"
                " created_at, updated_at) VALUES (:id, :workspace_id, :url, :description, :events, :enabled,"
                " :secret, :previous_secret, :previous_secret_expires_at, :ed25519_private_key,"
                " :previous_ed25519_private_key, :created_at, :updated_at)"
            ), row)
            event_id = new_id("msg")
            bad = '"valid JSON, but not an event"' if postgres else "{not json"
            payload = bad if name == "payload" else '{"type": "webhook.test", "data": {}}'
            c.execute(text(
                "INSERT INTO event (id, workspace_id, type, payload, created_at)"
                " VALUES (:id, :ws, 'webhook.test', :payload, :now)"
            ), {"id": event_id, "ws": workspace_id, "payload": payload, "now": now})
            c.execute(text(
                "INSERT INTO webhook_delivery (id, workspace_id, endpoint_id, event_id, event_type, status,"
                " attempts, schedule_step, next_attempt_at, created_at, updated_at) VALUES (:id, :ws, :ep, :ev,"
                " 'webhook.test', 'pending', 0, 0, :now, :now, :now)"
            ), {"id": new_id("dlv"), "ws": workspace_id, "ep": row["id"], "ev": event_id, "now": now})
            ids[name] = row["id"]
    engine.dispose()
    return ids


def _endpoint_state(server: LiveServer, endpoint_id: str) -> tuple[bool, str]:
    engine = make_engine(server.settings())
    try:
        with engine.connect() as c:
            enabled, reason = c.execute(
                text("SELECT enabled, disabled_reason FROM webhook_endpoint WHERE id = :id"), {"id": endpoint_id}
            ).one()
        return bool(enabled), reason or ""
    finally:
        engine.dispose()


def _delivery_state(server: LiveServer, endpoint_id: str) -> tuple[str, str]:
    engine = make_engine(server.settings())
    try:
        with engine.connect() as c:
            status, error = c.execute(
                text("SELECT status, last_error FROM webhook_delivery WHERE endpoint_id = :id"), {"id": endpoint_id}
            ).one()
        return status, error or ""
    finally:
        engine.dispose()


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_poisoned_endpoints_of_one_workspace_never_stop_another_s_deliveries(
    engine: str, server_factory: Any, request: pytest.FixtureRequest
) -> None:
    postgres = engine == "postgresql"
    if postgres:
        database_url = request.getfixturevalue("postgres_database")
        upgrade(Settings(database_url=database_url, env="test"))
        server: LiveServer = server_factory(database_url=database_url)
    else:
        server = server_factory()
    good: Tenant = server.new_tenant("Good")
    evil: Tenant = server.new_tenant("Evil")
    with Receiver() as healthy, Receiver() as evil_rx, server.client(good) as api, server.client(evil) as evil_api:
        poisoned = _poison(server, evil.workspace_id, evil_rx.url, postgres)
        add_endpoint(api, healthy.url, events=["user.created"])
        for i in range(5):
            assert api.post("/api/v1/users", json={"name": f"u{i}"}).status_code == 201
        got = healthy.wait_count(5, timeout=15)
        assert sorted(r.json["data"]["user"]["name"] for r in got) == [f"u{i}" for i in range(5)]

        # Each endpoint whose row cannot be used is disabled, saying why, and what was queued
        # for it failed with the same reason in its delivery log.
        reasons = {
            "secret": "stored settings cannot be used", "ed25519": "stored settings cannot be used",
            "url": "URL", "timestamp": "stored settings cannot be used",
        }
        for name, words in reasons.items():
            if name not in poisoned:
                continue
            # (read from the database: the ORM cannot load the row with the garbage timestamp)
            status, error = eventually(lambda n=name: (d := _delivery_state(server, poisoned[n]))[0] == "failed" and d)
            assert error.startswith("endpoint disabled: disabled by the dispatcher") and words in error, (name, error)
            enabled, reason = _endpoint_state(server, poisoned[name])
            assert enabled is False and words in reason, (name, reason)
        # (the API still reads an endpoint whose keys are garbage, to show why it was disabled)
        shown = evil_api.get(f"{EP}/{poisoned['ed25519']}").json()
        assert shown["enabled"] is False and "stored settings" in shown["disabled_reason"]
        # An event that cannot be decoded fails that delivery alone; its endpoint stays and
        # gets the next event.
        (bad,) = eventually(lambda: [d for d in deliveries(evil_api, poisoned["payload"]) if d["status"] == "failed"])
        assert "cannot be decoded" in bad["last_error"]
        assert evil_api.get(f"{EP}/{poisoned['payload']}").json()["enabled"] is True
        assert evil_api.post(f"{EP}/{poisoned['payload']}/test").status_code == 202
        (req,) = evil_rx.wait_count(1)
        assert req.path == "/hook/payload" and req.json["type"] == "webhook.test"

        # and the healthy workspace never noticed
        assert api.post("/api/v1/users", json={"name": "after"}).status_code == 201
        assert healthy.wait_count(6)[-1].json["data"]["user"]["name"] == "after"


@pytest.mark.parametrize("secret", [
    "whsec_" + "A" * 33,  # the shape of base64, not base64 (33 characters)
    "whsec_" + "A" * 31 + "=",  # bad padding
    "whsec_" + base64.b64encode(b"k" * 16).decode(),  # too short a key
    "whsec_" + base64.b64encode(b"k" * 65).decode(),  # too long
    "whsec_" + base64.urlsafe_b64encode(b"\xff" * 32).decode(),  # URL-safe alphabet
    "whsk_" + base64.b64encode(b"k" * 32).decode(),
])
def test_a_secret_that_is_not_24_to_64_bytes_of_base64_is_422(module_api: httpx.Client, secret: str) -> None:
    r = module_api.post(EP, json={"url": "https://bot.example/hook", "secret": secret})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "secret"


@pytest.mark.parametrize("size", [24, 32, 64])
def test_a_secret_of_24_to_64_bytes_is_accepted(module_api: httpx.Client, size: int) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(size)).decode()
    r = module_api.post(EP, json={"url": "https://bot.example/hook", "secret": secret})
    assert r.status_code == 201, r.text
    assert module_api.delete(f"{EP}/{r.json()['id']}").status_code == 204
