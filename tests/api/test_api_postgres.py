"""The same API on PostgreSQL: the app (in this process) on a fresh database, concurrent writers."""

from __future__ import annotations

from typing import Any

import pytest

from app.settings import Settings
from app.store.migrate import upgrade
from tests.api.test_api_consistency import EACH, WRITERS, concurrent_posts
from tests.factories import make_conversation, messages

pytestmark = pytest.mark.postgres


def test_gap_free_seqs_and_idempotency_on_postgres(app_server_factory: Any, postgres_database: str) -> None:
    upgrade(Settings(database_url=postgres_database, env="test"))
    server = app_server_factory(database_url=postgres_database)
    tenant = server.new_tenant()
    with server.client(tenant) as api:
        conv = make_conversation(api)
        concurrent_posts(server, tenant, conv["id"])
        assert [m["seq"] for m in messages(api, conv["id"])] == list(range(1, WRITERS * EACH + 1))
        body = {"message_parts": [{"text": {"content": "once"}}], "client_message_id": "same"}
        a = api.post(f"/api/v1/conversations/{conv['id']}/messages", json=body)
        b = api.post(f"/api/v1/conversations/{conv['id']}/messages", json=body)
        assert (a.status_code, b.status_code) == (201, 200) and a.json()["id"] == b.json()["id"]
        r = api.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"]["database"] is True


def test_every_part_reads_back_exactly_as_posted_on_postgres(app_server_factory: Any, postgres_database: str) -> None:
    """The hot paths run their own SQL per dialect: on PostgreSQL too, a listed message (its
    JSON parts read as stored text) and a replayed one equal the message as posted."""
    from tests.api.test_api_messages import EVERY_PART, allow_the_form_callback

    upgrade(Settings(database_url=postgres_database, env="test"))
    server = app_server_factory(database_url=postgres_database)
    tenant = server.new_tenant()
    with server.client(tenant) as api:
        allow_the_form_callback(api)
        conv = make_conversation(api)
        posted = api.post(f"/api/v1/conversations/{conv['id']}/messages", json=EVERY_PART)
        assert posted.status_code == 201, posted.text
        answer = api.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={
                "actor": {"type": "user"},
                "message_parts": [{"text": {"content": "Yes ✓"}}],
                "reply_to": {"message_id": posted.json()["id"], "payload": "yes"},
                "client_message_id": "c-1",
            },
        )
        assert answer.status_code == 201, answer.text
        assert messages(api, conv["id"]) == [posted.json(), answer.json()]
        replay = api.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={
                "actor": {"type": "user"},
                "message_parts": [{"text": {"content": "Yes ✓"}}],
                "client_message_id": "c-1",
            },
        )
        assert replay.status_code == 200 and replay.json() == answer.json()
