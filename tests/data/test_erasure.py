"""Erasure (SPEC §13): ``DELETE /api/v1/users/{id}`` deletes the user, their conversations,
messages, files, the webhook events and deliveries and idempotency records carrying their
data, in one transaction plus the file store, and fires ``user.deleted``; on SQLite the text
they wrote is found in no database file afterwards (WAL included). SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session

from app.api.schemas import MessageIn
from app.conversations import post_message
from app.store.engine import make_engine
from app.store.runner import Tx
from tests.conftest import OnDatabase
from tests.factories import assert_error, make_conversation, make_user, post_text
from tests.files.samples import pdf, upload
from tests.receivers import eventually

SENTINEL = "zq-sentinel-7f3a91c2-erase-me"


def counts(db: OnDatabase, needles: list[str]) -> dict[str, int]:
    """Rows of every table that holds customer data, naming any of ``needles`` anywhere."""
    tables = {
        "user": "CAST(id AS TEXT) || COALESCE(name, '') || COALESCE(email, '') || CAST(properties AS TEXT)",
        "conversation": "id || user_id",
        "message": "conversation_id || CAST(message_parts AS TEXT)",
        "file": "id || COALESCE(user_id, '') || COALESCE(conversation_id, '') || name",
        "event": "CAST(payload AS TEXT)",
        "idempotency_record": "response_body",
        "webview_opening": "conversation_id || user_id",
    }

    def read(tx: Tx) -> dict[str, int]:
        out = {}
        for table, expr in tables.items():
            likes = " OR ".join(f"({expr}) LIKE :n{i}" for i in range(len(needles)))
            params = {f"n{i}": f"%{n}%" for i, n in enumerate(needles)}
            # (user.deleted names the erased user: that is its point)
            only = " AND type <> 'user.deleted'" if table == "event" else ""
            out[table] = tx.session.execute(
                text(f'SELECT count(*) FROM "{table}" WHERE ({likes}){only}'), params
            ).scalar()
        return out

    return db.server.in_tx(read)  # type: ignore[no-any-return]


def a_customer_with_everything(db: OnDatabase, tag: str) -> dict[str, Any]:
    """A customer whose every text holds ``{tag}-{SENTINEL}``: name, properties, messages, a file."""
    api = db.api
    secret = f"{tag}-{SENTINEL}"
    user = make_user(api, external_id=f"crm-{tag}", name=f"{secret} {tag}", email=f"{tag}@example.com",
                     properties={"note": secret})  # fmt: skip
    conv = make_conversation(api, user_id=user["id"])
    assert post_text(api, conv["id"], f"my card is {secret}", actor={"type": "user"}).status_code == 201
    r = api.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"message_parts": [{"text": {"content": f"bot repeats {secret}"}}]},
        headers={"Idempotency-Key": f"idem-{tag}"},
    )
    assert r.status_code == 201, r.text
    f = upload(api, pdf() + secret.encode(), f"{tag}.pdf").json()
    sent = api.post(f"/api/v1/conversations/{conv['id']}/messages",
                    json={"message_parts": [{"file": {"file_id": f["id"]}}]})  # fmt: skip
    assert sent.status_code == 201, sent.text
    second = make_conversation(api, user_id=user["id"])
    post_text(api, second["id"], f"again {secret}", actor={"type": "user"})
    return {"user": user, "conversations": [conv["id"], second["id"]], "file": f}


def test_erasing_a_user_deletes_everything_that_carries_their_data(on_each_database: OnDatabase) -> None:
    db = on_each_database
    api = db.api
    # A subscribed endpoint that never answers: every event leaves a pending delivery.
    r = api.post("/api/v1/webhook-endpoints", json={"url": "https://receiver.invalid/hook", "events": ["*"]})
    assert r.status_code == 201, r.text
    ada = a_customer_with_everything(db, "ada")
    bob = a_customer_with_everything(db, "bob")
    ada_ids = [ada["user"]["id"], *ada["conversations"], ada["file"]["id"]]
    before = counts(db, ada_ids)
    assert all(before[t] for t in ("user", "conversation", "message", "file", "event", "idempotency_record")), before
    bob_before = counts(db, [bob["user"]["id"], *bob["conversations"]])

    r = api.delete(f"/api/v1/users/{ada['user']['id']}")
    assert r.status_code == 204, r.text
    assert r.content == b""

    assert set(counts(db, ada_ids).values()) == {0}, counts(db, ada_ids)
    assert counts(db, [bob["user"]["id"], *bob["conversations"]]) == bob_before  # nobody else's
    assert_error(api.get(f"/api/v1/users/{ada['user']['id']}"), 404)
    for conv_id in ada["conversations"]:
        assert_error(api.get(f"/api/v1/conversations/{conv_id}"), 404)
    assert_error(api.get(f"/api/v1/files/{ada['file']['id']}"), 404)
    stored = {p.name for p in (db.server.workdir / "files" / db.tenant.workspace_id).iterdir()}
    assert ada["file"]["id"] not in stored and bob["file"]["id"] in stored  # the bytes went too
    assert api.get("/api/v1/users", params={"email": "ada@example.com"}).json()["data"] == []

    def deleted_events(tx: Tx) -> list[Any]:
        rows = tx.session.execute(
            text("SELECT CAST(payload AS TEXT) FROM event WHERE type = 'user.deleted' AND workspace_id = :ws"),
            {"ws": db.tenant.workspace_id},
        )
        return [r[0] for r in rows]

    [payload] = db.server.in_tx(deleted_events)
    assert f'"user_id":"{ada["user"]["id"]}"' in payload.replace(" ", "") and '"external_id":"crm-ada"' in payload
    # Gone is gone: a second erasure is a 404, like any unknown user.
    assert_error(api.delete(f"/api/v1/users/{ada['user']['id']}"), 404)


def test_another_workspace_cannot_erase_a_user(on_each_database: OnDatabase) -> None:
    db = on_each_database
    user = make_user(db.api, name="kept")
    other = db.server.new_tenant("Other")
    with db.server.client(other) as intruder:
        assert_error(intruder.delete(f"/api/v1/users/{user['id']}"), 404)
    assert db.api.get(f"/api/v1/users/{user['id']}").json()["name"] == "kept"


def database_files(db: OnDatabase) -> list[Path]:
    path = Path(db.server.database_url.removeprefix("sqlite:///"))
    return [p for p in path.parent.iterdir() if p.name.startswith(path.name)]


def test_the_erased_text_is_in_no_sqlite_file_afterwards(app_server_factory: Any) -> None:
    """Every byte of every database file (the database, its WAL, its shared memory) is scanned
    for the text the customer wrote: present before the erasure, absent after."""
    server = app_server_factory()
    tenant = server.new_tenant()
    with server.client(tenant) as api:
        db = OnDatabase("sqlite", server, tenant, api)
        customer = a_customer_with_everything(db, "ada")
        for n in range(200):  # enough to spread over many pages and WAL frames
            post_text(api, customer["conversations"][0], f"{n} ada-{SENTINEL} " + "x" * 300, actor={"type": "user"})
        # Someone else's conversation is written after, so the pages are shared and rewritten.
        a_customer_with_everything(db, "bob")

        def found() -> list[str]:
            """Database files holding Ada's text (Bob's, with another tag, stays)."""
            return [p.name for p in database_files(db) if f"ada-{SENTINEL}".encode() in p.read_bytes()]

        assert found(), "the test must see the text before the erasure"
        assert f"bob-{SENTINEL}".encode() in Path(server.database_url.removeprefix("sqlite:///")).read_bytes() or any(
            f"bob-{SENTINEL}".encode() in p.read_bytes() for p in database_files(db)
        )
        assert api.delete(f"/api/v1/users/{customer['user']['id']}").status_code == 204
        assert found() == []
        assert any(p.name.endswith("-wal") for p in database_files(db))  # the WAL was there, and scanned


def test_an_erasure_on_postgres_is_followed_by_a_vacuum(on_each_database: OnDatabase) -> None:
    """PostgreSQL keeps deleted row versions until VACUUM: the data job runs one on the tables
    an erasure touched, soon after it (not in the request)."""
    db = on_each_database
    if db.kind != "postgres":
        pytest.skip("SQLite checkpoints its WAL in the erasure itself (test above)")
    user = a_customer_with_everything(db, "ada")

    def last_vacuum(tx: Tx) -> Any:
        return tx.session.execute(text("SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'message'")).scalar()

    before = db.server.in_tx(last_vacuum)
    assert db.api.delete(f"/api/v1/users/{user['user']['id']}").status_code == 204
    eventually(lambda: db.server.in_tx(last_vacuum) not in (None, before), timeout=30)


def test_a_message_posted_while_its_user_is_erased_goes_too_on_postgres(on_each_database: OnDatabase) -> None:
    """PostgreSQL runs writers side by side: a message posted (not yet committed) while the
    erasure starts is waited for and erased with the rest, not left behind or failing it."""
    db = on_each_database
    if db.kind != "postgres":
        pytest.skip("SQLite has one writer: the post and the erasure cannot overlap")
    user = make_user(db.api, name="Ada")
    conv = make_conversation(db.api, user_id=user["id"])
    engine = make_engine(db.server.settings())
    answer: dict[str, Any] = {}
    try:
        with Session(engine, expire_on_commit=False) as slow:
            body = MessageIn.model_validate({"actor": {"type": "user"}, "message_parts": [{"text": {"content": "late"}}]})
            post_message(Tx(slow), db.tenant.workspace_id, conv["id"], body)
            slow.flush()  # the post holds the conversation's row lock
            eraser = threading.Thread(target=lambda: answer.update(r=db.api.delete(f"/api/v1/users/{user['id']}")))
            eraser.start()
            time.sleep(1.0)
            assert eraser.is_alive(), "the erasure waits for the post in flight"
            slow.commit()
            eraser.join(30)
    finally:
        engine.dispose()
    assert answer["r"].status_code == 204, answer["r"].text
    assert counts(db, [user["id"], conv["id"]])["message"] == 0
    assert_error(db.api.get(f"/api/v1/conversations/{conv['id']}"), 404)
