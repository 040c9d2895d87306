"""The life of a webhook delivery row: claim with a lease, record an attempt, retry or give up,
release on shutdown, prune when old. Each function is one transaction (``Runner.write``).

A delivery is ``pending`` (due at ``next_attempt_at``), ``delivering`` (leased by one
dispatcher until ``lease_until``), ``succeeded`` or ``failed``. A lease that runs out (the
process died mid-send) makes the row due again, so nothing is lost and a resend keeps its
``webhook-id``: at-least-once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import and_, delete, exists, func, or_, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select

from app.actions import Tx
from app.ids import new_id, utcnow
from app.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.settings import Settings
from app.webhooks import disable_endpoint

BATCH_PER_ENDPOINT = 10  # deliveries claimed per endpoint at once, sent in order
MAX_RETRY_AFTER = 24 * 3600.0
D, E = WebhookDelivery, WebhookEndpoint


@dataclass
class Job:
    delivery_id: str
    event_id: str  # the webhook-id
    body: bytes
    endpoint: WebhookEndpoint  # a detached snapshot taken when claimed


@dataclass
class Outcome:
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    excerpt: str | None = None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def _due(now: datetime) -> ColumnElement[bool]:
    """Pending and due, or claimed by someone whose lease ran out (crashed, killed, stuck)."""
    return or_(
        and_(col(D.status) == "pending", col(D.next_attempt_at) <= now),
        and_(col(D.status) == "delivering", col(D.lease_until) <= now),
    )


def _due_endpoints(now: datetime, busy: set[str]) -> Any:
    query = select(D.endpoint_id).join(E, col(E.id) == col(D.endpoint_id))
    query = query.where(col(E.enabled).is_(True), _due(now))
    if busy:
        query = query.where(col(D.endpoint_id).not_in(busy))
    return query


def has_due(session: Any, busy: set[str]) -> bool:
    """A cheap read, so an idle server does not take the write lock every poll."""
    return session.exec(_due_endpoints(utcnow(), busy).limit(1)).first() is not None


def claim_due(
    tx: Tx, owner: str, busy: set[str], max_endpoints: int, lease_seconds: float, postgres: bool
) -> list[list[Job]]:
    """Lease up to ``BATCH_PER_ENDPOINT`` due deliveries (oldest event first) for each of up
    to ``max_endpoints`` endpoints that this process is not already working on."""
    s = tx.session
    now = utcnow()
    lease_until = now + timedelta(seconds=lease_seconds)
    endpoint_ids = s.exec(
        _due_endpoints(now, busy)
        .group_by(col(D.endpoint_id))
        .order_by(func.min(D.next_attempt_at))
        .limit(max_endpoints)
    ).all()
    batches = []
    for endpoint_id in endpoint_ids:
        pick = (
            select(D.id)
            .where(col(D.endpoint_id) == endpoint_id, _due(now))
            .order_by(col(D.created_at), col(D.id))
            .limit(BATCH_PER_ENDPOINT)
        )
        if postgres:  # several instances: each takes rows nobody else holds
            pick = pick.with_for_update(skip_locked=True)
        ids = list(s.exec(pick).all())
        if not ids:
            continue
        s.execute(
            update(D)
            .where(col(D.id).in_(ids), _due(now))
            .values(status="delivering", lease_owner=owner, lease_until=lease_until, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        rows = s.exec(
            select(D, Event)
            .join(Event, col(Event.id) == col(D.event_id))
            .where(col(D.id).in_(ids), col(D.lease_owner) == owner, col(D.lease_until) == lease_until)
            .order_by(col(D.created_at), col(D.id))
            .execution_options(populate_existing=True)
        ).all()
        endpoint = s.get(E, endpoint_id)
        if rows and endpoint is not None:
            batches.append([Job(d.id, d.event_id, orjson.dumps(ev.payload), endpoint) for d, ev in rows])
    return batches


def next_delay(step: int, outcome: Outcome, schedule: list[float]) -> float | None:
    """Seconds until the next attempt after the ``step``-th failure of this round; ``None`` = give up."""
    if step > len(schedule):
        return None
    if outcome.retry_after is not None:
        return min(max(outcome.retry_after, 0.0), MAX_RETRY_AFTER)
    # Jitter spreads the retries of many deliveries that failed together (an outage).
    return float(schedule[step - 1]) * random.uniform(0.9, 1.1)


def record_attempt(
    tx: Tx, job: Job, outcome: Outcome, owner: str, rest: list[str], settings: Settings
) -> bool:
    """Log the attempt and decide what comes next. Returns True when the batch must stop
    (the endpoint was disabled or deleted)."""
    s = tx.session
    now = utcnow()
    delivery = s.get(D, job.delivery_id)
    if delivery is None:
        return True  # the endpoint was deleted while we were sending
    s.add(
        WebhookAttempt(
            id=new_id("wha"),
            delivery_id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            started_at=outcome.started_at,
            duration_ms=outcome.duration_ms,
            status_code=outcome.status_code,
            response_excerpt=outcome.excerpt,
            error=outcome.error,
        )
    )
    endpoint = s.get(E, delivery.endpoint_id)
    assert endpoint is not None  # deleting an endpoint deletes its deliveries
    ours = delivery.status == "delivering" and delivery.lease_owner == owner
    delivery.attempts += 1
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    delivery.updated_at = now
    if outcome.ok:
        # A success counts even if our lease had lapsed: the receiver has the event.
        delivery.status = "succeeded"
        delivery.lease_owner = delivery.lease_until = None
        if endpoint.failing_since is not None:
            endpoint.failing_since = None
            s.add(endpoint)
    elif ours:
        delivery.schedule_step += 1
        delivery.lease_owner = delivery.lease_until = None
        failing_since = endpoint.failing_since or now
        disable_after = timedelta(seconds=settings.webhook_disable_after_seconds)
        delay = next_delay(delivery.schedule_step, outcome, list(settings.webhook_retry_schedule))
        if outcome.status_code == 410:
            delivery.status = "failed"
            disable_endpoint(s, endpoint, "the endpoint answered 410 Gone")
        elif endpoint.enabled and now - failing_since >= disable_after:
            delivery.status = "failed"
            window = _duration(settings.webhook_disable_after_seconds)
            disable_endpoint(s, endpoint, f"every delivery failed for {window}")
        elif delay is None:
            delivery.status = "failed"
            delivery.last_error = f"{outcome.error or 'failed'}; gave up after {delivery.schedule_step} attempts"
        else:
            delivery.status = "pending"
            delivery.next_attempt_at = now + timedelta(seconds=delay)
        if endpoint.enabled and endpoint.failing_since is None:
            endpoint.failing_since = failing_since
            s.add(endpoint)
    s.add(delivery)
    if rest and endpoint.enabled:
        # Still working through the batch: keep the rest of it leased.
        s.execute(
            update(D)
            .where(col(D.id).in_(rest), col(D.lease_owner) == owner, col(D.status) == "delivering")
            .values(lease_until=now + timedelta(seconds=settings.webhook_lease_seconds))
            .execution_options(synchronize_session=False)
        )
    return not endpoint.enabled


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


def release_leases(tx: Tx, owner: str) -> None:
    """On a clean shutdown, hand back what we hold so a restart resends it at once."""
    tx.session.execute(
        update(D)
        .where(col(D.lease_owner) == owner, col(D.status) == "delivering")
        .values(status="pending", lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )


def prune_log(tx: Tx, cutoff: datetime, batch: int = 5000) -> int:
    """Delete attempts, finished deliveries and delivered events older than ``cutoff``.
    Batched, so no transaction grows large: returns the largest number deleted from one table,
    and is called again while that is a full batch."""
    s = tx.session

    def deleted(stmt: Any) -> int:
        return int(cast(CursorResult[Any], s.execute(stmt)).rowcount)

    old_attempts = select(WebhookAttempt.id).where(col(WebhookAttempt.started_at) < cutoff).limit(batch)
    counts = [deleted(delete(WebhookAttempt).where(col(WebhookAttempt.id).in_(old_attempts)))]
    old_deliveries = (
        select(D.id)
        .where(col(D.status).in_(("succeeded", "failed")), col(D.updated_at) < cutoff)
        .where(~exists().where(col(WebhookAttempt.delivery_id) == col(D.id)))
        .limit(batch)
    )
    counts.append(deleted(delete(D).where(col(D.id).in_(old_deliveries))))
    old_events = (
        select(Event.id)
        .where(col(Event.created_at) < cutoff)
        .where(~exists().where(col(D.event_id) == col(Event.id)))
        .limit(batch)
    )
    counts.append(deleted(delete(Event).where(col(Event.id).in_(old_events))))
    return max(counts)


