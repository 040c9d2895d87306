"""Export (SPEC §13): ``GET /api/v1/users/{id}/export`` is everything stored about the person
(user, conversations with every message, files as signed links), recorded in the audit log;
on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.conftest import OnDatabase
from tests.data.test_audit import audit_log
from tests.factories import assert_error, make_conversation, make_user, messages, post_text
from tests.files.samples import pdf, png, upload


def test_export_holds_everything_stored_about_the_user(on_each_database: OnDatabase) -> None:
    db = on_each_database
    api = db.api
    ada = make_user(api, external_id="crm-9", name="Ada", email="ada@example.com", properties={"plan": "gold"})
    first = make_conversation(api, user_id=ada["id"])
    for n in range(3):
        post_text(api, first["id"], f"hello {n}", actor={"type": "user"})
    api.patch(f"/api/v1/conversations/{first['id']}", json={"tags": ["vip"], "properties": {"order": "A-1"}})
    f = upload(api, pdf(), "statement.pdf").json()
    api.post(f"/api/v1/conversations/{first['id']}/messages", json={"message_parts": [{"file": {"file_id": f["id"]}}]})
    second = make_conversation(api, user_id=ada["id"])
    post_text(api, second["id"], "second", actor={"type": "user"})
    unsent = upload(api, png(), "kept-back.png").json()  # the API's upload, never sent: not Ada's
    bob = make_user(api, name="Bob")
    post_text(api, make_conversation(api, user_id=bob["id"])["id"], "bob's", actor={"type": "user"})

    r = api.get(f"/api/v1/users/{ada['id']}/export")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc) == {"user", "conversations", "files", "exported_at"}
    assert doc["user"] == api.get(f"/api/v1/users/{ada['id']}").json()
    assert [c["id"] for c in doc["conversations"]] == [first["id"], second["id"]]
    exported_first = doc["conversations"][0]
    assert exported_first["tags"] == ["vip"] and exported_first["properties"] == {"order": "A-1"}
    listed = messages(api, first["id"])
    assert [m["id"] for m in exported_first["messages"]] == [m["id"] for m in listed]
    assert [m["seq"] for m in exported_first["messages"]] == [1, 2, 3, 4]
    file_part = exported_first["messages"][-1]["message_parts"][0]["file"]
    assert file_part["file_id"] == f["id"] and file_part["url"].startswith("http")
    assert [x["id"] for x in doc["files"]] == [f["id"]]
    assert unsent["id"] not in str(doc) and "bob's" not in str(doc)
    download = db.api.get(doc["files"][0]["url"], headers={"authorization": ""})  # the signed link alone works
    assert download.status_code == 200 and download.content == pdf()

    [entry] = [e for e in audit_log(api) if e["action"] == "user.exported"]
    assert entry["target"] == {"type": "user", "id": ada["id"]}


def test_export_of_an_unknown_or_foreign_user_is_404_and_not_recorded(on_each_database: OnDatabase) -> None:
    db = on_each_database
    user = make_user(db.api, name="Ada")
    assert_error(db.api.get("/api/v1/users/usr_nobody/export"), 404)
    other = db.server.new_tenant("Other")
    with db.server.client(other) as intruder:
        assert_error(intruder.get(f"/api/v1/users/{user['id']}/export"), 404)
        assert audit_log(intruder) == []
    assert [e for e in audit_log(db.api) if e["action"] == "user.exported"] == []
