"""The same API on PostgreSQL: a real server on a fresh database, concurrent writers."""

from __future__ import annotations

from typing import Any

import pytest

from app.migrate import upgrade
from app.settings import Settings
from tests.factories import make_conversation, messages
from tests.test_api_consistency import EACH, WRITERS, concurrent_posts

pytestmark = pytest.mark.postgres


def test_gap_free_seqs_and_idempotency_on_postgres(server_factory: Any, postgres_database: str) -> None:
    upgrade(Settings(database_url=postgres_database, env="test"))
    server = server_factory(database_url=postgres_database)
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
