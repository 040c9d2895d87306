"""A CRM's sync (SPEC §3, §13): ``updated_at``, ``?updated_after=`` in change order with a
``sync_cursor``, ``?email=`` and ``?q=``, ``user.updated`` and ``conversation.updated``, and
conversation tags and properties with ``?tag=``; on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from app import people
from app.api.schemas import UserPatch
from app.store.engine import make_engine
from app.store.runner import Tx
from app.store.tables import Event
from tests.conftest import OnDatabase
from tests.factories import assert_error, make_conversation, make_user, post_text


def changes(api: httpx.Client, path: str, count: int = 0, **params: Any) -> tuple[list[dict[str, Any]], str]:
    """Every page of a change listing: the rows and the sync_cursor of the last page.

    On PostgreSQL a change is listed once every transaction older than it has ended, in any
    database of the server (other tests run beside this one): so the listing is asked again,
    from the same place, until it holds the ``count`` changes the test made."""
    deadline = time.monotonic() + 10
    while True:
        rows, cursor = _changes(api, path, **params)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows, cursor
        time.sleep(0.05)


def _changes(api: httpx.Client, path: str, **params: Any) -> tuple[list[dict[str, Any]], str]:
    out: list[dict[str, Any]] = []
    while True:
        r = api.get(path, params={"limit": 2, **params})
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["data"]
        if body["next_cursor"] is None:
            assert body["sync_cursor"], body
            return out, body["sync_cursor"]
        assert body["sync_cursor"] is None
        params = {"cursor": body["next_cursor"]}


def event_types(db: OnDatabase, type_prefix: str) -> list[dict[str, Any]]:
    def read(tx: Tx) -> list[dict[str, Any]]:
        found = tx.session.exec(
            select(Event).where(Event.workspace_id == db.tenant.workspace_id, col(Event.type).startswith(type_prefix))
        )
        return [e.payload for e in sorted(found, key=lambda e: e.created_at)]

    return db.server.in_tx(read)  # type: ignore[no-any-return]


def test_users_sync_by_change_cursor(on_each_database: OnDatabase) -> None:
    api = on_each_database.api
    start = "2000-01-01T00:00:00Z"
    a, b, c = (make_user(api, name=n, email=f"{n}@example.com") for n in ("ann", "bob", "cy"))
    seen, cursor = changes(api, "/api/v1/users", 3, updated_after=start)
    assert [u["id"] for u in seen] == [a["id"], b["id"], c["id"]]  # change order, oldest first

    # Nothing changed: the same position again, and nothing listed.
    r = api.get("/api/v1/users", params={"cursor": cursor})
    assert r.json()["data"] == [] and r.json()["sync_cursor"] == cursor

    patched = api.patch(f"/api/v1/users/{a['id']}", json={"properties": {"plan": "gold"}}).json()
    assert patched["updated_at"] > a["updated_at"]
    # A PATCH that changes nothing is no change.
    assert api.patch(f"/api/v1/users/{b['id']}", json={"name": "bob"}).json()["updated_at"] == b["updated_at"]
    later, cursor2 = changes(api, "/api/v1/users", 1, cursor=cursor)
    assert [(u["id"], u["properties"]) for u in later] == [(a["id"], {"plan": "gold"})]

    # updated_after is inclusive: a row stamped exactly then is listed (again), never missed.
    again, _ = changes(api, "/api/v1/users", 1, updated_after=patched["updated_at"])
    assert [u["id"] for u in again] == [a["id"]]

    assert [e["data"]["user"]["id"] for e in event_types(on_each_database, "user.updated")] == [a["id"]]
    assert api.get("/api/v1/users", params={"cursor": cursor2}).json()["data"] == []


def test_users_found_by_email_and_text(on_each_database: OnDatabase) -> None:
    api = on_each_database.api
    ann = make_user(api, name="Ann Lee", email="ann@example.com", external_id="crm-1")
    make_user(api, name="Bob", email="bob@example.com", external_id="crm-2")
    odd = make_user(api, name="100% _real_", email="odd@example.com")

    def ids(**params: Any) -> list[str]:
        r = api.get("/api/v1/users", params=params)
        assert r.status_code == 200, r.text
        return [u["id"] for u in r.json()["data"]]

    assert ids(email="ann@example.com") == [ann["id"]]
    assert ids(email="nobody@example.com") == []
    assert ids(q="LEE") == [ann["id"]]
    assert ids(q="crm-1") == [ann["id"]]
    assert ids(q="ann@") == [ann["id"]]
    assert ids(q="%") == [odd["id"]]  # LIKE's wildcards are taken literally
    assert ids(q="_real_") == [odd["id"]]
    assert_error(api.get("/api/v1/users", params={"q": ""}), 422)
    for bad in ("yesterday", "0.5", "1700000000", "2026-11-30T12:00:00", "2026-11-30"):  # no offset, or no time
        err = assert_error(api.get("/api/v1/users", params={"updated_after": bad}), 422)
        assert err["details"][0]["field"] == "query.updated_after", err


def test_conversation_tags_properties_and_updated_event(on_each_database: OnDatabase) -> None:
    api = on_each_database.api
    conv = make_conversation(api)
    other = make_conversation(api)
    assert conv["tags"] == [] and conv["properties"] == {}
    r = api.patch(
        f"/api/v1/conversations/{conv['id']}",
        json={"tags": ["vip", "billing:refund", "vip"], "properties": {"order": "A-1", "total": 12.5}},
    )
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["tags"] == ["vip", "billing:refund"] and updated["properties"] == {"order": "A-1", "total": 12.5}
    assert updated["updated_at"] > conv["updated_at"]
    merged = api.patch(f"/api/v1/conversations/{conv['id']}", json={"properties": {"total": 13}}).json()
    assert merged["properties"] == {"order": "A-1", "total": 13}
    assert api.get(f"/api/v1/conversations/{conv['id']}").json()["tags"] == ["vip", "billing:refund"]

    def listed(**params: Any) -> list[str]:
        r = api.get("/api/v1/conversations", params=params)
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["data"]]

    assert listed(tag="vip") == [conv["id"]]
    assert listed(tag="billing:refund") == [conv["id"]]
    assert listed(tag="vi") == []  # a whole tag, not a substring
    assert other["id"] in listed()

    sent = event_types(on_each_database, "conversation.updated")
    assert [e["data"]["conversation"]["properties"] for e in sent] == [
        {"order": "A-1", "total": 12.5},
        {"order": "A-1", "total": 13},
    ]
    # A PATCH that changes nothing announces nothing.
    api.patch(f"/api/v1/conversations/{conv['id']}", json={"tags": ["vip", "billing:refund"]})
    assert len(event_types(on_each_database, "conversation.updated")) == 2

    for bad in ({"tags": ["Has Space"]}, {"tags": ["x" * 51]}, {"tags": [f"t{i}" for i in range(21)]}, {"tags": [""]}):
        err = assert_error(api.patch(f"/api/v1/conversations/{conv['id']}", json=bad), 422)
        assert err["details"][0]["field"].startswith("tags"), err
    assert_error(api.get("/api/v1/conversations", params={"tag": "Bad Tag"}), 422)


def test_conversations_sync_sees_messages_and_changes(on_each_database: OnDatabase) -> None:
    api = on_each_database.api
    a = make_conversation(api)
    b = make_conversation(api)
    seen, cursor = changes(api, "/api/v1/conversations", 2, updated_after=a["created_at"])
    assert [c["id"] for c in seen] == [a["id"], b["id"]]
    assert post_text(api, a["id"], "hello").status_code == 201
    api.patch(f"/api/v1/conversations/{b['id']}", json={"tags": ["x"]})
    later, cursor = changes(api, "/api/v1/conversations", 2, cursor=cursor)
    assert [(c["id"], c["last_message_seq"], c["tags"]) for c in later] == [(a["id"], 1, []), (b["id"], 0, ["x"])]
    assert api.get("/api/v1/conversations", params={"cursor": cursor}).json()["data"] == []


@pytest.mark.postgres
def test_a_change_committed_late_is_never_skipped_on_postgres(on_each_database: OnDatabase) -> None:
    """Two writers: A takes its change order (and its earlier updated_at) first but commits
    after B. A poller that read in between and resumes from its cursor still sees A's change,
    although a plain "updated_at after the newest I saw" would have skipped it."""
    if on_each_database.kind != "postgres":
        pytest.skip("SQLite has one writer: transactions commit in the order they start writing")
    db = on_each_database
    api = db.api
    first, second = make_user(db.api, name="first"), make_user(db.api, name="second")
    _, cursor = changes(api, "/api/v1/users", 2, updated_after=first["created_at"])

    engine = make_engine(db.server.settings())
    try:
        with Session(engine, expire_on_commit=False) as slow:
            people.update_user(Tx(slow), db.tenant.workspace_id, first["id"], UserPatch(name="first, renamed"))
            slow.flush()  # A has written (and holds its transaction open)
            b = api.patch(f"/api/v1/users/{second['id']}", json={"name": "second, renamed"}).json()
            between, cursor = changes(api, "/api/v1/users", cursor=cursor)
            # B committed, but A (older) is still running: B waits so that nothing passes A.
            assert between == []
            slow.commit()
    finally:
        engine.dispose()
    after, _ = changes(api, "/api/v1/users", 2, cursor=cursor)
    assert [u["name"] for u in after] == ["first, renamed", "second, renamed"]
    assert after[0]["updated_at"] < b["updated_at"]  # A's timestamp is older, yet it is not lost


def test_an_identity_with_new_attributes_is_a_user_update(on_each_database: OnDatabase) -> None:
    """The widget's signed identity (a JWT) names the user by external_id: when it brings a new
    name or email, that is a change a CRM must see, like a PATCH (``people.find_or_create_user``)."""
    db = on_each_database
    user = make_user(db.api, external_id="crm-7", name="Old", email="old@example.com")
    ws = db.tenant.workspace_id
    db.server.in_tx(lambda tx: people.find_or_create_user(tx, ws, "crm-7", name="Old", email="old@example.com"))
    assert event_types(db, "user.updated") == []  # the same attributes: no change
    db.server.in_tx(lambda tx: people.find_or_create_user(tx, ws, "crm-7", name="New", email="new@example.com"))
    [event] = event_types(db, "user.updated")
    assert (event["data"]["user"]["id"], event["data"]["user"]["email"]) == (user["id"], "new@example.com")
    seen, _ = changes(db.api, "/api/v1/users", 1, updated_after=event["data"]["user"]["updated_at"])
    assert [u["name"] for u in seen] == ["New"]
