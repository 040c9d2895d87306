"""``/api/v1/canned-responses``: saved replies for the Inbox's ``/`` shortcuts (SPEC §11)."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from app import canned
from app.api.framework import Call, Endpoint
from app.api.pagination import ListQuery, decode_cursor, page
from app.api.schemas import CannedResponseIn, CannedResponseOut
from app.store.tables import CannedResponse


def create(call: Call) -> dict[str, Any]:
    body: CannedResponseIn = call.body
    return canned.canned_json(canned.create(call.write, call.workspace_id, body.shortcut, body.text))


def list_(call: Call) -> dict[str, Any]:
    q: ListQuery = call.query
    query = select(CannedResponse).where(CannedResponse.workspace_id == call.workspace_id)
    if q.cursor:
        (last,) = decode_cursor(q.cursor, 1)
        query = query.where(col(CannedResponse.shortcut) > str(last))
    found = list(call.session.exec(query.order_by(col(CannedResponse.shortcut)).limit(q.limit + 1)))
    return page(found, q.limit, canned.canned_json, lambda c: (c.shortcut,))


def delete(call: Call) -> None:
    canned.delete(call.write, call.workspace_id, call.params["canned_response_id"])
    return None


ENDPOINTS = [
    Endpoint(
        "POST", "/canned-responses", create, "Save a canned response (409 duplicate_shortcut)", "Canned responses",
        body=CannedResponseIn, response=CannedResponseOut, status=201, scope="write", errors=(409, 422),
    ),
    Endpoint(
        "GET", "/canned-responses", list_, "List canned responses, by shortcut", "Canned responses",
        query=ListQuery, response=("page", CannedResponseOut),
    ),
    Endpoint(
        "DELETE", "/canned-responses/{canned_response_id}", delete, "Delete a canned response", "Canned responses",
        response=None, status=204, scope="write", errors=(404,),
    ),
]
