"""The erasure hook issue 21 calls: a user's or a conversation's files go, rows and bytes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlmodel import select

from app.files.records import delete_files
from app.files.storage import FolderStorage
from app.store.tables import File
from tests.conftest import LiveServer, Tenant
from tests.factories import make_conversation
from tests.files.samples import pdf, png, upload
from tests.files.test_widget_upload import widget_session, widget_upload


def erase(server: LiveServer, workspace_id: str, **owner: Any) -> list[str]:
    keys: list[str] = server.in_tx(lambda tx: delete_files(tx.session, workspace_id, **owner))
    asyncio.run(FolderStorage(server.workdir / "files").delete(keys))
    return keys


def file_ids(server: LiveServer) -> set[str]:
    return set(server.in_tx(lambda tx: list(tx.session.exec(select(File.id)))))


def test_erasing_a_user_deletes_their_uploads_and_their_conversations_files(
    server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    ada, bob = widget_session(server, tenant), widget_session(server, tenant)
    ada_conv = make_conversation(api, user_id=ada["user_id"])
    ada_kept_back = widget_upload(server, ada["session_token"], png(), "not-sent.png").json()  # never sent
    ada_sent = widget_upload(server, ada["session_token"], pdf(), "sent.pdf").json()
    statement = upload(api, pdf(), "statement-for-ada.pdf").json()  # the bot sends it to Ada
    brochure = upload(api, pdf(), "brochure.pdf").json()  # never sent
    bobs = widget_upload(server, bob["session_token"], png(), "bob.png").json()
    for file_id in (ada_sent["id"], statement["id"]):
        r = api.post(
            f"/api/v1/conversations/{ada_conv['id']}/messages",
            json={"actor": {"type": "user"} if file_id == ada_sent["id"] else {"type": "bot"},
                  "message_parts": [{"file": {"file_id": file_id}}]},
        )  # fmt: skip
        assert r.status_code == 201, r.text
    links = {f["id"]: f["url"] for f in (ada_kept_back, ada_sent, statement, brochure, bobs)}

    keys = erase(server, tenant.workspace_id, user_id=ada["user_id"])
    gone = {ada_kept_back["id"], ada_sent["id"], statement["id"]}
    assert {k.rsplit("/", 1)[1] for k in keys} == gone
    assert file_ids(server) == {brochure["id"], bobs["id"]}
    for file_id, url in links.items():
        assert httpx.get(url).status_code == (404 if file_id in gone else 200)
    stored = {p.name for p in (server.workdir / "files" / tenant.workspace_id).iterdir()}
    assert stored == {brochure["id"], bobs["id"]}  # the bytes went too

    # a conversation on its own
    bob_conv = make_conversation(api, user_id=bob["user_id"])
    api.post(f"/api/v1/conversations/{bob_conv['id']}/messages",
             json={"message_parts": [{"file": {"file_id": brochure["id"]}}]})  # fmt: skip
    erase(server, tenant.workspace_id, conversation_ids=[bob_conv["id"]])
    assert file_ids(server) == {bobs["id"]}
    # another workspace's erasure touches nothing here
    assert erase(server, "wsp_other", user_id=bob["user_id"]) == []
    assert file_ids(server) == {bobs["id"]}


def test_erase_without_an_owner_deletes_nothing(server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    upload(api, pdf(), "kept.pdf")
    assert server.in_tx(lambda tx: delete_files(tx.session, tenant.workspace_id)) == []
    assert len(file_ids(server)) == 1
