"""Change listings for a CRM's sync: ``?updated_after=`` on users and conversations.

A change listing is in change order (``sync_seq``, then id), not by time: timestamps are
taken by writers that commit in any order (several writer lanes, several instances), so a
row stamped 12:00:00.100 can become visible after one stamped 12:00:00.200 that a poller has
already seen. The change order is commit order on SQLite and, on PostgreSQL, shows a row only
once every transaction that could still commit before it has ended (``Dialect.sync_settled``),
so a poller that resumes from its cursor never skips a change; see docs/api.md.

Every change listing answers a ``sync_cursor`` on its last page: the position after the last
change listed (or the same position again when nothing changed), to poll with later.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Select, Table, text, tuple_
from sqlmodel import Session

from app import errors
from app.api.pagination import encode_cursor
from app.ids import isoformat
from app.store.dialect import dialect_of

_CHANGES = "chg"  # the first element of a change cursor (a plain cursor holds row keys only)


class ChangesQuery(BaseModel):
    updated_after: str | None = Field(
        default=None,
        max_length=40,
        json_schema_extra={"format": "date-time"},
        description=(
            "List what changed at or after this time (ISO-8601 with an offset, such as "
            "`2026-11-30T12:00:00Z`), in change order, oldest change first; the last page carries "
            "`sync_cursor` to poll with later. Inclusive: a row stamped exactly then is listed again, never missed."
        ),
    )

    @field_validator("updated_after")
    @classmethod
    def _iso_with_offset(cls, value: str | None) -> str | None:
        if value is not None:
            since_time(value)
        return value

    @property
    def since(self) -> datetime | None:
        return None if self.updated_after is None else since_time(self.updated_after)


def since_time(value: str) -> datetime:
    """An ISO-8601 date-time with its offset (``Z`` or ``+hh:mm``); a bare number or a time
    without an offset is refused (it would mean a different instant on another clock)."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("an ISO-8601 date-time with an offset, such as 2026-11-30T12:00:00Z") from None
    if at.tzinfo is None or "T" not in value.upper():
        raise ValueError("an ISO-8601 date-time with an offset, such as 2026-11-30T12:00:00Z")
    return at


def change_cursor(cursor: str | None) -> tuple[datetime, int, str] | None:
    """``(since, sync_seq, id)`` of a change cursor; None for a plain cursor (or none)."""
    if not cursor:
        return None
    try:
        values = orjson.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
    except Exception:
        return None
    if not (isinstance(values, list) and len(values) == 4 and values[0] == _CHANGES):
        return None
    _, since, seq, last_id = values
    try:
        return datetime.fromisoformat(str(since)), int(seq), str(last_id)
    except (TypeError, ValueError):
        raise errors.Unprocessable(
            "Invalid field: query.cursor", details=[{"field": "query.cursor", "message": "not a cursor from this API"}]
        ) from None


def change_page(
    session: Session,
    table: Table,
    query: Select[Any],
    *,
    since: datetime | None,
    cursor: str | None,
    limit: int,
    to_json: Callable[[Any], dict[str, Any]],
) -> dict[str, Any] | None:
    """The change listing of ``query`` (already limited to the workspace and any filters), or
    None when neither ``since`` nor a change cursor asks for one."""
    position = change_cursor(cursor)
    if position is not None:
        since, seq, last_id = position
    elif since is not None:
        seq, last_id = -1, ""
    else:
        return None
    c = table.c
    query = query.where(c.updated_at >= since, tuple_(c.sync_seq, c.id) > tuple_(seq, last_id))
    settled = dialect_of(session.connection()).sync_settled
    if settled:
        query = query.where(text(settled.format(column=f'"{table.name}".sync_seq')))
    found = list(session.connection().execute(query.order_by(c.sync_seq, c.id).limit(limit + 1)))
    more = len(found) > limit
    found = found[:limit]
    if found:
        seq, last_id = found[-1].sync_seq, found[-1].id
    resume = encode_cursor(_CHANGES, isoformat(since), seq, last_id)
    return {
        "data": [to_json(r) for r in found],
        "next_cursor": resume if more else None,
        "sync_cursor": None if more else resume,
    }
