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
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from email.utils import parsedate_to_datetime

import anyio
import orjson
from anyio.abc import TaskGroup

from app import errors
from app.files.links import MARKER as FILE_MARKER
from app.files.links import FileLinks, links_for
from app.ids import new_id, utcnow
from app.instruments import observe_webhook_delivery
from app.logs import brief
from app.settings import Settings
from app.store.runner import Runner
from app.webhooks.deliveries import (
    BATCH_PER_ENDPOINT,
    MAX_BATCH_PER_ENDPOINT,
    Claim,
    Job,
    Outcome,
    Target,
    claim_due,
    extend_leases,
    has_due,
    prune_log,
    record_attempts,
    release_leases,
)
from app.webhooks.netguard import UrlRefused
from app.webhooks.sender import Sender, SendError
from app.webhooks.signing import Signers

log = logging.getLogger("backchannel.webhooks")
EXCERPT_BYTES = 2048
HONOURS_RETRY_AFTER = {429, 502, 503, 504}
PRUNE_BATCH = 5000
RECORD_BATCH = 500  # attempt outcomes written in one transaction
QUICK_MS = 100  # an endpoint answering faster than this gets the larger batches
CLAIM_GAP = 0.002  # seconds between two looks for due work prompted by new events


def renew_every(lease: float) -> float:
    """How often held leases are renewed: a third of the lease, at most a second."""
    return max(0.05, min(1.0, lease / 3))


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


async def send(sender: Sender, target: Target, job: Job, timeout: float) -> Outcome:
    """One signed POST; never raises. Success is a 2xx within ``timeout`` seconds, all told."""
    started_at, t0 = utcnow(), time.monotonic()
    outcome = Outcome(started_at=started_at, duration_ms=0)
    try:
        headers = target.signer.headers(job.event_id, job.body)
        async with asyncio.timeout(timeout):
            reply = await sender.post(target.url, headers, job.body)
        code = outcome.status_code = reply.status_code
        outcome.excerpt = reply.excerpt[:EXCERPT_BYTES].decode("utf-8", "replace") or None
        if 300 <= code < 400:
            outcome.error = f"redirect (to {reply.headers.get('location', '?')}) not followed"
        elif not 200 <= code < 300:
            outcome.error = f"HTTP {code}"
        if code in HONOURS_RETRY_AFTER:
            outcome.retry_after = parse_retry_after(reply.headers.get("retry-after"))
    except TimeoutError:
        outcome.error = f"no complete response within {timeout:g} s"
    except UrlRefused as exc:
        outcome.error = f"refused: {exc}"
    except SendError as exc:
        outcome.error = str(exc)
    except Exception as exc:  # a malformed URL or header must fail this attempt, not the loop
        outcome.error = f"{type(exc).__name__}: {exc}"
    elapsed = time.monotonic() - t0
    outcome.duration_ms = int(elapsed * 1000)
    observe_webhook_delivery(elapsed, outcome.status_code)
    return outcome


def fresh_links(job: Job, links: FileLinks) -> Job:
    """The job with a fresh signed link in each file part of its message (SPEC §10: a bot
    can fetch it for at least an hour after this attempt). Stored events keep ``file_id``
    only; most bodies name no file and are sent as they are."""
    if FILE_MARKER.encode() not in job.body:
        return job
    payload = orjson.loads(job.body)
    presented = links.present_event(payload)
    return job if presented is payload else dataclasses.replace(job, body=orjson.dumps(presented))


# --- recording --------------------------------------------------------------------------


class Recorder:
    """Writes attempt outcomes in batches: one transaction for whatever queued up while the
    previous one was written, so a fast endpoint costs a row in an ``executemany``, not a
    transaction, per delivery.

    ``submit`` returns a future that says whether the endpoint's batch must stop (it was
    disabled or deleted); a sender waits for it only after a failure. An outcome that cannot
    be written keeps its lease, so the delivery is sent again when the lease runs out: a
    batch that fails is retried outcome by outcome, so one bad row costs only itself.
    """

    def __init__(self, runner: Runner, settings: Settings, owner: str) -> None:
        self.runner, self.settings, self.owner = runner, settings, owner
        self._queue: list[tuple[Job, Outcome, asyncio.Future[bool]]] = []
        self._ready = asyncio.Event()

    def submit(self, job: Job, outcome: Outcome) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((job, outcome, future))
        self._ready.set()
        return future

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                try:
                    await self._write_some()
                except Exception:  # a bug here must not stop deliveries: their leases run out
                    log.exception("webhook dispatcher: recording attempts failed")

    async def flush(self) -> None:
        """Write everything queued (on shutdown, before the leases are handed back)."""
        while self._queue:
            await self._write_some()

    async def _write_some(self) -> None:
        batch, self._queue = self._queue[:RECORD_BATCH], self._queue[RECORD_BATCH:]
        try:
            stop = await self._write([(job, outcome) for job, outcome, _ in batch])
        except Exception as exc:
            if len(batch) > 1:
                log.warning("webhook dispatcher: recording %d attempts failed (%s); one by one", len(batch), brief(exc))
                await self._write_one_by_one(batch)
                return
            log.warning("webhook dispatcher: recording an attempt failed (%s); it will be resent", brief(exc))
            stop = {job.endpoint_id for job, _, _ in batch}  # its state is unknown: end the batch
        for job, _, future in batch:
            if not future.done():
                future.set_result(job.endpoint_id in stop)

    async def _write_one_by_one(self, batch: list[tuple[Job, Outcome, asyncio.Future[bool]]]) -> None:
        for job, outcome, future in batch:
            try:
                stop = job.endpoint_id in await self._write([(job, outcome)])
            except Exception as exc:
                log.warning("webhook dispatcher: recording an attempt failed (%s); it will be resent", brief(exc))
                stop = True  # its state is unknown: the endpoint's batch ends, its leases run out
            if not future.done():
                future.set_result(stop)

    async def _write(self, results: list[tuple[Job, Outcome]]) -> set[str]:
        for attempt in range(3):
            try:
                return await self.runner.write(record_attempts, results, self.owner, self.settings, background=True)
            except Exception as exc:
                if attempt == 2 or not _transient(exc):
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")


def _transient(exc: Exception) -> bool:
    """The database was busy or away (worth a retry), not a row it refused."""
    return isinstance(exc, errors.Unavailable)


# --- the loop ---------------------------------------------------------------------------


class Dispatcher:
    """Claims due deliveries and sends them: a task per endpoint, each with up to
    ``webhook_endpoint_concurrency`` deliveries in flight."""

    def __init__(
        self,
        runner: Runner,
        settings: Settings,
        sender: Sender,
        *,
        owner: str | None = None,
        on_first_failure: Callable[[Job], Awaitable[object]] | None = None,
    ) -> None:
        self.runner = runner
        # Told of each delivery whose first attempt failed, once that is recorded (the
        # bot-unavailable handover, app/main.py); never for a retry.
        self.on_first_failure = on_first_failure
        self.settings = settings
        self.sender = sender
        self.owner = owner or new_id("dsp")  # this process's name on the leases it holds
        self.recorder = Recorder(runner, settings, self.owner)
        self._busy: set[str] = set()
        self._sizes: dict[str, int] = {}  # claim size per endpoint, by how fast it answered
        # A first claim fills every slot a few times over, so a slow endpoint's senders do
        # not idle at the end of each batch.
        self._first_size = max(BATCH_PER_ENDPOINT, 4 * settings.webhook_endpoint_concurrency)
        self._held: set[str] = set()  # deliveries claimed here whose outcome is not written yet
        self._watchers: set[asyncio.Event] = set()  # workers waiting to hear of newly queued events
        self._signers = Signers()
        self.links = links_for(settings)
        self._wakeup = asyncio.Event()
        self._wakes = 0  # counts wake() calls, so a worker knows something was queued meanwhile
        self._loop: asyncio.AbstractEventLoop | None = None
        # Made now, not in run(): a stop() before run() has started must still stop it.
        self._scope = anyio.CancelScope()

    def wake(self) -> None:
        """Something was queued: look now rather than at the next poll (safe from any thread)."""
        if self._loop is None:
            return
        try:
            if asyncio.get_running_loop() is self._loop:
                self._wakes += 1
                self._wakeup.set()
                for watcher in self._watchers:
                    watcher.set()
                return
        except RuntimeError:
            pass
        self._loop.call_soon_threadsafe(self.wake)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        with self._scope:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._prune_forever)
                    tg.start_soon(self._renew_leases_forever)
                    tg.start_soon(self.recorder.run)
                    seen = -1
                    while True:
                        self._wakeup.clear()
                        # Events were queued since the last look: claim at once. Otherwise (a
                        # poll, a freed slot) a cheap read first, so an idle server stays idle.
                        queued, seen = self._wakes != seen, self._wakes
                        try:
                            await self._claim_and_start(tg, check_first=not queued)
                        except Exception as exc:  # the database may be briefly unavailable
                            log.warning("webhook dispatcher: claiming failed: %s", brief(exc))
                        with anyio.move_on_after(self.settings.webhook_poll_seconds):
                            await self._wakeup.wait()
                        await asyncio.sleep(CLAIM_GAP)  # many events queued at once: one look
            finally:
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(5),
                    contextlib.suppress(Exception),
                ):
                    await self.recorder.flush()
                    await self.runner.write(release_leases, self.owner, background=True)

    def stop(self) -> None:
        self._scope.cancel()

    async def _renew_leases_forever(self) -> None:
        """Keep what this process is working on leased, a few seconds at a time.

        Leases are short (``webhook_lease_seconds``, 5 s) and renewed every
        ``renew_every(lease)`` while the work is in flight, however slow the receiver: when a
        process dies (``kill -9``) or stalls, what it held is due again within one lease,
        for another instance or its own restart, instead of after a long fixed lease.
        """
        lease = self.settings.webhook_lease_seconds
        while True:
            await anyio.sleep(renew_every(lease))
            if not self._held:
                continue
            try:
                await self.runner.write(extend_leases, self.owner, sorted(self._held), lease, background=True)
            except Exception as exc:  # the database may be briefly away: the next round tries again
                log.warning("webhook dispatcher: renewing leases failed: %s", brief(exc))

    async def _claim_and_start(self, tg: TaskGroup, *, check_first: bool = True) -> None:
        free = self.settings.webhook_concurrency - len(self._busy)
        if free <= 0 or (check_first and not await self.runner.read(has_due, set(self._busy))):
            return
        wakes = self._wakes  # before the claim: what is queued after it, its worker claims again
        claims = await self._claim(set(self._busy), free)
        for claim in claims:
            self._busy.add(claim.target.id)
            tg.start_soon(self._work, claim, wakes)

    async def _claim(self, busy: set[str], free: int, only: str | None = None) -> list[Claim]:
        claims = await self.runner.write(
            claim_due, self.owner, busy, free, self.settings.webhook_lease_seconds, self._signers,
            only=only, sizes=dict(self._sizes), default_size=self._first_size, background=True,
        )
        for claim in claims:
            self._held.update(job.delivery_id for job in claim.jobs)
        return claims

    async def _work(self, claim: Claim | None, wakes: int) -> None:
        """Deliver to one endpoint, up to ``webhook_endpoint_concurrency`` at once, started in
        event order: a sliding window, so a slot freed by one answer is filled by the next
        delivery (claimed when events were queued meanwhile or the last claim was full), not
        after the whole batch. Ends when nothing more is known to be due and nothing is in
        flight, or when other endpoints wait for a slot. ``wakes``: the dispatcher's wake count
        when ``claim`` was taken (events queued after it are looked for before the worker ends)."""
        assert claim is not None
        endpoint_id = claim.target.id
        slots = anyio.Semaphore(self.settings.webhook_endpoint_concurrency)
        changed = asyncio.Event()  # a send ended, or events were queued
        in_flight = 0
        stopped = False

        async def deliver_one(target: Target, job: Job) -> None:
            nonlocal in_flight, stopped
            submitted = False
            try:
                outcome = await send(
                    self.sender, target, fresh_links(job, self.links), self.settings.webhook_timeout_seconds
                )
                stop = self.recorder.submit(job, outcome)
                submitted = True
                # Renewed until its outcome is written (or fails to be, and the lease runs out).
                stop.add_done_callback(lambda _: self._held.discard(job.delivery_id))
                quick = outcome.duration_ms < QUICK_MS
                self._sizes[endpoint_id] = MAX_BATCH_PER_ENDPOINT if quick else self._first_size
                if not outcome.ok:
                    if await stop:
                        stopped = True  # disabled or deleted meanwhile
                    if job.attempts == 0 and self.on_first_failure is not None:
                        try:
                            await self.on_first_failure(job)
                        except Exception as exc:  # its own business: deliveries go on
                            log.warning("webhook dispatcher: after a first failure: %s", brief(exc))
            finally:
                if not submitted:  # not sent after all: no longer ours to renew
                    self._held.discard(job.delivery_id)
                in_flight -= 1
                slots.release()
                changed.set()

        self._watchers.add(changed)
        try:
            async with anyio.create_task_group() as tg:
                while claim is not None:
                    size = self._sizes.get(endpoint_id, self._first_size)
                    for i, job in enumerate(claim.jobs):
                        await slots.acquire()
                        if stopped:
                            slots.release()
                            self._held.difference_update(j.delivery_id for j in claim.jobs[i:])
                            break
                        in_flight += 1
                        tg.start_soon(deliver_one, claim.target, job)
                    more = len(claim.jobs) >= size
                    claim = None
                    while not stopped:
                        if more or wakes != self._wakes:
                            if len(self._busy) >= self.settings.webhook_concurrency:
                                break  # other endpoints may wait for this slot: finish, then yield it
                            async with slots:  # claim only once a delivery can start
                                pass
                            wakes = self._wakes
                            try:
                                claims = await self._claim(set(), 1, only=endpoint_id)
                            except Exception as exc:  # the database is away: finish what is in flight
                                log.warning("webhook dispatcher: claiming for %s failed: %s", endpoint_id, brief(exc))
                                claims, stopped = [], True  # stop claiming; the main loop takes over
                            if claims:
                                claim = claims[0]
                                break
                            more = False
                        if in_flight == 0:
                            break
                        changed.clear()
                        await changed.wait()
        except Exception:
            # Unrecorded work is no longer renewed: its lease runs out and it is sent again.
            log.exception("webhook dispatcher: delivering to %s failed", endpoint_id)
        finally:
            self._watchers.discard(changed)
            full = len(self._busy) >= self.settings.webhook_concurrency
            self._busy.discard(endpoint_id)
            if len(self._sizes) > 10_000:
                self._sizes.clear()
            if full or wakes != self._wakes:
                # Look now. Other endpoints may have waited for this slot; or events were queued
                # since this worker's last claim, and the main loop, woken by them, skipped this
                # endpoint while it was still busy here: without this it would wait for the next
                # poll (a second by default). (Not ``wake()``: that tells workers something was
                # queued, and they would claim in vain.)
                self._wakeup.set()

    async def _prune_forever(self) -> None:
        retention = self.settings.webhook_log_retention_days * 86400
        every = min(3600.0, max(1.0, retention / 4))
        while True:
            try:
                cutoff = utcnow() - timedelta(seconds=retention)
                while await self.runner.write(prune_log, cutoff, PRUNE_BATCH, background=True) >= PRUNE_BATCH:
                    pass
            except Exception as exc:
                log.warning("webhook dispatcher: pruning the delivery log failed: %s", brief(exc))
            await anyio.sleep(every)


async def run_dispatcher(dispatcher: Dispatcher, exit_stack: contextlib.AsyncExitStack) -> None:
    """Lifespan: run ``dispatcher`` until ``exit_stack`` closes; its runner wakes it after commits."""
    dispatcher.runner.on_webhooks_enqueued = dispatcher.wake
    tg = await exit_stack.enter_async_context(anyio.create_task_group())
    tg.start_soon(dispatcher.run)
    exit_stack.callback(dispatcher.stop)  # exits before the task group, which then waits for run()
