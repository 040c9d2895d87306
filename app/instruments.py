"""This process's Prometheus instruments: what ``app.edge``, the webhook dispatcher and the
socket hubs record, in a registry of our own (``app.metrics`` serves them at ``/metrics``).

Each process records request latency by route template, method and status class; webhook
delivery latency by outcome; its open widget and console sockets. With several workers
(``backchannel serve --workers N``) ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
folder before the workers start (``app.multiprocess``, which must run before this module is
imported: prometheus_client picks its mode then; tests/test_imports.py keeps the command line
from importing it), and every worker writes there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, multiprocess

from app.console.hub import ConsoleHub
from app.realtime.hub import Hub

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


_LATENCY_BY_LABELS: dict[tuple[str, str, int], Any] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    # Each (route, method, status class) child once: ``labels`` takes a lock and builds its key
    # every call (a few µs a request). Routes and methods are few (unknown ones are "other").
    key = (route, method if method in _METHODS else "other", status // 100)
    child = _LATENCY_BY_LABELS.get(key)
    if child is None:
        child = _LATENCY_BY_LABELS[key] = HTTP_LATENCY.labels(key[0], key[1], f"{key[2]}xx")
    child.observe(seconds)


def observe_webhook_delivery(seconds: float, status_code: int | None) -> None:
    """One attempt: ``status_code`` None when there was no answer (timeout, refused, …)."""
    WEBHOOK_LATENCY.labels(f"{status_code // 100}xx" if status_code is not None else "error").observe(seconds)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def refresh_socket_gauges(hub: Hub, console: ConsoleHub) -> None:
    WIDGET_SOCKETS.set(sum(len(conns) for conns in hub.by_workspace.values()))
    CONSOLE_SOCKETS.set(len(console.sockets))


async def start_socket_gauges(hub: Hub, console: ConsoleHub, exit_stack: contextlib.AsyncExitStack) -> None:
    """Lifespan: keep this process's socket gauges current (a worker that does not answer a
    scrape still reports through the shared folder)."""

    async def refresh_forever() -> None:
        while True:
            refresh_socket_gauges(hub, console)
            await asyncio.sleep(GAUGE_INTERVAL)

    task = asyncio.create_task(refresh_forever(), name="metrics-gauges")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if multiprocess_mode():
            multiprocess.mark_process_dead(os.getpid())  # its sockets are gone; its counts stay

    exit_stack.push_async_callback(stop)
