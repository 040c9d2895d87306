"""``/api/v1/users``: end customers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select

from app import people
from app.api.changes import ChangesQuery, change_page
from app.api.framework import Call, Endpoint, Result
from app.api.pagination import ListQuery, decode_cursor, page
from app.api.schemas import ConversationOut, FileOut, MessageOut, UserIn, UserOut, UserPatch
from app.data import erasure, export
from app.files.links import links_for
from app.shapes import user_json
from app.state import AppState
from app.store.sql import table_of
from app.store.tables import User

USERS = table_of(User)


class ExportedConversation(ConversationOut):
    messages: list[MessageOut]


class UserExport(BaseModel):
    user: UserOut
    conversations: list[ExportedConversation]
    files: list[FileOut]
    exported_at: str


class UserQuery(ListQuery, ChangesQuery):
    external_id: str | None = Field(default=None, max_length=255, description="Find by your own id.")
    email: str | None = Field(default=None, min_length=1, max_length=320, description="Find by email (exact).")
    q: str | None = Field(
        default=None, min_length=1, max_length=200, description="Search name, email and external_id (substring)."
    )


def _like(value: str) -> str:
    """A case-insensitive substring pattern, with LIKE's wildcards in ``value`` taken literally."""
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def create(call: Call) -> dict[str, Any]:
    return user_json(people.create_user(call.write, call.workspace_id, call.body))


def read(call: Call) -> dict[str, Any]:
    return user_json(people.get_user(call.session, call.workspace_id, call.params["user_id"]))


def patch(call: Call) -> dict[str, Any]:
    return user_json(people.update_user(call.write, call.workspace_id, call.params["user_id"], call.body))


def delete(call: Call) -> Result:
    """Erase the user and everything about them (SPEC §13); the bytes of their files and the
    database's leftovers go once the transaction has committed, before the 204."""
    erased = erasure.erase_user(call.write, call.workspace_id, call.params["user_id"])

    async def finish(state: AppState) -> None:
        await erasure.finish(state.files, state.engine, erased, state.data_job.vacuum_soon)

    return Result(204, None, after=finish)


def export_(call: Call) -> dict[str, Any]:
    assert call.settings is not None
    return export.export_user(call.session, call.workspace_id, call.params["user_id"], links_for(call.settings))


def list_(call: Call) -> dict[str, Any]:
    q: UserQuery = call.query
    c = USERS.c
    query = select(USERS).where(c.workspace_id == call.workspace_id)
    if q.external_id is not None:
        query = query.where(c.external_id == q.external_id)
    if q.email is not None:
        query = query.where(c.email == q.email)
    if q.q is not None:
        pattern = _like(q.q)
        query = query.where(
            or_(*(func.lower(column).like(pattern, escape="\\") for column in (c.name, c.email, c.external_id)))
        )
    changes = change_page(
        call.session, USERS, query, since=q.since, cursor=q.cursor, limit=q.limit, to_json=user_json
    )
    if changes is not None:
        return changes
    if q.cursor:
        (last_id,) = decode_cursor(q.cursor, 1)
        query = query.where(c.id < str(last_id))
    rows = list(call.session.connection().execute(query.order_by(c.id.desc()).limit(q.limit + 1)))
    return page(rows, q.limit, user_json, lambda u: (u.id,))


ENDPOINTS = [
    Endpoint(
        "POST",
        "/users",
        create,
        "Create a user",
        "Users",
        body=UserIn,
        response=UserOut,
        status=201,
        scope="write",
        errors=(409, 422),
    ),
    Endpoint(
        "GET",
        "/users",
        list_,
        "List users (newest first), find them by external_id, email or text, or list changes for a sync",
        "Users",
        query=UserQuery,
        response=("changes", UserOut),
    ),
    Endpoint("GET", "/users/{user_id}", read, "Get a user", "Users", response=UserOut, errors=(404,)),
    Endpoint(
        "PATCH",
        "/users/{user_id}",
        patch,
        "Update a user",
        "Users",
        body=UserPatch,
        response=UserOut,
        scope="write",
        errors=(404, 409, 422),
    ),
    Endpoint(
        "DELETE",
        "/users/{user_id}",
        delete,
        "Erase a user: their conversations, messages and files are deleted, not hidden (204)",
        "Users",
        response=None,
        status=204,
        scope="write",
        errors=(404,),
        audit=("user.erased", "user"),
        description="Also deleted: the webhook events and deliveries and the idempotency records that carry "
        "their data. Fires `user.deleted` with `{user_id, external_id}`. See docs/data.md.",
    ),
    Endpoint(
        "GET",
        "/users/{user_id}/export",
        export_,
        "Export everything stored about a user: conversations with messages, files as signed links",
        "Users",
        response=UserExport,
        errors=(404,),
        audit=("user.exported", "user"),
        description="`{user, conversations: [{…, messages: [...]}], files: [...], exported_at}`. Each file's `url` "
        "is a signed link valid for one to two hours. The export is recorded in the audit log.",
    ),
]
