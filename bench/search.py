"""``python -m bench.search [--quick] [--database sqlite|postgres]``: full-text search latency (issue 19).

Not a section of ``scripts/bench`` (whose sections fit a fixed time budget): run it on its own.

A workspace with 100,000 messages (``--quick``: 10,000) in conversations of 20, each with a
named customer, is written straight into the database (Core, in bulk: messages and their search
entries exactly as posting them would have left), then ``GET /api/v1/conversations?q=`` is timed
for a word in one conversation, a word in a fifth of them, a prefix, two words and a customer's
name: p50, p95 and max of 30 requests each, one at a time.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import percentiles
from bench.servers import PostgresDatabase, Server, backchannel_env, seed, sqlite_database

PER_CONVERSATION = 20
VOCABULARY = [f"w{n:04d}" for n in range(3000)]
QUERIES = {
    "rare word (1 conversation)": "zanzibar",
    "common word (~1/5 of conversations)": "refund",
    "prefix": "refu",
    "two words": "refund card",
    "customer name": "lovelace",
}


def bulk_messages(database_url: str, workspace_id: str, messages: int) -> None:
    """``messages`` messages in conversations of ``PER_CONVERSATION``, with their search entries."""
    from sqlalchemy import insert

    from app.ids import new_id, utcnow
    from app.settings import Settings
    from app.store import search
    from app.store.engine import make_engine, session_scope
    from app.store.tables import Conversation, Message, SearchEntry, User

    rng = random.Random(19)
    engine = make_engine(Settings(database_url=database_url, env="test"))
    now = utcnow()
    conversations = messages // PER_CONVERSATION
    try:
        for start in range(0, conversations, 500):
            users, convs, msgs, entries = [], [], [], []
            for n in range(start, min(conversations, start + 500)):
                uid, cid = new_id("usr"), new_id("cnv")
                name = "Ada Lovelace" if n == 7 else f"Customer {n}"
                users.append({"id": uid, "workspace_id": workspace_id, "name": name, "email": f"c{n}@example.com",
                              "properties": {}, "created_at": now, "updated_at": now})  # fmt: skip
                convs.append({"id": cid, "workspace_id": workspace_id, "user_id": uid, "status": "open",
                              "last_message_seq": PER_CONVERSATION, "created_at": now, "updated_at": now})  # fmt: skip
                profile = search.search_text(f"{name} c{n}@example.com")
                entries.append({"workspace_id": workspace_id, "user_id": uid, "conversation_id": None,
                                "message_id": None, "body": profile})  # fmt: skip
                for seq in range(1, PER_CONVERSATION + 1):
                    words = rng.choices(VOCABULARY, k=12)
                    if seq == 3 and n % 5 == 0:
                        words += ["refund", "card"]
                    if n == conversations // 2 and seq == 10:
                        words.append("zanzibar")
                    parts = [{"text": {"content": " ".join(words)}}]
                    mid = new_id("msg")
                    msgs.append({"id": mid, "workspace_id": workspace_id, "conversation_id": cid, "seq": seq,
                                 "actor_type": "user" if seq % 2 else "bot", "actor_id": None,
                                 "message_parts": parts, "reply_parts": [], "reply_to": None,
                                 "client_message_id": None, "created_at": now, "private": False})  # fmt: skip
                    entries.append({"workspace_id": workspace_id, "user_id": uid, "conversation_id": cid,
                                    "message_id": mid, "body": search.message_text(parts)})  # fmt: skip
            with session_scope(engine) as s:
                conn = s.connection()
                conn.execute(insert(User), users)
                conn.execute(insert(Conversation), convs)
                conn.execute(insert(Message), msgs)
                conn.execute(insert(SearchEntry), entries)
    finally:
        engine.dispose()


def run(database: str, quick: bool, postgres: str, workdir: Path) -> dict[str, Any]:
    pgdb = None
    if database == "postgres":
        pgdb = PostgresDatabase(postgres)
        url = pgdb.url
    else:
        url = sqlite_database(workdir)
    tenant = seed(url, 0)
    count = 10_000 if quick else 100_000
    t0 = time.perf_counter()
    bulk_messages(url, tenant.workspace_id, count)
    out: dict[str, Any] = {"database": database, "messages": count, "seed_s": round(time.perf_counter() - t0, 1)}
    if pgdb is not None:  # fresh statistics, as autovacuum would have gathered them by now
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
    server = Server("backchannel", workdir, backchannel_env(url))
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tenant.token}"}, timeout=60) as api:
            for label, q in QUERIES.items():
                latencies, found = [], 0
                for _ in range(30):
                    t = time.perf_counter()
                    r = api.get("/api/v1/conversations", params={"q": q, "limit": 50})
                    latencies.append(time.perf_counter() - t)
                    r.raise_for_status()
                    found = len(r.json()["data"])
                out[label] = {**percentiles(latencies), "found": found}
    finally:
        server.stop()
        if pgdb is not None:
            pgdb.drop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 messages instead of 100,000")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        r = run(args.database, args.quick, args.postgres, Path(tmp))
    print(f"database: {r['database']}, {r['messages']:,} messages (seeded in {r['seed_s']} s)")
    for label in QUERIES:
        p = r[label]
        print(f"  ?q= {label}: p50 {p['p50']} ms, p95 {p['p95']} ms, max {p['max']} ms "
              f"({p['found']} conversations on the first page)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
