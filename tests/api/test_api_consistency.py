"""Gap-free seq under concurrent writers, idempotency, and pagination."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import InProcessServer, Tenant
from tests.factories import assert_error, make_conversation, make_user, messages, post_text

WRITERS, EACH = 20, 50


def concurrent_posts(server: InProcessServer, tenant: Tenant, conversation_id: str) -> None:
    def writer(n: int) -> list[int]:
        with server.client(tenant) as c:
            return [post_text(c, conversation_id, f"w{n}-{i}").status_code for i in range(EACH)]

    with ThreadPoolExecutor(WRITERS) as pool:
        statuses = [s for batch in pool.map(writer, range(WRITERS)) for s in batch]
    assert statuses == [201] * (WRITERS * EACH)


def test_concurrent_writers_get_gap_free_seqs(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    conv = make_conversation(app_api)
    concurrent_posts(app_server, app_tenant, conv["id"])
    seqs = [m["seq"] for m in messages(app_api, conv["id"])]
    assert seqs == list(range(1, WRITERS * EACH + 1))
    texts = {m["message_parts"][0]["text"]["content"] for m in messages(app_api, conv["id"])}
    assert len(texts) == WRITERS * EACH
    assert app_api.get(f"/api/v1/conversations/{conv['id']}").json()["last_message_seq"] == WRITERS * EACH


def test_client_message_id_stores_one_message(app_api: httpx.Client) -> None:
    conv = make_conversation(app_api)
    first = post_text(app_api, conv["id"], "hello", client_message_id="c-1")
    again = post_text(app_api, conv["id"], "hello", client_message_id="c-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    assert len(messages(app_api, conv["id"])) == 1


def test_idempotency_key_replays_the_first_response(app_api: httpx.Client) -> None:
    key = {"Idempotency-Key": "create-ada-1"}
    first = app_api.post("/api/v1/users", json={"name": "Ada"}, headers=key)
    again = app_api.post("/api/v1/users", json={"name": "Ada"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert len(app_api.get("/api/v1/users").json()["data"]) == 1
    assert_error(app_api.post("/api/v1/users", json={"name": "Bob"}, headers=key), 409, "idempotency_key_reused")
    # a failed request stores nothing under its key... and a key is per workspace
    conv = make_conversation(app_api)
    k2 = {"Idempotency-Key": "msg-1"}
    a = app_api.post(
        f"/api/v1/conversations/{conv['id']}/messages", json={"message_parts": [{"text": {"content": "x"}}]}, headers=k2
    )
    b = app_api.post(
        f"/api/v1/conversations/{conv['id']}/messages", json={"message_parts": [{"text": {"content": "x"}}]}, headers=k2
    )
    assert a.json()["id"] == b.json()["id"] and len(messages(app_api, conv["id"])) == 1


def test_concurrent_requests_with_one_idempotency_key_create_one_user(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    def post(_: int) -> dict[str, str]:
        with app_server.client(app_tenant) as c:
            r = c.post("/api/v1/users", json={"name": "Same"}, headers={"Idempotency-Key": "race"})
            assert r.status_code == 201, r.text
            return r.json()  # type: ignore[no-any-return]

    with ThreadPoolExecutor(8) as pool:
        ids = {u["id"] for u in pool.map(post, range(8))}
    assert len(ids) == 1
    assert len(app_api.get("/api/v1/users").json()["data"]) == 1


def test_pagination_walks_every_item_once(app_api: httpx.Client) -> None:
    users = [make_user(app_api, name=f"u{i}") for i in range(7)]
    for u in users:
        make_conversation(app_api, u["id"])
    for path, total in (("/api/v1/users", 7), ("/api/v1/conversations", 7)):
        seen: list[str] = []
        cursor = None
        while True:
            r = app_api.get(path, params={"limit": 3, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200
            page = r.json()
            assert len(page["data"]) <= 3
            seen += [x["id"] for x in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == total
    # conversations come newest activity first
    conv_ids = [c["id"] for c in app_api.get("/api/v1/conversations").json()["data"]]
    oldest = conv_ids[-1]
    post_text(app_api, oldest, "bump")
    assert app_api.get("/api/v1/conversations").json()["data"][0]["id"] == oldest


def test_messages_after_seq_and_limits(app_api: httpx.Client) -> None:
    conv = make_conversation(app_api)
    for i in range(5):
        post_text(app_api, conv["id"], f"m{i}")
    r = app_api.get(f"/api/v1/conversations/{conv['id']}/messages", params={"after": 2, "limit": 2}).json()
    assert [m["seq"] for m in r["data"]] == [3, 4] and r["next_cursor"]
    r2 = app_api.get(f"/api/v1/conversations/{conv['id']}/messages", params={"cursor": r["next_cursor"]}).json()
    assert [m["seq"] for m in r2["data"]] == [5] and r2["next_cursor"] is None
    assert_error(app_api.get("/api/v1/users", params={"limit": 201}), 422)
    assert_error(app_api.get("/api/v1/users", params={"limit": 0}), 422)
    assert_error(app_api.get("/api/v1/users", params={"cursor": "garbage!"}), 422)
    assert_error(app_api.get(f"/api/v1/conversations/{conv['id']}/messages", params={"after": -1}), 422)


def test_users_by_external_id_and_duplicates(app_api: httpx.Client) -> None:
    u = make_user(app_api, external_id="crm-1", name="Ada", email="ada@example.com", properties={"tier": "gold"})
    found = app_api.get("/api/v1/users", params={"external_id": "crm-1"}).json()["data"]
    assert [x["id"] for x in found] == [u["id"]]
    assert_error(app_api.post("/api/v1/users", json={"external_id": "crm-1"}), 409, "duplicate_external_id")
    r = app_api.patch(f"/api/v1/users/{u['id']}", json={"name": "Ada L.", "properties": {"plan": "pro"}})
    assert r.status_code == 200
    assert r.json()["name"] == "Ada L." and r.json()["properties"] == {"tier": "gold", "plan": "pro"}
