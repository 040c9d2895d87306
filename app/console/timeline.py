"""Lines in the Inbox transcript for what happened to a conversation between its messages.

Assignments, hand-overs, resolves and reopens come from the events the store records with
each change (the outbox, ``app/events.py``): nothing new is stored for them, so the API, the
widget and webhooks see exactly what they saw before. "Alex Morgan joined" is a human's first
message in the conversation, as the customer sees it in the widget. The outbox is pruned with
the webhook log (``WEBHOOK_LOG_RETENTION_DAYS``), so a conversation older than that shows its
messages without these lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from app import events
from app.store.dialect import dialect_of
from app.store.tables import Agent, Message

TYPES = (
    events.CONVERSATION_ASSIGNED,
    events.CONVERSATION_HANDOVER,
    events.CONVERSATION_RESOLVED,
    events.CONVERSATION_REOPENED,
)
# Why control moved to a human, in words (a bot's own reasons are shown as they are).
HANDOVER_REASONS = {
    "bot_unavailable": "the bot did not answer",
    "agent_replied": "a teammate replied",
    "api": "",
}


@dataclass(frozen=True)
class Line:
    at: datetime
    kind: str  # assigned | unassigned | handover | resolved | reopened | joined
    text: str
    agent_id: str | None = None  # whom it is about (assigned, joined)


def _conversation_id_sql(s: Session) -> str:
    if dialect_of(s.connection()).sqlite:
        return "json_extract(payload, '$.data.conversation.id')"
    return "(payload::json -> 'data' -> 'conversation' ->> 'id')"


def event_lines(
    s: Session, workspace_id: str, conversation_id: str, since: datetime, until: datetime, agents: dict[str, Agent]
) -> list[Line]:
    """The conversation's assignment, hand-over, resolve and reopen events between ``since``
    and ``until`` (its last change: each of these changes stamps ``updated_at``), oldest first,
    as lines. The outbox has no conversation column: the time range, on the ``created_at``
    index, keeps the read to the events of the conversation's lifetime."""
    d = dialect_of(s.connection())
    names = ", ".join(f":t{i}" for i in range(len(TYPES)))
    # SQLite takes the first index that fits (no statistics): "+" keeps it off workspace_id's,
    # which would read every event of the workspace.
    ws = "workspace_id" if d.plans_by_statistics else "+workspace_id"
    query = text(
        f"SELECT type, payload, created_at FROM event WHERE created_at >= :since AND created_at <= :until"
        f" AND {ws} = :ws AND type IN ({names}) AND {_conversation_id_sql(s)} = :cid ORDER BY created_at, id"
    ).bindparams(
        ws=workspace_id, since=d.ts(since), until=d.ts(until + timedelta(seconds=1)), cid=conversation_id,
        **{f"t{i}": t for i, t in enumerate(TYPES)},
    )
    lines = []
    for type_, payload, at in s.connection().execute(query):
        line = _line(type_, d.json_out(payload), d.ts_out(at), agents)
        if line is not None:
            lines.append(line)
    return lines


def _line(type_: str, payload: dict[str, Any], at: datetime, agents: dict[str, Agent]) -> Line | None:
    data = payload.get("data") or {}
    if type_ == events.CONVERSATION_ASSIGNED:
        assignee = data.get("assignee")
        if not assignee:
            return Line(at, "unassigned", "Unassigned")
        agent = agents.get(str(assignee.get("id")))
        name = agent.name if agent else str(assignee.get("name") or "an agent")
        who = f"the bot {name}" if (agent and agent.kind == "bot") else name
        return Line(at, "assigned", f"Assigned to {who}", str(assignee.get("id")))
    if type_ == events.CONVERSATION_HANDOVER:
        reason = str(data.get("reason") or "")
        if data.get("to") == "human":
            if reason in ("agent_replied", "assigned"):
                return None  # "<name> joined" or "Assigned to <name>" says it
            said = HANDOVER_REASONS.get(reason, reason.replace("_", " "))
            return Line(at, "handover", "Handed to a human" + (f": {said}" if said else ""))
        if reason == "resolved":
            return None  # the "Resolved" line says it
        if reason == "returned_by_agent":
            return Line(at, "handover", "Returned to the bot")
        return Line(at, "handover", "The bot has the conversation again")
    if type_ == events.CONVERSATION_RESOLVED:
        return Line(at, "resolved", "Resolved")
    if type_ == events.CONVERSATION_REOPENED:
        return Line(at, "reopened", "Reopened")
    return None


def joined(messages: list[Message], agents: dict[str, Agent], spoke_before: set[str]) -> dict[str, Line]:
    """Message id -> "<name> joined", for each human agent's first message to the customer
    (``spoke_before``: the agents who wrote before these messages)."""
    seen = set(spoke_before)
    out: dict[str, Line] = {}
    for m in messages:
        if m.actor_type != "agent" or m.private or not m.actor_id or m.actor_id in seen:
            continue
        seen.add(m.actor_id)
        agent = agents.get(m.actor_id)
        out[m.id] = Line(m.created_at, "joined", f"{agent.name if agent else 'An agent'} joined", m.actor_id)
    return out


def merge(messages: list[Message], lines: list[Line], joins: dict[str, Line]) -> list[Message | Line]:
    """Messages and lines in the order they happened. A human's reply assigns them in its own
    transaction: that "Assigned to <name>" is left out beside "<name> joined"."""
    grace = timedelta(seconds=2)

    def said_by_a_join(ln: Line) -> bool:
        return ln.kind == "assigned" and any(
            j.agent_id == ln.agent_id and j.at <= ln.at <= j.at + grace for j in joins.values()
        )

    lines = _cause_first([ln for ln in lines if not said_by_a_join(ln)])
    out: list[Message | Line] = []
    i = 0
    for m in messages:
        while i < len(lines) and lines[i].at < m.created_at:
            out.append(lines[i])
            i += 1
        if m.id in joins:
            out.append(joins[m.id])
        out.append(m)
    out.extend(lines[i:])
    return out


def closes_of(opening_closed: list[datetime], system: list[Message]) -> set[str]:
    """The ids of the system rows that say a web view closed: the row each close adds
    (``app/webviews/openings.py``) in the same transaction. The transcript shows the opening
    and its close under the web view's own message, so these are not shown twice."""
    folded: set[str] = set()
    for closed in opening_closed:
        for m in system:
            if m.id not in folded and closed <= m.created_at <= closed + timedelta(seconds=2):
                folded.add(m.id)
                break
    return folded


def _cause_first(lines: list[Line]) -> list[Line]:
    """One change stores "Assigned to …" (or "Unassigned") before the hand-over or reopen that
    caused it; shown the other way round, it reads as it happened."""
    out = list(lines)
    for i in range(len(out) - 1):
        a, b = out[i], out[i + 1]
        if a.kind in ("assigned", "unassigned") and b.kind in ("handover", "reopened") and (
            timedelta(0) <= b.at - a.at <= timedelta(milliseconds=50)
        ):
            out[i], out[i + 1] = b, a
    return out
