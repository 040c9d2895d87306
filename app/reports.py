"""Reports (SPEC §12): conversations, messages, first-response and resolution times and
ratings over a range of days, in total and per day (UTC). ``GET /api/v1/reports/summary`` and
the console's Reports page read the same ``summary``."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from app.store.tables import Conversation, Message

MAX_DAYS = 366


@dataclass
class _Day:
    conversations: int = 0
    messages: int = 0
    first_responses: list[float] | None = None
    resolutions: list[float] | None = None
    ratings: list[int] | None = None

    def out(self) -> dict[str, Any]:
        firsts, resolutions, ratings = self.first_responses or [], self.resolutions or [], self.ratings or []
        return {
            "conversations": self.conversations,
            "messages": self.messages,
            "median_first_response_seconds": round(statistics.median(firsts), 1) if firsts else None,
            "median_resolution_seconds": round(statistics.median(resolutions), 1) if resolutions else None,
            "rating_average": round(sum(ratings) / len(ratings), 2) if ratings else None,
            "ratings": len(ratings),
        }


def day_range(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def summary(s: Session, workspace_id: str, start: date, end: date) -> dict[str, Any]:
    """``start`` .. ``end`` inclusive, UTC days. A conversation counts on the day it was created
    (its first response and resolution too); a message on its day; a rating on the day it was given."""
    lo = datetime(start.year, start.month, start.day, tzinfo=UTC)
    hi = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    days = {d: _Day(0, 0, [], [], []) for d in day_range(start, end)}
    total = _Day(0, 0, [], [], [])
    convs = s.exec(
        select(Conversation.id, Conversation.created_at, Conversation.resolved_at, Conversation.status).where(
            col(Conversation.workspace_id) == workspace_id,
            col(Conversation.created_at) >= lo,
            col(Conversation.created_at) < hi,
        )
    ).all()
    created = {cid: at for cid, at, _resolved, _status in convs}
    for _cid, at, resolved_at, status in convs:
        day = days[at.date()]
        day.conversations += 1
        total.conversations += 1
        if status == "resolved" and resolved_at is not None and resolved_at >= at:
            seconds = (resolved_at - at).total_seconds()
            day.resolutions.append(seconds)  # type: ignore[union-attr]
            total.resolutions.append(seconds)  # type: ignore[union-attr]
    # Messages in the range, and the first reply after each new conversation's first customer message.
    first_user: dict[str, datetime] = {}
    answered: set[str] = set()
    rows = s.exec(
        select(Message.conversation_id, Message.actor_type, Message.created_at)
        .where(
            col(Message.workspace_id) == workspace_id,
            col(Message.created_at) >= lo,
            col(Message.created_at) < hi + timedelta(days=30),  # a first response may come later
            col(Message.private).is_(False),
        )
        .order_by(col(Message.conversation_id), col(Message.seq))
    ).all()
    for cid, actor, at in rows:
        if at < hi and actor != "system":
            days[at.date()].messages += 1
            total.messages += 1
        if cid not in created or cid in answered:
            continue
        if actor == "user":
            first_user.setdefault(cid, at)
        elif actor in ("bot", "agent") and cid in first_user:
            answered.add(cid)
            seconds = (at - first_user[cid]).total_seconds()
            days[created[cid].date()].first_responses.append(seconds)  # type: ignore[union-attr]
            total.first_responses.append(seconds)  # type: ignore[union-attr]
    rated = s.exec(
        select(Conversation.rating_score, Conversation.rated_at).where(
            col(Conversation.workspace_id) == workspace_id,
            col(Conversation.rated_at) >= lo,
            col(Conversation.rated_at) < hi,
        )
    ).all()
    for score, rated_at in rated:
        if score is not None and rated_at is not None:
            days[rated_at.date()].ratings.append(score)  # type: ignore[union-attr]
            total.ratings.append(score)  # type: ignore[union-attr]
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        **total.out(),
        "days": [{"date": d.isoformat(), **days[d].out()} for d in sorted(days)],
    }
