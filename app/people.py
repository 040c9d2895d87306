"""Users (the customers) and agents (bots and humans): created, updated and found in one transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app import errors, events
from app.api.schemas import UserIn, UserPatch
from app.ids import new_id, utcnow
from app.shapes import agent_json, user_json
from app.store import search
from app.store import sql as rows
from app.store.engine import get_in_workspace
from app.store.runner import Tx
from app.store.tables import Agent, User

# --- users and agents -------------------------------------------------------------------


def create_user(tx: Tx, workspace_id: str, body: UserIn) -> User:
    s = tx.session
    if body.external_id is not None:
        existing = s.exec(
            select(User).where(User.workspace_id == workspace_id, User.external_id == body.external_id)
        ).first()
        if existing:
            raise errors.Conflict(
                "A user with this external_id already exists.",
                code="duplicate_external_id",
                details={"user_id": existing.id},
            )
    now = utcnow()
    user = User(
        id=new_id("usr"),
        workspace_id=workspace_id,
        external_id=body.external_id,
        name=body.name,
        email=body.email,
        properties=body.properties,
        created_at=now,
        updated_at=now,
        sync_seq=rows.next_sync_seq(tx.db),
    )
    s.add(user)
    try:
        s.flush()
    except IntegrityError:
        raise errors.Conflict("A user with this external_id already exists.", code="duplicate_external_id") from None
    search.index_user(tx.db, workspace_id, user.id, user.name, user.email)
    tx.emit(workspace_id, events.USER_CREATED, {"user": user_json(user)})
    return user


def update_user(tx: Tx, workspace_id: str, user_id: str, patch: UserPatch) -> User:
    user = get_user(tx.session, workspace_id, user_id)
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("external_id") not in (None, user.external_id):
        clash = tx.session.exec(
            select(User).where(User.workspace_id == workspace_id, User.external_id == changes["external_id"])
        ).first()
        if clash:
            raise errors.Conflict("A user with this external_id already exists.", code="duplicate_external_id")
    before = user_json(user)
    for key, value in changes.items():
        if key == "properties":
            # ``null`` clears the properties (the column is never null: reads promise an object);
            # an object merges into them, within the same limit as a create.
            value = {} if value is None else {**(user.properties or {}), **value}
            if len(value) > 100:
                raise errors.Unprocessable(
                    "Invalid field: properties", details=[{"field": "properties", "message": "at most 100 properties"}]
                )
        setattr(user, key, value)
    if user_json(user) != before:  # a PATCH that changes nothing is no change to sync
        _changed(tx, user)
    return user


def _changed(tx: Tx, user: User) -> None:
    """Stamp a change (``updated_at`` and the change order) and announce ``user.updated``."""
    user.updated_at = utcnow()
    user.sync_seq = rows.next_sync_seq(tx.db)
    tx.session.add(user)
    search.index_user(tx.db, user.workspace_id, user.id, user.name, user.email)
    tx.emit(user.workspace_id, events.USER_UPDATED, {"user": user_json(user)})


def find_or_create_user(tx: Tx, workspace_id: str, external_id: str | None, **fields: Any) -> User:
    """Widget identity: the user with this external_id, or a new (possibly anonymous) one."""
    s = tx.session
    if external_id is not None:
        user = s.exec(select(User).where(User.workspace_id == workspace_id, User.external_id == external_id)).first()
        if user:
            changed = False
            for key, value in fields.items():
                if value and getattr(user, key) != value:
                    setattr(user, key, value)
                    changed = True
            if changed:  # the identity (a signed JWT, say) brought new attributes
                _changed(tx, user)
            return user
    return create_user(tx, workspace_id, UserIn(external_id=external_id, **{k: v for k, v in fields.items() if v}))


def get_user(s: Session, workspace_id: str, user_id: str) -> User:
    return get_in_workspace(s, User, user_id, workspace_id, "user")


def create_agent(
    tx: Tx, workspace_id: str, name: str, kind: str, avatar_url: str | None = None, last_seen_at: datetime | None = None
) -> Agent:
    agent = Agent(
        id=new_id("agt"), workspace_id=workspace_id, name=name, kind=kind, avatar_url=avatar_url,
        last_seen_at=last_seen_at,
    )
    tx.session.add(agent)
    return agent


def default_bot(tx: Tx, workspace_id: str) -> Agent:
    s = tx.session
    bot = s.exec(select(Agent).where(Agent.workspace_id == workspace_id, col(Agent.is_default_bot).is_(True))).first()
    if bot is None:
        bot = Agent(id=new_id("agt"), workspace_id=workspace_id, name="Bot", kind="bot", is_default_bot=True)
        s.add(bot)
        s.flush()
    return bot


def default_bot_id(tx: Tx, workspace_id: str) -> str:
    """The default bot's id, remembered per process once it is known to be stored."""
    known = tx.cache.default_bots.get(workspace_id)
    if known is not None:
        return known
    found = rows.default_bot_id(tx.db, workspace_id)
    if found is None:
        return default_bot(tx, workspace_id).id  # created in this transaction: not remembered yet
    # Remembered only once committed: another write of this batch may have created it, and
    # the batch may still roll back and run again.
    tx.after_commit(lambda: tx.cache.default_bots.setdefault(workspace_id, found))
    return found


def update_agent(tx: Tx, workspace_id: str, agent_id: str, changes: dict[str, Any]) -> Agent:
    """Rename an agent, change its avatar or availability (``changes``: ``name``, ``avatar_url``,
    ``status``: ``app/availability.py``); the widgets
    showing it hear ``agent.updated`` and read it again."""
    agent = get_agent(tx.session, workspace_id, agent_id)
    for key in ("name", "avatar_url", "status"):
        if key in changes:
            setattr(agent, key, changes[key])
    tx.session.add(agent)
    tx.session.flush()
    tx.publish({"type": events.AGENT_UPDATED, "workspace_id": workspace_id, "data": {"agent": agent_json(agent)}})
    return agent


def get_agent(s: Session, workspace_id: str, agent_id: str) -> Agent:
    return get_in_workspace(s, Agent, agent_id, workspace_id, "agent")


