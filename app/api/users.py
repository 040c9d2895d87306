"""``/api/v1/users``: end customers."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlmodel import col, select

from app import people
from app.api.framework import Call, Endpoint
from app.api.pagination import ListQuery, decode_cursor, page
from app.api.schemas import UserIn, UserOut, UserPatch
from app.shapes import user_json
from app.store.tables import User


class UserQuery(ListQuery):
    external_id: str | None = Field(default=None, max_length=255, description="Find by your own id.")


def create(call: Call) -> dict[str, Any]:
    return user_json(people.create_user(call.write, call.workspace_id, call.body))


def read(call: Call) -> dict[str, Any]:
    return user_json(people.get_user(call.session, call.workspace_id, call.params["user_id"]))


def patch(call: Call) -> dict[str, Any]:
    return user_json(people.update_user(call.write, call.workspace_id, call.params["user_id"], call.body))


def list_(call: Call) -> dict[str, Any]:
    q: UserQuery = call.query
    query = select(User).where(User.workspace_id == call.workspace_id)
    if q.external_id is not None:
        query = query.where(User.external_id == q.external_id)
    if q.cursor:
        (last_id,) = decode_cursor(q.cursor, 1)
        query = query.where(col(User.id) < str(last_id))
    rows = list(call.session.exec(query.order_by(col(User.id).desc()).limit(q.limit + 1)))
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
        "List users (newest first), or find one by external_id",
        "Users",
        query=UserQuery,
        response=("page", UserOut),
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
]
