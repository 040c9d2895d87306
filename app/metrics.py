"""``/metrics``: Prometheus text through ``prometheus_client``, correct across worker processes.

Each process records into ``app.instruments``; with several workers every worker writes to the
shared folder, and whichever worker answers a scrape adds up all of them (socket gauges count
live processes only). What lives in the shared store (webhook deliveries by status) and
whether the database and broker answer is read when scraped.

Who may scrape: with ``BACKCHANNEL_METRICS_TOKEN`` set, whoever sends it as a bearer token;
without it, only clients on loopback or private addresses (the customer's address as
resolved through ``TRUSTED_PROXIES``), so the public side of a proxy never sees it.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func
from sqlmodel import Session, select
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from app import VERSION
from app.instruments import REGISTRY, multiprocess_mode, refresh_socket_gauges
from app.proxies import client_address, ip_of
from app.state import AppState
from app.store.tables import WebhookDelivery


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
    state: AppState = request.app.state.bc
    secret = state.settings.metrics_token
    refused = _allowed(request, secret.get_secret_value() if secret is not None else None)
    if refused is not None:
        return refused
    refresh_socket_gauges(state.hub, state.console)
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
