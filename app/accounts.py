"""Console users (admins and agents): Argon2-hashed passwords, each linked to a human agent."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app import errors, events
from app.api.schemas import ConversationPatch
from app.conversations import update_conversation
from app.data import audit
from app.ids import new_id, utcnow
from app.people import create_agent
from app.store.runner import Tx
from app.store.tables import Agent, ConsolePasswordReset, ConsoleUser, Conversation

_hasher = PasswordHasher()
# A real hash to verify against when the email is unknown, so timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("backchannel-timing-equaliser")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # Argon2 hashes any length; a bound keeps a login cheap


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def normalize_email(email: str) -> str:
    """The form every console email is stored and looked up in (the unique index is on it)."""
    return email.strip().lower()


@dataclass(frozen=True)
class NewConsoleUser:
    """A console account checked and its password hashed, before any write is queued:
    Argon2 costs tens of milliseconds of CPU by design, which the writer (one transaction
    for a batch of everyone's writes) must not spend."""

    email: str
    password_hash: str
    name: str | None = None
    role: str = "admin"


def password_problem(password: str) -> str | None:
    """What is wrong with a new password, in plain words (None: nothing)."""
    if len(password) < MIN_PASSWORD:
        return f"at least {MIN_PASSWORD} characters (this one has {len(password)})"
    if len(password) > MAX_PASSWORD:
        return f"at most {MAX_PASSWORD} characters"
    return None


def new_console_user(email: str, password: str, *, name: str | None = None, role: str = "admin") -> NewConsoleUser:
    """Check the email and password (one 422 naming every field that is wrong), then hash the password."""
    email = normalize_email(email)
    details = []
    if "@" not in email or len(email) > 320:
        shown = f"“{email[:80]}” is not an email address" if email else "an email address is needed"
        details.append({"field": "email", "message": shown})
    problem = password_problem(password)
    if problem:
        details.append({"field": "password", "message": problem})
    if name is not None and len(name) > 120:
        details.append({"field": "name", "message": "at most 120 characters"})
    if details:
        raise errors.Unprocessable(f"Invalid field: {details[0]['field']}", details=details)
    return NewConsoleUser(email, hash_password(password), name, role)


def verify_password(user: ConsoleUser, password: str) -> bool:
    try:
        return bool(_hasher.verify(user.password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


# --- team changes (Settings > Team, and each user's own account) ----------------------------


def _member(tx: Tx, workspace_id: str, user_id: str) -> ConsoleUser:
    user = tx.session.get(ConsoleUser, user_id)
    if user is None or user.workspace_id != workspace_id:
        raise errors.NotFound("No such team member.", code="not_found")
    return user


def _admins(tx: Tx, workspace_id: str) -> int:
    query = select(ConsoleUser.id).where(ConsoleUser.workspace_id == workspace_id, ConsoleUser.role == "admin")
    return len(tx.session.exec(query).all())


def _last_admin() -> errors.Conflict:
    return errors.Conflict("A workspace keeps at least one admin: make someone else an admin first.", code="last_admin")


def change_role(tx: Tx, workspace_id: str, user_id: str, role: str) -> ConsoleUser:
    if role not in ("admin", "agent"):
        raise errors.Unprocessable("Invalid field: role", details=[{"field": "role", "message": "admin or agent"}])
    user = _member(tx, workspace_id, user_id)
    if user.role == "admin" and role != "admin" and _admins(tx, workspace_id) <= 1:
        raise _last_admin()
    user.role = role
    tx.session.add(user)
    return user


def set_password(tx: Tx, workspace_id: str, user_id: str, password_hash: str) -> ConsoleUser:
    """A new password (hashed before the write is queued); every session of the user ends."""
    user = _member(tx, workspace_id, user_id)
    user.password_hash = password_hash
    user.session_version += 1
    tx.session.add(user)
    tx.publish({"type": events.CONSOLE_LOGOUT, "workspace_id": workspace_id, "data": {"console_user_id": user.id}})
    return user


def rename(tx: Tx, workspace_id: str, user_id: str, name: str) -> ConsoleUser:
    """A console user's own name, also the name customers see on their replies (their agent's)."""
    name = name.strip()
    if not name or len(name) > 120:
        raise errors.Unprocessable("Invalid field: name", details=[{"field": "name", "message": "1 to 120 characters"}])
    user = _member(tx, workspace_id, user_id)
    user.name = name
    tx.session.add(user)
    if user.agent_id is not None:
        agent = tx.session.get(Agent, user.agent_id)
        if agent is not None:
            agent.name = name
            tx.session.add(agent)
    return user


def remove_member(tx: Tx, workspace_id: str, user_id: str, by_user_id: str) -> ConsoleUser:
    """Remove a teammate's console login. Their agent stays (earlier replies keep their name)
    but is away, so routing hands them nobody; open conversations assigned to them go back
    to the queue, unassigned; every session of theirs ends at once."""
    if user_id == by_user_id:
        raise errors.Conflict("You cannot remove yourself; another admin can.", code="remove_self")
    user = _member(tx, workspace_id, user_id)
    if user.role == "admin" and _admins(tx, workspace_id) <= 1:
        raise _last_admin()
    if user.agent_id is not None:
        agent = tx.session.get(Agent, user.agent_id)
        if agent is not None:
            agent.status = "away"
            tx.session.add(agent)
        open_ids = tx.session.exec(
            select(Conversation.id).where(
                Conversation.workspace_id == workspace_id,
                Conversation.assignee_id == user.agent_id,
                Conversation.status == "open",
            )
        ).all()
        for conversation_id in open_ids:
            update_conversation(tx, workspace_id, conversation_id, ConversationPatch(assignee_id=None))
    tx.publish({"type": events.CONSOLE_LOGOUT, "workspace_id": workspace_id, "data": {"console_user_id": user.id}})
    for reset in tx.session.exec(select(ConsolePasswordReset).where(ConsolePasswordReset.console_user_id == user.id)):
        tx.session.delete(reset)  # their "Forgot password" links go with the login
    tx.session.delete(user)
    tx.session.flush()
    return user


def create_console_user(tx: Tx, workspace_id: str, new: NewConsoleUser) -> ConsoleUser:
    """A new console account. Its email must be unused across the whole server (SPEC §8):
    login finds an account by email alone, so a second one would lock the first out."""
    if tx.session.exec(select(ConsoleUser.id).where(ConsoleUser.email == new.email)).first() is not None:
        raise _email_taken()
    display = new.name or new.email.split("@")[0].replace(".", " ").title()
    # Seen now: until its first console opens, the new agent counts as available only for
    # ``availability.AWAY_AFTER_SECONDS``, so routing does not hand customers to an empty chair.
    agent = create_agent(tx, workspace_id, display, "human", last_seen_at=utcnow())
    user = ConsoleUser(
        id=new_id("cu"),
        workspace_id=workspace_id,
        email=new.email,
        name=display,
        role=new.role,
        password_hash=new.password_hash,
        agent_id=agent.id,
        created_at=utcnow(),
    )
    try:
        with tx.session.begin_nested():  # a concurrent create of the same email loses here
            tx.session.add(user)
            tx.session.flush()
    except IntegrityError:
        raise _email_taken() from None
    return user


def _email_taken() -> errors.Conflict:
    # Said the same whichever workspace holds it: the email is the server's, not this workspace's.
    return errors.Conflict(
        "This email already has a console account on this server; use another email.",
        code="duplicate_email",
        details=[{"field": "email", "message": "already has a console account on this server"}],
    )


def authenticate(s: Session, email: str, password: str) -> ConsoleUser | None:
    """The user whose email and password match, or None (in constant-ish time)."""
    user = s.exec(select(ConsoleUser).where(ConsoleUser.email == normalize_email(email))).one_or_none()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return user


def record_login(tx: Tx, email: str, ok: bool, ip: str | None) -> None:
    """A console login (or a failed one) in the audit log of the account's workspace. A failed
    login names the email typed as the actor's name; one for an email no account has is in no
    workspace, so it is only throttled (``console.auth``), not recorded."""
    user = tx.session.exec(select(ConsoleUser).where(ConsoleUser.email == normalize_email(email))).first()
    if user is None:
        return
    actor = audit.Actor("console_user", user.id if ok else None, user.email if ok else email.strip()[:320], ip)
    action = "console.login" if ok else "console.login_failed"
    audit.record(tx, user.workspace_id, actor, action, "console_user", user.id)
