"""``/api/v1/audit-log``: the workspace's admin actions, newest first (SPEC §13)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.api.framework import Call, Endpoint
from app.api.pagination import ListQuery
from app.data import audit


class AuditActor(BaseModel):
    type: str  # token | console_user | cli
    id: str | None
    name: str | None


class AuditTarget(BaseModel):
    type: str | None
    id: str | None


class AuditEntryOut(BaseModel):
    id: str
    actor: AuditActor
    action: str
    target: AuditTarget
    ip: str | None
    at: str


def list_(call: Call) -> dict[str, Any]:
    q: ListQuery = call.query
    found, next_cursor = audit.entries(call.session, call.workspace_id, q.limit, q.cursor)
    return {"data": [audit.entry_json(e) for e in found], "next_cursor": next_cursor}


ENDPOINTS = [
    Endpoint(
        "GET",
        "/audit-log",
        list_,
        "The audit log: every admin action, newest first (append-only)",
        "Audit log",
        query=ListQuery,
        response=("page", AuditEntryOut),
        scope="admin",
        errors=(403,),
        description="Tokens, webhook endpoints (secret reveals and rotations too), widget and workspace settings, "
        "team changes, erasures and exports, console logins (failed ones too). No API changes or deletes an entry.",
    ),
]
