"""A flaky webhook receiver in its own process (so it never waits on the scenario's event loop).

    python -m bench.flaky_receiver --share 10 [--delay 0.3]

Prints its port, then answers every POST: 500 to about one first attempt in ``--share`` (chosen by
a hash of the ``webhook-id``, so a retry of that id is answered 200), after ``--delay`` seconds.
``GET /attempts`` returns every answered attempt as ``[webhook-id, message id, status, at]``,
``at`` being ``time.monotonic()`` (the same clock in every process on Linux).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a sender killed mid-request resets its connection: expected here


def serve(share: int, delay: float) -> None:
    attempts: list[tuple[str, str, int, float]] = []
    seen: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            webhook_id = self.headers["webhook-id"]
            with lock:
                first = webhook_id not in seen
                seen.add(webhook_id)
            unlucky = share and zlib.crc32(webhook_id.encode()) % share == 0
            status = 500 if first and unlucky else 200
            if delay:
                time.sleep(delay)
            message_id = body["data"]["message"]["id"] if body["type"] == "message.created" else ""
            self._answer(status, b"")
            with lock:
                attempts.append((webhook_id, message_id, status, time.monotonic()))

        def do_GET(self) -> None:  # noqa: N802
            with lock:
                data = json.dumps(attempts).encode()
            self._answer(200, data)

        def _answer(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = QuietServer(("127.0.0.1", 0), Handler)
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--share", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    serve(args.share, args.delay)
