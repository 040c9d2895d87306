"""Every event type Backchannel announces, declared once: what it carries and where it goes.

An event is ``{"type", "workspace_id", "data"}``. A *stored* one is written to the outbox in
the transaction of the change that caused it (``Tx.emit``), so its webhooks survive a crash;
the others are live only (``Tx.publish`` or the broker) and never stored. Live events reach
every instance through the broker and are consumed by the widget hub
(``app/realtime/hub.py``) and the console's live Inbox (``app/console/hub.py``).

What derives from this table: the event types a webhook endpoint may subscribe to
(``app/webhooks/schemas.py``), the console's event choices (``app/console/webhooks.py``),
the hub's dispatch, the console's hints, and the event table of docs/webhooks.md
(``tests/test_events.py`` fails when any of them drifts from it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Webhook(enum.Enum):
    """Who receives an event over HTTP, signed per Standard Webhooks."""

    NONE = "no"
    SUBSCRIBED = "every enabled endpoint subscribed to it (or to *)"
    ENDPOINT = "only the endpoint it names (Send test)"
    FORM_CALLBACK = "only a hosted form's callback_url (the relay), never stored"


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    data: str  # the shape of ``data``, as docs/webhooks.md shows it
    stored: bool  # recorded in the outbox with the change (``Tx.emit``); else live only
    webhook: Webhook
    widget: bool  # the widget hub turns it into frames (or acts on it)
    console: bool  # the console hub forwards a hint of it (or acts on it)

    @property
    def live(self) -> bool:
        """Published through the broker (after commit, for a stored one)."""
        return self.widget or self.console


EVENTS: dict[str, EventType] = {}


def _declare(
    name: str, data: str, *, stored: bool, webhook: Webhook = Webhook.NONE, widget: bool = False, console: bool = False
) -> str:
    if name in EVENTS:
        raise ValueError(f"event type {name!r} declared twice")
    EVENTS[name] = EventType(name, data, stored, webhook, widget, console)
    return name


_SUB = Webhook.SUBSCRIBED

# The webhook events, in the order the API lists them (SPEC §5).
MESSAGE_CREATED = _declare(
    "message.created", "{message, conversation}", stored=True, webhook=_SUB, widget=True, console=True
)
CONVERSATION_CREATED = _declare(
    "conversation.created", "{conversation}", stored=True, webhook=_SUB, widget=True, console=True
)
CONVERSATION_ASSIGNED = _declare(
    "conversation.assigned",
    "{conversation, assignee: agent or null}",
    stored=True,
    webhook=_SUB,
    widget=True,
    console=True,
)
CONVERSATION_RESOLVED = _declare(
    "conversation.resolved", "{conversation}", stored=True, webhook=_SUB, widget=True, console=True
)
CONVERSATION_REOPENED = _declare(
    "conversation.reopened", "{conversation}", stored=True, webhook=_SUB, widget=True, console=True
)
CONVERSATION_UPDATED = _declare(
    "conversation.updated", "{conversation} (its tags or properties changed)", stored=True, webhook=_SUB, console=True
)
CONVERSATION_HANDOVER = _declare(
    "conversation.handover",
    '{conversation, from: "bot"|"human", to: "bot"|"human", reason}',
    stored=True,
    webhook=_SUB,
    widget=True,  # "Waiting for a teammate", and the bot's actions spent while a person has it
    console=True,
)
CONVERSATION_RATED = _declare(
    "conversation.rated", "{conversation} (its rating: {score, comment, rated_at})", stored=True, webhook=_SUB,
    widget=True, console=True,
)
USER_CREATED = _declare("user.created", "{user}", stored=True, webhook=_SUB)
USER_UPDATED = _declare("user.updated", "{user}", stored=True, webhook=_SUB)
USER_DELETED = _declare("user.deleted", "{user_id, external_id}", stored=True, webhook=_SUB)
WEBVIEW_OPENED = _declare(
    "webview.opened", "{conversation_id, message_id, webview_id}", stored=True, webhook=_SUB, console=True
)
WEBVIEW_CLOSED = _declare(
    "webview.closed",
    '{conversation_id, message_id, webview_id, status: "submitted"|"closed"|"dismissed", result?}',
    stored=True,
    webhook=_SUB,
    console=True,
)
WEBHOOK_TEST = _declare("webhook.test", "{endpoint_id, message}", stored=True, webhook=Webhook.ENDPOINT)

# Live only: never stored, never a webhook.
CONVERSATION_TYPING = _declare(
    "conversation.typing", "{conversation_id, actor: {type, id?, name?}, on}", stored=False, widget=True, console=True
)
CONVERSATION_READ = _declare(
    "conversation.read", '{conversation_id, reader: "user"|"agent", seq}', stored=False, widget=True, console=True
)
AGENT_UPDATED = _declare(
    "agent.updated", "{agent} (renamed or a new avatar: drops cached copies)", stored=False, widget=True
)
WIDGET_SETTINGS = _declare(
    "widget.settings", "the widget settings (drops cached copies, updates open widgets)", stored=False, widget=True
)
CONSOLE_LOGOUT = _declare(
    "console.logout", "{console_user_id} (closes that user's live sockets)", stored=False, console=True
)
# Never published: each instance's broker makes it for its own listeners when it reconnects.
BROKER_RESYNC = _declare(
    "broker.resync",
    "{} (the broker may have lost events: catch up from the store)",
    stored=False,
    widget=True,
    console=True,
)
# The body of a hosted form's relay to its callback_url (app/webviews/forms.py): signed like a
# webhook, but sent only there, and neither stored nor published.
WEBVIEW_SUBMITTED = _declare(
    "webview.submitted",
    "{conversation_id, user_id, message_id, webview_id, values}",
    stored=False,
    webhook=Webhook.FORM_CALLBACK,
)

# What the consumers take from the table.
WEBHOOK_EVENT_TYPES: tuple[str, ...] = tuple(
    e.name for e in EVENTS.values() if e.webhook in (Webhook.SUBSCRIBED, Webhook.ENDPOINT)
)
SUBSCRIBABLE_EVENT_TYPES: tuple[str, ...] = tuple(e.name for e in EVENTS.values() if e.webhook is Webhook.SUBSCRIBED)
TO_WIDGET: frozenset[str] = frozenset(e.name for e in EVENTS.values() if e.widget)
TO_CONSOLE: frozenset[str] = frozenset(e.name for e in EVENTS.values() if e.console)
