"""``python -m bench.data [--quick | --conversations N] [--postgres URL]``: erasure and retention under load (issue 21).

Not a section of ``scripts/bench`` (whose sections fit a fixed time budget): run it on its own.

1. Erase a user with 10,000 messages (and an outbox event per message, as posting them would
   have left): the time of ``DELETE /api/v1/users/{id}``, which includes the file store and,
   on SQLite, the WAL checkpoint.
2. Retention over many resolved conversations (20,000; ``--quick`` 2,000; each with two
   messages) while a bot posts ``POST /conversations/{id}/messages`` at a steady rate: the
   latency of those posts before the job and while it runs (p50, p99, max), and how fast the
   job erases. The job runs with its defaults (20 conversations a step, 0.05 s pause).

The data is written straight into the database (the ORM, in bulk), not through the API, so
the set-up takes seconds rather than minutes.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import percentiles
from bench.servers import PostgresDatabase, Server, backchannel_env, seed, sqlite_database


def bulk_customer(database_url: str, workspace_id: str, messages: int, *, events: bool) -> str:
    """A user with one conversation of ``messages`` messages (and their outbox events)."""
    from app.ids import new_id, utcnow
    from app.settings import Settings
    from app.store.engine import make_engine, session_scope
    from app.store.tables import Conversation, Event, Message, User

    engine = make_engine(Settings(database_url=database_url, env="test"))
    now = utcnow()
    user_id, conv_id = new_id("usr"), new_id("cnv")
    try:
        with session_scope(engine) as s:
            s.add(User(id=user_id, workspace_id=workspace_id, name="Erase me", email="erase@example.com"))
            s.flush()
            s.add(Conversation(id=conv_id, workspace_id=workspace_id, user_id=user_id, last_message_seq=messages))
            s.flush()
            for n in range(1, messages + 1):
                text = f"message {n} of the customer to erase"
                message = {"id": new_id("msg"), "conversation_id": conv_id, "seq": n,
                           "message_parts": [{"text": {"content": text}}]}  # fmt: skip
                s.add(Message(workspace_id=workspace_id, actor_type="user", actor_id=user_id, created_at=now,
                              **message))  # fmt: skip
                if events:
                    payload = {"type": "message.created", "data": {"message": message, "conversation": {"id": conv_id,
                               "user_id": user_id}}}  # fmt: skip
                    s.add(Event(id=new_id("msg"), workspace_id=workspace_id, type="message.created", payload=payload))
    finally:
        engine.dispose()
    return user_id


def bulk_resolved(database_url: str, workspace_id: str, count: int, days_ago: int = 60) -> None:
    """``count`` resolved conversations (two messages each), last changed ``days_ago`` days ago."""
    from app.ids import new_id, utcnow
    from app.settings import Settings
    from app.store.engine import make_engine, session_scope
    from app.store.tables import Conversation, Message, User

    engine = make_engine(Settings(database_url=database_url, env="test"))
    old = utcnow() - timedelta(days=days_ago)
    try:
        for start in range(0, count, 2000):
            with session_scope(engine) as s:
                ids = [(new_id("usr"), new_id("cnv")) for _ in range(start, min(count, start + 2000))]
                s.add_all([User(id=uid, workspace_id=workspace_id) for uid, _ in ids])
                s.flush()
                s.add_all([Conversation(id=cid, workspace_id=workspace_id, user_id=uid, status="resolved",
                                        last_message_seq=2, created_at=old, updated_at=old) for uid, cid in ids])
                s.flush()
                s.add_all([Message(id=new_id("msg"), workspace_id=workspace_id, conversation_id=cid, seq=seq,
                                   actor_type="user", actor_id=uid, created_at=old,
                                   message_parts=[{"text": {"content": "an old question"}}])
                           for uid, cid in ids for seq in (1, 2)])  # fmt: skip
    finally:
        engine.dispose()


def resolved_left(database_url: str, workspace_id: str) -> int:
    from sqlalchemy import text

    from app.settings import Settings
    from app.store.engine import make_engine

    engine = make_engine(Settings(database_url=database_url, env="test"), for_writes=False)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM conversation WHERE workspace_id = :ws AND "
                                         "status = 'resolved'"), {"ws": workspace_id}).scalar() or 0)  # fmt: skip
    finally:
        engine.dispose()


class Poster:
    """A bot posting to one conversation at ``rate`` messages a second; records each latency."""

    def __init__(self, url: str, token: str, conversation_id: str, rate: float) -> None:
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self.path = f"/api/v1/conversations/{conversation_id}/messages"
        self.rate = rate
        self.phase = "before"
        self.latencies: dict[str, list[float]] = {"before": [], "during": []}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"actor": {"type": "bot"}, "message_parts": [{"text": {"content": "still answering"}}]}
        next_at = time.perf_counter()
        while not self._stop.is_set():
            t0 = time.perf_counter()
            r = self.client.post(self.path, json=body)
            elapsed = time.perf_counter() - t0
            if r.status_code == 201:
                self.latencies[self.phase].append(elapsed)
            else:
                self.errors += 1
            next_at += 1 / self.rate
            time.sleep(max(0.0, next_at - time.perf_counter()))

    def __enter__(self) -> Poster:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()


def run(database: str, quick: bool, postgres: str, workdir: Path, conversations: int | None = None) -> dict[str, Any]:
    pgdb = None
    if database == "postgres":
        pgdb = PostgresDatabase(postgres)
        url = pgdb.url
    else:
        url = sqlite_database(workdir)
    tenant = seed(url, 0)
    env = {**backchannel_env(url), "BACKCHANNEL_FILE_STORAGE": f"file://{workdir}/files",
           "BACKCHANNEL_RETENTION_INTERVAL_SECONDS": "3600"}  # fmt: skip
    server = Server("backchannel", workdir, env).start()
    out: dict[str, Any] = {"database": database}
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tenant.token}"}, timeout=300) as api:
            # 1. erasure
            user_id = bulk_customer(url, tenant.workspace_id, 10_000, events=True)
            t0 = time.perf_counter()
            r = api.delete(f"/api/v1/users/{user_id}")
            out["erase_10k_messages_s"] = round(time.perf_counter() - t0, 3)
            assert r.status_code == 204, r.text

            # 2. retention under load
            count = conversations or (2_000 if quick else 20_000)
            t0 = time.perf_counter()
            bulk_resolved(url, tenant.workspace_id, count)
            out["retention_seed_s"] = round(time.perf_counter() - t0, 1)
            user = api.post("/api/v1/users", json={"name": "Busy"}).json()
            conv = api.post("/api/v1/conversations", json={"user_id": user["id"]}).json()
            with Poster(server.url, tenant.token, conv["id"], rate=50) as poster:
                time.sleep(3)
                poster.phase = "during"
                t0 = time.perf_counter()
                api.patch("/api/v1/workspace", json={"retention_days": 30}).raise_for_status()
                deadline = t0 + max(120 if quick else 600, count / 100)  # bounded: at least 100 a second
                while resolved_left(url, tenant.workspace_id) and time.perf_counter() < deadline:
                    time.sleep(0.5)
                took = time.perf_counter() - t0
            left = resolved_left(url, tenant.workspace_id)
            out.update(
                retention_conversations=count,
                retention_left=left,
                retention_s=round(took, 1),
                retention_per_s=round((count - left) / took, 1),
                post_before=percentiles(poster.latencies["before"]),
                post_during=percentiles(poster.latencies["during"]),
                post_errors=poster.errors,
            )
    finally:
        server.stop()
        if pgdb is not None:
            pgdb.drop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 conversations for retention instead of 20,000")
    parser.add_argument("--conversations", type=int, help="resolved conversations for retention (e.g. 100000)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        r = run(args.database, args.quick, args.postgres, Path(tmp), args.conversations)
    print(f"database: {r['database']}")
    print(f"1. DELETE /users/{{id}} with 10,000 messages and 10,000 events: {r['erase_10k_messages_s']} s")
    print(f"2. retention: {r['retention_conversations'] - r['retention_left']} of {r['retention_conversations']} "
          f"resolved conversations erased in {r['retention_s']} s ({r['retention_per_s']}/s)")  # fmt: skip
    for phase in ("before", "during"):
        p = r[f"post_{phase}"]
        print(f"   POST …/messages at 50/s {phase} the job: p50 {p['p50']} ms, p99 {p['p99']} ms, max {p['max']} ms "
              f"(n={p['n']})")  # fmt: skip
    print(f"   refused posts: {r['post_errors']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
