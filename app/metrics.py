"""``/metrics``: Prometheus text exposition, computed when scraped (nothing to keep in sync)."""

from __future__ import annotations

import hmac
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from app.models import WebhookDelivery
from app.state import AppState

VERSION = "0.1.0"


def _delivery_counts(s: Session) -> dict[str, int]:
    rows = s.exec(select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)).all()
    return {status: int(count) for status, count in rows}


async def metrics(request: Request) -> Response:
    state: AppState = request.app.state.bc
    expected = state.settings.metrics_token
    if expected is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            hint = "metrics need 'Authorization: Bearer <BACKCHANNEL_METRICS_TOKEN>'\n"
            return PlainTextResponse(hint, status_code=401)
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], Any]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{name}{{{label}}} {value}" if label else f"{name} {value}")

    metric("backchannel_info", "gauge", "Version of this instance.", [({"version": VERSION}, 1)])
    metric(
        "backchannel_http_responses_total",
        "counter",
        "HTTP responses served by this instance, by status class.",
        [({"class": k}, v) for k, v in sorted(state.counters.items()) if k.endswith("xx")],
    )
    hub = state.services.get("hub")
    sockets = sum(len(conns) for conns in hub.by_workspace.values()) if hub is not None else 0
    metric("backchannel_widget_sockets", "gauge", "Open widget WebSockets on this instance.", [({}, sockets)])
    try:
        counts = await state.runner.read(_delivery_counts)
        db_up = 1
    except Exception:
        counts, db_up = {}, 0
    metric(
        "backchannel_webhook_deliveries",
        "gauge",
        "Webhook deliveries in the store, by status (shared by all instances).",
        [({"status": s}, counts.get(s, 0)) for s in ("pending", "delivering", "succeeded", "failed")],
    )
    metric("backchannel_database_up", "gauge", "1 when the database answered this scrape.", [({}, db_up)])
    broker_up = 1 if await state.broker.ping() else 0
    metric("backchannel_broker_up", "gauge", "1 when the broker answered this scrape.", [({}, broker_up)])
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
