"""The webhook sender: a small keep-alive HTTP/1.1 client for one kind of request, a signed POST.

Why not httpx: on this path httpx spent more CPU per delivery than everything else the
dispatcher does (request and response models, a connection pool with its own locks, header
normalisation); a delivery needs none of that. This client writes one request, reads the
status, the headers, and the first bytes of the body, and keeps the connection for the next
delivery to the same origin.

The SSRF guard holds as with ``netguard.GuardedTransport``: a new connection resolves the
host once (``netguard.resolve_checked``: every address must be allowed), connects to a
checked address with the original ``Host`` header and TLS name, and is reused only for
that origin, so a second DNS answer is never consulted. Redirects are never followed,
environment proxies never used. Callers bound the whole request (``asyncio.timeout``); a
request that is cancelled or fails closes its connection.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

import certifi
import httpx

from app.webhooks.netguard import Resolver, UrlRefused, resolve_checked, system_resolver

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


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str  # as resolved and as TLS names it
    port: int
    host_header: bytes


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


class WebhookClient:
    """``await client.post(url, headers, body)`` -> ``Reply``; raises ``UrlRefused`` or ``SendError``."""

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
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._urls: dict[str, tuple[_Origin, bytes, httpx.URL]] = {}
        self.closed = False

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Reply:
        origin, target, parsed = self._parse(url)
        head = bytearray(b"POST " + target + b" HTTP/1.1\r\nhost: " + origin.host_header)
        head += b"\r\nuser-agent: " + USER_AGENT.encode() + b"\r\ncontent-length: " + str(len(body)).encode()
        for name, value in headers.items():
            head += b"\r\n" + name.encode("latin-1") + b": " + value.encode("latin-1")
        head += b"\r\n\r\n"
        request = bytes(head) + body
        conn = self._take_idle(origin)
        if conn is not None:
            try:
                return await self._exchange(origin, conn, request, reused=True)
            except _Stale:
                pass  # the server had closed it, and answered nothing: try a new connection
        conn = await self._connect(origin, parsed)
        return await self._exchange(origin, conn, request, reused=False)

    async def aclose(self) -> None:
        self.closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    # --- internals ----------------------------------------------------------------------

    def _parse(self, url: str) -> tuple[_Origin, bytes, httpx.URL]:
        hit = self._urls.get(url)
        if hit is not None:
            return hit
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise UrlRefused(f"not a valid URL: {exc}") from None
        if parsed.scheme not in ("http", "https"):
            raise UrlRefused(f"only http and https URLs may be called, not {parsed.scheme or 'none'}:")
        if not parsed.host:
            raise UrlRefused("the URL has no host")
        default = 443 if parsed.scheme == "https" else 80
        port = parsed.port or default
        raw_host = parsed.raw_host.decode("ascii")
        shown = f"[{raw_host}]" if ":" in raw_host else raw_host
        host_header = shown if port == default else f"{shown}:{port}"
        origin = _Origin(parsed.scheme, parsed.host, port, host_header.encode("ascii"))
        if len(self._urls) >= MAX_ORIGINS:
            self._urls.clear()
        self._urls[url] = hit = (origin, parsed.raw_path or b"/", parsed)
        return hit

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        conns = self._idle.get(origin)
        while conns:
            conn = conns.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _keep(self, origin: _Origin, conn: _Connection) -> None:
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

    async def _connect(self, origin: _Origin, parsed: httpx.URL) -> _Connection:
        addresses = await resolve_checked(parsed, allow_private=self.allow_private, resolver=self.resolver)
        tls = self._context() if origin.scheme == "https" else None
        failure: OSError | None = None
        for ip in addresses[:4]:
            try:
                reader, writer = await asyncio.open_connection(
                    str(ip), origin.port, ssl=tls, server_hostname=origin.host if tls else None, limit=MAX_HEAD
                )
                return _Connection(reader, writer)
            except (OSError, ssl.SSLError) as exc:
                # Nothing was sent yet: the next checked address (e.g. IPv4 after IPv6) is safe.
                failure = exc
        assert failure is not None
        raise SendError(f"ConnectError: {failure.strerror or failure}")

    async def _exchange(self, origin: _Origin, conn: _Connection, request: bytes, *, reused: bool) -> Reply:
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
            excerpt, complete = await self._read_body(conn.reader, status, headers)
            if complete and version == b"HTTP/1.1" and headers.get("connection", "").lower() != "close":
                self._keep(origin, conn)
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
        self, reader: asyncio.StreamReader, status: int, headers: dict[str, str]
    ) -> tuple[bytes, bool]:
        """(the excerpt, whether the body was read to its end so the connection can be reused)."""
        if status in (204, 304) or status < 200:
            return b"", True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await self._read_chunked(reader)
        length_text = headers.get("content-length")
        if length_text is not None:
            if not length_text.isdigit():
                raise SendError("the answer has a malformed content-length")
            length = int(length_text)
            if length <= MAX_DRAIN:
                body = await reader.readexactly(length)
                return body[: self.excerpt_bytes], True
            return await _read_some(reader, self.excerpt_bytes), False
        # No framing: the body runs to the end of the connection; take the start of it.
        return await _read_some(reader, self.excerpt_bytes), False

    async def _read_chunked(self, reader: asyncio.StreamReader) -> tuple[bytes, bool]:
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
                excerpt += await _read_some(reader, max(0, self.excerpt_bytes - len(excerpt)))
                return bytes(excerpt[: self.excerpt_bytes]), False
            chunk = await reader.readexactly(size + 2)
            if len(excerpt) < self.excerpt_bytes:
                excerpt += chunk[: min(size, self.excerpt_bytes - len(excerpt))]


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


def make_webhook_client(settings: Any, *, resolver: Resolver = system_resolver) -> WebhookClient:
    return WebhookClient(allow_private=settings.webhook_allow_private_networks, resolver=resolver)
