"""Real HTTP receivers for webhook tests: a threaded ``http.server`` on a free loopback port.

Each request is recorded, then answered by ``respond(request) -> (status, headers, body)``,
which may block (a slow or hung receiver) or change its answer over time.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(self, respond: Callable[[Received], Answer] | None = None) -> None:
        self.respond = respond or (lambda req: (200, {}, b"ok"))
        self.requests: list[Received] = []
        self.answered: list[tuple[Received, int]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY the body waits ~40 ms
            # for the sender's delayed ACK, and every delivery looked that much slower.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                req = Received(
                    "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                with receiver._lock:
                    receiver.requests.append(req)
                status, headers, body = receiver.respond(req)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    return  # the sender gave up (timeout, killed): nothing to answer
                with receiver._lock:
                    receiver.answered.append((req, status))

            do_GET = do_POST  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def succeeded(self) -> list[Received]:
        """Requests answered with a 2xx that reached the sender."""
        with self._lock:
            return [r for r, status in self.answered if 200 <= status < 300]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 20) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if predicate(got):
                return got
            time.sleep(0.05)
        raise AssertionError(f"receiver did not get what was expected in {timeout}s; got {len(self.received())}:"
                             f" {[r.json.get('type') if r.body else r.path for r in self.received()]}")

    def wait_count(self, n: int, timeout: float = 20) -> list[Received]:
        return self.wait_for(lambda got: len(got) >= n, timeout)


def eventually(check: Callable[[], Any], timeout: float = 20, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy (and return that) or time runs out."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
