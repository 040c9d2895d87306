"""The webhook dispatcher: delivers the outbox, retries on a schedule, keeps the delivery log.

The database is the truth. ``Tx.emit`` writes one ``WebhookDelivery`` row per subscribed
endpoint in the transaction that caused the event; this loop claims due rows with a lease
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises writers, and the claiming
``UPDATE`` repeats the "still due" condition), sends them without blocking any request,
and records each attempt (the row's state machine is ``deliveries.py``). A crash or
``kill -9`` leaves rows ``pending`` or ``delivering`` with a lease that expires, so the
next process (or another instance) picks them up: at-least-once, with the Event id as a
stable ``webhook-id``.

Each endpoint gets its own task that sends its batch in event order, so one slow or dead
endpoint never holds up another; ``webhook_concurrency`` bounds how many run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from app.actions import Runner
from app.deliveries import Job, Outcome, claim_due, has_due, prune_log, record_attempt, release_leases
from app.ids import new_id, utcnow
from app.netguard import UrlRefused
from app.settings import Settings
from app.webhooks import make_http_client, signature_headers

log = logging.getLogger("backchannel.webhooks")
EXCERPT_BYTES = 2048
HONOURS_RETRY_AFTER = {429, 502, 503, 504}
PRUNE_BATCH = 5000


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
        # Made now, not in run(): a stop() before run() has started must still stop it.
        self._scope = anyio.CancelScope()

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
        with self._scope:
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
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(5),
                    contextlib.suppress(Exception),
                ):
                    await self.runner.write(release_leases, self.owner)

    def stop(self) -> None:
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
                while await self.runner.write(prune_log, cutoff, PRUNE_BATCH) >= PRUNE_BATCH:
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
