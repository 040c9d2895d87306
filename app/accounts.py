"""Console users (admins and agents): Argon2-hashed passwords, each linked to a human agent."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from app import errors
from app.actions import Tx, create_agent
from app.ids import new_id, utcnow
from app.models import ConsoleUser

_hasher = PasswordHasher()
# A real hash to verify against when the email is unknown, so timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("backchannel-timing-equaliser")
MIN_PASSWORD = 8


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_console_user(
    tx: Tx, workspace_id: str, email: str, password: str, *, name: str | None = None, role: str = "admin"
) -> ConsoleUser:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise errors.Unprocessable(
            "Invalid field: email", details=[{"field": "email", "message": "not an email address"}]
        )
    if len(password) < MIN_PASSWORD:
        raise errors.Unprocessable(
            "Invalid field: password",
            details=[{"field": "password", "message": f"at least {MIN_PASSWORD} characters"}],
        )
    exists = tx.session.exec(
        select(ConsoleUser).where(ConsoleUser.workspace_id == workspace_id, ConsoleUser.email == email)
    ).first()
    if exists:
        raise errors.Conflict("A console user with this email already exists.", code="duplicate_email")
    display = name or email.split("@")[0].replace(".", " ").title()
    agent = create_agent(tx, workspace_id, display, "human")
    user = ConsoleUser(
        id=new_id("cu"),
        workspace_id=workspace_id,
        email=email,
        name=display,
        role=role,
        password_hash=hash_password(password),
        agent_id=agent.id,
        created_at=utcnow(),
    )
    tx.session.add(user)
    return user


def authenticate(s: Session, email: str, password: str) -> ConsoleUser | None:
    """The user whose email and password match, or None (in constant-ish time)."""
    user = s.exec(select(ConsoleUser).where(ConsoleUser.email == email.strip().lower())).first()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return user
