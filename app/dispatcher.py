"""The webhook dispatcher: delivers the outbox, retries on a schedule, keeps the delivery log.

The database is the truth. ``Tx.emit`` writes one ``WebhookDelivery`` row per subscribed
endpoint in the transaction that caused the event; this loop claims due rows with a lease
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises writers, and the claiming
``UPDATE`` repeats the "still due" condition), sends them, and records each attempt. A
crash or ``kill -9`` leaves rows ``pending`` or ``delivering`` with a lease that expires,
so the next process (or another instance) picks them up: at-least-once, with the Event id
as a stable ``webhook-id``.

Each endpoint gets its own task that sends its batch in event order, so one slow or dead
endpoint never holds up another; ``webhook_concurrency`` bounds how many run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import httpx
import orjson
from anyio.abc import TaskGroup
from sqlalchemy import and_, delete, exists, func, or_, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select

from app.actions import Runner, Tx
from app.ids import new_id, utcnow
from app.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.netguard import UrlRefused
from app.settings import Settings
from app.webhooks import disable_endpoint, make_http_client, signature_headers

log = logging.getLogger("backchannel.webhooks")
BATCH_PER_ENDPOINT = 10  # deliveries claimed per endpoint at once, sent in order
EXCERPT_BYTES = 2048
HONOURS_RETRY_AFTER = {429, 502, 503, 504}
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


# --- store work (runs in a worker thread, one transaction each) --------------------------


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
            days = settings.webhook_disable_after_seconds / 86400
            disable_endpoint(s, endpoint, f"every delivery failed for {days:g} days")
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
    Returns rows deleted; called repeatedly until it returns less than a full batch."""
    s = tx.session
    old_attempts = select(WebhookAttempt.id).where(col(WebhookAttempt.started_at) < cutoff).limit(batch)
    n = s.execute(delete(WebhookAttempt).where(col(WebhookAttempt.id).in_(old_attempts))).rowcount
    old_deliveries = (
        select(D.id)
        .where(col(D.status).in_(("succeeded", "failed")), col(D.updated_at) < cutoff)
        .where(~exists().where(col(WebhookAttempt.delivery_id) == col(D.id)))
        .limit(batch)
    )
    n += s.execute(delete(D).where(col(D.id).in_(old_deliveries))).rowcount
    old_events = (
        select(Event.id)
        .where(col(Event.created_at) < cutoff)
        .where(~exists().where(col(D.event_id) == col(Event.id)))
        .limit(batch)
    )
    n += s.execute(delete(Event).where(col(Event.id).in_(old_events))).rowcount
    return int(n)


# --- sending ----------------------------------------------------------------------------


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return (parsedate_to_datetime(value) - utcnow()).total_seconds()
    except (TypeError, ValueError):
        return None


async def send(client: httpx.AsyncClient, job: Job, timeout: float) -> Outcome:
    """One signed POST; never raises. Success is a 2xx within ``timeout`` seconds, all told."""
    started_at, t0 = utcnow(), time.monotonic()
    outcome = Outcome(started_at=started_at, duration_ms=0)
    headers = signature_headers(job.endpoint, job.event_id, job.body)
    try:
        with anyio.fail_after(timeout):
            async with client.stream(
                "POST", job.endpoint.url, content=job.body, headers=headers, follow_redirects=False
            ) as response:
                outcome.status_code = response.status_code
                excerpt = b""
                async for chunk in response.aiter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= EXCERPT_BYTES:
                        break
                outcome.excerpt = excerpt[:EXCERPT_BYTES].decode("utf-8", "replace") or None
        code = response.status_code
        if 300 <= code < 400:
            outcome.error = f"redirect (to {response.headers.get('location', '?')}) not followed"
        elif not 200 <= code < 300:
            outcome.error = f"HTTP {code}"
        if code in HONOURS_RETRY_AFTER:
            outcome.retry_after = parse_retry_after(response.headers.get("retry-after"))
    except TimeoutError:
        outcome.error = f"no complete response within {timeout:g} s"
    except UrlRefused as exc:
        outcome.error = f"refused: {exc}"
    except httpx.HTTPError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except Exception as exc:  # a malformed URL or header must fail this attempt, not the loop
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.duration_ms = int((time.monotonic() - t0) * 1000)
    return outcome


class Dispatcher:
    """Claims due deliveries and sends them, one task per endpoint."""

    def __init__(
        self, runner: Runner, settings: Settings, client: httpx.AsyncClient, *, owner: str | None = None
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.client = client
        self.owner = owner or new_id("dsp")  # this process's name on the leases it holds
        self._busy: set[str] = set()
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scope: anyio.CancelScope | None = None

    def wake(self) -> None:
        """Something was queued: look now rather than at the next poll (safe from any thread)."""
        if self._loop is None:
            return
        try:
            if asyncio.get_running_loop() is self._loop:
                self._wakeup.set()
                return
        except RuntimeError:
            pass
        self._loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        with anyio.CancelScope() as self._scope:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._prune_forever)
                    while True:
                        self._wakeup.clear()
                        try:
                            await self._claim_and_start(tg)
                        except Exception as exc:  # the database may be briefly unavailable
                            log.warning("webhook dispatcher: claiming failed: %s", exc)
                        with anyio.move_on_after(self.settings.webhook_poll_seconds):
                            await self._wakeup.wait()
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    with contextlib.suppress(Exception):
                        await self.runner.write(release_leases, self.owner)

    def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _claim_and_start(self, tg: TaskGroup) -> None:
        free = self.settings.webhook_concurrency - len(self._busy)
        if free <= 0 or not await self.runner.read(has_due, set(self._busy)):
            return
        batches = await self.runner.write(
            claim_due, self.owner, set(self._busy), free,
            self.settings.webhook_lease_seconds, not self.settings.is_sqlite,
        )
        for jobs in batches:
            endpoint_id = jobs[0].endpoint.id
            self._busy.add(endpoint_id)
            tg.start_soon(self._deliver_batch, endpoint_id, jobs)

    async def _deliver_batch(self, endpoint_id: str, jobs: list[Job]) -> None:
        try:
            for i, job in enumerate(jobs):
                outcome = await send(self.client, job, self.settings.webhook_timeout_seconds)
                rest = [j.delivery_id for j in jobs[i + 1 :]]
                if await self._record(job, outcome, rest):
                    break
        except Exception:
            # Unrecorded work keeps its lease and is sent again when the lease runs out.
            log.exception("webhook dispatcher: delivering to %s failed", endpoint_id)
        finally:
            self._busy.discard(endpoint_id)
            self.wake()

    async def _record(self, job: Job, outcome: Outcome, rest: list[str]) -> bool:
        for attempt in range(3):
            try:
                return await self.runner.write(record_attempt, job, outcome, self.owner, rest, self.settings)
            except Exception as exc:
                if attempt == 2:
                    raise
                log.warning("webhook dispatcher: recording an attempt failed (%s); retrying", exc)
                await anyio.sleep(0.5 * (attempt + 1))
        return False

    async def _prune_forever(self) -> None:
        retention = self.settings.webhook_log_retention_days * 86400
        every = min(3600.0, max(1.0, retention / 4))
        while True:
            try:
                cutoff = utcnow() - timedelta(seconds=retention)
                while await self.runner.write(prune_log, cutoff) >= 5000:
                    pass
            except Exception as exc:
                log.warning("webhook dispatcher: pruning the delivery log failed: %s", exc)
            await anyio.sleep(every)


async def start_dispatcher(state: Any, exit_stack: contextlib.AsyncExitStack) -> None:
    """Lifespan starter: run the dispatcher until shutdown (``state.services["dispatcher"]``)."""
    settings: Settings = state.settings
    if "http" not in state.services:
        client = make_http_client(settings)
        state.services["http"] = client
        exit_stack.push_async_callback(client.aclose)
    if settings.webhook_lease_seconds <= settings.webhook_timeout_seconds:
        log.warning(
            "BACKCHANNEL_WEBHOOK_LEASE_SECONDS (%g) should exceed the %g s delivery timeout, "
            "or a slow delivery may be sent twice", settings.webhook_lease_seconds,
            settings.webhook_timeout_seconds,
        )
    dispatcher = Dispatcher(state.runner, settings, state.services["http"])
    state.services["dispatcher"] = dispatcher
    state.runner.on_webhooks_enqueued = dispatcher.wake
    tg = await exit_stack.enter_async_context(anyio.create_task_group())
    tg.start_soon(dispatcher.run)
    exit_stack.callback(dispatcher.stop)  # exits before the task group, which then waits for run()
