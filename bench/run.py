"""``scripts/bench``: run the benchmarks, each against its baseline in the same run, and print tables.

    scripts/bench                      # everything (about 8 minutes on 2 cores)
    scripts/bench --quick              # shorter and smaller (about 3 minutes)
    scripts/bench --only e2e,rest      # a subset: e2e, idle, rest, webhooks, growth
    scripts/bench --profile            # also py-spy the server during the REST and e2e runs

Every figure is printed with its ratio to the bare baseline measured in the same run, because
absolute numbers on a shared machine are noise; the ratios are what carries between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.servers import (
    PostgresDatabase,
    Server,
    Tenant,
    backchannel_env,
    free_port,
    postgres_available,
    redis_available,
    seed,
    sqlite_database,
)

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ("e2e", "idle", "rest", "webhooks", "growth")
TARGETS = {
    "e2e_rate": 2000.0,  # messages/s API -> widget at 1,000 connections
    "e2e_p99_ms": 50.0,
    "e2e_ratio": 0.5,
    "idle_kib": 30.0,
    "post_sqlite": 1500.0,
    "post_postgres": 1000.0,
    "rest_p99_ms": 100.0,
    "rest_ratio": 0.3,
    "webhook_rate": 1000.0,
    "webhook_p99_ms": 250.0,
    "slow_effect": 0.10,
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


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        say(f"raised the open-files soft limit from {soft} to the hard limit {hard} (ulimit -n)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft


# -- running the load generator ------------------------------------------------------------


def loadgen(spec: dict[str, Any], workdir: Path, on_event: Callable[[dict[str, Any]], None] | None = None) -> Any:
    spec = {"run_id": uuid.uuid4().hex[:8], **spec}
    path = workdir / f"spec-{spec['run_id']}.json"
    path.write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "bench.loadgen", str(path)]
    limit = spec.get("timeout", 300) + 30
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + limit
    result = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "result":
                result = event["result"]
            elif on_event is not None:
                on_event(event)
            if time.monotonic() > deadline:
                break
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if result is None:
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"load generator failed (exit {proc.returncode}):\n{err[-3000:]}")
    return result


class CpuMeter:
    """Samples the servers' CPU time at each phase's start and end (events from the load
    generator): CPU milliseconds per request hold up on a shared machine far better than
    requests per second, which depend on how much of the CPU the server was given."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self.started: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.walls: dict[str, float] = {}

    def total(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers)

    def __call__(self, event: dict[str, Any]) -> None:
        if event["event"] == "phase_start":
            self.started[event["name"]] = self.total()
            self.walls[event["name"]] = time.monotonic()
        elif event["event"] == "phase" and event["name"] in self.started:
            self.used[event["name"]] = self.total() - self.started[event["name"]]
            self.walls[event["name"]] = time.monotonic() - self.walls[event["name"]]

    def per(self, name: str, count: int) -> float | None:
        if name not in self.used or not count:
            return None
        return round(1000 * self.used[name] / count, 3)

    def pct(self, name: str) -> float | None:
        if name not in self.used or not self.walls.get(name):
            return None
        return round(100 * self.used[name] / self.walls[name], 1)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.workdir = Path(tempfile.mkdtemp(prefix="bc-bench-"))
        self.results: dict[str, Any] = {"machine": machine(), "quick": self.quick}
        self.servers: list[Server] = []
        self.databases: list[PostgresDatabase] = []
        self.pg = args.postgres if postgres_available(args.postgres) is None else None
        self.redis = args.redis if redis_available(args.redis) is None else None
        self.profiles: dict[str, str] = {}

    # -- helpers ---------------------------------------------------------------------------

    def start(self, kind: str, env: dict[str, str] | None = None, heartbeat: float = 20.0) -> Server:
        server = Server(kind, self.workdir, env or {}, heartbeat=heartbeat)
        self.servers.append(server)
        return server.start()

    def stop(self, *servers: Server) -> None:
        for s in servers:
            s.stop()

    def backchannel(
        self, widgets: int, db: str = "sqlite", heartbeat: float = 20.0, instances: int = 1, broker: str = "memory://"
    ) -> tuple[list[Server], Tenant]:
        if db == "sqlite":
            url = sqlite_database(self.workdir)
        else:
            assert self.pg is not None
            pgdb = PostgresDatabase(self.pg)
            self.databases.append(pgdb)
            url = pgdb.url
        tenant = seed(url, widgets)
        env = backchannel_env(url, broker, heartbeat)
        return [self.start("backchannel", env, heartbeat) for _ in range(instances)], tenant

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
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def profile_end(self, proc: subprocess.Popen[bytes] | None, name: str) -> None:
        if proc is None:
            return
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        print_profile(name, Path(self.profiles[name]))

    # -- 1. end to end ---------------------------------------------------------------------

    def e2e_once(self, kind: str, connections: int, servers: list[Server], tenant: Tenant | None,
                 profile: str | None = None) -> dict[str, Any]:  # fmt: skip
        duration, phases = self.e2e_phases()
        spec = self.spec(kind, servers, tenant, scenario="e2e", connections=connections, duration=duration,
                         phases=phases, timeout=240 + connections / 50)  # fmt: skip
        cpu0 = [s.cpu_seconds() for s in servers]
        t0 = time.monotonic()
        prof = None
        if profile:
            prof = self.profile_start(servers[0], profile, duration * 2 + 5)
        meter = CpuMeter(servers)
        result = loadgen(spec, self.workdir, meter)
        self.profile_end(prof, profile or "")
        wall = time.monotonic() - t0
        result["server_cpu_pct"] = round(
            100 * sum(s.cpu_seconds() - c for s, c in zip(servers, cpu0, strict=True)) / wall, 1
        )
        for name, phase in result["phases"].items():
            phase["server_cpu_ms_per_msg"] = meter.per(name, phase["delivered"])
            phase["server_cpu_pct"] = meter.pct(name)
        return result

    def bench_e2e(self) -> None:
        n = 1000
        say(f"\n== 1. End to end: REST POST -> widget socket, {n} connected widgets")
        base = self.start("baseline")
        rb = self.e2e_once("baseline", n, [base], None)
        self.stop(base)
        servers, tenant = self.backchannel(n)
        rc = self.e2e_once("backchannel", n, servers, tenant, profile="e2e")
        self.stop(*servers)
        self.results["e2e"] = {"baseline": rb, "backchannel": rc, "connections": n}
        self.print_e2e(f"1. End to end at {n} connections (SQLite, one process)", [(n, rb, rc)], targets=True)

    def print_e2e(self, title: str, runs: list[tuple[Any, dict[str, Any], dict[str, Any]]], targets: bool) -> None:
        rows = []
        for label, rb, rc in runs:
            for phase in ("max", "rate"):
                b, c = rb["phases"][phase], rc["phases"][phase]
                name = "as fast as 32 posters go" if phase == "max" else f"paced at {TARGETS['e2e_rate']:.0f}/s"
                rows.append([
                    label, name, c["delivered_rate"], b["delivered_rate"], ratio(c["delivered_rate"], b["delivered_rate"]),
                    c["delay_ms"]["p50"], c["delay_ms"]["p95"], c["delay_ms"]["p99"], c["delay_ms"]["max"],
                    b["delay_ms"]["p99"], f"{c['delivered']}/{c['expected']}", c.get("server_cpu_ms_per_msg"),
                    b.get("server_cpu_ms_per_msg"), ratio(b.get("server_cpu_ms_per_msg"), c.get("server_cpu_ms_per_msg")),
                    c.get("server_cpu_pct"), c["loadgen_cpu_pct"],
                ])  # fmt: skip
        table(title, ["conns", "load", "msg/s", "bare msg/s", "ratio", "p50 ms", "p95 ms", "p99 ms", "max ms",
                      "bare p99", "delivered", "CPU ms/msg", "bare CPU ms/msg", "CPU ratio", "server CPU %",
                      "loadgen CPU %"], rows)  # fmt: skip
        if targets:
            label, rb, rc = runs[0]
            mx, rt = rc["phases"]["max"], rc["phases"]["rate"]
            r = mx["delivered_rate"] / max(1e-9, rb["phases"]["max"]["delivered_rate"])
            rows = [
                [f"≥ {TARGETS['e2e_rate']:.0f} msg/s", mx["delivered_rate"], verdict(mx["delivered_rate"] >= TARGETS["e2e_rate"])],
                [f"p99 ≤ {TARGETS['e2e_p99_ms']:.0f} ms at that rate", rt["delay_ms"]["p99"],
                 verdict(rt["delay_ms"]["p99"] is not None and rt["delay_ms"]["p99"] <= TARGETS["e2e_p99_ms"]
                         and rt["delivered_rate"] >= 0.95 * TARGETS["e2e_rate"])],
                [f"≥ {TARGETS['e2e_ratio']} of the bare relay", f"{r:.2f}", verdict(r >= TARGETS["e2e_ratio"])],
                ["every message delivered once", f"{mx['delivered']}/{mx['expected']}, {rt['delivered']}/{rt['expected']}",
                 verdict(mx["delivered"] == mx["expected"] and rt["delivered"] == rt["expected"]
                         and not mx["duplicates"] and not rt["duplicates"])],
            ]  # fmt: skip
            table("   targets", ["target", "Backchannel", "verdict"], rows)
            say(f"   server CPU: Backchannel {rc['server_cpu_pct']} %, bare {rb['server_cpu_pct']} % "
                f"(of one core; 200 % = both cores)")  # fmt: skip

    # -- 2. idle connections ----------------------------------------------------------------

    def e2e_phases(self) -> tuple[float, list[dict[str, Any]]]:
        duration = 4.0 if self.quick else 8.0
        return duration, [
            {"name": "max", "concurrency": 32},
            {"name": "rate", "rate": TARGETS["e2e_rate"], "concurrency": 64},
        ]

    def idle_once(self, kind: str, n: int, heartbeat: float, hold: float, load: bool = False) -> dict[str, Any]:
        if kind == "baseline":
            servers, tenant = [self.start("baseline", heartbeat=heartbeat)], None
        else:
            servers, tenant = self.backchannel(n, heartbeat=heartbeat)
        server = servers[0]
        httpx.get(server.url + "/healthz")
        time.sleep(0.5)
        before = server.rss_kib()
        sample: dict[str, int] = {}

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "connected":
                time.sleep(1.0)
                sample["after"] = server.rss_kib()
                sample["opened"] = event["opened"]

        extra: dict[str, Any] = {}
        if load:  # then measure end to end on the same sockets (saves connecting them twice)
            extra["duration"], extra["phases"] = self.e2e_phases()
        spec = self.spec(kind, servers, tenant, scenario="idle", connections=n, hold=hold,
                         connect_concurrency=100, connect_timeout=420, timeout=900, **extra)  # fmt: skip
        meter = CpuMeter(servers)

        def on_any(event: dict[str, Any]) -> None:
            on_event(event)
            meter(event)

        result = loadgen(spec, self.workdir, on_any)
        for name, phase in result.get("phases", {}).items():
            phase["server_cpu_ms_per_msg"] = meter.per(name, phase["delivered"])
            phase["server_cpu_pct"] = meter.pct(name)
        result["rss_before_kib"] = before
        result["rss_after_kib"] = sample.get("after", 0)
        opened = max(1, sample.get("opened", 0))
        result["kib_per_conn"] = round((sample.get("after", before) - before) / opened, 1)
        result["rss_end_kib"] = server.rss_kib()
        self.stop(server)
        return result

    def bench_idle(self) -> None:
        sizes = [1000, 2000] if self.quick else [1000, 5000, 10000]
        heartbeat = 2.0 if self.quick else 5.0
        hold = heartbeat * 3 + 1
        say(f"\n== 2. Idle widget connections: memory and heartbeats ({sizes}; heartbeat {heartbeat:g} s, "
            f"held {hold:g} s)")  # fmt: skip
        rows, out = [], {}
        for n in sizes:
            load = n == sizes[-1]  # the largest size also feeds 5. Growth
            rb = self.idle_once("baseline", n, heartbeat, hold, load)
            rc = self.idle_once("backchannel", n, heartbeat, hold, load)
            if load:
                self.largest_e2e = (n, rb, rc)
            out[n] = {"baseline": rb, "backchannel": rc}
            # The widget (and the server) take a peer silent for 2.5 heartbeats as dead.
            expected_pings = int(hold / heartbeat) - 1
            keeps_up = (rc["connect"]["opened"] == n and rc["closed_early"] == 0 and rc["pings_min"] >= expected_pings
                        and rc["max_ping_gap_s"] < heartbeat * 2.5)  # fmt: skip
            rows.append([
                n, f"{rc['connect']['opened']}/{n}", rc["connect"]["seconds"], rc["kib_per_conn"], rb["kib_per_conn"],
                ratio(rc["kib_per_conn"], rb["kib_per_conn"]), round(rc["rss_after_kib"] / 1024),
                f"{rc['pings_min']}–{rc['pings_max']}", rc["max_ping_gap_s"], rc["closed_early"],
                verdict(rc["kib_per_conn"] <= TARGETS["idle_kib"]), verdict(keeps_up),
            ])  # fmt: skip
        self.results["idle"] = {"sizes": out, "heartbeat": heartbeat, "hold": hold}
        table("2. Idle connections (resident memory per open widget socket; ratio = Backchannel / bare, lower is better)",
              ["conns", "open", "connect s", "KiB/conn", "bare KiB/conn", "ratio", "RSS MiB", "pings/socket",
               "max ping gap s", "closed", f"≤ {TARGETS['idle_kib']:.0f} KiB", "heartbeats keep up"], rows)  # fmt: skip

    # -- 3. REST ----------------------------------------------------------------------------

    def rest_once(self, server: Server, method: str, paths: list[str], headers: dict[str, str], body: str | None,
                  profile: str | None = None) -> dict[str, Any]:  # fmt: skip
        duration = 4.0 if self.quick else 8.0
        spec = {"scenario": "rest", "urls": [server.url], "method": method, "paths": paths, "headers": headers,
                "body": body, "concurrency": 64, "duration": duration, "warmup": 1.0, "timeout": 120}  # fmt: skip
        prof = self.profile_start(server, profile, duration) if profile else None
        meter = CpuMeter([server])
        result = loadgen(spec, self.workdir, meter)
        self.profile_end(prof, profile or "")
        result["server_cpu_pct"] = meter.pct("rest")
        result["server_cpu_ms_per_req"] = meter.per("rest", result["requests_ok"])
        return result

    def bench_rest(self) -> None:
        say("\n== 3. REST at 64 concurrent connections")
        body = '{"actor": {"type": "bot"}, "message_parts": [{"text": {"content": "bench {n}"}}]}'
        base = self.start("baseline")
        bpost = self.rest_once(base, "POST", ["/echo"], {}, body)
        bget = self.rest_once(base, "GET", ["/items"], {}, None)
        self.stop(base)
        out: dict[str, Any] = {"baseline": {"post": bpost, "get": bget}}
        rows, checks = [], []
        dbs = ["sqlite"] + (["postgres"] if self.pg else [])
        if not self.pg:
            say(f"   PostgreSQL not reachable at {self.args.postgres}: SQLite only")
        for db in dbs:
            servers, tenant = self.backchannel(64, db=db)
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
                             r["server_cpu_pct"], r["loadgen_cpu_pct"]])  # fmt: skip
            want = TARGETS["post_sqlite"] if db == "sqlite" else TARGETS["post_postgres"]
            r = post["rps"] / max(1e-9, bpost["rps"])
            checks += [
                [f"{db}: POST ≥ {want:.0f} req/s", post["rps"], verdict(post["rps"] >= want)],
                [f"{db}: POST p99 ≤ {TARGETS['rest_p99_ms']:.0f} ms", post["latency_ms"]["p99"],
                 verdict((post["latency_ms"]["p99"] or 1e9) <= TARGETS["rest_p99_ms"])],
                [f"{db}: POST ≥ {TARGETS['rest_ratio']} of bare", f"{r:.2f}", verdict(r >= TARGETS["rest_ratio"])],
            ]  # fmt: skip
        self.results["rest"] = out
        table("3. REST (ratio = Backchannel / bare Starlette JSON endpoint)",
              ["db", "request", "req/s", "bare req/s", "ratio", "p50 ms", "p95 ms", "p99 ms", "max ms", "bare p99",
               "statuses", "CPU ms/req", "bare CPU ms/req", "CPU ratio", "server CPU %", "loadgen CPU %"],
              rows)  # fmt: skip
        say("   CPU ratio = bare CPU ms per request / Backchannel's: the share of the bare endpoint's capacity"
            " per core, independent of how much CPU other processes left us")  # fmt: skip
        table("   targets", ["target", "Backchannel", "verdict"], checks)

    # -- 4. webhooks --------------------------------------------------------------------------

    def webhooks_once(self, kind: str, servers: list[Server], tenant: Tenant | None, rport: int,
                      endpoints: int) -> dict[str, Any]:  # fmt: skip
        duration = 4.0 if self.quick else 6.0
        slow = {"url": f"http://127.0.0.1:{rport}/slow", "events": ["message.created"]}
        steady_rate = 50.0 if self.quick else 100.0
        results = {}
        for name, rate, concurrency, setup in (
            ("burst", None, 16, None),
            ("steady", steady_rate, 8, None),
            ("steady_with_slow", steady_rate, 8, ("POST", "/api/v1/webhook-endpoints", slow)),
        ):
            if kind == "baseline" and name == "steady_with_slow":
                continue
            spec = self.spec(kind, servers, tenant, scenario="webhooks", connections=len(tenant.widgets) if tenant else 16,
                             receiver_port=rport, slow_seconds=10.0, endpoints=endpoints, duration=duration,
                             concurrency=concurrency, rate=rate, drain_timeout=40, timeout=180,
                             post_path=None if kind == "backchannel" else "/forward",
                             phases=[{"name": name, "setup": setup}])  # fmt: skip
            results[name] = loadgen(spec, self.workdir)[name]
        return results

    def bench_webhooks(self) -> None:
        endpoints = 4
        say(f"\n== 4. Webhooks: {endpoints} fast endpoints on a local receiver, then one more that takes 10 s")
        rport = free_port()
        urls = [f"http://127.0.0.1:{rport}/fast/{i}" for i in range(endpoints)]
        base = self.start("baseline", env={"BENCH_FORWARD_URLS": ",".join(urls)})
        rb = self.webhooks_once("baseline", [base], None, rport, endpoints)
        self.stop(base)
        servers, tenant = self.backchannel(16)
        with httpx.Client(base_url=servers[0].url, headers={"Authorization": f"Bearer {tenant.token}"}) as api:
            for url in urls:
                api.post(
                    "/api/v1/webhook-endpoints", json={"url": url, "events": ["message.created"]}
                ).raise_for_status()
        rc = self.webhooks_once("backchannel", servers, tenant, rport, endpoints)
        self.stop(*servers)
        self.results["webhooks"] = {"baseline": rb, "backchannel": rc, "endpoints": endpoints}
        self.print_webhooks("4. Webhooks (SQLite, one process; delay = message POST sent -> receiver got it)", rb, rc)

    def print_webhooks(self, title: str, rb: dict[str, Any], rc: dict[str, Any], targets: bool = True) -> None:
        rows = []
        for phase in ("burst", "steady", "steady_with_slow"):
            c, b = rc[phase], rb.get(phase) or rb.get("steady")
            rows.append([phase, c["deliveries_per_s"], b["deliveries_per_s"], ratio(c["deliveries_per_s"], b["deliveries_per_s"]),
                         c["delay_ms"]["p50"], c["delay_ms"]["p99"], c["delay_ms"]["max"], b["delay_ms"]["p99"],
                         f"{c['delivered']}/{c['expected']}", c["post_rate"]])  # fmt: skip
        table(title, ["phase", "deliveries/s", "bare/s", "ratio", "p50 ms", "p99 ms", "max ms", "bare p99",
                      "delivered", "posts/s"], rows)  # fmt: skip
        if not targets:
            return
        burst, steady, slow = rc["burst"], rc["steady"], rc["steady_with_slow"]
        effect = None
        if steady["delay_ms"]["p99"] and slow["delay_ms"]["p99"]:
            effect = slow["delay_ms"]["p99"] / steady["delay_ms"]["p99"] - 1
        rows = [
            [f"≥ {TARGETS['webhook_rate']:.0f} deliveries/s", burst["deliveries_per_s"],
             verdict(burst["deliveries_per_s"] >= TARGETS["webhook_rate"])],
            [f"enqueue→delivery p99 ≤ {TARGETS['webhook_p99_ms']:.0f} ms (steady)", steady["delay_ms"]["p99"],
             verdict((steady["delay_ms"]["p99"] or 1e9) <= TARGETS["webhook_p99_ms"])],
            ["slow endpoint adds < 10 % to the others' p99", None if effect is None else f"{effect * 100:+.0f} %",
             verdict(None if effect is None else effect < TARGETS["slow_effect"])],
        ]  # fmt: skip
        table("   targets", ["target", "Backchannel", "verdict"], rows)

    # -- 5. growth ----------------------------------------------------------------------------

    def bench_growth(self) -> None:
        sizes = [100, 2000] if self.quick else [100, 10000]
        say(f"\n== 5. Growth: end to end at {sizes} connections; 1 and 2 instances on PostgreSQL + Redis")
        runs = []
        reuse = getattr(self, "largest_e2e", None)
        if reuse is not None and reuse[0] == sizes[-1]:
            say(f"   ({sizes[-1]} connections: measured on the sockets that 2. Idle held)")
            sizes = sizes[:-1]
        for n in sizes:
            base = self.start("baseline")
            rb = self.e2e_once("baseline", n, [base], None)
            self.stop(base)
            servers, tenant = self.backchannel(n)
            rc = self.e2e_once("backchannel", n, servers, tenant)
            self.stop(*servers)
            runs.append((n, rb, rc))
        if reuse is not None and "phases" in reuse[2] and reuse[0] not in [r[0] for r in runs]:
            runs.append(reuse)
        runs.sort(key=lambda r: r[0])
        self.results["growth"] = {"connections": {str(n): {"baseline": b, "backchannel": c} for n, b, c in runs}}
        self.print_e2e("5a. End to end by connection count (SQLite, one process)", runs, targets=False)
        if not (self.pg and self.redis):
            say(f"   PostgreSQL ({self.args.postgres}) or Redis ({self.args.redis}) not reachable: "
                "skipping the 1 vs 2 instance runs")  # fmt: skip
            return
        n = 1000
        base = self.start("baseline")
        rb = self.e2e_once("baseline", n, [base], None)
        self.stop(base)
        multi = []
        for instances in (1, 2):
            servers, tenant = self.backchannel(n, db="postgres", instances=instances, broker=self.redis)
            rc = self.e2e_once("backchannel", n, servers, tenant)
            self.stop(*servers)
            multi.append((f"{n} on {instances} inst.", rb, rc))
        self.results["growth"]["instances_e2e"] = {str(i + 1): c for i, (_, _, c) in enumerate(multi)}
        self.print_e2e("5b. End to end on PostgreSQL + Redis, 1 and 2 instances (ratio to the bare relay)", multi,
                       targets=False)  # fmt: skip
        endpoints = 4
        wh = []
        for instances in (1, 2):
            rport = free_port()
            servers, tenant = self.backchannel(16, db="postgres", instances=instances, broker=self.redis)
            with httpx.Client(base_url=servers[0].url, headers={"Authorization": f"Bearer {tenant.token}"}) as api:
                for i in range(endpoints):
                    api.post("/api/v1/webhook-endpoints",
                             json={"url": f"http://127.0.0.1:{rport}/fast/{i}", "events": ["message.created"]}
                             ).raise_for_status()  # fmt: skip
            wh.append(self.webhooks_once("backchannel", servers, tenant, rport, endpoints))
            self.stop(*servers)
        self.results["growth"]["instances_webhooks"] = {"1": wh[0], "2": wh[1]}
        rows = []
        for phase in ("burst", "steady", "steady_with_slow"):
            one, two = wh[0][phase], wh[1][phase]
            rows.append([phase, one["deliveries_per_s"], two["deliveries_per_s"],
                         ratio(two["deliveries_per_s"], one["deliveries_per_s"]), one["delay_ms"]["p99"],
                         two["delay_ms"]["p99"], f"{two['delivered']}/{two['expected']}"])  # fmt: skip
        table("5c. Webhooks on PostgreSQL + Redis: 1 vs 2 instances (ratio = 2 / 1)",
              ["phase", "1 inst. /s", "2 inst. /s", "ratio", "1 inst. p99 ms", "2 inst. p99 ms", "delivered (2)"],
              rows)  # fmt: skip

    # -- all ------------------------------------------------------------------------------

    def run(self, only: list[str]) -> int:
        for name in only:
            started = time.monotonic()
            try:
                getattr(self, f"bench_{name}")()
            except Exception as exc:
                say(f"!! {name} failed: {type(exc).__name__}: {exc}")
                self.results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
            finally:
                for s in self.servers:
                    s.stop()
                self.servers.clear()
                for db in self.databases:
                    try:
                        db.drop()
                    except Exception as exc:
                        say(f"   (could not drop {db.name}: {exc})")
                self.databases.clear()
            say(f"   ({name}: {time.monotonic() - started:.0f} s)")
        return 1 if self.results.get("errors") else 0


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
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer connections (about 3 minutes)")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    soft = raise_fd_limit()
    bench = Bench(args)
    m = bench.results["machine"]
    say(f"Backchannel benchmarks — {m['date']}")
    say(f"machine: {m['cores']} cores, {m['cpu_model']}, {m['ram_gib']} GiB RAM, Python {m['python']}, "
        f"Linux {m['kernel']}; load average at start {m['loadavg_at_start']} (other processes share the CPU "
        f"when it is above 0); open files {soft}")  # fmt: skip
    say(f"mode: {'quick' if args.quick else 'full'}; benchmarks: {', '.join(args.only)}; "
        f"PostgreSQL: {'yes' if bench.pg else 'no'}; Redis: {'yes' if bench.redis else 'no'}")  # fmt: skip
    started = time.monotonic()
    code = bench.run(args.only)
    bench.results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    bench.results["seconds"] = round(time.monotonic() - started)
    say(f"\ndone in {bench.results['seconds']} s; load average at end {bench.results['machine']['loadavg_at_end']}")
    if args.json:
        args.json.write_text(json.dumps(bench.results, indent=1, default=str))
        say(f"figures written to {args.json}")
    shutil.rmtree(bench.workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
