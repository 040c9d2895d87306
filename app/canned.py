"""Canned responses (SPEC §11): saved replies an agent inserts with ``/shortcut`` in the Inbox's
Reply box. ``{id, shortcut, text}``; a shortcut is 1–32 of ``a-z 0-9 _ -`` and unique in its
workspace (``409 duplicate_shortcut``). The API (``app/api/canned_responses.py``) and the
console's page (``app/console/canned.py``) share these functions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app import errors
from app.ids import isoformat, new_id, utcnow
from app.store.engine import get_in_workspace
from app.store.runner import Tx
from app.store.tables import CannedResponse

SHORTCUT_PATTERN = r"^[a-z0-9_-]{1,32}$"
MAX_TEXT = 4096
MAX_PER_WORKSPACE = 1000


def canned_json(c: CannedResponse) -> dict[str, Any]:
    return {"id": c.id, "shortcut": c.shortcut, "text": c.text, "created_at": isoformat(c.created_at)}


def _taken() -> errors.Conflict:
    return errors.Conflict("A canned response with this shortcut already exists.", code="duplicate_shortcut")


def create(tx: Tx, workspace_id: str, shortcut: str, text: str) -> CannedResponse:
    s = tx.session
    if s.exec(select(CannedResponse.id).where(CannedResponse.workspace_id == workspace_id,
                                             CannedResponse.shortcut == shortcut)).first():  # fmt: skip
        raise _taken()
    if len(list_all(s, workspace_id)) >= MAX_PER_WORKSPACE:
        raise errors.Unprocessable(f"A workspace keeps at most {MAX_PER_WORKSPACE} canned responses.")
    canned = CannedResponse(
        id=new_id("cnr"), workspace_id=workspace_id, shortcut=shortcut, text=text, created_at=utcnow()
    )
    try:
        with s.begin_nested():  # a concurrent create of the same shortcut loses here
            s.add(canned)
            s.flush()
    except IntegrityError:
        raise _taken() from None
    return canned


def list_all(s: Session, workspace_id: str) -> list[CannedResponse]:
    query = select(CannedResponse).where(CannedResponse.workspace_id == workspace_id)
    return list(s.exec(query.order_by(col(CannedResponse.shortcut))))


def delete(tx: Tx, workspace_id: str, canned_id: str) -> None:
    canned = get_in_workspace(tx.session, CannedResponse, canned_id, workspace_id, "canned response")
    tx.session.delete(canned)
