"""Human agents' availability (SPEC §11) and the routing that depends on it.

An agent's ``status`` column is what they chose ("online" or "away": the console's "Available"
toggle, or ``PATCH /api/v1/agents/{id}``, both ``people.update_agent``). A console keeps
``last_seen_at`` fresh while one of its Inbox pages is open (``app/console/live.py``, every
``SEEN_EVERY_SECONDS``); an agent with a console account whose consoles have all been closed
for ``AWAY_AFTER_SECONDS`` counts as away without anyone writing it, and as online again once a
console opens. An agent that never had a console (``last_seen_at`` NULL: one created through
the API, say for a CRM) is what it chose.

Routing (``pick_agent``): a conversation handed to humans without a named agent goes to the
available human with the fewest open conversations (then the longest-standing agent), or
waits, unassigned, when nobody is available.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.ids import utcnow
from app.store import sql as rows
from app.store.runner import Tx

AWAY_AFTER_SECONDS = 300  # no console open this long: away
SEEN_EVERY_SECONDS = 60  # how often an open console says so (well inside AWAY_AFTER_SECONDS)
STATUSES = ("online", "away")


def status_of(agent: Any, now: datetime | None = None) -> str:
    """The status shown and routed on: the agent's choice, unless their consoles are all closed."""
    if agent.status != "online" or agent.last_seen_at is None:
        return str(agent.status)
    return "online" if (now or utcnow()) - agent.last_seen_at < timedelta(seconds=AWAY_AFTER_SECONDS) else "away"


def pick_agent(tx: Tx, workspace_id: str) -> rows.AgentRow | None:
    """The available human agent with the fewest open conversations, or None."""
    h = tx.db
    cutoff = utcnow() - timedelta(seconds=AWAY_AFTER_SECONDS)
    found = h.run(_PICK, (workspace_id, "human", "online", h.dialect.ts(cutoff), "open"))
    return rows.AGENT.read(h.dialect, found[0]) if found else None


_PICK = (
    f"SELECT {rows.AGENT.columns} FROM agent"
    " WHERE workspace_id = ? AND kind = ? AND status = ? AND (last_seen_at IS NULL OR last_seen_at >= ?)"
    " ORDER BY (SELECT COUNT(*) FROM conversation WHERE conversation.assignee_id = agent.id"
    " AND conversation.status = ?), created_at, id LIMIT 1"
)


def has_human(tx: Tx, workspace_id: str) -> bool:
    """Whether the workspace has any human agent (available or not)."""
    return bool(tx.db.run("SELECT 1 FROM agent WHERE workspace_id = ? AND kind = ? LIMIT 1", (workspace_id, "human")))


def mark_seen(tx: Tx, agent_id: str) -> None:
    """A console of this agent is open (now)."""
    tx.db.run("UPDATE agent SET last_seen_at = ? WHERE id = ?", (tx.dialect.ts(utcnow()), agent_id))
