"""Small files made here, whose types the server must recognise from their bytes."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import httpx


def png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def pdf() -> bytes:
    return b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def mp4(size: int = 4096) -> bytes:
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    return head + bytes(range(256)) * ((size - len(head)) // 256 + 1)


HTML = b"<!DOCTYPE html><html><body><script>document.title='pwned'</script></body></html>"


def upload(client: httpx.Client, content: bytes, name: str = "file.bin", content_type: str = "application/octet-stream",
           **kw: Any) -> httpx.Response:  # fmt: skip
    return client.post("/api/v1/files", files={"file": (name, content, content_type)}, **kw)
