"""Several instances on PostgreSQL and Redis behave as one system.

Every test starts two or three real server processes on one PostgreSQL database and one
Redis broker. Tests that restart a service start a private one, so nothing else is disturbed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from app.store.migrate import upgrade
from tests.conftest import LiveServer, Tenant
from tests.factories import make_conversation, messages, post_text
from tests.realtime.test_realtime import WidgetClient
from tests.receivers import Receiver, eventually
from tests.services import private_postgres, private_redis

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

Cluster = Callable[..., list[LiveServer]]


@pytest.fixture
def cluster(server_factory: Any, postgres_database: str, redis_broker_url: str) -> Cluster:
    """``cluster(n, broker_url=…, database_url=…)``: n servers sharing one database and broker."""

    def make(n: int = 2, *, broker_url: str | None = None, database_url: str | None = None, **env: str) -> list[LiveServer]:
        db = database_url or postgres_database
        upgrade(Settings(database_url=db, env="test"))
        broker = broker_url or redis_broker_url
        return [server_factory(database_url=db, env={"BACKCHANNEL_BROKER_URL": broker, **env}) for _ in range(n)]

    return make


@pytest.fixture
def widget(tmp_path: Path) -> Iterator[Callable[..., WidgetClient]]:
    with ExitStack() as stack:
        yield lambda server, tenant: WidgetClient(stack, server, tenant)


def test_a_customer_on_one_instance_sees_what_happens_on_the_others(cluster: Cluster, widget: Any) -> None:
    a, b, c = cluster(3)
    tenant = a.new_tenant()
    customer = widget(a, tenant)
    customer.connect()
    customer.send({"type": "open"})
    conv_id = customer.expect("conversation")["conversation"]["id"]

    with b.client(tenant) as api_b, c.client(tenant) as api_c:
        post_text(api_b, conv_id, "posted on B")
        frame = customer.expect("message")
        assert frame["message"]["message_parts"] == [{"text": {"content": "posted on B"}}]

        human = api_c.post("/api/v1/agents", json={"name": "Maya", "kind": "human"}).json()
        assert api_c.post(f"/api/v1/conversations/{conv_id}/typing", json={"actor": {"type": "agent", "id": human["id"]}, "on": True}).status_code == 204
        typing = customer.expect("typing")
        assert typing["on"] is True and typing["actor"]["name"] == "Maya"

        api_b.patch(f"/api/v1/conversations/{conv_id}", json={"assignee_id": human["id"]})
        assigned = customer.expect("conversation", timeout=10)
        assert assigned["conversation"]["assignee"]["name"] == "Maya"
        assert api_c.patch(f"/api/v1/conversations/{conv_id}", json={"status": "resolved"}).status_code == 200
        # The assignment's frames come first (conversation.assigned, and conversation.handover,
        # which the widget hears too), then the resolution's.
        statuses = [customer.expect("conversation")["conversation"]["status"]]
        while statuses[-1] != "resolved" and len(statuses) < 4:
            statuses.append(customer.expect("conversation")["conversation"]["status"])
        assert statuses[-1] == "resolved", statuses

    # and the customer's own message, sent on A, reaches the API on C
    customer.send({"type": "message", "client_message_id": "from-a", "text": "hello from A"})
    customer.expect("ack", client_message_id="from-a")
    with c.client(tenant) as api_c:
        texts = [m["message_parts"][0]["text"]["content"] for m in messages(api_c, conv_id)]
    assert texts[-1] == "hello from A"


def test_concurrent_writers_on_different_instances_get_gap_free_seqs(cluster: Cluster) -> None:
    a, b = cluster(2)
    tenant = a.new_tenant()
    with a.client(tenant) as api:
        conv = make_conversation(api)

    def writer(n: int) -> None:
        server = (a, b)[n % 2]
        with server.client(tenant) as c:
            for i in range(40):
                assert post_text(c, conv["id"], f"{n}-{i}").status_code == 201

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(writer, range(10)))
    with b.client(tenant) as api:
        assert [m["seq"] for m in messages(api, conv["id"])] == list(range(1, 401))


def _endpoint(api: httpx.Client, url: str) -> dict[str, Any]:
    r = api.post("/api/v1/webhook-endpoints", json={"url": url, "events": ["message.created"]})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_two_dispatchers_share_the_outbox_and_send_each_event_once(cluster: Cluster) -> None:
    a, b = cluster(2)
    tenant = a.new_tenant()
    with Receiver() as receiver, a.client(tenant) as api_a, b.client(tenant) as api_b:
        _endpoint(api_a, receiver.url)
        conv = make_conversation(api_a)
        for i in range(60):
            post_text((api_a, api_b)[i % 2], conv["id"], f"m{i}")
        got = receiver.wait_count(60, timeout=60)
        time.sleep(1.5)  # anything sent twice would arrive by now
        counts = Counter(r.webhook_id for r in receiver.received())
        assert len(counts) == 60 and max(counts.values()) == 1, counts.most_common(3)
        assert {r.json["data"]["message"]["seq"] for r in got} == set(range(1, 61))


def test_a_killed_instance_leaves_no_event_behind(cluster: Cluster) -> None:
    a, b = cluster(2, BACKCHANNEL_WEBHOOK_LEASE_SECONDS="3", BACKCHANNEL_WEBHOOK_TIMEOUT_SECONDS="2")
    tenant = a.new_tenant()
    gate = threading.Event()

    def slow_until_gate(_: Any) -> tuple[int, dict[str, str], bytes]:
        gate.wait(timeout=30)
        return 200, {}, b"ok"

    with Receiver(slow_until_gate) as receiver, a.client(tenant) as api_a:
        _endpoint(api_a, receiver.url)
        conv = make_conversation(api_a)
        for i in range(30):
            post_text(api_a, conv["id"], f"m{i}")
        eventually(lambda: len(receiver.received()) >= 1)  # deliveries are in flight
        a.kill()
        gate.set()
        # the survivor takes the killed instance's leases over once they expire
        eventually(lambda: {r.json["data"]["message"]["seq"] for r in receiver.succeeded()} >= set(range(1, 31)), timeout=60)
        per_id = Counter(r.webhook_id for r in receiver.succeeded())
        assert len(per_id) == 30
        # at-least-once: only what was in flight when A died may arrive twice, never more
        assert max(per_id.values()) <= 2
        with b.client(tenant) as api_b:
            endpoint_id = api_b.get("/api/v1/webhook-endpoints").json()["data"][0]["id"]
            deliveries = api_b.get(f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries", params={"limit": 200}).json()["data"]
        assert len(deliveries) == 30 and all(d["status"] == "succeeded" for d in deliveries)


def test_rate_limits_hold_across_instances(cluster: Cluster) -> None:
    a, b = cluster(2, BACKCHANNEL_API_RATE_PER_MINUTE="20")
    tenant = a.new_tenant()
    statuses = []
    with a.client(tenant) as api_a, b.client(tenant) as api_b:
        for i in range(30):
            statuses.append((api_a, api_b)[i % 2].get("/api/v1/users").status_code)
    assert statuses.count(200) == 20 and statuses.count(429) == 10


def test_redis_restart_mid_stream_loses_nothing(server_factory: Any, postgres_database: str, tmp_path: Path, widget: Any) -> None:
    redis = private_redis(tmp_path)
    try:
        upgrade(Settings(database_url=postgres_database, env="test"))
        env = {"BACKCHANNEL_BROKER_URL": redis.url}
        a = server_factory(database_url=postgres_database, env=env)
        b = server_factory(database_url=postgres_database, env=env)
        tenant = a.new_tenant()
        customer = widget(a, tenant)
        customer.connect()
        customer.send({"type": "open"})
        conv_id = customer.expect("conversation")["conversation"]["id"]
        total = 60
        with b.client(tenant) as api_b:
            for i in range(total):
                if i == 20:
                    redis.stop()
                if i == 40:
                    redis.start()
                assert post_text(api_b, conv_id, f"m{i}").status_code == 201
                time.sleep(0.05)
        seqs: list[int] = []

        def all_seen() -> bool:
            seqs.extend(m["seq"] for m in customer.messages_until_quiet(0.5))
            return set(seqs) >= set(range(1, total + 1))

        eventually(all_seen, timeout=40, interval=0)
        assert len(seqs) == len(set(seqs)), "a message was shown twice"
        assert seqs == sorted(seqs), "messages arrived out of order"
        assert "redis broker" in a.log()
    finally:
        redis.stop()


def test_servers_recover_from_a_postgres_restart_by_themselves(server_factory: Any, redis_broker_url: str) -> None:
    pg = private_postgres()
    try:
        upgrade(Settings(database_url=pg.url, env="test"))
        a = server_factory(database_url=pg.url, env={"BACKCHANNEL_BROKER_URL": redis_broker_url})
        tenant: Tenant = a.new_tenant()
        with a.client(tenant) as api:
            conv = make_conversation(api)
            assert post_text(api, conv["id"], "before").status_code == 201
            pg.stop()
            down = post_text(api, conv["id"], "while down")
            assert down.status_code == 503 and down.headers.get("retry-after")
            assert api.get("/readyz").status_code == 503
            pg.start()

            def works() -> bool:
                return post_text(api, conv["id"], "after").status_code == 201

            eventually(works, timeout=30, interval=0.5)
            texts = [m["message_parts"][0]["text"]["content"] for m in messages(api, conv["id"])]
            assert texts[0] == "before" and "while down" not in texts and texts[-1] == "after"
            assert [m["seq"] for m in messages(api, conv["id"])] == list(range(1, len(texts) + 1))
    finally:
        with suppress(Exception):
            pg.stop()


def test_workers_share_one_system(tmp_path: Path, postgres_database: str, redis_broker_url: str, widget: Any) -> None:
    """``backchannel serve --workers 2``: whichever worker answers, it is one system."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT, TEST_ENV, free_port

    upgrade(Settings(database_url=postgres_database, env="test"))
    port = free_port()
    env = {**os.environ, **TEST_ENV, "BACKCHANNEL_DATABASE_URL": postgres_database, "BACKCHANNEL_BROKER_URL": redis_broker_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--workers", "2", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        server = LiveServer(postgres_database, tmp_path, port=port)
        eventually(lambda: _up(server.url), timeout=60)
        tenant = server.new_tenant()
        customers = [widget(server, tenant) for _ in range(4)]  # spread over both workers
        conv_ids = []
        for customer in customers:
            customer.connect()
            customer.send({"type": "open"})
            conv_ids.append(customer.expect("conversation")["conversation"]["id"])
        with server.client(tenant) as api:
            for conv_id in conv_ids:
                post_text(api, conv_id, "to every worker")
        for customer in customers:
            assert customer.expect("message")["message"]["message_parts"][0]["text"]["content"] == "to every worker"
        metrics = httpx.get(server.url + "/metrics").text
        assert "backchannel_widget_sockets" in metrics and "backchannel_broker_up 1" in metrics
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_workers_refuse_a_memory_broker() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--workers", "2"], cwd=ROOT, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "BACKCHANNEL_BROKER_URL": "memory://"}, timeout=30,
    )
    assert proc.returncode != 0 and "redis://" in proc.stderr
