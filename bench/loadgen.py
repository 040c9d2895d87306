"""The load generator: one asyncio process, driven by a JSON spec, answering with JSON.

``python -m bench.loadgen SPEC.json`` prints progress lines ``{"event": …}`` and, last,
``{"event": "result", …}`` on stdout. Every loop is bounded in count and time. It measures
with one clock (``time.perf_counter`` in this process): a message carries its send time in
its text and the socket that receives it subtracts. It reports its own CPU use, so a reader
can see whether the load generator, rather than the server, was the limit.

Scenarios (``spec["scenario"]``): ``e2e`` (REST in, widget sockets out), ``idle`` (hold N
sockets and answer heartbeats), ``rest`` (requests/s at C connections), ``webhooks``
(deliveries to a receiver this process runs, and the effect of one slow endpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from bench.client import Connection, HttpError
from bench.wire import WireSocket, source_address

now = time.perf_counter


def emit(event: str, **data: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    v = sorted(values)

    def at(q: float) -> float:
        return round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(v[-1] * 1000, 2), "n": len(v)}


def message_body(token: str) -> bytes:
    return json.dumps({"actor": {"type": "bot"}, "message_parts": [{"text": {"content": token}}]}).encode()


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


# -- widget sockets ----------------------------------------------------------------------


class Socket:
    """One widget (or baseline) socket: answers pings, records message delays."""

    def __init__(self, run: Run, index: int, url: str, auth: dict[str, Any]) -> None:
        self.run, self.index, self.url, self.auth = run, index, url, auth
        self.ws: Any = None
        self.pings = 0
        self.last_ping: float | None = None
        self.max_ping_gap = 0.0
        self.closed: int | None = None
        self.task: asyncio.Task[None] | None = None

    async def connect(self, origin: str, compression: str | None) -> None:
        from websockets.asyncio.client import connect
        from websockets.typing import Origin

        self.ws = await connect(
            self.url, origin=Origin(origin), compression=compression, ping_interval=None, open_timeout=60,
            max_size=2**20, close_timeout=2,
        )  # fmt: skip
        await self.ws.send(json.dumps(self.auth))
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), 60))
            if frame.get("type") == "ready":
                break
        self.task = asyncio.create_task(self.read_forever())

    async def read_forever(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self.ws:
                t = now()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "message":
                    text = frame["message"]["message_parts"][0]["text"]["content"]
                    self.run.on_message(text, t)
                elif kind == "ping":
                    if self.last_ping is not None:
                        self.max_ping_gap = max(self.max_ping_gap, t - self.last_ping)
                    self.last_ping = t
                    self.pings += 1
                    await self.ws.send('{"type":"pong"}')
        except ConnectionClosed as exc:
            self.closed = exc.rcvd.code if exc.rcvd else 1006
        except Exception:
            self.closed = -1
        else:
            self.closed = self.ws.close_code or 1000

    @property
    def opened(self) -> bool:
        return self.task is not None

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 3)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task

    def abort(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.transport.abort()
        if self.task is not None:
            self.task.cancel()


class LeanSocket(WireSocket):
    """The same, on the lean client (``bench.wire``: no task per socket), from the ``index``-th
    loopback source address: what holding 50,000 sockets in one load generator takes."""

    __slots__ = ("run", "index", "url", "auth")

    def __init__(self, run: Run, index: int, url: str, auth: dict[str, Any]) -> None:
        super().__init__(self._on_text)
        self.run, self.index, self.url, self.auth = run, index, url, auth

    async def connect(self, origin: str, compression: str | None) -> None:
        parts = urlsplit(self.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        await self.open(host, port, path, origin, source_address(self.index), self.auth)

    def _on_text(self, sock: WireSocket, text: str, t: float) -> None:
        frame = json.loads(text)
        if frame.get("type") == "message":
            self.run.on_message(frame["message"]["message_parts"][0]["text"]["content"], t)


class Run:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.sent: dict[str, float] = {}
        self.delays: list[float] = []
        self.delivered = 0
        self.duplicates = 0
        self.unknown = 0
        self._seen: set[str] = set()
        self.sockets: list[Socket | LeanSocket] = []

    def on_message(self, text: str, t: float) -> None:
        sent = self.sent.get(text)
        if sent is None:
            self.unknown += 1
            return
        if text in self._seen:
            self.duplicates += 1
            return
        self._seen.add(text)
        self.delivered += 1
        self.delays.append(t - sent)

    def prepare(self) -> None:
        """One ``Socket`` per widget, not yet connected (``connect_range`` connects them)."""
        spec = self.spec
        kind = spec["kind"]
        urls = spec["urls"]
        widgets = spec["widgets"][: spec["connections"]]
        for i, w in enumerate(widgets):
            base = urls[i % len(urls)].replace("http://", "ws://")
            if kind == "backchannel":
                url = f"{base}/widget/v1/ws?widget_key={spec['widget_key']}"
                auth = {"type": "auth", "token": w["session_token"], "conversation_id": w["conversation_id"]}
            else:
                url = f"{base}/ws?room={w['conversation_id']}"
                auth = {"type": "auth", "token": "-"}
            self.sockets.append((LeanSocket if spec.get("client") == "lean" else Socket)(self, i, url, auth))

    async def connect_range(self, lo: int, hi: int, timeout: float) -> dict[str, Any]:
        """Connect sockets ``lo`` to ``hi`` (``connect_concurrency`` handshakes at a time),
        giving up on those not started within ``timeout`` seconds."""
        spec = self.spec
        gate = asyncio.Semaphore(spec.get("connect_concurrency", 64))
        failures: Counter[str] = Counter()
        deadline = now() + timeout

        async def one(sock: Socket | LeanSocket) -> None:
            async with gate:
                if now() > deadline:
                    failures["deadline"] += 1
                    return
                try:
                    await sock.connect(spec.get("origin", "http://bench.test"), spec.get("compression", "deflate"))
                except Exception as exc:
                    failures[type(exc).__name__] += 1

        t0 = now()
        await asyncio.gather(*(one(s) for s in self.sockets[lo:hi]))
        took = now() - t0
        opened = sum(1 for s in self.sockets[lo:hi] if s.opened)
        return {
            "opened": sum(1 for s in self.sockets[:hi] if s.opened),
            "wanted": hi,
            "batch_opened": opened,
            "seconds": round(took, 2),
            "per_s": round(opened / max(took, 1e-6), 1),
            "failures": dict(failures),
        }

    async def open_sockets(self) -> dict[str, Any]:
        self.prepare()
        return await self.connect_range(0, len(self.sockets), self.spec.get("connect_timeout", 180))

    async def close_from(self, start: int) -> None:
        """Close sockets ``start`` and on (all of them with 0), 256 at a time, in bounded time."""
        keep, self.sockets = self.sockets[:start], self.sockets[start:]
        try:
            await self.close_sockets()
        finally:
            self.sockets = keep

    async def close_sockets(self, timeout: float = 60) -> None:
        """Close every socket (the close handshake, 256 at a time); whatever is still open
        after ``timeout`` seconds is aborted, so a slow close never costs a measurement."""

        gate = asyncio.Semaphore(256)

        async def bounded(sock: Socket | LeanSocket) -> None:
            async with gate:
                await sock.close()

        try:
            await asyncio.wait_for(asyncio.gather(*(bounded(s) for s in self.sockets)), timeout)
        except TimeoutError:
            for sock in self.sockets:
                sock.abort()

    # -- posting --------------------------------------------------------------------------

    def post_target(self, i: int) -> tuple[str, str]:
        """(url, path) of the i-th post: round-robin over conversations and instances."""
        spec = self.spec
        widgets = spec["widgets"][: spec.get("post_conversations") or spec["connections"]]
        cid = widgets[i % len(widgets)]["conversation_id"]
        url = spec["urls"][i % len(spec["urls"])]
        if spec.get("post_path"):
            return url, spec["post_path"]
        if spec["kind"] == "backchannel":
            return url, f"/api/v1/conversations/{cid}/messages"
        return url, f"/publish/{cid}"

    async def post_load(
        self, duration: float, concurrency: int, rate: float | None, count: int | None = None
    ) -> dict[str, Any]:
        """``concurrency`` posters for ``duration`` s (or until ``count`` posts have been sent),
        open-loop at ``rate`` msg/s when given."""
        spec = self.spec
        headers = f"Authorization: Bearer {spec['token']}\r\n" if spec["kind"] == "backchannel" else ""
        statuses: Counter[int] = Counter()
        latencies: list[float] = []
        counter = iter(range(count if count is not None else 10**9))
        start = now()
        stop_at = start + duration
        behind = 0

        async def poster(p: int) -> None:
            nonlocal behind
            conns: dict[str, Connection] = {}
            k = 0
            try:
                while True:
                    if now() >= stop_at:
                        return
                    if rate:
                        due = start + (k * concurrency + p) / rate
                        if due >= stop_at:
                            return
                        wait = due - now()
                        if wait > 0:
                            await asyncio.sleep(wait)
                        elif wait < -0.05:
                            behind += 1
                    k += 1
                    i = next(counter, None)
                    if i is None:
                        return
                    url, path = self.post_target(i)
                    conn = conns.get(url)
                    if conn is None:
                        conn = conns[url] = Connection(*host_port(url))
                    text = f"bench {spec['run_id']} #{i}"
                    t = now()
                    self.sent[text] = t
                    try:
                        response = await conn.request("POST", path, message_body(text), headers)
                    except HttpError:
                        statuses[0] += 1
                        continue
                    latencies.append(now() - t)
                    statuses[response.status] += 1
            finally:
                for c in conns.values():
                    await c.close()

        await asyncio.gather(*(poster(p) for p in range(concurrency)))
        elapsed = now() - start
        ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
        return {
            "posted_ok": ok,
            "statuses": {str(k): v for k, v in statuses.items()},
            "seconds": round(elapsed, 2),
            "post_rate": round(ok / elapsed, 1),
            "post_latency_ms": percentiles(latencies),
            "behind_schedule": behind,
        }

    async def wait_delivered(self, expected: int, timeout: float, stall: float = 5.0) -> None:
        """Until every message arrived, ``timeout`` s passed, or none arrived for ``stall`` s."""
        deadline = now() + timeout
        seen, moved = self.delivered, now()
        while self.delivered < expected and now() < deadline:
            if self.delivered != seen:
                seen, moved = self.delivered, now()
            elif now() - moved > stall:
                break
            await asyncio.sleep(0.05)


async def run_phases(run: Run, spec: dict[str, Any], label: str = "") -> dict[str, Any]:
    """Post through the API (or the bare relay) phase by phase; count what the sockets get.
    Progress events are named ``label + phase name`` (the orchestrator meters CPU by them)."""
    out: dict[str, Any] = {}
    for phase in spec["phases"]:  # e.g. [{"name": "max", "concurrency": 32}, {"name": "rate", "rate": 2000}]
        run.delays, run.delivered, run.duplicates = [], 0, 0
        run._seen.clear()
        run.sent.clear()
        emit("phase_start", name=label + phase["name"])
        cpu0, t0 = cpu_seconds(), now()
        posted = await run.post_load(spec["duration"], phase.get("concurrency", 32), phase.get("rate"))
        sent_window = now() - t0
        await run.wait_delivered(posted["posted_ok"], spec.get("drain_timeout", 10))
        wall = now() - t0
        out[phase["name"]] = {
            **posted,
            "expected": posted["posted_ok"],
            "delivered": run.delivered,
            "duplicates": run.duplicates,
            "delivered_rate": round(run.delivered / max(sent_window, wall if run.delivered else 1), 1),
            "delay_ms": percentiles(run.delays),
            "loadgen_cpu_s": round(cpu_seconds() - cpu0, 2),
            "loadgen_cpu_pct": round(100 * (cpu_seconds() - cpu0) / wall, 1),
        }
        emit("phase", name=label + phase["name"])
    return out


async def scenario_e2e(spec: dict[str, Any]) -> dict[str, Any]:
    """Connect ``connections`` sockets and run ``phases``; then, for each ``then`` entry
    (``{"connections": n, "duration": s}``, n smaller), close all but the first n sockets and
    run the phases again on those: the growth figures at fewer connections, without starting,
    seeding and connecting a second server."""
    run = Run(spec)
    connected = await run.open_sockets()
    emit("connected", **connected)
    results: dict[str, Any] = {"connect": connected, "phases": {}, "then": {}}
    try:
        await asyncio.sleep(spec.get("settle", 1.0))
        results["phases"] = await run_phases(run, spec)
        results["closed_early"] = sum(1 for s in run.sockets if s.closed is not None)
        for then in spec.get("then", []):
            n = then["connections"]
            await run.close_from(n)
            run.spec = {**run.spec, "connections": n, "duration": then.get("duration", spec["duration"])}
            await asyncio.sleep(spec.get("settle", 1.0))
            phases = await run_phases(run, run.spec, label=f"{n}:")
            results["then"][str(n)] = {
                "connections": n,
                "phases": phases,
                "closed_early": sum(1 for s in run.sockets[:n] if s.closed is not None),
            }
    finally:
        results.setdefault("closed_early", sum(1 for s in run.sockets if s.closed is not None))
        await run.close_sockets()
    return results


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def scenario_idle(spec: dict[str, Any]) -> dict[str, Any]:
    """Grow one server's idle sockets level by level (``levels``, e.g. [1000, 5000, 10000]).

    At each level: wait ``settle`` s and sample the servers' resident memory (``server_pids``).
    Then, for the sockets open at that level, count the pings each gets and the longest gap
    between two over a window of at least ``window`` s: the window runs while the next
    level's sockets connect (so heartbeats must keep up through that too) and is topped up
    with idle holding if that took less; at the largest level it is all idle holding (its
    progress events are named ``hold``). Then, with ``phases``, load the same sockets end to
    end (the growth figures at the largest level)."""
    run = Run(spec)
    run.prepare()
    levels = spec["levels"]
    window = spec.get("window", 0.0)
    pids = spec.get("server_pids", [])
    cpu0, started = cpu_seconds(), now()
    await asyncio.sleep(0.5)
    rss0 = sum(proc_rss_kib(p) for p in pids)
    result: dict[str, Any] = {"rss_before_kib": rss0, "levels": []}
    deadline = now() + spec.get("connect_timeout", 180)

    async def finish(entry: dict[str, Any], live: list[Socket | LeanSocket], t0: float, last: bool) -> None:
        if last:
            emit("phase_start", name="hold")
        while now() - t0 < window:
            await asyncio.sleep(min(0.25, max(0.0, window - (now() - t0))))
        if last:
            emit("phase", name="hold")
        pings = [s.pings for s in live]
        end = now()
        for s in live:  # the silence at the window's end is a gap too (a socket pinged no more)
            s.max_ping_gap = max(s.max_ping_gap, end - max(t0, s.last_ping or t0))
        entry.update({
            "held_seconds": round(end - t0, 1),
            "closed_early": sum(1 for s in live if s.closed is not None),
            "pings_min": min(pings) if pings else 0,
            "pings_max": max(pings) if pings else 0,
            "max_ping_gap_s": round(max((s.max_ping_gap for s in live), default=0.0), 2),
        })  # fmt: skip

    done = 0
    pending: tuple[dict[str, Any], list[Socket | LeanSocket], float] | None = None
    try:
        for level in levels:
            connected = await run.connect_range(done, level, max(0.0, deadline - now()))
            done = level
            if pending is not None:
                await finish(*pending, last=False)
            await asyncio.sleep(spec.get("settle", 1.0))
            rss = sum(proc_rss_kib(p) for p in pids)
            emit("connected", level=level, **connected)
            entry = {
                "connections": level,
                "connect": connected,
                "rss_kib": rss,
                "kib_per_conn": round((rss - rss0) / max(1, connected["opened"]), 1),
            }
            result["levels"].append(entry)
            live = [s for s in run.sockets[:level] if s.opened]
            for s in live:  # count heartbeats over this level's window only
                s.pings, s.max_ping_gap = 0, 0.0
            pending = (entry, live, now())
        if pending is not None:
            await finish(*pending, last=True)
        result["rss_end_kib"] = sum(proc_rss_kib(p) for p in pids)
        result["loadgen_cpu_pct"] = round(100 * (cpu_seconds() - cpu0) / max(1e-6, now() - started), 1)
        if spec.get("phases"):  # the same sockets, now under load: growth to this many connections
            result["phases"] = await run_phases(run, spec)
    finally:
        await run.close_sockets()
    return result


async def scenario_rest(spec: dict[str, Any]) -> dict[str, Any]:
    """``concurrency`` keep-alive connections, each sending ``method path`` back to back."""
    method, paths, body = spec["method"], spec["paths"], spec.get("body")
    headers = "".join(f"{k}: {v}\r\n" for k, v in spec.get("headers", {}).items())
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    host, port = host_port(spec["urls"][0])

    async def worker(w: int, stop_at: float, record: bool) -> None:
        conn = Connection(host, port)
        k = 0
        try:
            while now() < stop_at:
                path = paths[(w + k * spec["concurrency"]) % len(paths)]
                k += 1
                payload = body.replace("{n}", f"{w}-{k}").encode() if body else None
                t = now()
                try:
                    response = await conn.request(method, path, payload, headers)
                except HttpError:
                    statuses[0] += 1
                    continue
                if record:
                    latencies.append(now() - t)
                    statuses[response.status] += 1
        finally:
            await conn.close()

    warm = spec.get("warmup", 1.0)
    await asyncio.gather(*(worker(w, now() + warm, False) for w in range(spec["concurrency"])))
    emit("phase_start", name="rest")
    cpu0, t0 = cpu_seconds(), now()
    await asyncio.gather(*(worker(w, t0 + spec["duration"], True) for w in range(spec["concurrency"])))
    elapsed = now() - t0
    emit("phase", name="rest")
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return {
        "requests_ok": ok,
        "statuses": {str(k): v for k, v in statuses.items()},
        "seconds": round(elapsed, 2),
        "rps": round(ok / elapsed, 1),
        "latency_ms": percentiles(latencies),
        "loadgen_cpu_s": round(cpu_seconds() - cpu0, 2),
        "loadgen_cpu_pct": round(100 * (cpu_seconds() - cpu0) / elapsed, 1),
    }


# -- webhooks ----------------------------------------------------------------------------


class Receiver:
    """A fast webhook receiver (and a slow path that answers after ``slow_seconds``)."""

    def __init__(self, slow_seconds: float) -> None:
        self.slow_seconds = slow_seconds
        self.arrivals: list[tuple[str, str, float]] = []  # (path, message text, time)
        self.server: asyncio.Server | None = None

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", port, backlog=1024)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                t = now()
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                with contextlib.suppress(Exception):
                    data = json.loads(body)
                    message = data.get("data", data).get("message", data)
                    text = message["message_parts"][0]["text"]["content"]
                    self.arrivals.append((path, text, t))
                if path.startswith("/slow"):
                    await asyncio.sleep(self.slow_seconds)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, ValueError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def scenario_webhooks(spec: dict[str, Any]) -> dict[str, Any]:
    """Phase by phase (``phases``: name, concurrency, and ``count`` posts as fast as they go or
    ``rate`` posts/s for ``duration`` s, optionally after a ``setup`` request such as adding a
    slow endpoint): post messages, then wait (at most ``drain_timeout`` s) until each reached
    the ``endpoints`` fast endpoints of the receiver this process runs."""
    receiver = Receiver(spec["slow_seconds"])
    await receiver.start(spec["receiver_port"])
    results: dict[str, Any] = {}
    try:
        for phase in spec["phases"]:
            if phase.get("setup"):
                conn = Connection(*host_port(spec["urls"][0]))
                method, path, body = phase["setup"]
                headers = f"Authorization: Bearer {spec['token']}\r\n" if spec["kind"] == "backchannel" else ""
                response = await conn.request(method, path, json.dumps(body).encode(), headers)
                await conn.close()
                if response.status >= 300:
                    raise RuntimeError(f"setup failed: {response.status} {response.body[:200]!r}")
            receiver.arrivals.clear()
            emit("phase_start", name=phase["name"])
            run = Run({**spec, "run_id": f"{spec['run_id']}-{phase['name']}"})
            cpu0, t0 = cpu_seconds(), now()
            posted = await run.post_load(
                phase.get("duration", spec.get("duration", 5.0)), phase.get("concurrency", 8), phase.get("rate"),
                phase.get("count"),
            )  # fmt: skip
            expected = posted["posted_ok"] * spec["endpoints"]
            deadline = now() + spec.get("drain_timeout", 30)

            def fast_count() -> int:
                return sum(1 for p, _, _ in receiver.arrivals if p.startswith("/fast"))

            seen, moved = 0, now()
            while fast_count() < expected and now() < deadline:  # and until nothing arrives for `drain_stall` s
                if fast_count() != seen:
                    seen, moved = fast_count(), now()
                elif now() - moved > spec.get("drain_stall", 10.0):
                    break
                await asyncio.sleep(0.05)
            fast = [(text, t) for p, text, t in receiver.arrivals if p.startswith("/fast")]
            delays = [t - run.sent[text] for text, t in fast if text in run.sent]
            last = max((t for _, t in fast), default=now())
            keys = [(p, text) for p, text, _ in receiver.arrivals if p.startswith("/fast")]
            results[phase["name"]] = {
                **posted,
                "expected": expected,
                "delivered": len(set(keys)),
                "duplicates": len(keys) - len(set(keys)),
                "slow_received": sum(1 for p, _, _ in receiver.arrivals if p.startswith("/slow")),
                "deliveries_per_s": round(len(fast) / max(1e-6, last - t0), 1),
                "offered_per_s": round(posted["post_rate"] * spec["endpoints"], 1),
                "delay_ms": percentiles(delays),
                "loadgen_cpu_pct": round(100 * (cpu_seconds() - cpu0) / max(1e-6, now() - t0), 1),
            }
            emit("phase", name=phase["name"])
    finally:
        await receiver.stop()
    return results


SCENARIOS = {"e2e": scenario_e2e, "idle": scenario_idle, "rest": scenario_rest, "webhooks": scenario_webhooks}


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    for url in spec.get("urls", []):  # load goes to this machine only
        if urlsplit(url).hostname != "127.0.0.1":
            raise SystemExit(f"bench.loadgen: refusing to send load to {url} (127.0.0.1 only)")
    cpu0, t0 = cpu_seconds(), time.monotonic()

    async def go() -> dict[str, Any]:
        return await asyncio.wait_for(SCENARIOS[spec["scenario"]](spec), spec.get("timeout", 300))

    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(go())
    wall = time.monotonic() - t0
    result["loadgen"] = {"cpu_s": round(cpu_seconds() - cpu0, 2), "wall_s": round(wall, 2)}
    emit("result", result=result)


if __name__ == "__main__":
    main()
