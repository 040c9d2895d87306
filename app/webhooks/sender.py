"""The one guarded outbound sender: a small keep-alive HTTP/1.1 client for one kind of request,
a signed POST. Webhook deliveries (``dispatcher.py``) and the web-view form relay
(``app/webviews/forms.py``) both send through it, as ``AppState.webhook_sender``.

Why not httpx: on the delivery path httpx spent more CPU per delivery than everything else
the dispatcher does (request and response models, a connection pool with its own locks,
header normalisation); a delivery needs none of that. This client writes one request, reads
the status, the headers, and the first bytes of the body, and keeps the connection for the
next request to the same origin.

The SSRF guard (``netguard.py``) holds on every request: the URL is read by
``netguard.destination``, a new connection resolves the host once
(``netguard.resolve_checked``: every address must be allowed), connects to a checked
address with the original ``Host`` header and TLS name, and is reused only for that
origin, so a second DNS answer is never consulted. Redirects are never followed (a 3xx is
an answer like any other), environment proxies never used. Callers bound the whole request
(``asyncio.timeout``); a request that is cancelled or fails closes its connection. A body
longer than ``MAX_DRAIN`` is not read to its end: the connection is closed instead.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any, Protocol

import certifi

from app.webhooks.netguard import Destination, Resolver, destination, resolve_checked, system_resolver

USER_AGENT = "Backchannel-Webhooks/1.0"
MAX_HEAD = 64 * 1024  # status line and headers
MAX_DRAIN = 256 * 1024  # a longer body is not read to the end: the connection is closed instead
MAX_IDLE_PER_ORIGIN = 16  # several endpoints may share an origin, each with its own worker
MAX_ORIGINS = 1024


class SendError(Exception):
    """The request failed before a complete answer (connect, reset, not HTTP)."""


@dataclass
class Reply:
    status_code: int
    headers: dict[str, str]  # lower-cased names; the last value of a repeated header
    excerpt: bytes  # the first ``excerpt_bytes`` of the body


class Sender(Protocol):
    """What deliveries and the form relay send with: ``GuardedSender`` (a test may inject another)."""

    async def post(
        self, url: str, headers: dict[str, str], body: bytes, *, excerpt_bytes: int | None = None
    ) -> Reply: ...

    async def aclose(self) -> None: ...


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def usable(self) -> bool:
        # The server may have closed an idle connection (EOF seen, the transport gone), or sent
        # bytes nobody asked for, which would be read as the next answer.
        unread = getattr(self.reader, "_buffer", b"")  # asyncio keeps no public count of it
        return not self.writer.is_closing() and not self.reader.at_eof() and not unread

    def close(self) -> None:
        self.writer.close()


class GuardedSender:
    """``await sender.post(url, headers, body)`` -> ``Reply``; raises ``netguard.UrlRefused`` or ``SendError``."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        excerpt_bytes: int = 2048,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.excerpt_bytes = excerpt_bytes
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}  # by origin
        self._urls: dict[str, Destination] = {}
        self.closed = False

    async def post(self, url: str, headers: dict[str, str], body: bytes, *, excerpt_bytes: int | None = None) -> Reply:
        """POST ``body`` to ``url``; the reply keeps the first ``excerpt_bytes`` of the answer's
        body (the client's ``excerpt_bytes`` unless given, at most ``MAX_DRAIN``)."""
        dest = self._parse(url)
        keep = min(self.excerpt_bytes if excerpt_bytes is None else excerpt_bytes, MAX_DRAIN)
        head = bytearray(b"POST " + dest.target + b" HTTP/1.1\r\nhost: " + dest.host_header)
        head += b"\r\nuser-agent: " + USER_AGENT.encode() + b"\r\ncontent-length: " + str(len(body)).encode()
        for name, value in headers.items():
            head += b"\r\n" + name.encode("latin-1") + b": " + value.encode("latin-1")
        head += b"\r\n\r\n"
        request = bytes(head) + body
        conn = self._take_idle(dest.origin)
        if conn is not None:
            try:
                return await self._exchange(dest, conn, request, keep, reused=True)
            except _Stale:
                pass  # the server had closed it, and answered nothing: try a new connection
        conn = await self._connect(dest)
        return await self._exchange(dest, conn, request, keep, reused=False)

    async def aclose(self) -> None:
        self.closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    # --- internals ----------------------------------------------------------------------

    def _parse(self, url: str) -> Destination:
        dest = self._urls.get(url)
        if dest is None:
            dest = destination(url)  # raises UrlRefused for what may never be called
            if len(self._urls) >= MAX_ORIGINS:
                self._urls.clear()
            self._urls[url] = dest
        return dest

    def _take_idle(self, origin: tuple[str, str, int]) -> _Connection | None:
        conns = self._idle.get(origin)
        while conns:
            conn = conns.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _keep(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        if self.closed:
            conn.close()
            return
        conns = self._idle.get(origin)
        if conns is None:
            if len(self._idle) >= MAX_ORIGINS:  # drop the oldest origin's idle connections
                for old in self._idle.pop(next(iter(self._idle))):
                    old.close()
            conns = self._idle[origin] = []
        if len(conns) >= MAX_IDLE_PER_ORIGIN:
            conn.close()
        else:
            conns.append(conn)

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            # httpx's trust store (certifi comes with httpx), so https behaves as it did with httpx
            self._ssl = ssl.create_default_context(cafile=certifi.where())
        return self._ssl

    async def _connect(self, dest: Destination) -> _Connection:
        addresses = await resolve_checked(dest, allow_private=self.allow_private, resolver=self.resolver)
        tls = self._context() if dest.scheme == "https" else None
        failure: OSError | None = None
        for ip in addresses[:4]:
            try:
                reader, writer = await asyncio.open_connection(
                    str(ip), dest.port, ssl=tls, server_hostname=dest.host if tls else None, limit=MAX_HEAD
                )
                return _Connection(reader, writer)
            except (OSError, ssl.SSLError) as exc:
                # Nothing was sent yet: the next checked address (e.g. IPv4 after IPv6) is safe.
                failure = exc
        assert failure is not None
        raise SendError(f"ConnectError: {failure.strerror or failure}")

    async def _exchange(
        self, dest: Destination, conn: _Connection, request: bytes, keep: int, *, reused: bool
    ) -> Reply:
        """Send, read the answer; keep the connection if the answer was read to its end.

        Raises ``_Stale`` only for a reused connection that failed before any answer."""
        kept = False
        try:
            conn.writer.write(request)
            try:
                await conn.writer.drain()
                status, headers, version = await self._read_head(conn.reader)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                if reused:
                    raise _Stale() from exc
                raise SendError(_describe(exc)) from None
            excerpt, complete = await _read_body(conn.reader, status, headers, keep)
            if complete and version == b"HTTP/1.1" and headers.get("connection", "").lower() != "close":
                self._keep(dest.origin, conn)
                kept = True
            return Reply(status, headers, excerpt)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise SendError(_describe(exc)) from None
        finally:
            if not kept:
                conn.close()

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
        for _ in range(8):  # 1xx interim answers come before the real one
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise SendError("the answer's headers are too long") from None
            lines = raw[:-4].split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            version_ok = parts[0] in (b"HTTP/1.1", b"HTTP/1.0")
            if len(parts) < 2 or not version_ok or not parts[1].isdigit() or len(parts[1]) != 3:
                raise SendError("the answer is not HTTP/1.1 (a malformed status line)")
            status = int(parts[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep or not name or name != name.strip():
                    raise SendError("the answer is not HTTP/1.1 (a malformed header)")
                headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
            if 100 <= status < 200 and status != 101:
                continue
            return status, headers, parts[0]
        raise SendError("too many interim (1xx) answers")


async def _read_body(
    reader: asyncio.StreamReader, status: int, headers: dict[str, str], keep: int
) -> tuple[bytes, bool]:
    """(the body's first ``keep`` bytes, whether it was read to its end so the connection can be reused)."""
    if status in (204, 304) or status < 200:
        return b"", True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader, keep)
    length_text = headers.get("content-length")
    if length_text is not None:
        if not length_text.isdigit():
            raise SendError("the answer has a malformed content-length")
        length = int(length_text)
        if length <= MAX_DRAIN:
            body = await reader.readexactly(length)
            return body[:keep], True
        return await _read_some(reader, keep), False
    # No framing: the body runs to the end of the connection; take the start of it.
    return await _read_some(reader, keep), False


async def _read_chunked(reader: asyncio.StreamReader, keep: int) -> tuple[bytes, bool]:
    excerpt = bytearray()
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            for _ in range(64):  # trailers, then the blank line
                if await reader.readuntil(b"\r\n") == b"\r\n":
                    return bytes(excerpt), True
            return bytes(excerpt), False
        total += size
        if total > MAX_DRAIN:
            excerpt += await _read_some(reader, max(0, keep - len(excerpt)))
            return bytes(excerpt[:keep]), False
        chunk = await reader.readexactly(size + 2)
        if len(excerpt) < keep:
            excerpt += chunk[: min(size, keep - len(excerpt))]


class _Stale(Exception):
    """A reused connection was found closed before any answer: safe to try a fresh one."""


async def _read_some(reader: asyncio.StreamReader, limit: int) -> bytes:
    out = bytearray()
    while len(out) < limit:
        chunk = await reader.read(limit - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection closed before the answer was complete"
    if isinstance(exc, ValueError):
        return "the answer is not HTTP/1.1 (malformed chunked body)"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def make_sender(settings: Any, *, resolver: Resolver = system_resolver) -> GuardedSender:
    return GuardedSender(allow_private=settings.webhook_allow_private_networks, resolver=resolver)
