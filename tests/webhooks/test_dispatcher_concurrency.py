"""Several deliveries at once per endpoint (SPEC §5, issue 16.3), without giving up fairness.

A receiver that takes 300 ms gets up to ``WEBHOOK_ENDPOINT_CONCURRENCY`` (8) deliveries at
once, so its latency does not cap it at one delivery per round trip; another workspace's
endpoint is not held up by that backlog.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx

from tests.conftest import LiveServer, Tenant
from tests.receivers import Received, Receiver, eventually
from tests.webhooks.test_webhooks import add_endpoint

RECEIVER_SECONDS = 0.3


class Slow:
    """Answers after 300 ms, counting how many requests it holds at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0

    def __call__(self, req: Received) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(RECEIVER_SECONDS)
        with self.lock:
            self.now -= 1
        return 200, {}, b"ok"


def _post_users(api: httpx.Client, n: int, prefix: str) -> None:
    for i in range(n):
        assert api.post("/api/v1/users", json={"name": f"{prefix}{i}"}).status_code == 201


def test_a_300_ms_receiver_gets_8_deliveries_at_once(server: LiveServer, api: httpx.Client) -> None:
    slow = Slow()
    with Receiver(slow) as rx:
        add_endpoint(api, rx.url, events=["user.created"])
        t0 = time.monotonic()
        _post_users(api, 40, "u")
        eventually(lambda: len(rx.succeeded()) >= 40, timeout=30, interval=0.02)
        took = time.monotonic() - t0
    # 40 × 0.3 s one at a time is 12 s; 8 at a time is 1.5 s (plus the posting). The bound is
    # generous for a loaded machine and still fails at a concurrency of 1 or 2.
    assert took < 5.5, f"40 deliveries to a 300 ms receiver took {took:.1f} s"
    assert 4 <= slow.most <= 8, slow.most
    per_id = Counter(r.webhook_id for r in rx.received())
    assert len(per_id) == 40 and set(per_id.values()) == {1}  # each once
    names = sorted(r.json["data"]["user"]["name"] for r in rx.received())
    assert names == sorted(f"u{i}" for i in range(40))


def test_the_per_endpoint_limit_is_a_setting(server_factory: Any) -> None:
    srv: LiveServer = server_factory(env={"BACKCHANNEL_WEBHOOK_ENDPOINT_CONCURRENCY": "2"})
    tenant: Tenant = srv.new_tenant()
    slow = Slow()
    with Receiver(slow) as rx, srv.client(tenant) as api:
        add_endpoint(api, rx.url, events=["user.created"])
        _post_users(api, 8, "u")
        eventually(lambda: len(rx.succeeded()) >= 8, timeout=30, interval=0.02)
    assert slow.most == 2


def test_one_workspace_s_backlog_does_not_delay_another_s_endpoint(server: LiveServer) -> None:
    busy: Tenant = server.new_tenant("Busy")
    calm: Tenant = server.new_tenant("Calm")
    with Receiver(Slow()) as slow_rx, Receiver() as calm_rx, server.client(busy) as busy_api, \
            server.client(calm) as calm_api:  # fmt: skip
        add_endpoint(busy_api, slow_rx.url, events=["user.created"])
        add_endpoint(calm_api, calm_rx.url, events=["user.created"])
        _post_users(busy_api, 80, "b")  # ~3 s of backlog at 8 × 300 ms
        delays = []
        for i in range(5):
            sent = time.monotonic()
            assert calm_api.post("/api/v1/users", json={"name": f"c{i}"}).status_code == 201
            got = calm_rx.wait_count(i + 1, timeout=10)
            delays.append(got[-1].at - sent)
        assert len(slow_rx.succeeded()) < 80  # the backlog was still being worked through
        assert max(delays) < 1.0, delays
        eventually(lambda: len(slow_rx.succeeded()) >= 80, timeout=30)


def test_bursts_to_several_endpoints_never_wait_for_the_poll(server_factory: Any) -> None:
    """Events queued while an endpoint's worker is finishing are claimed at once: nothing waits
    for the poll, which here is 30 s so that a lost wake-up shows as a stall."""
    srv: LiveServer = server_factory(env={"BACKCHANNEL_WEBHOOK_POLL_SECONDS": "30"})
    tenant: Tenant = srv.new_tenant()

    def poster(prefix: str) -> None:
        with srv.client(tenant) as api:
            _post_users(api, 10, prefix)

    with Receiver() as rx, srv.client(tenant) as api:
        for n in range(4):
            add_endpoint(api, f"{rx.url}/endpoint-{n}", events=["user.created"])
        sent = 0
        for burst in range(8):
            threads = [threading.Thread(target=poster, args=(f"b{burst}p{p}-",)) for p in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            sent += 80
            # 4 × 80 deliveries to a receiver that answers at once: well under the 30 s poll.
            deadline = time.monotonic() + 10
            while len(rx.succeeded()) < 4 * sent and time.monotonic() < deadline:
                time.sleep(0.02)
            got = len(rx.succeeded())
            assert got >= 4 * sent, f"burst {burst}: {got} of {4 * sent} delivered after 10 s ({len(rx.received())} tried)"
    per_delivery = Counter((r.webhook_id, r.path) for r in rx.received())
    assert len(per_delivery) == 4 * sent and set(per_delivery.values()) == {1}
