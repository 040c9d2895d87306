"""Offline replies by email: the queue, widget presence, and the worker (SPEC §12).

The queue is the database itself. A conversation is *due* when its customer has an email, has
had no widget open for ``EMAIL_AFTER_SECONDS``, the conversation has been quiet for
``EMAIL_BATCH_SECONDS`` (so one email gathers the replies of a few minutes) and it holds
replies newer than what the customer read in the widget and what was already emailed
(``email_progress.emailed_seq``). Nothing is queued on the message's hot path, and nothing is
lost to a restart: what is due is found again from the stored messages.

Sending is claimed per conversation with a lease (``claimed_seq``, ``lease_until``), as webhook
deliveries are: the claim commits before the SMTP exchange, ``emailed_seq`` moves after it, so
two instances never send the same replies and a graceful stop finishes (and records) the email in
flight. A process killed between the SMTP server's "250 OK" and the record sends that email
again once the lease lapses, with the same Message-ID (docs/email.md says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from app import people
from app.api.schemas import UserPatch
from app.ids import utcnow
from app.mail import smtp
from app.mail.compose import Reply, part_text, reply_email
from app.settings import Settings
from app.store.runner import Runner, Tx
from app.store.tables import Agent, Conversation, EmailProgress, Message, User, Workspace

log = logging.getLogger("backchannel.mail")

RECENT = timedelta(days=7)  # older conversations are not looked at again
BATCH = 50  # conversations looked at per round


# --- presence -------------------------------------------------------------------------------


def record_presence(tx: Tx, user_id: str, page: str | None = None, device: str | None = None) -> bool:
    """The customer has a widget open (or just closed it): now, the page it is on and the
    device it runs on (``app/devices.py``). Returns whether they have an email on file (else
    the widget may ask for one)."""
    values: dict[str, Any] = {"widget_seen_at": utcnow()}
    if page:
        values["widget_page"] = page[:2048]
    if device:
        values["widget_device"] = device[:120]
    tx.session.execute(update(User).where(col(User.id) == user_id).values(**values))
    return tx.session.exec(select(User.email).where(col(User.id) == user_id)).first() is not None


def save_customer_email(tx: Tx, workspace_id: str, user_id: str, email: str) -> str:
    """The customer's "Notify me": their email, unless one is on file already (which stays)."""
    user = people.get_user(tx.session, workspace_id, user_id)
    if user.email:
        return user.email
    return people.update_user(tx, workspace_id, user_id, UserPatch(email=email)).email or email


def page_of(origin: str | None, page: Any) -> str | None:
    """The page the widget says it is on, if it is on the socket's own origin (else none)."""
    if not origin or not isinstance(page, str) or len(page) > 2048:
        return None
    return page if page == origin or page.startswith(origin + "/") else None


def record_presence_of(tx: Tx, user_ids: list[str]) -> None:
    """Every customer with a widget open on this instance, in one statement."""
    if user_ids:
        tx.session.execute(update(User).where(col(User.id).in_(user_ids)).values(widget_seen_at=utcnow()))


# --- the queue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    conversation_id: str
    after_seq: int  # replies after this seq (read in the widget or emailed before) …
    upto_seq: int  # … up to this one go in this email
    owner: str


def due_conversations(s: Session, now: datetime, after_seconds: float, batch_seconds: float) -> list[str]:
    progress = EmailProgress
    query = (
        select(Conversation.id)
        .join(User, col(User.id) == col(Conversation.user_id))
        .outerjoin(progress, col(progress.conversation_id) == col(Conversation.id))
        .where(
            col(User.email).is_not(None),
            col(Conversation.updated_at) >= now - RECENT,
            col(Conversation.updated_at) <= now - timedelta(seconds=batch_seconds),
            col(Conversation.last_message_seq) > col(Conversation.user_read_seq),
            or_(col(progress.emailed_seq).is_(None), col(Conversation.last_message_seq) > col(progress.emailed_seq)),
            or_(col(progress.lease_until).is_(None), col(progress.lease_until) <= now),
            or_(
                col(User.widget_seen_at).is_(None),
                col(User.widget_seen_at) <= now - timedelta(seconds=after_seconds),
            ),
        )
        .order_by(col(Conversation.updated_at))
        .limit(BATCH)
    )
    return list(s.exec(query))


def claim(tx: Tx, conversation_id: str, owner: str, lease_seconds: float) -> Claimed | None:
    """Take the conversation's next email (None: nothing to send, or someone else has it)."""
    s = tx.session
    conv = s.get(Conversation, conversation_id, with_for_update=tx.dialect.row_locks)
    if conv is None:
        return None
    row = s.get(EmailProgress, conversation_id, with_for_update=tx.dialect.row_locks)
    now = utcnow()
    if row is None:
        row = EmailProgress(conversation_id=conv.id, workspace_id=conv.workspace_id, user_id=conv.user_id)
    elif row.lease_until is not None and row.lease_until > now:
        return None
    after = max(row.emailed_seq, conv.user_read_seq)
    if conv.last_message_seq <= after:
        return None
    row.claimed_seq = conv.last_message_seq
    row.lease_owner = owner
    row.lease_until = now + timedelta(seconds=lease_seconds)
    row.updated_at = now
    s.add(row)
    return Claimed(conv.id, after, conv.last_message_seq, owner)


def record(tx: Tx, claimed: Claimed, *, sent: bool, error: str | None = None) -> None:
    """After the SMTP exchange (or finding nothing to send): move ``emailed_seq`` on, or keep the
    lease until it lapses so a failure is tried again later."""
    row = tx.session.get(EmailProgress, claimed.conversation_id, with_for_update=tx.dialect.row_locks)
    if row is None or row.lease_owner != claimed.owner:
        return
    if error is None:
        row.emailed_seq = max(row.emailed_seq, claimed.upto_seq)
        row.lease_owner, row.lease_until = None, None
        row.emails_sent += int(sent)
        row.last_error = None
    else:
        row.last_error = error[:500]  # the lease stays: tried again when it lapses
    row.updated_at = utcnow()
    tx.session.add(row)


@dataclass(frozen=True)
class Outgoing:
    email: str
    name: str | None
    workspace_name: str
    page: str | None
    replies: list[Reply]


def outgoing(s: Session, claimed: Claimed) -> Outgoing | None:
    """What the email says: the bot's and agents' replies in the claimed range (never private notes)."""
    conv = s.get(Conversation, claimed.conversation_id)
    if conv is None:
        return None
    user = s.get(User, conv.user_id)
    workspace = s.get(Workspace, conv.workspace_id)
    if user is None or not user.email or workspace is None:
        return None
    messages = s.exec(
        select(Message)
        .where(
            col(Message.conversation_id) == conv.id,
            col(Message.seq) > claimed.after_seq,
            col(Message.seq) <= claimed.upto_seq,
            col(Message.actor_type).in_(("bot", "agent")),
            col(Message.private).is_(False),
        )
        .order_by(col(Message.seq))
    ).all()
    if not messages:
        return None
    names = _agent_names(s, {m.actor_id for m in messages if m.actor_id})
    replies = []
    for m in messages:
        text = "\n".join(filter(None, (part_text(p) for p in m.message_parts)))
        if text:
            replies.append(Reply(names.get(m.actor_id or "", workspace.name), text))
    if not replies:
        return None
    return Outgoing(user.email, user.name, workspace.name, user.widget_page, replies)


def _agent_names(s: Session, ids: Iterable[str]) -> dict[str, str]:
    ids = list(ids)
    if not ids:
        return {}
    return {a.id: a.name for a in s.exec(select(Agent).where(col(Agent.id).in_(ids)))}


def thread_key(conversation_id: str) -> str:
    """The email thread's name: stable per conversation, without showing its id."""
    return "bc" + hashlib.sha256(conversation_id.encode()).hexdigest()[:24]


def link_back(page: str | None) -> str | None:
    """The page the customer chatted on, with ``#backchannel`` (the widget opens itself there).
    A pointer, not a key: it carries no token, so only the browser that holds the customer's
    visitor token sees the conversation (docs/security.md)."""
    if not page or not page.startswith(("https://", "http://")):
        return None
    return page.split("#", 1)[0] + "#backchannel"


# --- the worker ----------------------------------------------------------------------------


class OfflineReplies:
    """Every ``EMAIL_POLL_SECONDS``: mark the customers with a widget open here as present, then
    send what is due."""

    def __init__(self, runner: Runner, settings: Settings, present: Callable[[], list[str]]) -> None:
        assert settings.smtp_url is not None
        self.runner = runner
        self.settings = settings
        self.present = present
        self.target = smtp.parse_smtp_url(settings.smtp_url.get_secret_value())
        self.owner = f"mail_{secrets.token_hex(6)}"
        self._stopping = False
        self._wake = anyio.Event()
        self.sent_total = 0

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                full = await self.run_once() >= BATCH
            except Exception:  # the next round tries again
                log.exception("offline replies: round failed")
                full = False
            if full:  # more may be due: the next round now, not after the poll
                await anyio.sleep(0)
                continue
            with anyio.move_on_after(self.settings.email_poll_seconds):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def run_once(self) -> int:
        """One round: presence, then what is due (up to ``BATCH`` conversations). Returns how
        many conversations were due."""
        await self.runner.write(record_presence_of, self.present())
        due = await self.runner.read(
            due_conversations, utcnow(), self.settings.email_after_seconds, self.settings.email_batch_seconds
        )
        for conversation_id in due:
            if self._stopping:
                break
            await self._send_one(conversation_id)
        return len(due)

    async def _send_one(self, conversation_id: str) -> None:
        claimed = await self.runner.write(claim, conversation_id, self.owner, self.settings.email_lease_seconds)
        if claimed is None:
            return
        mail = await self.runner.read(outgoing, claimed)
        if mail is None:  # read in the widget meanwhile, or only notes: nothing to send
            await self.runner.write(record, claimed, sent=False)
            return
        message = reply_email(
            sender=self.settings.email_from,
            to=mail.email,
            customer_name=mail.name,
            workspace_name=mail.workspace_name,
            replies=mail.replies,
            link=link_back(mail.page),
            thread_id=thread_key(claimed.conversation_id),
            message_key=f"{thread_key(claimed.conversation_id)}.{claimed.upto_seq}",
        )
        try:
            # Shielded: a stop waits for the email in flight and its record (none lost, none twice).
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(smtp.send, self.target, message)
        except Exception as exc:
            log.warning("offline replies: SMTP refused or unreachable (%s); trying again later", type(exc).__name__)
            await self.runner.write(record, claimed, sent=False, error=f"{type(exc).__name__}: {exc}")
            return
        with anyio.CancelScope(shield=True):
            await self.runner.write(record, claimed, sent=True)
        self.sent_total += 1


async def run_offline_replies(job: OfflineReplies, exit_stack: contextlib.AsyncExitStack) -> None:
    """Lifespan: run ``job`` until ``exit_stack`` closes (a stop lets the email in flight finish)."""
    tg = await exit_stack.enter_async_context(anyio.create_task_group())
    tg.start_soon(job.run)
    exit_stack.callback(job.stop)
