"""Keyset pagination: an opaque cursor names the last row of the page before."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from pydantic import BaseModel, Field

from app import errors


class ListQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=200, description="Page size (1-200).")
    cursor: str | None = Field(default=None, max_length=500, description="`next_cursor` of the page before.")


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except Exception:
        values = None
    if not isinstance(values, list) or len(values) != arity:
        raise errors.Unprocessable(
            "Invalid field: query.cursor", details=[{"field": "query.cursor", "message": "not a cursor from this API"}]
        )
    return values


def page(rows: list[Any], limit: int, to_json: Any, cursor_of: Any) -> dict[str, Any]:
    """``rows`` was fetched with ``limit + 1``: the extra row says there is a next page."""
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "data": [to_json(r) for r in rows],
        "next_cursor": encode_cursor(*cursor_of(rows[-1])) if more and rows else None,
    }
