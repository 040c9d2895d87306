"""A minimal keep-alive HTTP/1.1 client for the load generator.

A general client (httpx) spends more CPU per request than the server under test, and the
load generator shares the machine with it; this one writes a prepared request and reads a
``Content-Length`` body, nothing more. Enough for Backchannel, the baseline and a receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


class HttpError(Exception):
    pass


@dataclass
class Response:
    status: int
    body: bytes


class Connection:
    """One keep-alive connection; requests on it are sequential."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        base = {"Host": f"{host}:{port}", "Connection": "keep-alive", **(headers or {})}
        self._base = "".join(f"{k}: {v}\r\n" for k, v in base.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _ensure(self) -> None:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=2**20)

    async def request(self, method: str, path: str, body: bytes | None = None, headers: str = "") -> Response:
        await self._ensure()
        assert self._reader is not None and self._writer is not None
        head = f"{method} {path} HTTP/1.1\r\n{self._base}{headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + (body or b""))
        try:
            raw = await self._reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await self.close()
            raise HttpError(f"connection lost: {exc!r}") from None
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                raise HttpError("chunked responses are not supported by the bench client")
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        data = await self._reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return Response(status, data)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None
