"""Two instances on one PostgreSQL + Redis, writing to one conversation (or several) while
their dispatchers deliver: no deadlock, no 5xx (issue 16.5), every event delivered once.

The dispatcher's attempt records used to take the endpoint row ``FOR UPDATE`` inside the
same group-committed batch as message writes, whose delivery inserts take ``FOR KEY
SHARE`` on it (the foreign key): two instances' batches waited on each other in a cycle.
PostgreSQL counts the deadlocks it breaks per database (``pg_stat_database.deadlocks``);
the test runs on a database of its own, so the count is this test's alone. With several
conversations, two instances' batches used to lock the same conversation rows in opposite
orders; the Runner now runs a batch's writes in conversation order.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.settings import Settings
from app.store.migrate import upgrade
from tests.conftest import LiveServer, postgres_url
from tests.factories import make_conversation, messages
from tests.receivers import Receiver, eventually
from tests.webhooks.test_webhooks import add_endpoint

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WRITERS = 8
PER_WRITER = 40


def _deadlocks(database_url: str) -> int:
    import psycopg

    name = database_url.rpartition("/")[2]
    admin = (postgres_url() or "").replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("conversations", [1, 4])
def test_two_instances_writing_while_delivering_never_deadlock(
    server_factory: object, postgres_database: str, redis_broker_url: str, conversations: int
) -> None:
    upgrade(Settings(database_url=postgres_database, env="test"))
    env = {"BACKCHANNEL_BROKER_URL": redis_broker_url, "BACKCHANNEL_API_RATE_PER_MINUTE": "100000",
           # One writer lane each, so every batch holds writes to several conversations.
           "BACKCHANNEL_DATABASE_WRITERS": "1"}
    a: LiveServer = server_factory(database_url=postgres_database, env=env)  # type: ignore[operator]
    b: LiveServer = server_factory(database_url=postgres_database, env=env)  # type: ignore[operator]
    tenant = a.new_tenant()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    with Receiver() as rx, a.client(tenant) as api:
        add_endpoint(api, rx.url, events=["message.created"])
        add_endpoint(api, rx.url + "/second", events=["message.created"])
        convs = [make_conversation(api) for _ in range(conversations)]
        time.sleep(1.5)  # the statistics collector has flushed whatever set-up did
        before = _deadlocks(postgres_database)

        def writer(n: int) -> None:
            server = (a, b)[n % 2]
            with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=30) as c:
                for i in range(PER_WRITER):
                    conv = convs[(n + i) % conversations]  # writers walk the conversations out of step
                    r = c.post(f"/api/v1/conversations/{conv['id']}/messages",
                               json={"message_parts": [{"text": {"content": f"{n}-{i}"}}]})
                    with lock:
                        statuses[r.status_code] += 1

        with ThreadPoolExecutor(WRITERS) as pool:
            list(pool.map(writer, range(WRITERS)))
        total = WRITERS * PER_WRITER
        eventually(lambda: len(rx.succeeded()) >= 2 * total, timeout=90, interval=0.1)
        time.sleep(1.5)  # anything sent twice arrives by now; the statistics are flushed
        deadlocks = _deadlocks(postgres_database) - before
        seqs = [[m["seq"] for m in messages(api, conv["id"])] for conv in convs]
    assert statuses == Counter({201: total}), statuses
    assert deadlocks == 0, f"PostgreSQL broke {deadlocks} deadlocks"
    assert sum(len(s) for s in seqs) == total
    assert all(s == list(range(1, len(s) + 1)) for s in seqs)
    per_delivery = Counter((r.path, r.webhook_id) for r in rx.received())
    assert len(per_delivery) == 2 * total and set(per_delivery.values()) == {1}
