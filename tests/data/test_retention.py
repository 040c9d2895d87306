"""Retention (SPEC §13): ``GET/PATCH /api/v1/workspace {retention_days}``, and the background
job that erases resolved conversations past it, in batches; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, text

from app.ids import utcnow
from app.store.runner import Tx
from app.store.tables import UTCDateTime
from tests.conftest import OnDatabase
from tests.factories import assert_error, make_conversation, post_text
from tests.files.samples import pdf, upload
from tests.receivers import eventually


def age(db: OnDatabase, conversation_id: str, days: float) -> None:
    """Make the conversation look last changed ``days`` ago."""

    def backdate(tx: Tx) -> None:
        statement = text("UPDATE conversation SET updated_at = :at WHERE id = :id").bindparams(
            bindparam("at", type_=UTCDateTime())
        )
        tx.session.execute(statement, {"at": utcnow() - timedelta(days=days), "id": conversation_id})

    db.server.in_tx(backdate)


def test_workspace_settings_need_admin_and_valid_days(on_each_database: OnDatabase) -> None:
    db = on_each_database
    api = db.api
    r = api.get("/api/v1/workspace")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": db.tenant.workspace_id, "name": "Acme", "retention_days": None}
    r = api.patch("/api/v1/workspace", json={"retention_days": 30, "name": "Acme Bank"})
    assert r.status_code == 200, r.text
    assert r.json() == {"id": db.tenant.workspace_id, "name": "Acme Bank", "retention_days": 30}
    assert api.get("/api/v1/workspace").json()["retention_days"] == 30
    for bad in ({"retention_days": 0}, {"retention_days": -1}, {"retention_days": "30"}, {"name": ""}):
        err = assert_error(api.patch("/api/v1/workspace", json=bad), 422)
        assert err["details"][0]["field"] in ("retention_days", "name"), err
    assert api.patch("/api/v1/workspace", json={"retention_days": None}).json()["retention_days"] is None

    writer = db.server.new_tenant("Other", scopes=["read", "write"])
    with db.server.client(writer) as not_admin:
        assert_error(not_admin.patch("/api/v1/workspace", json={"retention_days": 1}), 403)
        assert not_admin.get("/api/v1/workspace").json()["id"] == writer.workspace_id  # its own, not Acme


@pytest.mark.app_env({"BACKCHANNEL_RETENTION_BATCH": "2", "BACKCHANNEL_RETENTION_INTERVAL_SECONDS": "3600"})
def test_the_job_erases_resolved_conversations_past_retention_in_batches(on_each_database: OnDatabase) -> None:
    db = on_each_database
    api = db.api
    expired: list[dict[str, Any]] = []
    for n in range(5):
        conv = make_conversation(api)
        post_text(api, conv["id"], f"old {n}", actor={"type": "user"})
        api.patch(f"/api/v1/conversations/{conv['id']}", json={"status": "resolved"})
        age(db, conv["id"], 40)
        expired.append(conv)
    f = upload(api, pdf(), "old.pdf").json()
    api.post(f"/api/v1/conversations/{expired[0]['id']}/messages", json={"message_parts": [{"file": {"file_id": f["id"]}}]})
    api.patch(f"/api/v1/conversations/{expired[0]['id']}", json={"status": "resolved"})
    age(db, expired[0]["id"], 40)
    recent = make_conversation(api)
    api.patch(f"/api/v1/conversations/{recent['id']}", json={"status": "resolved"})
    age(db, recent["id"], 10)  # resolved, but within the 30 days
    still_open = make_conversation(api)
    age(db, still_open["id"], 400)  # old, but open: kept

    other = db.server.new_tenant("Keeps everything")
    with db.server.client(other) as other_api:
        theirs = make_conversation(other_api)
        other_api.patch(f"/api/v1/conversations/{theirs['id']}", json={"status": "resolved"})
    age(db, theirs["id"], 400)

    assert api.patch("/api/v1/workspace", json={"retention_days": 30}).status_code == 200  # wakes the job
    audit_before = api.get("/api/v1/audit-log", params={"limit": 200}).json()["data"]
    assert audit_before and audit_before[0]["action"] == "workspace.updated"
    job = db.server.app.state.bc.data_job  # type: ignore[union-attr]
    eventually(lambda: job.erased_total == 5, timeout=30)
    for conv in expired:
        assert_error(api.get(f"/api/v1/conversations/{conv['id']}"), 404)
        assert api.get(f"/api/v1/users/{conv['user_id']}").status_code == 200  # the customer stays
    assert_error(api.get(f"/api/v1/files/{f['id']}"), 404)
    assert not (db.server.workdir / "files" / db.tenant.workspace_id / f["id"]).exists()
    for conv in (recent, still_open):
        assert api.get(f"/api/v1/conversations/{conv['id']}").status_code == 200
    with db.server.client(other) as other_api:
        assert other_api.get(f"/api/v1/conversations/{theirs['id']}").status_code == 200  # no retention there

    def messages_left(tx: Tx) -> int:
        ids = [c["id"] for c in expired]
        statement = text("SELECT count(*) FROM message WHERE conversation_id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )
        return int(tx.session.execute(statement, {"ids": ids}).scalar() or 0)

    assert db.server.in_tx(messages_left) == 0
    # Retention never touches the audit log.
    assert api.get("/api/v1/audit-log", params={"limit": 200}).json()["data"] == audit_before
