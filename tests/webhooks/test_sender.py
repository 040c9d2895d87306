"""The webhook sender's HTTP/1.1 client against raw loopback servers: keep-alive reuse, answer
framing (content-length, chunked, until close), stale connections, garbage, and the SSRF
guard (resolved once per connection, pinned to the checked address, private refused)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from app.webhooks.netguard import UrlRefused
from app.webhooks.sender import GuardedSender, SendError
from tests.webhooks.test_netguard import run

Answer = Callable[[bytes], bytes | None]  # request head+body -> raw answer (None: close without one)


class RawServer:
    """Accepts connections on a free loopback port; answers each request with ``answer(request)``.
    Records every request and how many connections were opened."""

    def __init__(self, answer: Answer, *, close_after_answer: bool = False) -> None:
        self.answer = answer
        self.close_after_answer = close_after_answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        buf = b""
        with conn:
            for _ in range(100):
                while b"\r\n\r\n" not in buf:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
                    0,
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buf = rest[length:]
                reply = self.answer(self.requests[-1])
                if reply is None:
                    return
                conn.sendall(reply)
                if self.close_after_answer:
                    return


def ok(body: bytes = b"ok", extra: bytes = b"") -> Answer:
    return lambda req: b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def post_all(client: GuardedSender, url: str, bodies: list[bytes]) -> list[Any]:
    async def go() -> list[Any]:
        out: list[Any] = []
        try:
            for body in bodies:
                try:
                    out.append(await client.post(url, {"webhook-id": "msg_1"}, body))
                except (SendError, UrlRefused) as exc:
                    out.append(exc)
        finally:
            await client.aclose()
        return out

    return run(go())


def test_deliveries_to_one_origin_share_a_keep_alive_connection() -> None:
    with RawServer(ok()) as srv:
        url = f"http://127.0.0.1:{srv.port}/hook?x=1"
        replies = post_all(GuardedSender(allow_private=True), url, [b'{"n":1}', b'{"n":2}', b'{"n":3}'])
    assert [r.status_code for r in replies] == [200, 200, 200] and replies[0].excerpt == b"ok"
    assert srv.connections == 1 and len(srv.requests) == 3
    head, _, body = srv.requests[2].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hook?x=1 HTTP/1.1" and body == b'{"n":3}'
    assert f"host: 127.0.0.1:{srv.port}".encode() in lines and b"webhook-id: msg_1" in lines
    assert b"content-length: 7" in lines and b"user-agent: Backchannel-Webhooks/1.0" in lines


def test_chunked_and_long_answers_are_read_to_their_end_and_cut_to_the_excerpt() -> None:
    long = b"x" * 5000
    chunked = b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\nretry-after: 7\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    answers = iter([ok(long)(b""), chunked, ok()(b"")])
    with RawServer(lambda req: next(answers)) as srv:
        replies = post_all(GuardedSender(allow_private=True), f"http://127.0.0.1:{srv.port}/", [b"1", b"2", b"3"])
    assert replies[0].excerpt == b"x" * 2048
    assert replies[1].status_code == 500 and replies[1].excerpt == b"hello world"
    assert replies[1].headers["retry-after"] == "7"
    assert replies[2].status_code == 200 and srv.connections == 1  # both answers were drained


def test_connection_close_and_unframed_answers_are_not_reused() -> None:
    answers = iter([ok(extra=b"connection: close\r\n")(b""), b"HTTP/1.1 302 Found\r\nlocation: /x\r\n\r\nmoved", ok()(b"")])

    def answer(req: bytes) -> bytes | None:
        return next(answers)

    with RawServer(answer, close_after_answer=True) as srv:
        replies = post_all(GuardedSender(allow_private=True), f"http://127.0.0.1:{srv.port}/", [b"1", b"2", b"3"])
    assert [r.status_code for r in replies] == [200, 302, 200]
    assert replies[1].headers["location"] == "/x" and replies[1].excerpt == b"moved"  # not followed
    assert srv.connections == 3 and len(srv.requests) == 3


def test_a_connection_the_server_closed_while_idle_is_replaced_without_losing_the_delivery() -> None:
    # Answers with keep-alive framing, then closes anyway (an idle timeout on the server side).
    with RawServer(ok(), close_after_answer=True) as srv:
        replies = post_all(GuardedSender(allow_private=True), f"http://127.0.0.1:{srv.port}/", [b"1", b"2", b"3"])
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert len(srv.requests) == 3 and srv.connections == 3


@pytest.mark.parametrize(
    "answer, message",
    [
        (b"\x00\xffTHIS IS NOT HTTP\r\n\r\n", "not HTTP"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", "closed before the answer was complete"),
        (None, "closed"),
    ],
)
def test_broken_answers_fail_the_attempt_with_a_reason(answer: bytes | None, message: str) -> None:
    with RawServer(lambda req: answer, close_after_answer=True) as srv:
        (result,) = post_all(GuardedSender(allow_private=True), f"http://127.0.0.1:{srv.port}/", [b"1"])
    assert isinstance(result, SendError) and message in str(result)


def test_a_refused_connection_is_a_send_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: the connection is refused
        (result,) = post_all(GuardedSender(allow_private=True), f"http://127.0.0.1:{port}/", [b"1"])
    assert isinstance(result, SendError) and "ConnectError" in str(result)


def test_the_host_is_resolved_once_per_connection_and_the_socket_goes_to_the_checked_address() -> None:
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]  # the system resolver could not even resolve this name

    with RawServer(ok()) as srv:
        client = GuardedSender(allow_private=True, resolver=resolver)
        replies = post_all(client, f"http://hooks.rebind.test:{srv.port}/hook", [b"1", b"2"])
    assert [r.status_code for r in replies] == [200, 200]
    assert calls == ["hooks.rebind.test"]  # the second delivery reused the pinned connection
    assert f"host: hooks.rebind.test:{srv.port}".encode() in srv.requests[0].split(b"\r\n")


def test_private_addresses_and_other_schemes_are_refused_without_a_connection() -> None:
    async def now_private(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    with RawServer(ok()) as srv:
        urls = [f"http://127.0.0.1:{srv.port}/", f"http://localhost:{srv.port}/", f"http://0x7f.1:{srv.port}/"]
        for url in urls:
            (result,) = post_all(GuardedSender(allow_private=False), url, [b"1"])
            assert isinstance(result, UrlRefused) and "not a public address" in str(result), url
        (result,) = post_all(GuardedSender(allow_private=False, resolver=now_private), "http://rebind.test/", [b"1"])
        assert isinstance(result, UrlRefused) and "10.0.0.7" in str(result)
        (result,) = post_all(GuardedSender(allow_private=True), "file:///etc/passwd", [b"1"])
        assert isinstance(result, UrlRefused)
    assert srv.connections == 0


def test_an_excerpt_may_be_asked_per_request_and_a_long_answer_is_not_read_past_the_cap() -> None:
    big = b"y" * 100_000  # over the default excerpt, under MAX_DRAIN: read to its end, kept in part
    huge = b"HTTP/1.1 422 No\r\ncontent-length: 50000000\r\n\r\n" + b"z" * 300_000  # more than MAX_DRAIN

    async def go(client: GuardedSender, url: str) -> list[Any]:
        try:
            return [
                await client.post(url, {}, b"1", excerpt_bytes=65_536),
                await client.post(url, {}, b"2"),
                await client.post(url, {}, b"3", excerpt_bytes=65_536),
            ]
        finally:
            await client.aclose()

    answers = iter([ok(big)(b""), ok(big)(b""), huge])
    with RawServer(lambda req: next(answers)) as srv:
        first, second, third = run(go(GuardedSender(allow_private=True), f"http://127.0.0.1:{srv.port}/"))
    assert first.excerpt == big[:65_536] and second.excerpt == big[:2048]
    assert srv.connections == 1  # both 100 kB answers were drained, so the connection was kept
    assert third.status_code == 422 and third.excerpt == b"z" * 65_536  # and then closed, not drained
