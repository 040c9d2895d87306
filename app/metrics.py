"""``/metrics``: Prometheus text through ``prometheus_client``, correct across worker processes.

Each process records into this module's metrics: request latency by route template,
method and status class; webhook delivery latency by outcome; its open widget and console
sockets. With several workers (``backchannel serve --workers N``) ``serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the workers start (``app.multiprocess``,
which must run before this module is imported: prometheus_client picks its mode then), every worker
writes there, and whichever worker answers a scrape adds up all of them (socket gauges
count live processes only). What lives in the shared store (webhook deliveries by status)
and whether the database and broker answer is read when scraped.

Who may scrape: with ``BACKCHANNEL_METRICS_TOKEN`` set, whoever sends it as a bearer token;
without it, only clients on loopback or private addresses (the customer's address as
resolved through ``TRUSTED_PROXIES``), so the public side of a proxy never sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func
from sqlmodel import Session, select
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from app import VERSION
from app.console.hub import ConsoleHub
from app.proxies import client_address, ip_of
from app.realtime.hub import Hub
from app.store.tables import WebhookDelivery

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set up by app.multiprocess for serve --workers N
GAUGE_INTERVAL = 1.0  # how often each process refreshes its socket gauges

# This process's metrics, in a registry of our own (not prometheus_client's global one).
REGISTRY = CollectorRegistry(auto_describe=True)
HTTP_LATENCY = Histogram(
    "backchannel_http_request_duration_seconds",
    "HTTP requests: time to the end of the response, by route template, method and status class.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
WEBHOOK_LATENCY = Histogram(
    "backchannel_webhook_delivery_duration_seconds",
    "Webhook delivery attempts: time to the receiver's answer, by outcome (status class, or error).",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
    registry=REGISTRY,
)
WIDGET_SOCKETS = Gauge(
    "backchannel_widget_sockets", "Open widget WebSockets.", multiprocess_mode="livesum", registry=REGISTRY
)
CONSOLE_SOCKETS = Gauge(
    "backchannel_console_sockets", "Open console live WebSockets.", multiprocess_mode="livesum", registry=REGISTRY
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_LATENCY.labels(route, method if method in _METHODS else "other", f"{status // 100}xx").observe(seconds)


def observe_webhook_delivery(seconds: float, status_code: int | None) -> None:
    """One attempt: ``status_code`` None when there was no answer (timeout, refused, …)."""
    WEBHOOK_LATENCY.labels(f"{status_code // 100}xx" if status_code is not None else "error").observe(seconds)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def _refresh_socket_gauges(hub: Hub, console: ConsoleHub) -> None:
    WIDGET_SOCKETS.set(sum(len(conns) for conns in hub.by_workspace.values()))
    CONSOLE_SOCKETS.set(len(console.sockets))


async def start_socket_gauges(hub: Hub, console: ConsoleHub, exit_stack: contextlib.AsyncExitStack) -> None:
    """Lifespan: keep this process's socket gauges current (a worker that does not answer a
    scrape still reports through the shared folder)."""

    async def refresh_forever() -> None:
        while True:
            _refresh_socket_gauges(hub, console)
            await asyncio.sleep(GAUGE_INTERVAL)

    task = asyncio.create_task(refresh_forever(), name="metrics-gauges")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if multiprocess_mode():
            multiprocess.mark_process_dead(os.getpid())  # its sockets are gone; its counts stay

    exit_stack.push_async_callback(stop)


class _ScrapeTime:
    """Values read at scrape time, from the store and the services, the same for every process."""

    def __init__(self, deliveries: dict[str, int], db_up: bool, broker_up: bool) -> None:
        self.deliveries, self.db_up, self.broker_up = deliveries, db_up, broker_up

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("backchannel_info", "Version of this instance.", labels=["version"])
        info.add_metric([VERSION], 1)
        yield info
        deliveries = GaugeMetricFamily(
            "backchannel_webhook_deliveries",
            "Webhook deliveries in the store, by status (shared by all instances).",
            labels=["status"],
        )
        for status in ("pending", "delivering", "succeeded", "failed"):
            deliveries.add_metric([status], self.deliveries.get(status, 0))
        yield deliveries
        yield GaugeMetricFamily("backchannel_database_up", "1 when the database answered this scrape.", int(self.db_up))
        yield GaugeMetricFamily("backchannel_broker_up", "1 when the broker answered this scrape.", int(self.broker_up))


def _delivery_counts(s: Session) -> dict[str, int]:
    rows = s.exec(select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)).all()
    return {status: int(count) for status, count in rows}


def _allowed(request: Request, token: str | None) -> Response | None:
    if token is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if hmac.compare_digest(given.encode(), token.encode()):
            return None
        return PlainTextResponse("metrics need 'Authorization: Bearer <BACKCHANNEL_METRICS_TOKEN>'\n", status_code=401)
    addr = ip_of(client_address(request))
    if addr is not None and (addr.is_loopback or addr.is_private):
        return None
    return PlainTextResponse(
        "metrics are served to loopback and private addresses only; set BACKCHANNEL_METRICS_TOKEN "
        "to scrape from elsewhere\n",
        status_code=403,
    )


async def metrics(request: Request) -> Response:
    state = request.app.state.bc
    secret = state.settings.metrics_token
    refused = _allowed(request, secret.get_secret_value() if secret is not None else None)
    if refused is not None:
        return refused
    _refresh_socket_gauges(state.hub, state.console)
    try:
        counts, db_up = await state.runner.read(_delivery_counts), True
    except Exception:
        counts, db_up = {}, False
    broker_up = bool(await state.broker.ping())
    if multiprocess_mode():
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    shared = CollectorRegistry()
    shared.register(_ScrapeTime(counts, db_up, broker_up))
    body = generate_latest(shared) + generate_latest(processes)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
