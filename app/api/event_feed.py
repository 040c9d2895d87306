"""``GET /api/v1/events``: the workspace's webhook events as a feed, for ``backchannel listen``.

The same bodies webhooks carry (``{type, timestamp, data}``, with the event id that is every
delivery's ``webhook-id``), read from the outbox, so a reader that comes back after a dropped
connection resumes from its cursor and misses nothing the outbox still holds
(``WEBHOOK_LOG_RETENTION_DAYS``).

Event ids sort by creation time, but with several writers a transaction may commit an event a
moment after a younger one is already visible. So each page also carries the events of the
``OVERLAP_MS`` before the cursor again: a reader de-duplicates by ``id`` (as every webhook
receiver should) and no late commit is skipped.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field, field_validator
from sqlmodel import col, select

from app import errors, events
from app.api.framework import Call, Endpoint
from app.api.pagination import decode_cursor, encode_cursor
from app.files.links import links_for
from app.ids import id_floor, id_millis
from app.store.tables import Event

TAG = "Events"
OVERLAP_MS = 5_000  # longer than any write transaction may take to commit
MAX_OVERLAP_EVENTS = 1_000
FEED_TYPES = events.SUBSCRIBABLE_EVENT_TYPES  # not webhook.test: only Send test sends it


class EventsQuery(BaseModel):
    after: str | None = Field(
        default=None, max_length=200,
        description="`next_cursor` of the page before. Without it: no events, and a cursor for now.",
    )
    types: str | None = Field(
        default=None, max_length=1000, description="Comma-separated event types to include (default: all).",
    )
    limit: int = Field(default=100, ge=1, le=200, description="At most this many new events (1-200).")

    @field_validator("types")
    @classmethod
    def _known_types(cls, value: str | None) -> str | None:
        if value is not None:
            unknown = [t for t in value.split(",") if t.strip() and t.strip() not in FEED_TYPES]
            if unknown:
                raise ValueError(f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(FEED_TYPES)}")
        return value


class FeedEvent(BaseModel):
    id: str = Field(description="The event's id: the `webhook-id` of its deliveries. De-duplicate by it.")
    type: str
    timestamp: str
    data: dict[str, Any]


class EventPage(BaseModel):
    data: list[FeedEvent] = Field(description="Oldest first; may repeat events of the page before (see `id`).")
    next_cursor: str = Field(description="Pass it as `after` to read on.")


def _cursor_id(after: str) -> str:
    (event_id,) = decode_cursor(after, 1)
    if not isinstance(event_id, str) or id_millis(event_id) is None:
        raise errors.Unprocessable(
            "Invalid field: query.after", details=[{"field": "query.after", "message": "not a cursor from this API"}]
        )
    return event_id


def feed(call: Call) -> dict[str, Any]:
    q: EventsQuery = call.query
    if q.after is None:
        return {"data": [], "next_cursor": encode_cursor(id_floor("msg", int(time.time() * 1000)))}
    after = _cursor_id(q.after)
    types = [t.strip() for t in (q.types or "").split(",") if t.strip()] or list(FEED_TYPES)
    base = select(Event).where(Event.workspace_id == call.workspace_id, col(Event.type).in_(types))
    fresh = list(call.session.exec(base.where(col(Event.id) > after).order_by(col(Event.id)).limit(q.limit)))
    floor = id_floor("msg", (id_millis(after) or 0) - OVERLAP_MS)
    late = list(call.session.exec(
        base.where(col(Event.id) >= floor, col(Event.id) <= after).order_by(col(Event.id)).limit(MAX_OVERLAP_EVENTS)
    ))
    links = links_for(call.settings) if call.settings is not None else None
    data = []
    for event in [*late, *fresh]:
        payload = links.present_event(event.payload) if links is not None else event.payload
        data.append({"id": event.id, **payload})
    return {"data": data, "next_cursor": encode_cursor(fresh[-1].id if fresh else after)}


ENDPOINTS = [
    Endpoint(
        "GET", "/events", feed, "Read the workspace's webhook events as a feed (what `backchannel listen` reads)",
        TAG, query=EventsQuery, response=EventPage, errors=(422,),
        description="Start without `after` (a cursor for now), then pass each `next_cursor` back. Each "
        "event is the body a webhook delivery carries plus its `id`; a page may repeat events of the "
        "last few seconds before the cursor, so de-duplicate by `id`. Events are kept as long as the "
        "delivery log (`WEBHOOK_LOG_RETENTION_DAYS`).",
    ),
]
