"""How far webhooks trail a write burst: the measurement behind docs/performance.md §4b.

Starts ``--instances`` real servers (uvicorn) on a fresh database (SQLite, or a private
PostgreSQL database plus Redis with ``--postgres``), one endpoint per ``--endpoints`` on a
loopback receiver that answers after ``--receiver-ms``, then posts ``--messages`` messages
from ``--writers`` threads (spread over the instances, all to one conversation unless
``--conversations`` says more) and reports: the write rate, the delivery rate, how long
after the last acknowledged write the last delivery arrived, ack→delivery p50/p99, 5xx
answers, duplicates per webhook-id, and (PostgreSQL) the deadlocks counted for the database.

    .venv/bin/python bench/webhook_trail.py --postgres postgresql://postgres@127.0.0.1:5432/test \
        --redis redis://127.0.0.1:6379/0 --messages 1000 --instances 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.settings import Settings  # noqa: E402
from app.store.migrate import upgrade  # noqa: E402
from tests.conftest import LiveServer, migrated_sqlite  # noqa: E402
from tests.receivers import Received, Receiver  # noqa: E402


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


def deadlocks(admin_url: str, name: str) -> int:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server (a private database is made and dropped)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--conversations", type=int, default=1)
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--receiver-ms", type=float, default=0.0)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the servers")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bc-trail-"))
    dbname = None
    admin = None
    if args.postgres:
        import psycopg

        admin = args.postgres
        dbname = f"bc_trail_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        database_url = admin.rpartition("/")[0] + "/" + dbname
        upgrade(Settings(database_url=database_url, env="test"))
        env = {"BACKCHANNEL_BROKER_URL": args.redis}
    else:
        database_url = migrated_sqlite(workdir)
        env = {}
    env.update(dict(e.split("=", 1) for e in args.env))
    env.setdefault("BACKCHANNEL_WEBHOOK_POLL_SECONDS", "1")
    env.setdefault("BACKCHANNEL_API_RATE_PER_MINUTE", "1000000")
    servers: list[LiveServer] = []
    delay = args.receiver_ms / 1000

    def respond(req: Received) -> tuple[int, dict[str, str], bytes]:
        if delay:
            time.sleep(delay)
        return 200, {}, b"ok"

    try:
        servers = [LiveServer(database_url, workdir, env).start() for _ in range(args.instances)]
        tenant = servers[0].new_tenant("Trail")
        with Receiver(respond) as rx:
            # One write per answer: http.server's unbuffered default sends the headers and the
            # body as two segments, and the second waits for the delayed ACK of the first
            # (Nagle): ~40 ms per answer, which would cap one connection at ~21 answers/s.
            rx.server.RequestHandlerClass.wbufsize = -1  # type: ignore[attr-defined]
            with servers[0].client(tenant) as api:
                for i in range(args.endpoints):
                    endpoint = {"url": f"{rx.url}/{i}", "events": ["message.created"]}
                    r = api.post("/api/v1/webhook-endpoints", json=endpoint)
                    assert r.status_code == 201, r.text
                user = api.post("/api/v1/users", json={"name": "trail"}).json()
                convs = [api.post("/api/v1/conversations", json={"user_id": user["id"]}).json()["id"]
                         for _ in range(args.conversations)]
            before = deadlocks(admin, dbname) if admin and dbname else 0
            acked: dict[str, float] = {}
            statuses: Counter[int] = Counter()
            lock = threading.Lock()
            per_writer = args.messages // args.writers

            def writer(n: int) -> None:
                server = servers[n % len(servers)]
                with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=30) as c:
                    for i in range(per_writer):
                        conv = convs[(n + i) % len(convs)]
                        r = c.post(f"/api/v1/conversations/{conv}/messages",
                                   json={"message_parts": [{"text": {"content": f"w{n}-{i}"}}]})
                        with lock:
                            statuses[r.status_code] += 1
                            if r.status_code == 201:
                                acked[r.json()["id"]] = time.monotonic()

            t0 = time.monotonic()
            with ThreadPoolExecutor(args.writers) as pool:
                list(pool.map(writer, range(args.writers)))
            t_writes = time.monotonic()
            expected = len(acked) * args.endpoints
            deadline = time.monotonic() + 300
            while len(rx.succeeded()) < expected and time.monotonic() < deadline:
                time.sleep(0.02)
            got = rx.succeeded()
            t_last = max((r.at for r in got), default=t_writes)
            delays = [r.at - acked[r.json["data"]["message"]["id"]] for r in got
                      if r.json["data"]["message"]["id"] in acked]
            per_id = Counter((r.path, r.webhook_id) for r in rx.received())
            first_delivery = min((r.at for r in got), default=t0)
            result: dict[str, Any] = {
                "engine": "postgresql" if admin else "sqlite", "instances": args.instances,
                "messages_acked": len(acked), "statuses": dict(statuses),
                "write_seconds": round(t_writes - t0, 2), "writes_per_s": round(len(acked) / (t_writes - t0), 1),
                "delivered": len(got), "expected": expected,
                "deliveries_per_s": round(len(got) / max(1e-9, t_last - first_delivery), 1),
                "last_delivery_after_last_write_s": round(t_last - t_writes, 2),
                "delay_p50_ms": pct(delays, 0.5), "delay_p99_ms": pct(delays, 0.99),
                "delay_max_ms": pct(delays, 1.0),
                "sent_more_than_once": sum(1 for v in per_id.values() if v > 1),
                "deadlocks": (deadlocks(admin, dbname) - before) if admin and dbname else None,
                "receiver_ms": args.receiver_ms, "endpoints": args.endpoints, "writers": args.writers,
                "mean_delay_ms": round(statistics.mean(delays) * 1000, 1) if delays else None,
            }
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0
    finally:
        for s in servers:
            s.stop()
        if admin and dbname:
            import psycopg

            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    raise SystemExit(main())
