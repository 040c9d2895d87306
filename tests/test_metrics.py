"""``/metrics`` through prometheus_client: latency histograms, socket gauges, who may scrape, and
the counts of several worker processes added up (``backchannel serve --workers 2`` on Redis)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.settings import Settings
from app.store.migrate import upgrade
from tests.conftest import ROOT, TEST_ENV, LiveServer, Tenant, free_port
from tests.factories import make_conversation, post_text
from tests.realtime.test_realtime import WidgetClient
from tests.receivers import Receiver, eventually


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(url + "/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(v for (n, lbls), v in samples.items() if n == name and set(labels.items()) <= set(lbls))


def test_request_latency_is_a_histogram_by_route_template_method_and_status_class(
    server: LiveServer, tenant: Tenant
) -> None:
    with server.client(tenant) as api:
        conv = make_conversation(api)
        for _ in range(3):
            assert api.get(f"/api/v1/conversations/{conv['id']}").status_code == 200
        assert api.get("/api/v1/conversations/cnv_nope").status_code == 404
        api.get("/no/such/page")
    samples = scrape(server.url)
    route = "/api/v1/conversations/{conversation_id}"
    name = "backchannel_http_request_duration_seconds"
    assert value(samples, name + "_count", route=route, method="GET", status="2xx") == 3
    assert value(samples, name + "_count", route=route, method="GET", status="4xx") == 1
    assert value(samples, name + "_bucket", route=route, method="GET", status="2xx", le="+Inf") == 3
    assert value(samples, name + "_sum", route=route, method="GET", status="2xx") > 0
    assert value(samples, name + "_count", route="unmatched", status="4xx") == 1
    assert not any(conv["id"] in str(key) for key in samples)  # ids never become labels
    assert value(samples, "backchannel_database_up") == 1 and value(samples, "backchannel_broker_up") == 1


def test_webhook_delivery_latency_and_socket_gauges(server: LiveServer, tenant: Tenant) -> None:
    with Receiver() as rx, server.client(tenant) as api, ExitStack() as stack:
        hook = api.post("/api/v1/webhook-endpoints", json={"url": rx.url, "events": ["message.created"]})
        assert hook.status_code == 201, hook.text
        conv = make_conversation(api)
        post_text(api, conv["id"], "hello").raise_for_status()
        rx.wait_count(1)
        customers = [WidgetClient(stack, server, tenant) for _ in range(2)]
        for customer in customers:
            customer.connect()

        def counted() -> bool:
            samples = scrape(server.url)
            delivered = value(samples, "backchannel_webhook_delivery_duration_seconds_count", outcome="2xx")
            return delivered >= 1 and value(samples, "backchannel_widget_sockets") == 2

        eventually(counted, timeout=10)
        samples = scrape(server.url)
        assert value(samples, "backchannel_webhook_deliveries", status="succeeded") >= 1
        assert value(samples, "backchannel_console_sockets") == 0
    eventually(lambda: value(scrape(server.url), "backchannel_widget_sockets") == 0, timeout=10)


def test_metrics_are_for_loopback_and_private_addresses_or_a_token(server_factory: Any) -> None:
    srv: LiveServer = server_factory(env={"BACKCHANNEL_TRUSTED_PROXIES": "127.0.0.1"})
    assert httpx.get(srv.url + "/metrics").status_code == 200  # loopback
    # Through the (trusted) proxy: a customer on the internet is refused, the office LAN is not.
    public = httpx.get(srv.url + "/metrics", headers={"X-Forwarded-For": "93.184.216.34"})
    assert public.status_code == 403 and "BACKCHANNEL_METRICS_TOKEN" in public.text
    assert httpx.get(srv.url + "/metrics", headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200

    token = "metrics-token-0123456789"
    locked: LiveServer = server_factory(env={"BACKCHANNEL_METRICS_TOKEN": token})
    assert httpx.get(locked.url + "/metrics").status_code == 401  # with a token set, loopback needs it too
    assert httpx.get(locked.url + "/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(locked.url + "/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("folder", ["made by serve", "set by the operator", "made by serve for WEB_CONCURRENCY"])
def test_two_workers_report_as_one(tmp_path: Path, postgres_database: str, redis_broker_url: str, folder: str) -> None:
    """``serve --workers 2``: both processes record into one folder, and whichever answers a
    scrape reports the counts and sockets of both."""
    upgrade(Settings(database_url=postgres_database, env="test"))
    port = free_port()
    env = {
        **os.environ,
        **TEST_ENV,
        "BACKCHANNEL_DATABASE_URL": postgres_database,
        "BACKCHANNEL_BROKER_URL": redis_broker_url,
        "BACKCHANNEL_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    workers = ["--workers", "2"]
    if folder == "set by the operator":
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prometheus")
    elif folder.endswith("WEB_CONCURRENCY"):
        env["WEB_CONCURRENCY"], workers = "2", []  # uvicorn's own way of asking for workers
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", *workers, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = LiveServer(postgres_database, tmp_path, port=port)
    try:
        eventually(lambda: _ready(server.url), timeout=60)
        shared = Path(_worker_env(proc.pid)["PROMETHEUS_MULTIPROC_DIR"])
        tenant = server.new_tenant()
        # New connections spread over both workers; each request is counted once, wherever it ran.
        for _ in range(40):
            assert httpx.get(server.url + "/healthz").status_code == 200
        with ExitStack() as stack:
            customers = [WidgetClient(stack, server, tenant) for _ in range(4)]
            for customer in customers:
                customer.connect()

            def all_sockets_counted() -> bool:
                return value(scrape(server.url), "backchannel_widget_sockets") == 4

            eventually(all_sockets_counted, timeout=15)
            pids = {int(m.group(1)) for p in shared.iterdir() if (m := re.search(r"_(\d+)\.db$", p.name))}
            assert len(pids) == 2, sorted(p.name for p in shared.iterdir())  # both workers wrote
            counts = set()
            for _ in range(10):  # whichever worker answers, the same totals
                samples = scrape(server.url)
                counts.add(value(samples, "backchannel_http_request_duration_seconds_count", route="/healthz"))
                assert value(samples, "backchannel_widget_sockets") == 4
            assert counts == {40}, counts
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    output = (tmp_path / "serve.log").read_text(errors="replace")
    assert output.count("Started server process") == 2, output[-3000:]
    assert shared.exists() == (folder == "set by the operator")  # serve's own folder is removed


def _worker_env(parent: int) -> dict[str, str]:
    """The environment of one of ``serve``'s worker processes (they are its children)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    assert children, "serve started no worker processes"
    raw = Path(f"/proc/{children[0]}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
