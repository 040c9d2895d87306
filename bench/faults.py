"""Fault scenario: a careful client, a flaky webhook receiver and widgets far behind, through kill -9.

    .venv/bin/python bench/faults.py                                  # all three set-ups, 3,000 messages each
    .venv/bin/python bench/faults.py --setup sqlite --messages 1200 --json faults.json

For each set-up — ``sqlite`` (one instance), ``postgres`` (one instance on PostgreSQL + Redis),
``postgres-2`` (two instances on one PostgreSQL + Redis, the first killed for good mid-burst) —
it starts real uvicorn processes (private PostgreSQL and Redis servers on free ports, so it
disturbs no one), then:

- 16 writers post ``--messages`` messages through the REST API into a few conversations, each
  with a ``client_message_id``; a connection error, a timeout or a 5xx is retried with the same
  id (through any live instance) until the server acknowledges it;
- a webhook receiver on loopback answers 500 to about a tenth of first attempts and records
  every ``webhook-id``;
- the server is killed with SIGKILL mid-burst and restarted (one instance), or killed for good
  (two instances);
- per conversation, a "live" widget follows it throughout (resuming after each kill) and a
  "far" widget drops off and resumes from its last ``seq`` more than 200 messages behind —
  the last time after every write has finished, so only the resume itself can bring it up to date.

Then it checks every invariant (``Report.violations``) and reports the figures (``Report.figures``):
docs/soak.md has them. tests/test_soak.py runs a short form of each set-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.actors import ORIGIN, Cluster, FlakyReceiver, Instance, Widget, Writers  # noqa: E402 - after the path tweak
from tests.conftest import migrated_sqlite  # noqa: E402

SETUPS = ("sqlite", "postgres", "postgres-2")
_T0 = time.monotonic()


def log(what: str) -> None:
    print(f"[faults {time.monotonic() - _T0:7.1f}s] {what}", file=sys.stderr, flush=True)


@dataclass
class Config:
    setup: str = "sqlite"
    messages: int = 3000
    writers: int = 16
    conversations: int = 4
    kills: int = 3  # one instance: kill -9 and restart this many times; two instances: the first dies for good
    down_seconds: float = 1.0  # how long a killed single instance stays down
    far_behind: int = 250  # a far widget resumes once its conversation is this many messages ahead
    flaky_share: int = 10  # one first attempt in this many is answered 500
    abandon_share: int = 50  # one request in this many the client drops unanswered (as a timeout would), then retries
    delivery_bound: float = 20.0  # seconds from acknowledgement to delivery, time with no instance up excepted
    resume_timeout: float = 20.0  # a widget resuming after the writes must have everything within this
    drain_timeout: float = 150.0  # how long to wait for the last webhook deliveries
    seed: int = 16
    env: dict[str, str] = field(default_factory=dict)  # extra server settings


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


@dataclass
class Report:
    setup: str
    figures: dict[str, Any]
    violations: dict[str, list[str]]  # invariant -> what broke it (see ``check``)

    def summary(self) -> str:
        return json.dumps({"setup": self.setup, "violations": self.violations, **self.figures}, indent=2)


@contextlib.contextmanager
def services(cfg: Config, workdir: Path) -> Any:
    """(database URL, broker URL) for the set-up: SQLite and memory://, or private PostgreSQL and Redis."""
    if cfg.setup == "sqlite":
        yield migrated_sqlite(workdir), "memory://"
        return
    from app.settings import Settings
    from app.store.migrate import upgrade
    from tests.services import PrivatePostgres, PrivateRedis

    datadir = Path(tempfile.mkdtemp(prefix="bc-faults-pg-"))
    shutil.chown(datadir, "postgres", "postgres")
    pg = PrivatePostgres(datadir).init()
    redis = PrivateRedis(workdir).start()
    try:
        upgrade(Settings(database_url=pg.url, env="test"))
        yield pg.url, redis.url
    finally:
        redis.stop()
        with contextlib.suppress(Exception):
            pg.stop()
        shutil.rmtree(datadir, ignore_errors=True)


def pg_deadlocks(database_url: str) -> dict[str, Any]:
    """How many deadlocks the private cluster detected, in which relations, and the first one in full
    (from the server log, which the scenario's own cluster lets a superuser read)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()
        log = str(conn.execute("SELECT pg_read_file('log')").fetchone()[0])  # type: ignore[index]
    lines = log.splitlines()
    starts = [i for i, line in enumerate(lines) if "deadlock detected" in line]
    relations: dict[str, int] = {}
    for i in starts:
        for line in lines[i + 1:i + 12]:
            if "CONTEXT:" in line and 'relation "' in line:
                name = line.split('relation "', 1)[1].split('"', 1)[0]
                relations[name] = relations.get(name, 0) + 1
                break
    first = "\n".join(lines[starts[0]:starts[0] + 12])[:3000] if starts else ""
    return {"count": int(row[0]) if row else 0, "relations": relations, "first": first}


async def open_conversation(srv: Instance, widget_key: str) -> tuple[dict[str, Any], str]:
    """A visitor's widget session and the conversation its first ``open`` makes."""
    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
        r = await http.post("/widget/v1/session", json={"widget_key": widget_key}, headers={"Origin": ORIGIN})
        r.raise_for_status()
        session = r.json()
    async with connect(srv.ws_url + session["socket_path"], origin=ORIGIN) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "auth", "token": session["session_token"]}))
        await ws.send(json.dumps({"type": "open"}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "conversation":
                return session, frame["conversation"]["id"]


async def add_endpoint(api: httpx.AsyncClient, url: str) -> None:
    (await api.post("/api/v1/webhook-endpoints", json={"url": url, "events": ["message.created"]})).raise_for_status()


async def stored_messages(srv: Instance, token: str, conversation: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    async with httpx.AsyncClient(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        while True:
            params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            r = await api.get(f"/api/v1/conversations/{conversation}/messages", params=params)
            r.raise_for_status()
            page = r.json()
            out += page["data"]
            if not (cursor := page["next_cursor"]):
                return out


async def slow_receiver_seconds(srv: Instance, count: int = 40, delay: float = 0.3) -> float:
    """Seconds until ``count`` messages posted at once reach a receiver that takes ``delay`` per answer."""
    tenant = srv.new_tenant("Slow receiver")
    with FlakyReceiver(share=0, delay=delay) as rx:
        async with httpx.AsyncClient(base_url=srv.url, headers=tenant.headers, timeout=30) as api:
            await add_endpoint(api, rx.url)
            user = (await api.post("/api/v1/users", json={"name": "Slow"})).json()
            conv = (await api.post("/api/v1/conversations", json={"user_id": user["id"]})).json()
            started = time.monotonic()
            for i in range(count):
                body = {"message_parts": [{"text": {"content": f"slow {i}"}}]}
                (await api.post(f"/api/v1/conversations/{conv['id']}/messages", json=body)).raise_for_status()
        while len(rx.delivered()) < count and time.monotonic() < started + 120:
            await asyncio.sleep(0.2)
        return round(max(first for _, first, _ in rx.delivered().values()) - started, 2)


async def run_setup(cfg: Config, workdir: Path, slow_receiver: bool = True) -> Report:
    """One set-up, start to finish: servers, traffic and faults, then every check."""
    with services(cfg, workdir) as (database_url, broker_url), FlakyReceiver(cfg.flaky_share) as rx:
        env = {"BACKCHANNEL_BROKER_URL": broker_url, **cfg.env}
        n = 2 if cfg.setup == "postgres-2" else 1
        instances = [Instance(database_url, workdir, env) for _ in range(n)]
        cluster = Cluster(instances)
        try:
            for srv in instances:
                await asyncio.to_thread(srv.start)
            log(f"{cfg.setup}: {n} instance(s) up; {cfg.messages} messages from {cfg.writers} writers")
            return await _scenario(cfg, cluster, rx, database_url, slow_receiver)
        finally:
            for srv in instances:
                srv.retire()


async def _scenario(cfg: Config, cluster: Cluster, rx: FlakyReceiver, database_url: str, slow: bool) -> Report:
    first = cluster.instances[0]
    tenant = first.new_tenant("Faults")
    async with httpx.AsyncClient(base_url=first.url, headers=tenant.headers, timeout=10) as api:
        await add_endpoint(api, rx.url)
    opened = [await open_conversation(first, tenant.widget_key) for _ in range(cfg.conversations)]
    conversations = [conv for _, conv in opened]
    last = len(cluster.instances) - 1  # live widgets sit on the instance that dies; far ones elsewhere when possible
    live = [Widget(cluster, 0, session, conv) for session, conv in opened]
    far = [Widget(cluster, last, session, conv) for session, conv in opened]
    writers = Writers(cluster, tenant.token, conversations, messages=cfg.messages, writers=cfg.writers,
                      abandon_share=cfg.abandon_share, seed=cfg.seed)
    state: dict[str, Any] = {"done": False, "targets": None, "deadline": float("inf")}
    final = asyncio.Event()

    def settled(w: Widget) -> bool:
        return (state["targets"] is not None and w.last_seq >= state["targets"][w.conversation]) or \
            time.monotonic() > state["deadline"]

    async def far_widget(w: Widget) -> None:
        await w.follow(lambda: w.last_seq >= 10 or state["done"])
        # Resume mid-burst only while enough is left to be far behind again when the writes end.
        share = cfg.messages / cfg.conversations
        while not state["done"]:
            while not state["done"] and (writers.head[w.conversation] - w.last_seq < cfg.far_behind
                                         or writers.head[w.conversation] + 1.3 * cfg.far_behind > share):
                await asyncio.sleep(0.05)
            if state["done"]:
                break
            target, started = writers.head[w.conversation], time.monotonic()
            behind = target - w.last_seq
            await w.follow(lambda: w.last_seq >= target or time.monotonic() > started + cfg.resume_timeout)  # noqa: B023
            w.resumes.append({"behind": behind, "seconds": round(time.monotonic() - started, 2), "after_writes": 0})
        await final.wait()
        behind, started = state["targets"][w.conversation] - w.last_seq, time.monotonic()
        await w.follow(lambda: settled(w))
        w.resumes.append({"behind": behind, "seconds": round(time.monotonic() - started, 2), "after_writes": 1})

    async def killer() -> None:
        plan = [0.4] if len(cluster.instances) > 1 else [(k + 1) / (cfg.kills + 1) for k in range(cfg.kills)]
        for share in plan[: max(cfg.kills, 0)]:
            while len(writers.acks) < share * cfg.messages:
                await asyncio.sleep(0.01)
            log(f"kill -9 at {len(writers.acks)} acknowledged")
            await cluster.kill(0, None if len(cluster.instances) > 1 else cfg.down_seconds)
            log("restarted" if cluster.up[0] else "the first instance stays dead")

    async def live_widget(w: Widget) -> None:
        await w.follow(lambda: settled(w))

    widget_tasks = [asyncio.create_task(live_widget(w)) for w in live]
    widget_tasks += [asyncio.create_task(far_widget(w)) for w in far]
    await asyncio.gather(writers.run(), killer())
    state["done"] = True
    log(f"writes done: {len(writers.acks)} acknowledged, {writers.retries} retries")
    reader = cluster.alive()[0]
    stored = {conv: await stored_messages(reader, tenant.token, conv) for conv in conversations}
    state["targets"] = {conv: (msgs[-1]["seq"] if msgs else 0) for conv, msgs in stored.items()}
    state["deadline"] = time.monotonic() + cfg.resume_timeout
    final.set()
    await asyncio.gather(*widget_tasks)
    log("widgets settled; waiting for the last webhook deliveries")

    all_ids = {m["id"] for msgs in stored.values() for m in msgs}
    drain_until = time.monotonic() + cfg.drain_timeout
    while not all_ids <= {mid for mid, (_, at, _) in rx.delivered().items() if at < float("inf")} \
            and time.monotonic() < drain_until:
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.5)  # a duplicate delivery, if one were coming, would arrive now
    log("checking")
    figures, violations = check(cfg, cluster, writers, rx, stored, live, far)
    if cfg.setup != "sqlite":
        deadlocks = pg_deadlocks(database_url)
        figures["postgres_deadlocks"] = deadlocks["count"]
        figures["postgres_deadlock_relations"] = deadlocks["relations"]
        figures["postgres_first_deadlock"] = deadlocks["first"]
        if deadlocks["count"]:
            violations.setdefault("no_deadlock", []).append(
                f"PostgreSQL detected {deadlocks['count']} deadlocks (in {deadlocks['relations']})")
    if slow:
        figures["slow_receiver_40_messages_at_300ms_s"] = await slow_receiver_seconds(reader)
    return Report(cfg.setup, figures, violations)


def check(cfg: Config, cluster: Cluster, writers: Writers, rx: FlakyReceiver, stored: dict[str, list[dict[str, Any]]],
          live: list[Widget], far: list[Widget]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The figures, and every invariant broken: ``acknowledged``, ``stored_once``, ``seq_gap_free``,
    ``no_5xx``, ``webhook_delivered``, ``one_webhook_id``, ``delivery_bound``, ``widgets``, and
    ``scenario`` (the run was too small to prove what it should); on PostgreSQL ``_scenario`` adds
    ``no_deadlock``."""
    broken: dict[str, list[str]] = {}

    def bad(invariant: str, what: str) -> None:
        broken.setdefault(invariant, []).append(what)

    messages = [m for msgs in stored.values() for m in msgs]
    by_id = {m["id"]: m for m in messages}

    # The careful client: every acknowledged message stored exactly once; seq gap-free.
    if len(writers.acks) != cfg.messages:
        bad("acknowledged", f"{cfg.messages - len(writers.acks)} messages never acknowledged")
    cmids = [m.get("client_message_id") for m in messages]
    twice = len(cmids) - len(set(cmids))
    if twice:
        bad("stored_once", f"{twice} client_message_ids stored more than once")
    missing = [cmid for cmid, ack in writers.acks.items() if ack.message_id not in by_id]
    if missing:
        bad("acknowledged", f"{len(missing)} acknowledged messages not stored, e.g. {missing[:3]}")
    if len(messages) != len(writers.acks):
        bad("stored_once", f"{len(messages)} messages stored for {len(writers.acks)} acknowledged")
    gappy = [conv for conv, msgs in stored.items() if [m["seq"] for m in msgs] != list(range(1, len(msgs) + 1))]
    if gappy:
        bad("seq_gap_free", f"seq not gap-free in {len(gappy)} conversations")

    # Answers: no 5xx outside a kill window (with a survivor to answer: none at all).
    survivor = len(cluster.instances) > 1
    server_errors = [(at, status) for at, _, status in writers.statuses if status >= 500]
    outside = [s for at, s in server_errors if survivor or not cluster.in_kill_window(at)]
    if outside:
        bad("no_5xx", f"{len(outside)} 5xx answers outside a kill window: {sorted(set(outside))}")

    # Webhooks: every message.created delivered, one webhook-id per message, within the bound.
    attempts = rx.attempts
    delivered = rx.delivered(attempts)
    undelivered = [mid for mid in by_id if delivered.get(mid, (set(), float("inf"), 0))[1] == float("inf")]
    if undelivered:
        bad("webhook_delivered", f"{len(undelivered)} message.created never delivered within the drain time")
    several = [mid for mid in by_id if len(delivered.get(mid, (set(), 0, 0))[0]) > 1]
    if several:
        bad("one_webhook_id", f"{len(several)} messages delivered under more than one webhook-id")
    flaky = {mid for _, mid, status, _ in attempts if status >= 500}
    latency: dict[str, float] = {}
    clean: list[float] = []
    for ack in writers.acks.values():
        if ack.message_id in by_id and ack.message_id not in undelivered:
            at = delivered[ack.message_id][1]
            latency[ack.message_id] = max(0.0, at - ack.at - cluster.downtime_between(ack.at, at))
            if ack.message_id not in flaky:
                clean.append(latency[ack.message_id])
    # What a killed process held (acknowledged before the kill, not delivered by then): seconds from
    # the set-up answering again (the restart, or at once with a survivor) to the delivery.
    after_kill: list[float] = []
    for ack in writers.acks.values():
        at = delivered.get(ack.message_id, (set(), float("inf"), 0))[1]
        kill = next(((start, end) for start, end in cluster.kills if ack.at < start < at < float("inf")), None)
        if kill is not None:
            back = kill[1] if kill[1] is not None else kill[0]
            after_kill.append(max(0.0, at - back - cluster.downtime_between(back, at)))  # a later kill excepted
    late = [s for s in latency.values() if s > cfg.delivery_bound]
    if late:
        bad("delivery_bound", f"{len(late)} deliveries later than {cfg.delivery_bound:g} s after "
                              f"acknowledgement (max {max(late):.1f} s)")

    # Widgets: every frame once and in order, however far behind, with no newer message posted.
    widgets = {"live": live, "far": far}
    for role, group in widgets.items():
        for w in group:
            want = [m["seq"] for m in stored[w.conversation]]
            if w.seqs != want:
                got = set(w.seqs)
                bad("widgets", f"{role} widget on {w.conversation}: {len(w.seqs)} frames for {len(want)} messages "
                               f"({len(w.seqs) - len(got)} twice, {len(set(want) - got)} missing, "
                               f"last {w.last_seq}, in order: {w.seqs == sorted(w.seqs)})")
    final_resumes = [r for w in far for r in w.resumes if r["after_writes"]]
    if any(r["behind"] <= 200 for r in final_resumes):
        least = min(r["behind"] for r in final_resumes)
        bad("scenario", f"scenario too small: a far widget resumed only {least} behind")

    write_s = writers.finished - writers.started
    values = list(latency.values())
    statuses: dict[str, int] = {}
    for _, _, status in writers.statuses:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    figures = {
        "instances": len(cluster.instances),
        "kills": len(cluster.kills),
        "killed_for_good": sum(1 for _, end in cluster.kills if end is None),
        "outage_s": round(sum(end - start for start, end in cluster.outage), 2),
        "messages_acknowledged": len(writers.acks),
        "messages_stored": len(messages),
        "write_seconds": round(write_s, 1),
        "writes_per_s": round(len(writers.acks) / write_s, 1) if write_s else 0,
        "answers_by_status": statuses,
        "replays_200": sum(1 for a in writers.acks.values() if a.status == 200),
        "requests_abandoned": writers.abandoned,
        "retries": writers.retries,
        "connection_errors": len(writers.errors),
        "5xx": len(server_errors),
        "5xx_outside_kill_windows": len(outside),
        "webhook_attempts": len(attempts),
        "webhook_500s_injected": sum(1 for _, _, status, _ in attempts if status >= 500),
        "webhook_duplicate_2xx": sum(max(0, ok - 1) for _, _, ok in delivered.values()),
        "delivery_s": {"p50": round(percentile(values, 50), 2), "p90": round(percentile(values, 90), 2),
                       "p99": round(percentile(values, 99), 2), "max": round(max(values, default=0), 2)},
        # The same, for the messages whose first attempt was not answered 500 (no retry by design).
        "delivery_first_attempt_ok_s": {"p50": round(percentile(clean, 50), 2), "p90": round(percentile(clean, 90), 2),
                                        "p99": round(percentile(clean, 99), 2), "n": len(clean)},
        "deliveries_over_bound": len(late),
        "held_at_a_kill_delivered_after_s": {"p50": round(percentile(after_kill, 50), 2),
                                              "max": round(max(after_kill, default=0), 2), "n": len(after_kill)},
        "widget_connects": {role: sum(w.connects for w in group) for role, group in widgets.items()},
        # A live widget cut off by a kill: seconds until ``ready`` on a new socket (a restart, or the survivor).
        "live_widget_back_after_s": {"max": round(max((g for w in live for g in w.back_after), default=0), 2),
                                     "n": sum(len(w.back_after) for w in live)},
        "far_resumes": [r for w in far for r in w.resumes],
    }
    return figures, broken


async def run_all(cfgs: list[Config]) -> list[Report]:
    reports = []
    for cfg in cfgs:
        workdir = Path(tempfile.mkdtemp(prefix=f"bc-faults-{cfg.setup}-"))
        try:
            reports.append(await run_setup(cfg, workdir))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", action="append", choices=SETUPS, help="default: all three")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--kills", type=int, default=3, help="kill -9 and restart (one instance)")
    parser.add_argument("--json", type=Path, help="write the reports here")
    args = parser.parse_args()
    cfgs = [Config(setup=s, messages=args.messages, writers=args.writers, conversations=args.conversations,
                   kills=args.kills) for s in (args.setup or SETUPS)]
    reports = asyncio.run(run_all(cfgs))
    out = [{"setup": r.setup, "violations": r.violations, **r.figures} for r in reports]
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    for r in reports:
        print(r.summary())
    return 1 if any(r.violations for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
