"""SQLModel tables only. Request and response shapes live in ``schemas.py``.

Table models skip validation, so nothing reaches them that ``schemas`` has not checked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, ForeignKey, Index, TypeDecorator, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlmodel import Field, SQLModel
from sqlmodel.sql.sqltypes import AutoString

from app.ids import utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC, on every engine."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default=None if nullable else None,
        sa_column=Column(UTCDateTime(), nullable=nullable, index=index),
    )


def created() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


def json_col(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


def sync_seq_col() -> Any:
    """The change order a CRM syncs by (``app/store/sql.py`` ``next_sync_seq``): every change
    of the row stamps it with its transaction's place in commit order."""
    return Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


class Workspace(SQLModel, table=True):
    id: str = Field(primary_key=True)
    name: str
    widget_key: str = Field(unique=True, index=True)
    identity_secret: str
    identity_verification: bool = False
    allowed_origins: list[str] = json_col(list)
    theme_color: str = "#1f5eff"
    greeting: str = "Hi! How can we help?"
    # Resolved conversations older than this many days are erased (None: kept for ever).
    retention_days: int | None = None
    # The customer's side (SPEC §12; docs/widget.md): None follows the visitor's browser.
    locale: str | None = None
    away_message: str = ""  # empty: the widget says its own "We're away" line in the visitor's language
    # {"timezone": "Europe/Berlin", "weekly": {"mon": [["09:00", "17:00"]], …}}; None: always open
    business_hours: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    ratings_enabled: bool = True
    created_at: datetime = created()


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id", index=True)
    name: str
    prefix: str
    token_hash: str = Field(unique=True, index=True)
    scopes: list[str] = json_col(list)
    created_at: datetime = created()
    last_used_at: datetime | None = ts(nullable=True)
    revoked_at: datetime | None = ts(nullable=True)


class ConsoleUser(SQLModel, table=True):
    """A person who logs in to the console: an admin, or an agent who works the Inbox."""

    __tablename__ = "console_user"
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)
    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id", index=True)
    # Unique across the server (SPEC §8): login finds an account by email alone. Stored
    # lowercased (accounts.normalize_email), so the unique index is case-insensitive.
    email: str = Field(index=True, unique=True)
    name: str
    role: str = "admin"  # admin | agent
    password_hash: str
    agent_id: str | None = Field(default=None, foreign_key="agent.id")
    session_version: int = 0  # bumped on logout-everywhere / password change
    created_at: datetime = created()


class ConsolePasswordReset(SQLModel, table=True):
    """A "Forgot password" link sent by email: only the SHA-256 of its secret is kept, it
    expires, and it works once (``used_at``). No foreign key: removing the console user
    deletes their links (``accounts.remove_member``), and a link whose user is gone is refused."""

    __tablename__ = "console_password_reset"
    id: str = Field(primary_key=True)
    console_user_id: str = Field(index=True)
    workspace_id: str
    token_hash: str
    created_at: datetime = created()
    expires_at: datetime = ts(index=True)
    used_at: datetime | None = ts(nullable=True)


class User(SQLModel, table=True):
    """An end customer."""

    __table_args__ = (
        UniqueConstraint("workspace_id", "external_id"),
        Index("ix_user_ws_sync", "workspace_id", "sync_seq", "id"),
        Index("ix_user_ws_email", "workspace_id", "email"),
    )
    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id", index=True)
    external_id: str | None = None
    name: str | None = None
    email: str | None = None
    properties: dict[str, Any] = json_col(dict)
    created_at: datetime = created()
    updated_at: datetime = created()
    sync_seq: int = sync_seq_col()
    # Offline replies by email (app/mail): when the customer last had a widget open, and the
    # page it was on (origin and path: the email's link back).
    widget_seen_at: datetime | None = ts(nullable=True)
    widget_page: str | None = None
    # The browser and system the widget last ran on, in a few words (``app/devices.py``).
    widget_device: str | None = None


class Agent(SQLModel, table=True):
    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id", index=True)
    name: str
    kind: str  # bot | human
    avatar_url: str | None = None
    is_default_bot: bool = False
    created_at: datetime = created()
    # A human's availability (SPEC §11): what they chose ("online" | "away"), and when a console
    # of theirs was last open; ``app/availability.py`` turns the two into the status shown.
    status: str = Field(default="online", sa_column_kwargs={"server_default": "online"})
    last_seen_at: datetime | None = ts(nullable=True)


class Conversation(SQLModel, table=True):
    __table_args__ = (
        Index("ix_conversation_ws_updated", "workspace_id", "updated_at", "id"),
        Index("ix_conversation_ws_sync", "workspace_id", "sync_seq", "id"),
        # Routing counts each human's open conversations (``app/availability.py``).
        Index("ix_conversation_assignee_status", "assignee_id", "status"),
        # A visitor's newest conversation, read at every widget handshake (``sql.newest_conversation``).
        Index("ix_conversation_user_created", "user_id", "created_at"),
    )
    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id", index=True)
    user_id: str = Field(foreign_key="user.id")
    status: str = "open"  # open | resolved
    assignee_id: str | None = Field(default=None, foreign_key="agent.id")
    # The assignee's kind ("bot" | "human" | None), kept with assignee_id so no reader looks it up.
    assignee_kind: str | None = None
    # Who has control (SPEC §11): "bot" | "human". A bot's message is refused while a human has it.
    handled_by: str = Field(default="bot", sa_column_kwargs={"server_default": "bot"})
    last_message_seq: int = 0
    user_read_seq: int = 0
    agent_read_seq: int = 0
    tags: list[str] = json_col(list)
    properties: dict[str, Any] = json_col(dict)
    created_at: datetime = created()
    updated_at: datetime = created()
    sync_seq: int = sync_seq_col()
    # The customer's rating after a resolve (1-5, an optional comment); SPEC §12.
    rating_score: int | None = None
    rating_comment: str | None = None
    rated_at: datetime | None = ts(nullable=True)
    resolved_at: datetime | None = ts(nullable=True)  # the last resolve (Reports' resolution time)


class Message(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq"),
        UniqueConstraint("conversation_id", "client_message_id"),
    )
    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id")
    # Found by the (conversation_id, seq) unique index: no index of its own (migration 0016).
    conversation_id: str = Field(foreign_key="conversation.id")
    seq: int
    actor_type: str  # user | bot | agent | system
    actor_id: str | None = None
    message_parts: list[dict[str, Any]] = json_col(list)
    reply_parts: list[dict[str, Any]] = json_col(list)
    reply_to: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    client_message_id: str | None = None
    created_at: datetime = created()
    # A private note (SPEC §11): for the team only, never sent to the widget.
    private: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_record"
    workspace_id: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    fingerprint: str
    status_code: int
    response_body: str
    created_at: datetime = Field(  # indexed: records older than a day are pruned by age
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True)
    )


class Event(SQLModel, table=True):
    """The outbox: one row per event, written in the transaction that caused it."""

    id: str = Field(primary_key=True)  # becomes the webhook-id
    workspace_id: str = Field(foreign_key="workspace.id", index=True)
    type: str
    payload: dict[str, Any] = json_col(dict)  # the webhook body {type, timestamp, data}
    created_at: datetime = Field(  # indexed: the dispatcher prunes old events by age
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True)
    )


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoint"
    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id", index=True)
    url: str
    description: str = ""
    events: list[str] = json_col(lambda: ["*"])
    enabled: bool = True
    disabled_reason: str | None = None
    secret: str
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = ts(nullable=True)
    # Asymmetric signing (``v1a``) is on when a key is set; the HMAC ``v1`` always signs too,
    # so off-the-shelf Standard Webhooks libraries keep working.
    ed25519_private_key: str | None = None  # whsk_…
    previous_ed25519_private_key: str | None = None  # signs until previous_secret_expires_at
    failing_since: datetime | None = ts(nullable=True)  # first failure since the last success
    created_at: datetime = created()
    updated_at: datetime = created()


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_delivery_due", "status", "next_attempt_at"),
        UniqueConstraint("endpoint_id", "event_id"),
    )
    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id")
    endpoint_id: str = Field(foreign_key="webhook_endpoint.id", index=True)
    event_id: str = Field(foreign_key="event.id")
    event_type: str
    status: str = "pending"  # pending | delivering | succeeded | failed
    attempts: int = 0  # every attempt ever made
    schedule_step: int = 0  # attempts in the current retry round; a manual retry starts a new round
    next_attempt_at: datetime = created()
    lease_until: datetime | None = ts(nullable=True)
    lease_owner: str | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime = created()
    updated_at: datetime = created()


class WebhookAttempt(SQLModel, table=True):
    __tablename__ = "webhook_attempt"
    id: str = Field(primary_key=True)
    delivery_id: str = Field(foreign_key="webhook_delivery.id", index=True)
    endpoint_id: str = Field(index=True)
    started_at: datetime = Field(  # indexed: old attempts are pruned by age
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True)
    )
    duration_ms: int = 0
    status_code: int | None = None
    response_excerpt: str | None = None
    error: str | None = None


class UsedWebviewToken(SQLModel, table=True):
    """Single-use hosted web-view URLs: the token id is recorded when the form is submitted."""

    __tablename__ = "used_webview_token"
    jti: str = Field(primary_key=True)
    expires_at: datetime = created()


class WebviewOpening(SQLModel, table=True):
    """One time a customer opened a web view. Closing is idempotent per opening, and a hosted
    form's single-use URL names its opening, so a closed (or replaced) opening kills the URL."""

    __tablename__ = "webview_opening"
    __table_args__ = (Index("ix_webview_opening_target", "conversation_id", "message_id", "webview_id"),)
    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id", index=True)
    conversation_id: str = Field(foreign_key="conversation.id")
    message_id: str = Field(foreign_key="message.id")
    webview_id: str
    user_id: str
    kind: str  # url | form
    opened_at: datetime = created()
    closed_at: datetime | None = ts(nullable=True)
    status: str | None = None  # submitted | closed | dismissed | replaced (a newer opening)


class File(SQLModel, table=True):
    """An uploaded file: its bytes live in the file store (``app/files/storage.py``) under
    ``storage_key``. It belongs to the customer who uploaded it (``user_id``) and, once sent,
    to the conversation it was first sent in (``conversation_id``); both go with an erasure."""

    __tablename__ = "file"
    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id", index=True)
    user_id: str | None = Field(default=None, index=True)
    conversation_id: str | None = Field(default=None, index=True)
    uploaded_by: str  # api | widget
    name: str
    content_type: str  # read from the bytes, never the client's word
    size: int
    storage_key: str
    created_at: datetime = created()


class SyncClock(SQLModel, table=True):
    """SQLite's change clock: one row, bumped once per write transaction that changes a user
    or a conversation (PostgreSQL uses the transaction id instead; ``dialect.py``)."""

    __tablename__ = "sync_clock"
    id: int = Field(primary_key=True)
    value: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class AuditEntry(SQLModel, table=True):
    """One admin action (SPEC §13), written in the transaction of the action. Append-only:
    nothing updates or deletes a row (not the API, not retention, not an erasure)."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_ws_at", "workspace_id", "at", "id"),)
    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id")
    actor_type: str  # token | console_user | cli
    actor_id: str | None = None
    actor_name: str | None = None
    action: str  # e.g. api_token.created, webhook_endpoint.secret_revealed, user.erased
    target_type: str | None = None
    target_id: str | None = None
    ip: str | None = None
    at: datetime = created()


def _owned_by(target: str, nullable: bool) -> Any:
    """A reference that goes with its target: deleting the row deletes this one (in the database)."""
    return Field(
        default=None,
        sa_column=Column(AutoString(), ForeignKey(target, ondelete="CASCADE"), nullable=nullable, index=True),
    )


class SearchEntry(SQLModel, table=True):
    """The full-text search index (SPEC §11), apart from what it indexes: one row per message
    with text, and one per customer for their name and email (``message_id`` and
    ``conversation_id`` NULL). ``body`` is the text as ``app/store/search.py`` normalizes it;
    the engine's own index over it (SQLite FTS5 ``search_fts``, PostgreSQL GIN) is made by the
    migration. Rows go with their message, conversation or user (``ON DELETE CASCADE``)."""

    __tablename__ = "search_entry"
    id: int | None = Field(default=None, primary_key=True)  # SQLite: the rowid, stable across VACUUM
    workspace_id: str = Field(foreign_key="workspace.id")
    user_id: str = _owned_by("user.id", nullable=False)
    conversation_id: str | None = _owned_by("conversation.id", nullable=True)
    message_id: str | None = _owned_by("message.id", nullable=True)
    body: str


class CannedResponse(SQLModel, table=True):
    """A saved reply an agent inserts with ``/shortcut`` in the Inbox (SPEC §11)."""

    __tablename__ = "canned_response"
    __table_args__ = (UniqueConstraint("workspace_id", "shortcut"),)
    id: str = Field(primary_key=True)
    workspace_id: str = Field(foreign_key="workspace.id", index=True)
    shortcut: str  # 1–32 of a-z 0-9 _ -
    text: str
    created_at: datetime = created()


class EmailProgress(SQLModel, table=True):
    """Offline replies by email (app/mail/replies.py): per conversation, the highest seq already
    emailed and the claim of the email being sent now (a lease, as webhook deliveries have)."""

    __tablename__ = "email_progress"
    conversation_id: str = Field(primary_key=True)
    workspace_id: str = Field(index=True)
    user_id: str = Field(index=True)
    emailed_seq: int = 0  # replies up to this seq went out (or were read in the widget first)
    claimed_seq: int = 0  # the email in flight covers replies up to this seq
    lease_owner: str | None = None
    lease_until: datetime | None = ts(nullable=True)
    emails_sent: int = 0
    last_error: str | None = None
    updated_at: datetime = created()
