"""The audit log (SPEC §13): every admin action, written in the transaction of the action.

An entry says who acted (``actor``: an API token, a console user, or the CLI), what they did
(``action``, such as ``api_token.created`` or ``webhook_endpoint.secret_revealed``), on what
(``target``), from which address, and when. Append-only: this module only inserts; no API,
console page, erasure or retention job updates or deletes an entry, and an entry holds ids
and names of the workspace's own staff and tokens, never what a customer wrote.

Actions that are reads (revealing a secret, exporting a user) are recorded in a write of
their own, committed before the secret or the export is shown: no reveal without its entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlmodel import Session, col, or_, select

from app import errors
from app.api.pagination import decode_cursor, encode_cursor
from app.ids import isoformat, new_id, utcnow
from app.store.runner import Tx
from app.store.tables import ApiToken, AuditEntry, ConsoleUser

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: ``type`` is ``token``, ``console_user`` or ``cli``."""

    type: str
    id: str | None
    name: str | None
    ip: str | None = None

    @classmethod
    def console(cls, user: ConsoleUser, ip: str | None) -> Actor:
        return cls("console_user", user.id, user.email, ip)


CLI = Actor("cli", None, "backchannel CLI")


def token_actor(s: Session, token_id: str, ip: str | None) -> Actor:
    token = s.get(ApiToken, token_id)
    return Actor("token", token_id, token.name if token else None, ip)


def record(
    tx: Tx | Session, workspace_id: str, actor: Actor, action: str, target_type: str | None, target_id: str | None
) -> AuditEntry:
    """Add the entry to the caller's transaction (it commits, or rolls back, with the action)."""
    s = tx.session if isinstance(tx, Tx) else tx
    entry = AuditEntry(
        id=new_id("aud"),
        workspace_id=workspace_id,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_name=actor.name,
        action=action,
        target_type=target_type,
        target_id=target_id,
        ip=actor.ip,
        at=utcnow(),
    )
    s.add(entry)
    return entry


def audited(
    fn: Callable[..., T],
    workspace_id: str,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str | Callable[[T], str | None] | None = None,
) -> Callable[..., T]:
    """``fn(tx, …)`` that also records the action in its transaction; ``target_id`` may be a
    function of ``fn``'s result (the id of what it created)."""

    def write(tx: Tx, *args: Any, **kwargs: Any) -> T:
        result = fn(tx, *args, **kwargs)
        target = target_id(result) if callable(target_id) else target_id
        record(tx, workspace_id, actor, action, target_type, target)
        return result

    return write


def entry_json(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "actor": {"type": e.actor_type, "id": e.actor_id, "name": e.actor_name},
        "action": e.action,
        "target": {"type": e.target_type, "id": e.target_id},
        "ip": e.ip,
        "at": isoformat(e.at),
    }


def entries(
    s: Session, workspace_id: str, limit: int, cursor: str | None = None
) -> tuple[list[AuditEntry], str | None]:
    """A page of the workspace's entries, newest first, and the cursor of the next page."""
    query = select(AuditEntry).where(AuditEntry.workspace_id == workspace_id)
    if cursor:
        at_text, last_id = decode_cursor(cursor, 2)
        try:
            at = datetime.fromisoformat(str(at_text))
        except ValueError:
            raise errors.Unprocessable(
                "Invalid field: query.cursor",
                details=[{"field": "query.cursor", "message": "not a cursor from this API"}],
            ) from None
        query = query.where(
            or_(col(AuditEntry.at) < at, (col(AuditEntry.at) == at) & (col(AuditEntry.id) < str(last_id)))
        )
    found = list(s.exec(query.order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc()).limit(limit + 1)))
    more = len(found) > limit
    found = found[:limit]
    return found, encode_cursor(isoformat(found[-1].at), found[-1].id) if more and found else None
