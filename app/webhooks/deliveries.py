"""The life of a webhook delivery row: claim with a lease, record attempts, retry or give up,
release on shutdown, prune when old. Each function is one transaction (``Runner.write``).

A delivery is ``pending`` (due at ``next_attempt_at``), ``delivering`` (leased by one
dispatcher until ``lease_until``), ``succeeded`` or ``failed``. A lease that runs out (the
process died mid-send) makes the row due again, so nothing is lost and a resend keeps its
``webhook-id``: at-least-once.

The hot path is SQLAlchemy Core, not the unit of work: a claim is a few statements per
endpoint whatever the batch size, and ``record_attempts`` writes a whole batch of outcomes
(from any number of endpoints) with one ``INSERT`` and one ``UPDATE`` executed many times.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Table, Text, and_, bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy import cast as cast_
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.sql.elements import ColumnElement

from app.ids import new_id, utcnow
from app.settings import Settings
from app.store.dialect import POSTGRESQL, SQLITE, Dialect
from app.store.runner import Tx
from app.store.tables import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks.endpoints import fail_unfinished
from app.webhooks.netguard import UrlRefused, destination
from app.webhooks.signing import Signer, Signers

log = logging.getLogger("backchannel.webhooks")
BATCH_PER_ENDPOINT = 10  # deliveries claimed per endpoint at once, started in order (a first claim)
MAX_BATCH_PER_ENDPOINT = 100  # for an endpoint that answers quickly
MAX_RETRY_AFTER = 24 * 3600.0
D_TABLE: Table = WebhookDelivery.metadata.tables["webhook_delivery"]
E_TABLE: Table = WebhookEndpoint.metadata.tables["webhook_endpoint"]
EV_TABLE: Table = Event.metadata.tables["event"]
A_TABLE: Table = WebhookAttempt.metadata.tables["webhook_attempt"]
D, E, EV = D_TABLE.c, E_TABLE.c, EV_TABLE.c


@dataclass
class Target:
    """An endpoint as claimed: where to send, and its keys, decoded once (``Signer``)."""

    id: str
    url: str
    signer: Signer


@dataclass
class Job:
    delivery_id: str
    event_id: str  # the webhook-id
    body: bytes
    endpoint_id: str
    attempts: int = 0  # attempts made before this one (0: this is the first)


@dataclass
class Claim:
    """One endpoint's leased batch, oldest event first."""

    target: Target
    jobs: list[Job]
    lease_until: datetime


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


def _due() -> ColumnElement[bool]:
    """Pending and due, or claimed by someone whose lease ran out (crashed, killed, stuck)."""
    now: Any = bindparam("now")
    return or_(
        and_(D.status == "pending", D.next_attempt_at <= now),
        and_(D.status == "delivering", D.lease_until <= now),
    )


# Built once: a claim runs a handful of statements, and building and cache-keying them each
# time cost more CPU than running them.
_DUE_ENDPOINTS = (
    select(D.endpoint_id)
    .join(E_TABLE, E.id == D.endpoint_id)
    .where(E.enabled.is_(True), _due(), D.endpoint_id.not_in(bindparam("busy", expanding=True)))
)
_HAS_DUE = _DUE_ENDPOINTS.limit(1)
_PICK_ENDPOINTS = (
    _DUE_ENDPOINTS.group_by(D.endpoint_id).order_by(func.min(D.next_attempt_at)).limit(bindparam("max_endpoints"))
)


def _claim_statement(dialect: Dialect) -> Any:
    """Lease one endpoint's oldest due deliveries; returns them (``UPDATE … RETURNING``)."""
    # On SQLite, ``endpoint_id || ''`` keeps the planner off the endpoint_id index, which would
    # walk the endpoint's whole delivery history (30 days of it): the due index walks only
    # what is due.
    endpoint = D.endpoint_id if dialect.plans_by_statistics else D.endpoint_id.concat("")
    same_endpoint = endpoint == bindparam("b_endpoint")
    pick = select(D.id).where(same_endpoint, _due()).order_by(D.created_at, D.id).limit(bindparam("size"))
    if dialect.row_locks:  # several instances: each takes rows nobody else holds
        pick = pick.with_for_update(skip_locked=True)
    return (
        update(D_TABLE)
        .where(D.id.in_(pick.scalar_subquery()))
        .values(
            status="delivering", lease_owner=bindparam("owner"), lease_until=bindparam("until"),
            updated_at=bindparam("now"),
        )
        .returning(D.id, D.event_id, D.created_at, D.attempts)
    )


_CLAIM = {dialect: _claim_statement(dialect) for dialect in (SQLITE, POSTGRESQL)}


def has_due(session: Any, busy: set[str]) -> bool:
    """A cheap read, so an idle server does not take the write lock every poll."""
    found = session.connection().execute(_HAS_DUE, {"now": utcnow(), "busy": list(busy)}).first()
    return found is not None


def claim_due(
    tx: Tx,
    owner: str,
    busy: set[str],
    max_endpoints: int,
    lease_seconds: float,
    signers: Signers | None = None,
    *,
    only: str | None = None,
    sizes: dict[str, int] | None = None,
    default_size: int = BATCH_PER_ENDPOINT,
) -> list[Claim]:
    """Lease due deliveries (oldest event first; ``sizes`` per endpoint, else
    ``default_size``) for each of up to ``max_endpoints`` enabled endpoints that this
    process is not already working on, or for endpoint ``only``.

    Fault-isolating: whatever one endpoint's stored row holds (a secret that does not decode,
    a URL that is no URL, a timestamp or event that cannot be read) costs that endpoint alone.
    It is disabled with the reason (its queued deliveries fail with it, in its delivery log),
    or, for one unreadable event, that delivery fails; the claim goes on for every other.
    """
    conn: Connection = tx.session.connection()
    now = utcnow()
    lease_until = now + timedelta(seconds=lease_seconds)
    if only is not None:
        endpoint_ids = [only]
    else:
        params = {"now": now, "busy": list(busy), "max_endpoints": max_endpoints}
        endpoint_ids = list(conn.execute(_PICK_ENDPOINTS, params).scalars())
    if not endpoint_ids:
        return []
    signers = signers or Signers()
    targets: dict[str, Target] = {}
    for endpoint_id, row, problem in _read_endpoints(conn, endpoint_ids):
        try:
            if problem is not None:
                raise problem
            targets[endpoint_id] = Target(endpoint_id, _checked_url(row.url), signers.for_row(row))
        except Exception as exc:
            quarantine(conn, endpoint_id, _unusable(exc), now)
    leased: list[tuple[Target, list[Any]]] = []
    for endpoint_id in endpoint_ids:
        target = targets.get(endpoint_id)
        if target is None:
            continue
        params = {
            "now": now, "b_endpoint": endpoint_id, "owner": owner, "until": lease_until,
            "size": (sizes or {}).get(endpoint_id, default_size),
        }
        try:
            rows = sorted(conn.execute(_CLAIM[tx.dialect], params).all(), key=lambda r: (r.created_at, r.id))
        except (ValueError, TypeError, AttributeError) as exc:  # a row that cannot be read back
            quarantine(conn, endpoint_id, f"a queued delivery cannot be read ({type(exc).__name__})", now)
            continue
        if rows:
            leased.append((target, rows))
    if not leased:
        return []
    bodies = _bodies(conn, {row.event_id for _, rows in leased for row in rows})
    claims = []
    for target, rows in leased:
        jobs = []
        for row in rows:
            body = bodies.get(row.event_id)
            if isinstance(body, bytes):
                jobs.append(Job(row.id, row.event_id, body, target.id, row.attempts))
            else:
                _fail_delivery(conn, row.id, body or "its event is missing", now)
        if jobs:
            claims.append(Claim(target, jobs, lease_until))
    return claims


_ENDPOINT_KEYS = (
    select(
        E.id, E.url, E.secret, E.previous_secret, E.previous_secret_expires_at,
        E.ed25519_private_key, E.previous_ed25519_private_key,
    ).where(E.id.in_(bindparam("ids", expanding=True)), E.enabled.is_(True))
)
_PAYLOAD_TEXTS = select(EV.id, cast_(EV.payload, Text)).where(EV.id.in_(bindparam("ids", expanding=True)))


def _read_endpoints(conn: Connection, ids: list[str]) -> list[tuple[str, Any, Exception | None]]:
    """``(id, row, None)`` per enabled endpoint, or ``(id, None, the error)`` for one whose row
    cannot be read: read together, and one by one only when that fails."""
    try:
        return [(row.id, row, None) for row in conn.execute(_ENDPOINT_KEYS, {"ids": ids})]
    except (ValueError, TypeError, AttributeError):
        pass
    out: list[tuple[str, Any, Exception | None]] = []
    for endpoint_id in ids:
        try:
            out.extend((row.id, row, None) for row in conn.execute(_ENDPOINT_KEYS, {"ids": [endpoint_id]}))
        except (ValueError, TypeError, AttributeError) as exc:
            out.append((endpoint_id, None, exc))
    return out


def _checked_url(url: Any) -> str:
    """The URL, if it can ever be sent to (``netguard.destination``; where it resolves is
    checked at each new connection)."""
    try:
        destination(url)
    except UrlRefused as exc:
        raise _Unusable(f"its URL cannot be used ({exc})") from None
    return str(url)


class _Unusable(Exception):
    """What is wrong with an endpoint's stored row, in words fit for its delivery log."""


def _unusable(exc: Exception) -> str:
    if isinstance(exc, _Unusable):
        return str(exc)
    # Never the exception's text: it might quote a key.
    return f"its stored settings cannot be used ({type(exc).__name__}); fix or recreate the endpoint"


def _bodies(conn: Connection, event_ids: set[str]) -> dict[str, bytes | str]:
    """Each event's body, encoded once however many endpoints it goes to; for an event that
    cannot be decoded, the reason (a string) instead."""
    out: dict[str, bytes | str] = {}
    for event_id, text in conn.execute(_PAYLOAD_TEXTS, {"ids": list(event_ids)}):
        try:
            payload = orjson.loads(text)
            if not isinstance(payload, dict):
                raise ValueError("not a JSON object")
            out[event_id] = orjson.dumps(payload)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            out[event_id] = "its stored event cannot be decoded as a JSON object"
    return out


def quarantine(conn: Connection, endpoint_id: str, problem: str, now: datetime) -> None:
    """Disable one endpoint whose row cannot be delivered with, saying why in its log."""
    reason = f"disabled by the dispatcher: {problem}"
    log.warning("webhook dispatcher: endpoint %s %s", endpoint_id, reason)
    conn.execute(
        update(E_TABLE).where(E.id == endpoint_id).values(enabled=False, disabled_reason=reason, updated_at=now)
    )
    fail_unfinished(conn, endpoint_id, reason, now)


def _fail_delivery(conn: Connection, delivery_id: str, problem: str, now: datetime) -> None:
    log.warning("webhook dispatcher: delivery %s failed: %s", delivery_id, problem)
    conn.execute(
        update(D_TABLE).where(D.id == delivery_id).values(
            status="failed", last_error=f"not sent: {problem}", lease_owner=None, lease_until=None, updated_at=now,
        )
    )


def extend_leases(tx: Tx, owner: str, delivery_ids: list[str], lease_seconds: float) -> datetime:
    """Keep what a live dispatcher is working on leased (renewed while it is in flight)."""
    lease_until = utcnow() + timedelta(seconds=lease_seconds)
    tx.session.connection().execute(
        update(D_TABLE)
        .where(D.id.in_(delivery_ids), D.lease_owner == owner, D.status == "delivering")
        .values(lease_until=lease_until)
    )
    return lease_until


def next_delay(step: int, outcome: Outcome, schedule: list[float]) -> float | None:
    """Seconds until the next attempt after the ``step``-th failure of this round; ``None`` = give up."""
    if step > len(schedule):
        return None
    if outcome.retry_after is not None:
        return min(max(outcome.retry_after, 0.0), MAX_RETRY_AFTER)
    # Jitter spreads the retries of many deliveries that failed together (an outage).
    return float(schedule[step - 1]) * random.uniform(0.9, 1.1)


_UPDATE_DELIVERY = (
    update(D_TABLE)
    .where(D.id == bindparam("_id"))
    .values(
        status=bindparam("_status"), attempts=bindparam("_attempts"), schedule_step=bindparam("_step"),
        next_attempt_at=bindparam("_next"), lease_owner=bindparam("_owner"), lease_until=bindparam("_until"),
        last_status_code=bindparam("_code"), last_error=bindparam("_error"), updated_at=bindparam("_now"),
    )
)
_UPDATE_FAILING_SINCE = (
    update(E_TABLE).where(E.id == bindparam("_id")).values(failing_since=bindparam("_since"))
)


def record_attempts(tx: Tx, results: list[tuple[Job, Outcome]], owner: str, settings: Settings) -> set[str]:
    """Log a batch of attempts (any endpoints, in the order they were made) and decide what
    comes next for each delivery. Returns the endpoints whose batches must stop (disabled
    or deleted meanwhile)."""
    conn: Connection = tx.session.connection()
    now = utcnow()
    # Endpoints first, then deliveries, each in id order: the order an admin's disable takes
    # them in, so the two never wait on each other in a cycle (PostgreSQL). FOR NO KEY UPDATE,
    # not FOR UPDATE: it still keeps two recorders apart, but does not conflict with the FOR
    # KEY SHARE that a message write's delivery insert takes on the endpoint (its foreign
    # key), so recording never waits for writes in flight, nor they for it. (And the runner
    # keeps this in its background lane, never in a batch that also holds a conversation.)
    pick_endpoints = select(E.id, E.enabled, E.failing_since).where(
        E.id.in_(sorted({job.endpoint_id for job, _ in results}))
    ).order_by(E.id)
    pick = select(
        D.id, D.endpoint_id, D.status, D.lease_owner, D.lease_until, D.attempts, D.schedule_step, D.next_attempt_at
    ).where(D.id.in_(sorted({job.delivery_id for job, _ in results}))).order_by(D.id)
    if tx.dialect.row_locks:  # another instance may be recording a lapsed lease's resend of the same row
        pick_endpoints, pick = pick_endpoints.with_for_update(key_share=True), pick.with_for_update(key_share=True)
    endpoints = {row.id: row._asdict() for row in conn.execute(pick_endpoints)}
    rows = {row.id: row._asdict() for row in conn.execute(pick) if row.endpoint_id in endpoints}
    failing_before = {eid: ep["failing_since"] for eid, ep in endpoints.items()}
    disabled: dict[str, str] = {}
    attempts, stop = [], set()
    disable_after = timedelta(seconds=settings.webhook_disable_after_seconds)
    schedule = list(settings.webhook_retry_schedule)
    for job, outcome in results:
        delivery = rows.get(job.delivery_id)
        if delivery is None:
            stop.add(job.endpoint_id)  # the endpoint was deleted while we were sending
            continue
        endpoint = endpoints[delivery["endpoint_id"]]
        attempts.append({
            "id": new_id("wha"), "delivery_id": delivery["id"], "endpoint_id": delivery["endpoint_id"],
            "started_at": outcome.started_at, "duration_ms": outcome.duration_ms,
            "status_code": outcome.status_code, "response_excerpt": outcome.excerpt, "error": outcome.error,
        })
        ours = delivery["status"] == "delivering" and delivery["lease_owner"] == owner
        delivery["attempts"] += 1
        delivery["last_status_code"] = outcome.status_code
        delivery["last_error"] = outcome.error
        if outcome.ok:
            # A success counts even if our lease had lapsed: the receiver has the event.
            delivery.update(status="succeeded", lease_owner=None, lease_until=None)
            endpoint["failing_since"] = None
        elif ours:
            delivery.update(schedule_step=delivery["schedule_step"] + 1, lease_owner=None, lease_until=None)
            failing_since = endpoint["failing_since"] or now
            delay = next_delay(delivery["schedule_step"], outcome, schedule)
            if outcome.status_code == 410:
                delivery["status"] = "failed"
                endpoint["enabled"] = False
                disabled[endpoint["id"]] = "the endpoint answered 410 Gone"
            elif endpoint["enabled"] and now - failing_since >= disable_after:
                delivery["status"] = "failed"
                endpoint["enabled"] = False
                window = _duration(settings.webhook_disable_after_seconds)
                disabled[endpoint["id"]] = f"every delivery failed for {window}"
            elif delay is None:
                delivery["status"] = "failed"
                delivery["last_error"] = (
                    f"{outcome.error or 'failed'}; gave up after {delivery['schedule_step']} attempts"
                )
            else:
                delivery.update(status="pending", next_attempt_at=now + timedelta(seconds=delay))
            if endpoint["enabled"] and endpoint["failing_since"] is None:
                endpoint["failing_since"] = failing_since
        if not endpoint["enabled"]:
            stop.add(endpoint["id"])
    if attempts:
        conn.execute(insert(A_TABLE), attempts)
    touched = {job.delivery_id for job, _ in results} & rows.keys()
    if touched:
        conn.execute(_UPDATE_DELIVERY, [
            {
                "_id": d["id"], "_status": d["status"], "_attempts": d["attempts"], "_step": d["schedule_step"],
                "_next": d["next_attempt_at"], "_owner": d["lease_owner"], "_until": d["lease_until"],
                "_code": d["last_status_code"], "_error": d["last_error"], "_now": now,
            }
            for d in (rows[i] for i in sorted(touched))
        ])
    changed = [
        {"_id": eid, "_since": ep["failing_since"]}
        for eid, ep in endpoints.items()
        if ep["failing_since"] != failing_before[eid] and eid not in disabled
    ]
    if changed:
        conn.execute(_UPDATE_FAILING_SINCE, changed)
    for endpoint_id, reason in disabled.items():
        conn.execute(
            update(E_TABLE).where(E.id == endpoint_id).values(enabled=False, disabled_reason=reason, updated_at=now)
        )
        fail_unfinished(conn, endpoint_id, reason, now)
    return stop


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


def release_leases(tx: Tx, owner: str) -> None:
    """On a clean shutdown, hand back what we hold so a restart resends it at once."""
    tx.session.connection().execute(
        update(D_TABLE)
        .where(D.lease_owner == owner, D.status == "delivering")
        .values(status="pending", lease_owner=None, lease_until=None)
    )


def prune_log(tx: Tx, cutoff: datetime, batch: int = 5000) -> int:
    """Delete attempts, finished deliveries and delivered events older than ``cutoff``.
    Batched, so no transaction grows large: returns the largest number deleted from one table,
    and is called again while that is a full batch."""
    conn = tx.session.connection()
    A = A_TABLE.c

    def deleted(stmt: Any) -> int:
        return int(cast(CursorResult[Any], conn.execute(stmt)).rowcount)

    old_attempts = select(A.id).where(A.started_at < cutoff).limit(batch)
    counts = [deleted(delete(A_TABLE).where(A.id.in_(old_attempts)))]
    old_deliveries = (
        select(D.id)
        .where(D.status.in_(("succeeded", "failed")), D.updated_at < cutoff)
        .where(~exists().where(A.delivery_id == D.id))
        .limit(batch)
    )
    counts.append(deleted(delete(D_TABLE).where(D.id.in_(old_deliveries))))
    old_events = (
        select(EV.id).where(EV.created_at < cutoff).where(~exists().where(D.event_id == EV.id)).limit(batch)
    )
    counts.append(deleted(delete(EV_TABLE).where(EV.id.in_(old_events))))
    return max(counts)
