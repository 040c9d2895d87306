"""After a ``kill -9``, what the dead process held is sent again within seconds (SPEC §5,
issue 16.2), by the restarted process or by another instance: leases are short and renewed
only while a live dispatcher works on them, not held for a fixed minute.

The servers run with the default lease (the suite's usual 5 s override is replaced by the
setting's own default), so these tests measure what a deployment gets.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from app.settings import Settings
from app.store.migrate import upgrade
from tests.conftest import LiveServer, Tenant
from tests.receivers import Received, Receiver, eventually
from tests.webhooks.test_webhooks import add_endpoint

DEFAULT_LEASE = {"BACKCHANNEL_WEBHOOK_LEASE_SECONDS": str(Settings.model_fields["webhook_lease_seconds"].default)}
WITHIN = 12.0  # seconds to the last delivery: a 5 s lease, polling, a loaded machine


class HeldUntilKill:
    """Holds every request until ``killed`` is set (the sender dies meanwhile), then answers 200."""

    def __init__(self) -> None:
        self.killed = threading.Event()

    def __call__(self, req: Received) -> tuple[int, dict[str, str], bytes]:
        if not self.killed.is_set():
            self.killed.wait(60)
        return 200, {}, b"ok"


def _users(server: LiveServer, tenant: Tenant, n: int) -> set[str]:
    with server.client(tenant) as api:
        return {api.post("/api/v1/users", json={"name": f"u{i}"}).json()["id"] for i in range(n)}


def _delivered(rx: Receiver) -> set[str]:
    return {r.json["data"]["user"]["id"] for r in rx.succeeded()}


def test_a_restarted_instance_resends_what_it_held_within_seconds(server_factory: Any) -> None:
    server: LiveServer = server_factory(env=DEFAULT_LEASE)
    tenant = server.new_tenant()
    held = HeldUntilKill()
    with Receiver(held) as rx:
        with server.client(tenant) as api:
            add_endpoint(api, rx.url, events=["user.created"])
        users = _users(server, tenant, 12)
        rx.wait_count(8)  # eight in flight, the rest leased behind them
        server.kill()
        held.killed.set()
        server.start()
        up_at = time.monotonic()  # (how long a restart takes on a loaded machine is not ours to bound)
        eventually(lambda: _delivered(rx) >= users, timeout=60, interval=0.05)
        took = time.monotonic() - up_at
    assert took < WITHIN, f"the restarted instance took {took:.1f} s to resend what it held"
    per_id = Counter(r.webhook_id for r in rx.succeeded())
    assert len(per_id) == 12 and max(per_id.values()) == 1


@pytest.mark.postgres
def test_another_instance_takes_over_a_killed_one_s_deliveries_within_seconds(
    server_factory: Any, postgres_database: str
) -> None:
    upgrade(Settings(database_url=postgres_database, env="test"))
    a: LiveServer = server_factory(database_url=postgres_database, env=DEFAULT_LEASE)
    tenant = a.new_tenant()
    held = HeldUntilKill()
    with Receiver(held) as rx:
        with a.client(tenant) as api:
            add_endpoint(api, rx.url, events=["user.created"])
        users = _users(a, tenant, 12)
        rx.wait_count(8)  # A holds them: eight in flight, the rest leased behind them
        b: LiveServer = server_factory(database_url=postgres_database, env=DEFAULT_LEASE)  # the survivor
        a.kill()
        killed_at = time.monotonic()
        held.killed.set()
        eventually(lambda: _delivered(rx) >= users, timeout=60, interval=0.05)
        took = time.monotonic() - killed_at
        assert b.proc is not None and b.proc.poll() is None
    assert took < WITHIN, f"the survivor took {took:.1f} s to resend what the killed instance held"
    per_id = Counter(r.webhook_id for r in rx.succeeded())
    assert len(per_id) == 12 and max(per_id.values()) == 1
