"""Console users (admins and agents): Argon2-hashed passwords, each linked to a human agent."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app import errors
from app.data import audit
from app.ids import new_id, utcnow
from app.people import create_agent
from app.store.runner import Tx
from app.store.tables import ConsoleUser

_hasher = PasswordHasher()
# A real hash to verify against when the email is unknown, so timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("backchannel-timing-equaliser")
MIN_PASSWORD = 8


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


def new_console_user(email: str, password: str, *, name: str | None = None, role: str = "admin") -> NewConsoleUser:
    """Check the email and password (422 naming the field), then hash the password."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 320:
        raise errors.Unprocessable(
            "Invalid field: email", details=[{"field": "email", "message": "not an email address"}]
        )
    if len(password) < MIN_PASSWORD:
        raise errors.Unprocessable(
            "Invalid field: password",
            details=[{"field": "password", "message": f"at least {MIN_PASSWORD} characters"}],
        )
    return NewConsoleUser(email, hash_password(password), name, role)


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
