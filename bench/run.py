"""``scripts/bench``: run the benchmarks, each against its baseline in the same run, and print tables.

    scripts/bench                      # everything (about 11½ minutes on an unloaded 2-core machine)
    scripts/bench --quick              # shorter and smaller, every section (about 3 minutes)
    scripts/bench --only e2e,rest      # a subset: e2e, idle, rest, webhooks, growth, files, handover
    scripts/bench --profile            # also py-spy the server during the REST and e2e runs

Every figure is printed with its ratio to the bare baseline measured in the same run, because
absolute numbers on a shared machine are noise; the ratios are what carries between runs.
Each section prints its wall time, its planned time (``Plan.budget``) and the CPU the bench's
own processes used; the run ends with every target of issue 9, measured, met or missed.

Where the time goes, and what is shared: servers boot in parallel; SQLite and PostgreSQL are
migrated once per run and copied; section 2 grows one server 1k → 10k → 50k instead of
connecting three; section 5 reuses section 1's sockets (1,000, then 100 of them), section 2's
largest level, section 1's bare relay, and runs its webhooks on the servers of its PostgreSQL runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import files as bench_files
from bench import handover as bench_handover
from bench.servers import (
    PostgresDatabase,
    Server,
    Tenant,
    backchannel_env,
    die_with_parent,
    free_port,
    is_loopback,
    postgres_available,
    redis_available,
    seed,
    service_meters,
    sqlite_database,
    wait_ready,
)

ROOT = Path(__file__).resolve().parent.parent
FD_MARGIN = 1000  # open files a server or load generator needs besides its sockets
BENCHES = ("e2e", "idle", "rest", "webhooks", "growth", "files", "handover")
TARGETS = {
    "e2e_rate": 2000.0,  # messages/s API -> widget at 1,000 connections
    "e2e_p99_ms": 50.0,
    "e2e_ratio": 0.5,
    "idle_kib": 20.0,  # issue 24
    "idle_held": 50000,
    "post_sqlite": 1500.0,
    "post_postgres": 1500.0,  # issue 24 (was 1,000 in issue 9)
    "e2e_cpu_ratio": 0.25,  # issue 24: bare relay CPU per message / Backchannel's (SQLite, as fast as it goes)
    "e2e_paced": 1000.0,  # issue 24: p99 at this pace (1,000 sockets, SQLite) …
    "e2e_paced_p99_ms": 50.0,
    "pg_e2e_rate": 1200.0,  # issue 24: PostgreSQL + Redis, one instance, 1,000 sockets
    "pg_e2e_cpu_ms": 0.7,  # … CPU ms per message in the app process
    "rest_p99_ms": 100.0,
    "rest_ratio": 0.3,
    "webhook_rate": 1000.0,
    "webhook_p99_ms": 250.0,
    "slow_effect": 0.10,
    "upload_rss_growth_mib": 10.0,  # a 20 MiB upload must not be held in memory
}


# -- output ------------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in header]] + [["—" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    say(f"\n{title}")
    say("| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |")
    say("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        say("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def ratio(a: float | None, b: float | None) -> str | None:
    if a is None or b is None or b == 0:
        return None
    return f"{a / b:.2f}"


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "MISSED")


def machine() -> dict[str, Any]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def raise_fd_limit(needed: int) -> int:
    """Open files (``ulimit -n``) for this process and the servers and load generators it starts
    (they inherit it): the soft limit up to the hard one, and the hard one up to ``needed`` where
    this process may (root, or CAP_SYS_RESOURCE). Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, hard if hard != resource.RLIM_INFINITY else needed)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            want = needed
        except (ValueError, OSError):
            pass  # not allowed: the hard limit stays, and the largest idle level is cut to fit
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard) if hard != resource.RLIM_INFINITY else hard))
        say(f"raised the open-files limit from {soft} to {want} (ulimit -n)")
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- running the load generator ------------------------------------------------------------


def loadgen(spec: dict[str, Any], workdir: Path, on_event: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """Run ``bench.loadgen`` on ``spec`` in its own process and return its result. Killed
    (and an error raised) if it is still running ``spec["timeout"] + 30`` seconds later."""
    spec = {"run_id": uuid.uuid4().hex[:8], **spec}
    path = workdir / f"spec-{spec['run_id']}.json"
    path.write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "bench.loadgen", str(path)]
    limit = spec.get("timeout", 300) + 30
    err_path = workdir / f"loadgen-{spec['run_id']}.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, preexec_fn=die_with_parent
        )
    watchdog = threading.Timer(limit, proc.kill)  # a silent, stuck load generator cannot hold the bench
    watchdog.daemon = True
    watchdog.start()
    result = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "result":
                result = event["result"]
            elif on_event is not None:
                on_event(event)
        proc.wait(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if result is None:
        text = err_path.read_text(errors="replace")
        raise RuntimeError(f"load generator failed (exit {proc.returncode}; limit {limit:g} s):\n{text[-3000:]}")
    return result


class CpuMeter:
    """Samples the servers' CPU time at each phase's start and end (events from the load
    generator): CPU milliseconds per request hold up on a shared machine far better than
    requests per second, which depend on how much of the CPU the server was given.

    Where the servers use PostgreSQL or Redis, their CPU is sampled too (``service_meters``),
    so a message's cost is known in each of the three: the scaling model (5d) is built on it."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.services = service_meters(servers)
        self.started: dict[str, dict[str, float]] = {}
        self.used: dict[str, dict[str, float]] = {}
        self.walls: dict[str, float] = {}

    def total(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers)

    def sample(self) -> dict[str, float]:
        out = {"app": self.total()}
        for name, meter in self.services.items():
            with contextlib.suppress(Exception):  # a service we could not read: its figure stays empty
                out[name] = meter()
        return out

    def __call__(self, event: dict[str, Any]) -> None:
        if event["event"] == "phase_start":
            self.started[event["name"]] = self.sample()
            self.walls[event["name"]] = time.monotonic()
        elif event["event"] == "phase" and event["name"] in self.started:
            start, end = self.started[event["name"]], self.sample()
            self.used[event["name"]] = {k: end[k] - v for k, v in start.items() if k in end}
            self.walls[event["name"]] = time.monotonic() - self.walls[event["name"]]

    def per(self, name: str, count: int, what: str = "app") -> float | None:
        if what not in self.used.get(name, {}) or not count:
            return None
        return round(1000 * self.used[name][what] / count, 3)

    def pct(self, name: str) -> float | None:
        if name not in self.used or not self.walls.get(name):
            return None
        return round(100 * self.used[name]["app"] / self.walls[name], 1)

    def annotate(self, phases: dict[str, Any], prefix: str = "") -> None:
        """Add the server CPU per delivered message and its CPU % to each end-to-end phase, and
        PostgreSQL's and Redis's CPU per message where the servers use them."""
        for name, phase in phases.items():
            phase["server_cpu_ms_per_msg"] = self.per(prefix + name, phase["delivered"])
            phase["server_cpu_pct"] = self.pct(prefix + name)
            for what in self.services:
                phase[f"{what}_cpu_ms_per_msg"] = self.per(prefix + name, phase["delivered"], what)


@dataclass(frozen=True)
class Plan:
    """How long and how large each section runs: ``FULL`` and ``QUICK``."""

    budget: dict[str, int]  # planned seconds per section on an unloaded 2-core machine
    e2e_connections: int
    e2e_seconds: float  # per phase (max, paced), section 1
    growth_seconds: float  # per phase, the growth rows (5a at 100 and the largest, 5b)
    small: int  # the smallest growth row, measured on section 1's server after closing the rest
    idle_levels: list[int]
    idle_connect_seconds: float  # allowed for connecting all levels (what is open then is measured)
    heartbeat: float
    rest_seconds: float
    rest_warmup: float
    burst_messages: int  # webhooks: posted as fast as 16 posters go, each to 4 endpoints
    steady_rate: float  # webhooks: messages/s (× 4 endpoints = deliveries/s offered)
    steady_seconds: float
    webhook_drain: float
    growth_connections: int  # 5b/5c on PostgreSQL + Redis
    growth_slow_phase: bool  # 5c also runs the slow-endpoint phase
    handover_conversations: int  # 11: widgets handed to a human, then an agent's reply
    email_conversations: int  # 11: customers away, two replies each by email

    def window(self) -> float:
        """The least time each idle level's heartbeats are watched: two heartbeats and a second
        (at least two pings per socket, so a gap between two)."""
        return 2 * self.heartbeat + 1


FULL = Plan(
    budget={"e2e": 65, "idle": 400, "rest": 45, "webhooks": 30, "growth": 80, "files": 25, "handover": 35},
    e2e_connections=1000, e2e_seconds=6.0, growth_seconds=4.0, small=100, idle_levels=[1000, 10000, 50000],
    idle_connect_seconds=300, heartbeat=10.0, rest_seconds=5.0, rest_warmup=1.0, burst_messages=300,
    steady_rate=50.0, steady_seconds=4.0,
    webhook_drain=30.0, growth_connections=1000, growth_slow_phase=True,
    handover_conversations=1000, email_conversations=500,
)  # fmt: skip
QUICK = Plan(
    budget={"e2e": 40, "idle": 50, "rest": 25, "webhooks": 12, "growth": 45, "files": 8, "handover": 14},
    e2e_connections=1000, e2e_seconds=3.0, growth_seconds=2.0, small=100, idle_levels=[1000, 2000],
    idle_connect_seconds=60, heartbeat=3.0, rest_seconds=3.0, rest_warmup=0.5, burst_messages=100,
    steady_rate=50.0, steady_seconds=2.0,
    webhook_drain=20.0, growth_connections=1000, growth_slow_phase=False,
    handover_conversations=200, email_conversations=100,
)  # fmt: skip


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.plan = QUICK if args.quick else FULL
        self.workdir = Path(tempfile.mkdtemp(prefix="bc-bench-"))
        self.results: dict[str, Any] = {"machine": machine(), "quick": self.quick}
        self.servers: list[Server] = []
        self.databases: list[PostgresDatabase] = []
        self.pg_template: PostgresDatabase | None = None
        self.pg, self.pg_why = self.reachable("PostgreSQL", args.postgres, postgres_available)
        self.redis, self.redis_why = self.reachable("Redis", args.redis, redis_available)
        self.profiles: dict[str, str] = {}
        self.checks: list[list[Any]] = []  # [section, target, measured, verdict]: the closing targets table
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds of this process and its (finished) children
        self.interrupted = False
        self.fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.section_started = time.monotonic()
        # Measurements a later section reuses instead of repeating (5. Growth).
        self.e2e_1k: tuple[int, dict[str, Any], dict[str, Any]] | None = None  # (n, bare, Backchannel)
        self.largest_e2e: tuple[int, dict[str, Any], dict[str, Any]] | None = None

    @staticmethod
    def reachable(name: str, url: str, probe: Callable[[str], str | None]) -> tuple[str | None, str]:
        if not is_loopback(url):
            return None, f"{name} at {url} is not on this machine (the bench talks to 127.0.0.1 only)"
        why = probe(url)
        return (url, "") if why is None else (None, f"{name} not reachable at {url} ({why.splitlines()[0][:120]})")

    # -- helpers ---------------------------------------------------------------------------

    def step(self, text: str) -> None:
        """A progress line with the seconds since the section started."""
        say(f"   [{time.monotonic() - self.section_started:6.1f} s] {text}")

    def check(self, section: str, target: str, measured: Any, ok: bool | None) -> list[Any]:
        row = [section, target, "—" if measured is None else measured, verdict(ok)]
        self.checks.append(row)
        return row[1:]

    def launch(self, kind: str, env: dict[str, str] | None = None, heartbeat: float = 20.0) -> Server:
        """Start a server process without waiting for it: servers boot in parallel, and
        ``ready`` waits for all of them."""
        server = Server(kind, self.workdir, env or {}, heartbeat=heartbeat)
        self.servers.append(server)
        return server.launch()

    def ready(self, *servers: Server) -> None:
        t0 = time.monotonic()
        wait_ready(list(servers), timeout=90)
        self.step(f"{len(servers)} server(s) up ({', '.join(s.kind for s in servers)}) "
                  f"{time.monotonic() - t0:.1f} s after launch")  # fmt: skip

    def stop(self, *servers: Server) -> None:
        for s in servers:
            s.stop()

    def database(self, db: str) -> str:
        """A fresh, migrated database: SQLite (a copy of one migrated per run) or PostgreSQL
        (a copy, ``CREATE DATABASE … TEMPLATE``, of one migrated per run)."""
        if db == "sqlite":
            return sqlite_database(self.workdir)
        assert self.pg is not None
        if self.pg_template is None:
            self.pg_template = PostgresDatabase(self.pg)
        pgdb = PostgresDatabase(self.pg, template=self.pg_template)
        self.databases.append(pgdb)
        return pgdb.url

    def backchannel(
        self, widgets: int, db: str = "sqlite", heartbeat: float = 20.0, instances: int = 1, broker: str = "memory://"
    ) -> tuple[list[Server], Tenant]:
        """Launch Backchannel on a fresh database seeded with ``widgets`` visitors (call ``ready``)."""
        t0 = time.monotonic()
        url = self.database(db)
        tenant = seed(url, widgets)
        self.step(f"{db} database made and {widgets} visitors seeded in {time.monotonic() - t0:.1f} s")
        env = backchannel_env(url, broker, heartbeat)
        return [self.launch("backchannel", env, heartbeat) for _ in range(instances)], tenant

    def spec(self, kind: str, servers: list[Server], tenant: Tenant | None, **kw: Any) -> dict[str, Any]:
        widgets = tenant.widgets if tenant else [{"conversation_id": f"room{i}"} for i in range(kw["connections"])]
        return {
            "kind": kind,
            "urls": [s.url for s in servers],
            "widget_key": tenant.widget_key if tenant else "",
            "token": tenant.token if tenant else "",
            "widgets": widgets,
            **kw,
        }

    def register_endpoints(self, server: Server, tenant: Tenant, urls: list[str]) -> None:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tenant.token}"}, timeout=30) as api:
            for url in urls:
                api.post(
                    "/api/v1/webhook-endpoints", json={"url": url, "events": ["message.created"]}
                ).raise_for_status()

    def profile_start(self, server: Server, name: str, seconds: float) -> subprocess.Popen[bytes] | None:
        if not self.args.profile:
            return None
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            say("   (py-spy not installed: no profile)")
            return None
        out = self.workdir / f"profile-{name}.txt"
        assert server.proc is not None
        cmd = [py_spy, "record", "--format", "raw", "--nonblocking", "--gil", "-r", "200", "-d", str(int(seconds)),
               "-o", str(out), "-p", str(server.proc.pid)]  # fmt: skip
        self.profiles[name] = str(out)
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)

    def profile_end(self, proc: subprocess.Popen[bytes] | None, name: str) -> None:
        if proc is None:
            return
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print_profile(name, Path(self.profiles[name]))

    # -- 1. end to end ---------------------------------------------------------------------

    def e2e_phases(self) -> list[dict[str, Any]]:
        return [
            {"name": "max", "concurrency": 32},
            {"name": "rate", "rate": TARGETS["e2e_rate"], "concurrency": 64},
            {"name": "paced", "rate": TARGETS["e2e_paced"], "concurrency": 64},
        ]

    def e2e_once(self, kind: str, connections: int, servers: list[Server], tenant: Tenant | None,
                 duration: float, then: tuple[int, ...] = (), profile: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Connect ``connections`` sockets, post phase by phase; then for each n in ``then``
        close all but n sockets and post again (``result["then"][str(n)]``)."""
        p = self.plan
        spec = self.spec(kind, servers, tenant, scenario="e2e", connections=connections, duration=duration,
                         phases=self.e2e_phases(), connect_concurrency=100,
                         then=[{"connections": n, "duration": p.growth_seconds} for n in then],
                         timeout=120 + connections / 20 + 30 * (1 + len(then)))  # fmt: skip
        prof = self.profile_start(servers[0], profile, duration * 2 + 5) if profile else None
        meter = CpuMeter(servers)
        t0 = time.monotonic()
        result = loadgen(spec, self.workdir, meter)
        self.profile_end(prof, profile or "")
        c = result["connect"]
        self.step(f"{kind}: {c['opened']}/{c['wanted']} sockets in {c['seconds']} s ({c['per_s']}/s), "
                  f"measured in {time.monotonic() - t0:.1f} s in all")  # fmt: skip
        meter.annotate(result["phases"])
        for n, sub in result.get("then", {}).items():
            meter.annotate(sub["phases"], prefix=f"{n}:")
        return result

    def bench_e2e(self) -> None:
        p = self.plan
        n = p.e2e_connections
        say(f"\n== 1. End to end: REST POST -> widget socket, {n} connected widgets "
            f"({p.e2e_seconds:g} s per phase; then the same at {p.small} sockets for 5. Growth)")  # fmt: skip
        base = self.launch("baseline")
        servers, tenant = self.backchannel(n)
        self.ready(base, *servers)
        rb = self.e2e_once("baseline", n, [base], None, p.e2e_seconds, then=(p.small,))
        self.stop(base)
        rc = self.e2e_once("backchannel", n, servers, tenant, p.e2e_seconds, then=(p.small,), profile="e2e")
        self.stop(*servers)
        self.results["e2e"] = {"baseline": rb, "backchannel": rc, "connections": n}
        self.e2e_1k = (n, rb, rc)
        self.print_e2e(f"1. End to end at {n} connections (SQLite, one process)", [(n, rb, rc)])
        mx, rt, pc = rc["phases"]["max"], rc["phases"]["rate"], rc["phases"]["paced"]
        r = mx["delivered_rate"] / max(1e-9, rb["phases"]["max"]["delivered_rate"])
        rows = [
            self.check("1", f"≥ {TARGETS['e2e_rate']:.0f} msg/s API → widget at {n} connections",
                       f"{mx['delivered_rate']} msg/s", mx["delivered_rate"] >= TARGETS["e2e_rate"]),
            self.check("1", f"p99 ≤ {TARGETS['e2e_p99_ms']:.0f} ms at {TARGETS['e2e_rate']:.0f} msg/s",
                       f"{rt['delay_ms']['p99']} ms at {rt['delivered_rate']} msg/s",
                       rt["delay_ms"]["p99"] is not None and rt["delay_ms"]["p99"] <= TARGETS["e2e_p99_ms"]
                       and rt["delivered_rate"] >= 0.95 * TARGETS["e2e_rate"]),
            self.check("1", f"≥ {TARGETS['e2e_ratio']} of the bare relay's throughput", f"{r:.2f}",
                       r >= TARGETS["e2e_ratio"]),
            self.check("1", f"CPU ratio to the bare relay ≥ {TARGETS['e2e_cpu_ratio']} (as fast as it goes)",
                       ratio(rb["phases"]["max"].get("server_cpu_ms_per_msg"), mx.get("server_cpu_ms_per_msg")),
                       float(ratio(rb["phases"]["max"].get("server_cpu_ms_per_msg"), mx.get("server_cpu_ms_per_msg"))
                             or 0) >= TARGETS["e2e_cpu_ratio"]),
            self.check("1", f"p99 ≤ {TARGETS['e2e_paced_p99_ms']:.0f} ms paced at {TARGETS['e2e_paced']:.0f} msg/s",
                       f"{pc['delay_ms']['p99']} ms at {pc['delivered_rate']} msg/s",
                       pc["delay_ms"]["p99"] is not None and pc["delay_ms"]["p99"] <= TARGETS["e2e_paced_p99_ms"]
                       and pc["delivered_rate"] >= 0.95 * TARGETS["e2e_paced"]),
            self.check("1", "every message delivered, once",
                       f"{mx['delivered']}/{mx['expected']}, {rt['delivered']}/{rt['expected']}, "
                       f"{pc['delivered']}/{pc['expected']}",
                       delivered_once(mx) and delivered_once(rt) and delivered_once(pc)),
        ]  # fmt: skip
        table("   targets", ["target", "Backchannel", "verdict"], rows)
        say(f"   load generator CPU: {rc['loadgen']['cpu_s']} s over {rc['loadgen']['wall_s']} s "
            f"(Backchannel run), {rb['loadgen']['cpu_s']} s over {rb['loadgen']['wall_s']} s (bare run)")  # fmt: skip

    def print_e2e(self, title: str, runs: list[tuple[Any, dict[str, Any], dict[str, Any]]]) -> None:
        rows = []
        for label, rb, rc in runs:
            for phase in [k for k in ("max", "rate", "paced") if k in rc["phases"] and k in rb["phases"]]:
                b, c = rb["phases"][phase], rc["phases"][phase]
                pace = TARGETS["e2e_rate"] if phase == "rate" else TARGETS["e2e_paced"]
                name = "as fast as 32 posters go" if phase == "max" else f"paced at {pace:.0f}/s"
                rows.append([
                    label, name, c["delivered_rate"], b["delivered_rate"], ratio(c["delivered_rate"], b["delivered_rate"]),
                    c["delay_ms"]["p50"], c["delay_ms"]["p95"], c["delay_ms"]["p99"], c["delay_ms"]["max"],
                    b["delay_ms"]["p99"], f"{c['delivered']}/{c['expected']}" + (f" +{c['duplicates']} dup" if c["duplicates"] else ""),
                    c.get("server_cpu_ms_per_msg"), b.get("server_cpu_ms_per_msg"),
                    ratio(b.get("server_cpu_ms_per_msg"), c.get("server_cpu_ms_per_msg")),
                    c.get("server_cpu_pct"), c["loadgen_cpu_pct"], c.get("pg_cpu_ms_per_msg"),
                    c.get("redis_cpu_ms_per_msg"),
                ])  # fmt: skip
        table(title, ["conns", "load", "msg/s", "bare msg/s", "ratio", "p50 ms", "p95 ms", "p99 ms", "max ms",
                      "bare p99", "delivered", "CPU ms/msg", "bare CPU ms/msg", "CPU ratio", "server CPU %",
                      "loadgen CPU %", "PostgreSQL CPU ms/msg", "Redis CPU ms/msg"], rows)  # fmt: skip

    # -- 2. idle connections ----------------------------------------------------------------

    def idle_once(self, kind: str, levels: list[int], window: float, load: bool, servers: list[Server],
                  tenant: Tenant | None) -> dict[str, Any]:  # fmt: skip
        """One server, grown level by level (memory sampled and heartbeats watched for at least
        ``window`` s at each); with ``load``, then end to end on the same sockets."""
        p = self.plan
        n = levels[-1]
        spec = self.spec(kind, servers, tenant, scenario="idle", connections=n, levels=levels, window=window, client="lean",
                         server_pids=[s.proc.pid for s in servers if s.proc], connect_concurrency=100,
                         connect_timeout=p.idle_connect_seconds, duration=p.growth_seconds,
                         phases=self.e2e_phases() if load else [],
                         timeout=p.idle_connect_seconds + window * len(levels) + 2 * len(levels) + (90 if load else 0) + 90)  # fmt: skip
        meter = CpuMeter(servers)

        def on_event(event: dict[str, Any]) -> None:
            meter(event)
            if event["event"] == "connected":
                self.step(f"{kind}: {event['opened']}/{event['level']} sockets open "
                          f"({event['batch_opened']} in {event['seconds']} s, {event['per_s']}/s)")  # fmt: skip

        result = loadgen(spec, self.workdir, on_event)
        meter.annotate(result.get("phases", {}))
        result["levels"][-1]["server_cpu_pct_held"] = meter.pct("hold")  # what heartbeats cost at the largest level
        return result

    def idle_levels(self) -> list[int]:
        """The plan's levels, the largest cut to what one process may hold open (``ulimit -n``)."""
        cap = self.fd_limit - FD_MARGIN
        levels = sorted({min(n, cap) for n in self.plan.idle_levels})
        if levels[-1] < self.plan.idle_levels[-1]:
            say(f"   the largest level is cut from {self.plan.idle_levels[-1]:,} to {levels[-1]:,} sockets: the open-files "
                f"limit is {self.fd_limit:,} and this process may not raise it (`ulimit -n` "
                f"{self.plan.idle_levels[-1] + FD_MARGIN} or more, as root, to run it in full)")  # fmt: skip
        return levels

    def bench_idle(self) -> None:
        p = self.plan
        levels, heartbeat, window = self.idle_levels(), p.heartbeat, p.window()
        say(f"\n== 2. Idle widget connections: memory and heartbeats (one server grown to {levels}, "
            f"{p.idle_connect_seconds:g} s allowed for connecting; heartbeat {heartbeat:g} s, watched ≥ {window:g} s at "
            f"each level: while the next level connects, then idle at the largest); then end to end at {levels[-1]} "
            f"for 5. Growth")  # fmt: skip
        base = self.launch("baseline", heartbeat=heartbeat)
        servers, tenant = self.backchannel(levels[-1], heartbeat=heartbeat)
        self.ready(base, *servers)
        # The bare relay: memory only (no hold), then the growth figures on its sockets.
        rb = self.idle_once("baseline", levels, 0.0, True, [base], None)
        self.stop(base)
        rc = self.idle_once("backchannel", levels, window, True, servers, tenant)
        self.stop(*servers)
        self.largest_e2e = (levels[-1], rb, rc)
        rows, out = [], {}
        for i, (lb, lc) in enumerate(zip(rb["levels"], rc["levels"], strict=True)):
            n = lc["connections"]
            out[n] = {"baseline": lb, "backchannel": lc}
            keeps_up = heartbeats_keep_up(lc, n, heartbeat)
            lc["kib_per_added_conn"] = added_kib(rc["levels"], i)
            rows.append([
                n, f"{lc['connect']['opened']}/{n}", lc["connect"]["seconds"], lc["connect"]["per_s"],
                lb["connect"]["per_s"], lc["kib_per_conn"], lc["kib_per_added_conn"], lb["kib_per_conn"],
                added_kib(rb["levels"], i), ratio(lc["kib_per_conn"], lb["kib_per_conn"]),
                round(lc["rss_kib"] / 1024), lc["held_seconds"], f"{lc['pings_min']}–{lc['pings_max']}",
                lc["max_ping_gap_s"], lc["closed_early"], lc.get("server_cpu_pct_held"),
                verdict(lc["kib_per_conn"] <= TARGETS["idle_kib"] if i else None), verdict(keeps_up),
            ])  # fmt: skip
        self.results["idle"] = {
            "sizes": out,
            "heartbeat": heartbeat,
            "window": window,
            "baseline": rb,
            "backchannel": rc,
        }
        table("2. Idle connections (resident memory per open widget socket; ratio = Backchannel / bare, lower is better)",
              ["conns", "open", "connect s", "conn/s", "bare conn/s", "KiB/conn", "KiB/added conn", "bare KiB/conn",
               "bare KiB/added", "ratio", "RSS MiB",
               "watched s", "pings/socket", "max ping gap s", "closed", "server CPU % idle",
               f"≤ {TARGETS['idle_kib']:.0f} KiB", "heartbeats keep up"], rows)  # fmt: skip
        say(f"   load generator CPU while connecting and holding: {rc['loadgen_cpu_pct']} % of a core "
            f"(bare run {rb['loadgen_cpu_pct']} %); 'keeps up' = every socket open, none closed, each pinged, no gap "
            f"(nor the silence at the window's end) reached 2.5 heartbeats; KiB/added conn = what RSS grew by "
            f"since the level before, per socket added (no start-up cost in it)")  # fmt: skip
        big = rc["levels"][-1]
        # Judged at the largest level, where the start-up cost (caches, threads) that the first
        # level carries is spread thinnest, and on what the sockets added since the level before.
        per_socket = [big["kib_per_conn"], big.get("kib_per_added_conn") or big["kib_per_conn"]]
        rows = [
            self.check("2", f"≤ {TARGETS['idle_kib']:.0f} KiB per idle widget socket",
                       ", ".join(f"{lv['kib_per_conn']} at {lv['connections']}" for lv in rc["levels"])
                       + f"; {per_socket[1]} per socket added at the largest level",
                       max(per_socket) <= TARGETS["idle_kib"]),
            self.check("2", f"{TARGETS['idle_held']:,} connections held with heartbeats on",
                       f"{big['connect']['opened']:,} open, max gap {big['max_ping_gap_s']} s, {big['closed_early']} closed"
                       + ("" if big["connections"] >= TARGETS["idle_held"] else
                          f" (only {big['connections']:,} in --quick)" if self.quick else
                          f" (only {big['connections']:,}: open-files limit {self.fd_limit:,})"),
                       heartbeats_keep_up(big, big["connections"], heartbeat)
                       if big["connections"] >= TARGETS["idle_held"] else None),
        ]  # fmt: skip
        table("   targets", ["target", "Backchannel", "verdict"], rows)

    # -- 3. REST ----------------------------------------------------------------------------

    def rest_once(self, server: Server, method: str, paths: list[str], headers: dict[str, str], body: str | None,
                  profile: str | None = None) -> dict[str, Any]:  # fmt: skip
        p = self.plan
        spec = {"scenario": "rest", "urls": [server.url], "method": method, "paths": paths, "headers": headers,
                "body": body, "concurrency": 64, "duration": p.rest_seconds, "warmup": p.rest_warmup,
                "timeout": 60 + p.rest_seconds}  # fmt: skip
        prof = self.profile_start(server, profile, p.rest_seconds) if profile else None
        meter = CpuMeter([server])
        result = loadgen(spec, self.workdir, meter)
        self.profile_end(prof, profile or "")
        result["server_cpu_pct"] = meter.pct("rest")
        result["server_cpu_ms_per_req"] = meter.per("rest", result["requests_ok"])
        result["pg_cpu_ms_per_req"] = meter.per("rest", result["requests_ok"], "pg")
        self.step(f"{server.kind} {method} {paths[0].split('/')[-1]}: {result['rps']} req/s")
        return result

    def bench_rest(self) -> None:
        p = self.plan
        say(
            f"\n== 3. REST at 64 concurrent connections ({p.rest_seconds:g} s each after a {p.rest_warmup:g} s warm-up)"
        )
        body = '{"actor": {"type": "bot"}, "message_parts": [{"text": {"content": "bench {n}"}}]}'
        dbs = ["sqlite"] + (["postgres"] if self.pg else [])
        if not self.pg:
            say(f"   {self.pg_why}: SQLite only")
        base = self.launch("baseline")
        prepared = {db: self.backchannel(64, db=db) for db in dbs}
        self.ready(base, *(s for servers, _ in prepared.values() for s in servers))
        bpost = self.rest_once(base, "POST", ["/echo"], {}, body)
        bget = self.rest_once(base, "GET", ["/items"], {}, None)
        self.stop(base)
        out: dict[str, Any] = {"baseline": {"post": bpost, "get": bget}}
        rows, checks = [], []
        for db in dbs:
            servers, tenant = prepared[db]
            server = servers[0]
            auth = {"Authorization": f"Bearer {tenant.token}"}
            convs = [w["conversation_id"] for w in tenant.widgets]
            post = self.rest_once(server, "POST", [f"/api/v1/conversations/{c}/messages" for c in convs], auth, body,
                                  profile=f"rest-post-{db}")  # fmt: skip
            get = self.rest_once(server, "GET", [f"/api/v1/conversations/{c}/messages" for c in convs], auth, None,
                                 profile=f"rest-get-{db}")  # fmt: skip
            self.stop(server)
            out[db] = {"post": post, "get": get}
            for name, r, b in (("POST …/messages", post, bpost), ("GET …/messages", get, bget)):
                rows.append([db, name, r["rps"], b["rps"], ratio(r["rps"], b["rps"]), r["latency_ms"]["p50"],
                             r["latency_ms"]["p95"], r["latency_ms"]["p99"], r["latency_ms"]["max"],
                             b["latency_ms"]["p99"], _statuses(r), r["server_cpu_ms_per_req"],
                             b["server_cpu_ms_per_req"], ratio(b["server_cpu_ms_per_req"], r["server_cpu_ms_per_req"]),
                             r["server_cpu_pct"], r["loadgen_cpu_pct"], r.get("pg_cpu_ms_per_req")])  # fmt: skip
            want = TARGETS["post_sqlite"] if db == "sqlite" else TARGETS["post_postgres"]
            r = post["rps"] / max(1e-9, bpost["rps"])
            label = "SQLite" if db == "sqlite" else "PostgreSQL"
            checks += [
                self.check("3", f"POST …/messages ≥ {want:,.0f} req/s ({label})", f"{post['rps']} req/s",
                           post["rps"] >= want),
                self.check("3", f"POST p99 ≤ {TARGETS['rest_p99_ms']:.0f} ms at 64 connections ({label})",
                           f"{post['latency_ms']['p99']} ms", (post["latency_ms"]["p99"] or 1e9) <= TARGETS["rest_p99_ms"]),
                self.check("3", f"POST ≥ {TARGETS['rest_ratio']} of the bare JSON endpoint ({label})", f"{r:.2f}",
                           r >= TARGETS["rest_ratio"]),
            ]  # fmt: skip
            bad = {k: v for k, v in post["statuses"].items() if not k.startswith("2")}
            bad.update({k: v for k, v in get["statuses"].items() if not k.startswith("2")})
            if bad:
                checks.append(
                    self.check("3", f"every request answered 2xx ({label})", _statuses({"statuses": bad}), False)
                )
        if not self.pg:
            checks.append(self.check("3", f"POST …/messages ≥ {TARGETS['post_postgres']:,.0f} req/s (PostgreSQL)",
                                     "not measured: no PostgreSQL", None))  # fmt: skip
        self.results["rest"] = out
        table("3. REST (ratio = Backchannel / bare Starlette JSON endpoint)",
              ["db", "request", "req/s", "bare req/s", "ratio", "p50 ms", "p95 ms", "p99 ms", "max ms", "bare p99",
               "statuses", "CPU ms/req", "bare CPU ms/req", "CPU ratio", "server CPU %", "loadgen CPU %",
               "PostgreSQL CPU ms/req"],
              rows)  # fmt: skip
        say("   CPU ratio = bare CPU ms per request / Backchannel's: the share of the bare endpoint's capacity"
            " per core, independent of how much CPU other processes left us")  # fmt: skip
        table("   targets", ["target", "Backchannel", "verdict"], checks)

    # -- 4. webhooks --------------------------------------------------------------------------

    def webhook_phases(self, kind: str, rport: int, slow: bool = True) -> list[dict[str, Any]]:
        p = self.plan
        slow_endpoint = {"url": f"http://127.0.0.1:{rport}/slow", "events": ["message.created"]}
        phases = [
            {"name": "burst", "count": p.burst_messages, "concurrency": 16, "duration": 20.0},
            {"name": "steady", "rate": p.steady_rate, "concurrency": 8, "duration": p.steady_seconds},
        ]
        if kind == "backchannel" and slow:
            phases.append({"name": "steady_with_slow", "rate": p.steady_rate, "concurrency": 8,
                           "duration": p.steady_seconds, "setup": ("POST", "/api/v1/webhook-endpoints", slow_endpoint)})  # fmt: skip
        return phases

    def webhooks_once(self, kind: str, servers: list[Server], tenant: Tenant | None, rport: int, endpoints: int,
                      slow: bool = True) -> dict[str, Any]:  # fmt: skip
        p = self.plan
        phases = self.webhook_phases(kind, rport, slow)
        spec = self.spec(kind, servers, tenant, scenario="webhooks", connections=len(tenant.widgets) if tenant else 16,
                         receiver_port=rport, slow_seconds=10.0, endpoints=endpoints, phases=phases,
                         drain_timeout=p.webhook_drain, post_path=None if kind == "backchannel" else "/forward",
                         timeout=len(phases) * (p.webhook_drain + 25) + 30)  # fmt: skip
        meter = CpuMeter(servers)
        t0 = time.monotonic()
        result = loadgen(spec, self.workdir, meter)
        for name, phase in result.items():
            if isinstance(phase, dict) and "delivered" in phase:
                phase["server_cpu_ms_per_delivery"] = meter.per(name, phase["delivered"])
                phase["server_cpu_pct"] = meter.pct(name)
        self.step(f"{kind} on {len(servers)} instance(s): "
                  + ", ".join(f"{k} {v['deliveries_per_s']}/s" for k, v in result.items() if isinstance(v, dict) and "delivered" in v)
                  + f" ({time.monotonic() - t0:.1f} s)")  # fmt: skip
        return result

    def bench_webhooks(self) -> None:
        p = self.plan
        endpoints = 4
        say(f"\n== 4. Webhooks: {endpoints} fast endpoints on a local receiver (burst: {p.burst_messages} messages as "
            f"fast as 16 posters go; steady: {p.steady_rate:g} messages/s for {p.steady_seconds:g} s), then the same "
            f"with one more endpoint that takes 10 s")  # fmt: skip
        rport = free_port()
        urls = [f"http://127.0.0.1:{rport}/fast/{i}" for i in range(endpoints)]
        base = self.launch("baseline", env={"BENCH_FORWARD_URLS": ",".join(urls)})
        servers, tenant = self.backchannel(16)
        self.ready(base, *servers)
        rb = self.webhooks_once("baseline", [base], None, rport, endpoints)
        self.stop(base)
        self.register_endpoints(servers[0], tenant, urls)
        rc = self.webhooks_once("backchannel", servers, tenant, rport, endpoints)
        self.stop(*servers)
        self.results["webhooks"] = {"baseline": rb, "backchannel": rc, "endpoints": endpoints}
        self.print_webhooks("4. Webhooks (SQLite, one process; delay = message POST sent -> receiver got it)", rb, rc)
        burst, steady, slow = rc["burst"], rc["steady"], rc["steady_with_slow"]
        effect = None
        if steady["delay_ms"]["p99"] and slow["delay_ms"]["p99"]:
            effect = slow["delay_ms"]["p99"] / steady["delay_ms"]["p99"] - 1
        effect50 = None
        if steady["delay_ms"]["p50"] and slow["delay_ms"]["p50"]:
            effect50 = slow["delay_ms"]["p50"] / steady["delay_ms"]["p50"] - 1
        rows = [
            self.check("4", f"≥ {TARGETS['webhook_rate']:,.0f} webhook deliveries/s", f"{burst['deliveries_per_s']}/s",
                       burst["deliveries_per_s"] >= TARGETS["webhook_rate"]),
            self.check("4", f"enqueue → delivery p99 ≤ {TARGETS['webhook_p99_ms']:.0f} ms",
                       f"{steady['delay_ms']['p99']} ms at {steady['offered_per_s']}/s offered",
                       (steady["delay_ms"]["p99"] or 1e9) <= TARGETS["webhook_p99_ms"]),
            self.check("4", "a slow (10 s) endpoint adds < 10 % to the others' latency",
                       None if effect is None else f"p99 {effect * 100:+.0f} %"
                       + ("" if effect50 is None else f", p50 {effect50 * 100:+.0f} %"),
                       None if effect is None else effect < TARGETS["slow_effect"]),
            self.check("4", "every delivery arrives, once",
                       ", ".join(f"{rc[k]['delivered']}/{rc[k]['expected']}" for k in ("burst", "steady", "steady_with_slow")),
                       all(delivered_once(rc[k]) for k in ("burst", "steady", "steady_with_slow"))),
        ]  # fmt: skip
        table("   targets", ["target", "Backchannel", "verdict"], rows)

    def print_webhooks(self, title: str, rb: dict[str, Any], rc: dict[str, Any]) -> None:
        rows = []
        for phase in ("burst", "steady", "steady_with_slow"):
            c, b = rc[phase], rb.get(phase) or rb["steady"]  # the bare forwarder has no slow phase
            rows.append([phase, c["deliveries_per_s"], b["deliveries_per_s"], ratio(c["deliveries_per_s"], b["deliveries_per_s"]),
                         c["delay_ms"]["p50"], c["delay_ms"]["p99"], c["delay_ms"]["max"], b["delay_ms"]["p99"],
                         f"{c['delivered']}/{c['expected']}", c["offered_per_s"], c.get("server_cpu_ms_per_delivery"),
                         b.get("server_cpu_ms_per_delivery"), c["loadgen_cpu_pct"]])  # fmt: skip
        table(title, ["phase", "deliveries/s", "bare/s", "ratio", "p50 ms", "p99 ms", "max ms", "bare p99",
                      "delivered", "offered/s", "CPU ms/delivery", "bare CPU ms/delivery", "loadgen CPU %"], rows)  # fmt: skip

    # -- 5. growth ----------------------------------------------------------------------------

    def bench_growth(self) -> None:
        p = self.plan
        small, mid, big = p.small, p.e2e_connections, self.idle_levels()[-1]
        say(f"\n== 5. Growth: end to end at {small}, {mid} and {big} connections; 1 and 2 instances on "
            f"PostgreSQL + Redis")  # fmt: skip
        if self.e2e_1k is None:  # section 1 did not run: measure 1,000 (and 100) here
            base = self.launch("baseline")
            servers, tenant = self.backchannel(mid)
            self.ready(base, *servers)
            rb = self.e2e_once("baseline", mid, [base], None, p.growth_seconds, then=(small,))
            self.stop(base)
            rc = self.e2e_once("backchannel", mid, servers, tenant, p.growth_seconds, then=(small,))
            self.stop(*servers)
            self.e2e_1k = (mid, rb, rc)
        else:
            say(f"   ({mid} and {small} connections: measured on section 1's servers and sockets)")
        if self.largest_e2e is None:  # section 2 did not run: connect the largest size here
            base = self.launch("baseline")
            servers, tenant = self.backchannel(big)
            self.ready(base, *servers)
            rb = self.idle_once("baseline", [big], 0.0, True, [base], None)
            self.stop(base)
            rc = self.idle_once("backchannel", [big], 0.0, True, servers, tenant)
            self.stop(*servers)
            self.largest_e2e = (big, rb, rc)
        else:
            say(f"   ({big} connections: measured on the sockets that section 2 held)")
        n1, rb1, rc1 = self.e2e_1k
        runs = [(small, rb1["then"][str(small)], rc1["then"][str(small)]), (n1, rb1, rc1), self.largest_e2e]
        self.results["growth"] = {"connections": {str(n): {"baseline": b, "backchannel": c} for n, b, c in runs}}
        self.print_e2e("5a. End to end by connection count (SQLite, one process)", runs)
        if not (self.pg and self.redis):
            say(f"   {self.pg_why or self.redis_why}: skipping the 1 vs 2 instance runs (5b, 5c)")
            return
        n = p.growth_connections
        if self.e2e_1k[0] == n:
            rb = self.e2e_1k[1]
            say(f"   (bare relay at {n}: section 1's)")
        else:
            base = self.launch("baseline")
            self.ready(base)
            rb = self.e2e_once("baseline", n, [base], None, p.growth_seconds)
            self.stop(base)
        endpoints = 4
        multi, wh = [], []
        for instances in (1, 2):
            servers, tenant = self.backchannel(n, db="postgres", instances=instances, broker=self.redis)
            self.ready(*servers)
            rc = self.e2e_once("backchannel", n, servers, tenant, p.growth_seconds)
            multi.append((f"{n} on {instances} inst.", rb, rc))
            # The same servers, then webhooks (no endpoint existed during the run above, so
            # no delivery was queued by it).
            rport = free_port()
            self.register_endpoints(
                servers[0], tenant, [f"http://127.0.0.1:{rport}/fast/{i}" for i in range(endpoints)]
            )
            wh.append(self.webhooks_once("backchannel", servers, tenant, rport, endpoints, slow=p.growth_slow_phase))
            self.stop(*servers)
        self.results["growth"]["instances_e2e"] = {str(i + 1): c for i, (_, _, c) in enumerate(multi)}
        self.print_e2e("5b. End to end on PostgreSQL + Redis, 1 and 2 instances (ratio to the bare relay)", multi)
        one, two = multi[0][2]["phases"]["max"], multi[1][2]["phases"]["max"]
        cpu1 = one.get("server_cpu_ms_per_msg")
        table("   targets (issue 24)", ["target", "Backchannel", "verdict"], [
            self.check("5", f"PostgreSQL + Redis, 1 instance, {n} sockets: ≥ {TARGETS['pg_e2e_rate']:,.0f} msg/s",
                       f"{one['delivered_rate']} msg/s", one["delivered_rate"] >= TARGETS["pg_e2e_rate"]),
            self.check("5", f"… ≤ {TARGETS['pg_e2e_cpu_ms']} CPU ms per message in the app process",
                       cpu1, cpu1 is not None and cpu1 <= TARGETS["pg_e2e_cpu_ms"]),
        ])  # fmt: skip
        self.results["growth"]["model"] = scaling_model(one, two)
        self.results["growth"]["instances_webhooks"] = {"1": wh[0], "2": wh[1]}
        rows = []
        for phase in [k for k in ("burst", "steady", "steady_with_slow") if k in wh[0]]:
            one, two = wh[0][phase], wh[1][phase]
            rows.append([phase, one["deliveries_per_s"], two["deliveries_per_s"],
                         ratio(two["deliveries_per_s"], one["deliveries_per_s"]), one["delay_ms"]["p50"],
                         two["delay_ms"]["p50"], one["delay_ms"]["p99"], two["delay_ms"]["p99"],
                         f"{one['delivered']}/{one['expected']}", f"{two['delivered']}/{two['expected']}",
                         one.get("server_cpu_ms_per_delivery"), two.get("server_cpu_ms_per_delivery")])  # fmt: skip
        table("5c. Webhooks on PostgreSQL + Redis: 1 vs 2 instances (ratio = 2 / 1)",
              ["phase", "1 inst. /s", "2 inst. /s", "ratio", "1 inst. p50 ms", "2 inst. p50 ms", "1 inst. p99 ms",
               "2 inst. p99 ms", "delivered (1)", "delivered (2)", "CPU ms/delivery (1)", "CPU ms/delivery (2)"],
              rows)  # fmt: skip
        lost = [f"{r[0]}" for r in multi if not all(delivered_once(v) for v in r[2]["phases"].values())]
        lost += [f"webhooks {i + 1} inst." for i, w in enumerate(wh) if not all(delivered_once(v) for v in w.values()
                                                                               if isinstance(v, dict) and "delivered" in v)]  # fmt: skip
        self.check(
            "5",
            "every message and delivery arrives once across instances",
            "all" if not lost else "missing in " + ", ".join(lost),
            not lost,
        )

    # -- all ------------------------------------------------------------------------------

    # -- 6. files ----------------------------------------------------------------------------

    def bench_files(self) -> None:
        rounds = 2 if self.quick else 5
        say(f"\n== 6. Files: {rounds} uploads of {bench_files.UPLOAD_MIB} MiB and their downloads, one server (SQLite)")
        url = self.database("sqlite")
        tenant = seed(url, 0)
        env = {**backchannel_env(url), "BACKCHANNEL_FILE_STORAGE": f"file://{self.workdir}/files-{uuid.uuid4().hex[:8]}"}
        server = Server("backchannel", self.workdir, env)
        server.env["BACKCHANNEL_PUBLIC_URL"] = server.url  # the download links point here
        self.servers.append(server)
        self.ready(server.launch())
        assert server.proc is not None
        r = bench_files.measure(server.url, server.proc.pid, tenant.token, rounds)
        self.stop(server)
        self.results["files"] = r
        table("6. Files", ["MiB each", "uploads", "upload MiB/s", "download MiB/s", "server RSS before MiB",
                           "peak during upload MiB", "growth MiB"],
              [[r["file_mib"], r["rounds"], r["upload_mib_s"], r["download_mib_s"], r["rss_before_mib"],
                r["rss_peak_mib"], r["rss_growth_mib"]]])  # fmt: skip
        want = TARGETS["upload_rss_growth_mib"]
        table("   targets", ["target", "Backchannel", "verdict"], [
            self.check("6", f"server RSS grows < {want:g} MiB during a {bench_files.UPLOAD_MIB} MiB upload",
                       f"{r['rss_growth_mib']} MiB", r["rss_growth_mib"] < want),
        ])  # fmt: skip

    # -- 11. handover and offline email ------------------------------------------------------

    def bench_handover(self) -> None:
        """Numbered 11 as in docs/performance.md, whose 7–10 are runs outside this script."""
        p = self.plan
        n, m = p.handover_conversations, p.email_conversations
        mail = ", ".join(f"{k.removeprefix('BACKCHANNEL_')} {v}" for k, v in bench_handover.MAIL_SETTINGS.items())
        say(f"\n== 11. Handover and offline email (SQLite, one server each): {n} widgets handed to a human, then an "
            f"agent's reply; {m} customers away, two replies each, by email ({mail})")  # fmt: skip
        servers, tenant = self.backchannel(n)
        self.ready(*servers)
        agents = bench_handover.human_agents(servers[0].url, tenant.token, 4)
        meter = CpuMeter(servers)
        h = bench_handover.measure_handover(servers[0].url, tenant, agents, meter)
        self.stop(*servers)
        self.step(f"{h['connected']}/{n} sockets in {h['connect_seconds']} s; handed over and answered")
        for step in ("handover", "reply"):
            h[step]["server_cpu_ms_each"] = meter.per(step, n)
        url = self.database("sqlite")
        tenant = seed(url, m)
        addresses = bench_handover.give_emails(url, tenant.workspace_id)
        with bench_handover.smtp_inbox() as inbox:
            server = self.launch("backchannel", {**backchannel_env(url), **bench_handover.mail_env(inbox.port)})
            self.ready(server)
            agent = bench_handover.human_agents(server.url, tenant.token, 1)[0]
            meter = CpuMeter([server])
            e = bench_handover.measure_email(server.url, tenant.token, addresses, agent, inbox, meter)
            self.stop(server)
        e["server_cpu_ms_per_reply"] = meter.per("replies", e["replies"])
        e["server_cpu_ms_per_email"] = meter.per("emails", e["emails"])
        self.results["handover"] = {"handover": h, "email": e, "mail_settings": bench_handover.MAIL_SETTINGS}
        rows = []
        for step, what in (("handover", "POST …/handover → the widget's conversation frame"),
                           ("reply", "an agent's reply → the widget's message frame")):  # fmt: skip
            r = h[step]
            rows.append([what, r["per_s"], r["delay_ms"]["p50"], r["delay_ms"]["p95"], r["delay_ms"]["p99"],
                         r["delay_ms"]["max"], f"{r['delivered']}/{n}", _statuses(r), r["server_cpu_ms_each"]])  # fmt: skip
        table(f"11a. Handover at {n} connected widgets (agents away: each waits for a teammate until the reply)",
              ["step", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms", "delivered", "statuses", "server CPU ms each"],
              rows)  # fmt: skip
        table(f"11b. Offline email: {m} customers away, 2 replies each (quiet window {e['window_s']:g} s, "
              f"poll {e['poll_s']:g} s)",
              ["emails", "emails/s", "reply → email p50 ms", "p99 ms", "max ms", "over the window p50 ms", "p99 ms",
               "server CPU ms/reply", "server CPU ms/email", "statuses"],
              [[f"{e['emails']}/{m}", e["per_s"], e["delay_ms"]["p50"], e["delay_ms"]["p99"], e["delay_ms"]["max"],
                e["over_window_ms"]["p50"], e["over_window_ms"]["p99"], e["server_cpu_ms_per_reply"],
                e["server_cpu_ms_per_email"], _statuses(e)]])  # fmt: skip
        once = h["once"]
        table("   targets", ["target", "Backchannel", "verdict"], [
            self.check("11", "every handover and reply frame reaches its widget, once",
                       f"handover {once['handover']}/{n}, assigned {once['assigned']}/{n}, reply {once['reply']}/{n}"
                       + (f", +{h['duplicates']} dup" if h["duplicates"] else ""), h["exactly_once"]),
            self.check("11", "one email per conversation, holding both its replies",
                       f"{e['one_each']}/{m} once, {e['holding_both']}/{m} holding both, {e['emails']} sent",
                       e["exactly_once"]),
        ])  # fmt: skip

    def run(self, only: list[str]) -> int:
        try:
            for name in only:
                self.section_started = time.monotonic()
                cpu0 = bench_cpu_seconds()
                try:
                    getattr(self, f"bench_{name}")()
                except Exception as exc:
                    say(f"!! {name} failed: {type(exc).__name__}: {exc}")
                    self.results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
                finally:
                    self.cleanup_section()
                    self.timings[name] = time.monotonic() - self.section_started
                    self.cpu[name] = bench_cpu_seconds() - cpu0
                    say(f"   ({name}: {self.timings[name]:.0f} s, planned {self.plan.budget[name]} s; CPU used by the "
                        f"bench, its load generators and servers: {self.cpu[name]:.0f} s)")  # fmt: skip
        finally:
            self.cleanup()
        return 1 if self.results.get("errors") else 0

    def cleanup_section(self) -> None:
        """Stop every server the section started and drop its databases (also on errors)."""
        for s in self.servers:
            s.stop()
        self.servers.clear()
        for db in self.databases:
            try:
                db.drop()
            except Exception as exc:
                say(f"   (could not drop {db.name}: {exc})")
        self.databases.clear()

    def cleanup(self) -> None:
        self.cleanup_section()
        if self.pg_template is not None:
            self.databases.append(self.pg_template)
            self.pg_template = None
            self.cleanup_section()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def summary(self, total: float, only: list[str]) -> None:
        rows = [[name, f"{self.timings[name]:.0f}", self.plan.budget[name], f"{self.cpu[name]:.0f}"]
                for name in only if name in self.timings]  # fmt: skip
        rows.append(["total", f"{total:.0f}", sum(self.plan.budget[n] for n in only), f"{sum(self.cpu.values()):.0f}"])
        table("Time per section (s; planned = on an unloaded 2-core machine; CPU = used by the bench's own processes, "
              "servers and load generators, out of 2 per wall second)", ["section", "took", "planned", "CPU s"], rows)  # fmt: skip
        if not self.quick and set(self.timings) == set(BENCHES) and not self.interrupted:
            self.check("all", "scripts/bench in under 10 minutes", f"{total:.0f} s", total < 600)
        if self.checks:
            table("Targets (issue 9; one 2-core machine, one process, SQLite unless named)",
                  ["section", "target", "measured", "verdict"], self.checks)  # fmt: skip
        missing = [b for b in BENCHES if b not in only]
        if missing:
            say(f"   (not run, so their targets are not shown: {', '.join(missing)})")


def scaling_model(one: dict[str, Any], two: dict[str, Any]) -> dict[str, Any] | None:
    """5d: the capacity of N app instances in front of one PostgreSQL of k cores and one Redis,
    from the CPU a message costs in each, measured in the 1- and 2-instance runs (5b).

    The app's cost per message is ``w + N·d``: ``w`` to take the write, store it and publish it
    (on the instance that got the request), ``d`` on every instance to receive the event from
    Redis and look for its sockets. 1 and 2 instances give both: ``d = a2 - a1``,
    ``w = a1 - d``. PostgreSQL's cost ``p`` does not depend on N; Redis's ``r(N)`` grows by one
    delivery per subscribed instance, and Redis runs commands on one core. Each instance is one
    process, so one core."""
    a1, a2 = one.get("server_cpu_ms_per_msg"), two.get("server_cpu_ms_per_msg")
    pgs = [x for x in (one.get("pg_cpu_ms_per_msg"), two.get("pg_cpu_ms_per_msg")) if x]
    r1, r2 = one.get("redis_cpu_ms_per_msg"), two.get("redis_cpu_ms_per_msg")
    if not (a1 and a2 and pgs and r1 and r2):
        say("   (5d: a CPU figure is missing: no scaling model)")
        return None
    d = max(0.0, a2 - a1)
    w = a1 - d
    p = sum(pgs) / len(pgs)
    rd = max(0.0, r2 - r1)
    r0 = r1 - rd

    def capacity(n: int, k: int) -> tuple[float, float, float]:
        return n * 1000 / (w + n * d), k * 1000 / p, 1000 / (r0 + n * rd)

    say(f"\n5d. Scaling model (CPU ms per message): app w = {w:.3f} + d = {d:.3f} per instance; "
        f"PostgreSQL p = {p:.3f}; Redis r = {r0:.3f} + {rd:.3f} per instance")  # fmt: skip
    rows = []
    for n in (1, 2, 4, 8, 16):
        app, _, redis_cap = capacity(n, 1)
        rows.append([n, f"{app:,.0f}", f"{redis_cap:,.0f}",
                     *(f"{min(app, redis_cap, capacity(n, k)[1]):,.0f}" for k in (2, 4, 8, 16))])  # fmt: skip
    table("   messages/s that N instances (one core each) can take, bounded by app, Redis and a PostgreSQL of k cores",
          ["N", "app bound", "Redis bound", "k = 2", "k = 4", "k = 8", "k = 16"], rows)  # fmt: skip
    say(f"   PostgreSQL alone: {1000 / p:,.0f} messages/s per core. Check, 2 instances: the model's app CPU per "
        f"message {w + 2 * d:.3f} ms vs measured {a2}; PostgreSQL {one.get('pg_cpu_ms_per_msg')} (1 inst.) vs "
        f"{two.get('pg_cpu_ms_per_msg')} (2 inst.), flat as the model assumes")  # fmt: skip
    return {"w": w, "d": d, "p": p, "r0": r0, "r_per_instance": rd}


def bench_cpu_seconds() -> float:
    """CPU used by this process and its children that have exited (servers once stopped)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def delivered_once(phase: dict[str, Any]) -> bool:
    return bool(phase["delivered"] == phase["expected"] and not phase.get("duplicates"))


def added_kib(levels: list[dict[str, Any]], i: int) -> float | None:
    """Resident KiB per socket added between level ``i - 1`` and level ``i`` (None for the first)."""
    if i == 0:
        return None
    a, b = levels[i - 1], levels[i]
    added = b["connect"]["opened"] - a["connect"]["opened"]
    return round((b["rss_kib"] - a["rss_kib"]) / added, 1) if added > 0 else None


def heartbeats_keep_up(level: dict[str, Any], n: int, heartbeat: float) -> bool:
    """Every socket open, none closed, each pinged in its watched time, and no gap between two
    pings, nor since the last one at the window's end, reached 2.5 heartbeats (where the widget
    and the server declare the other dead)."""
    return bool(level["connect"]["opened"] == n and level["closed_early"] == 0
                and level["pings_min"] >= 1 and level["max_ping_gap_s"] < heartbeat * 2.5)  # fmt: skip


def _statuses(r: dict[str, Any]) -> str:
    return " ".join(f"{k}×{v}" for k, v in sorted(r["statuses"].items()))


def print_profile(name: str, path: Path, top: int = 14) -> None:
    """py-spy's raw output (collapsed stacks) summed by function: own time and with callees."""
    if not path.exists():
        say(f"   (no profile written for {name})")
        return
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].split("/")[-1] + ")" for f in stack.split(";")
        ]
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    if not total:
        return
    rows = [[f"{100 * n / total:.1f} %", f] for f, n in own.most_common(top)]
    table(f"   profile {name}: own time, top {top} of {total} samples (py-spy)", ["share", "function (file)"], rows)
    skip = ("<module>", "run (", "_run (", "run_forever", "_run_once", "worker (", "run_until_complete", "_bootstrap")
    rows = [[f"{100 * n / total:.1f} %", f] for f, n in inclusive.most_common(top * 4) if not f.startswith(skip)][:top]
    table(f"   profile {name}: with callees", ["share", "function (file)"], rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs, fewer connections, every section (about 3 minutes)"
    )
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--profile", action="store_true", help="py-spy the server during REST and end-to-end runs")
    parser.add_argument("--postgres", default=os.environ.get("BACKCHANNEL_BENCH_POSTGRES_URL",
                        "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="a PostgreSQL URL to create bench databases from (default: %(default)s)")  # fmt: skip
    parser.add_argument("--redis", default=os.environ.get("BACKCHANNEL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="Redis for the two-instance runs (default: %(default)s)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    args.only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(args.only) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {','.join(BENCHES)}")
    return args


def _exit_on_signal(signum: int, frame: Any) -> None:
    """SIGTERM/SIGHUP: unwind like Ctrl-C, so every server is stopped and every database dropped."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    os.chdir(ROOT)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    soft = raise_fd_limit(max(FULL.idle_levels) + FD_MARGIN)
    bench = Bench(args)
    bench.fd_limit = soft
    m = bench.results["machine"]
    say(f"Backchannel benchmarks — {m['date']}")
    say(f"machine: {m['cores']} cores, {m['cpu_model']}, {m['ram_gib']} GiB RAM, Python {m['python']}, "
        f"Linux {m['kernel']}; load average at start {m['loadavg_at_start']} (other processes share the CPU "
        f"when it is above 0); open files {soft}")  # fmt: skip
    say(f"mode: {'quick' if args.quick else 'full'}; benchmarks: {', '.join(args.only)}; "
        f"PostgreSQL: {'yes' if bench.pg else 'no — ' + bench.pg_why}; "
        f"Redis: {'yes' if bench.redis else 'no — ' + bench.redis_why}")  # fmt: skip
    say(f"planned: {sum(bench.plan.budget[n] for n in args.only)} s on an unloaded 2-core machine")
    try:
        code = bench.run(args.only)
    except KeyboardInterrupt as exc:
        bench.interrupted = True
        say(f"\ninterrupted ({exc or 'Ctrl-C'}): servers stopped, databases dropped")
        code = 130
    total = time.monotonic() - started
    bench.results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    bench.results["seconds"] = round(total)
    bench.results["section_seconds"] = {k: round(v, 1) for k, v in bench.timings.items()}
    bench.results["section_cpu_seconds"] = {k: round(v, 1) for k, v in bench.cpu.items()}
    bench.summary(total, args.only)
    say(f"\ndone in {total:.0f} s; load average at start {m['loadavg_at_start']}, at end {m['loadavg_at_end']}")
    if args.json:
        bench.results["targets"] = [dict(zip(["section", "target", "measured", "verdict"], r, strict=True))
                                    for r in bench.checks]  # fmt: skip
        args.json.write_text(json.dumps(bench.results, indent=1, default=str))
        say(f"figures written to {args.json}")
    return code


if __name__ == "__main__":
    sys.exit(main())
