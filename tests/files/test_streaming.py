"""The upload limit streams, and downloads answer byte ranges."""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveServer
from tests.factories import assert_error
from tests.files.samples import mp4, upload

MIB = 1024 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def stream_upload(server: LiveServer, token: str, total: int, declared: int | None = None) -> tuple[bytes, int]:
    """Send a multipart upload of ``total`` bytes chunk by chunk (chunked, or with a declared
    length), reading whatever the server answers as soon as it answers. Returns the answer
    and how many bytes of the body were sent before it came."""
    boundary = "bcboundary"
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.bin\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    lines = [
        "POST /api/v1/files HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        f"Authorization: Bearer {token}",
        f"Content-Type: multipart/form-data; boundary={boundary}",
        f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked",
    ]
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    chunk = b"\0" * (256 * 1024)
    sent = 0
    answer = b""
    deadline = time.monotonic() + 60
    try:
        first = True
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break
            if not writable:
                continue
            data = (head if first else b"") + chunk
            first = False
            frame = data if declared is not None else f"{len(data):x}\r\n".encode() + data + b"\r\n"
            sock.sendall(frame)
            sent += len(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(10)
    try:
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            got = sock.recv(65536)
            if not got:
                break
            answer += got
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    return answer, sent


def test_a_2_gb_upload_is_refused_413_while_streaming_without_being_held(server_factory: Any) -> None:
    server: LiveServer = server_factory(env={"BACKCHANNEL_MAX_FILE_BYTES": str(4 * MIB)})
    tenant = server.new_tenant()
    assert server.proc is not None
    before = rss_kib(server.proc.pid)
    two_gb = 2 * 1024 * MIB
    answer, sent = stream_upload(server, tenant.token, two_gb)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"payload_too_large"' in answer
    # refused soon after the limit: far from 2 GB, only the limit plus what sockets buffer
    assert sent < 4 * MIB + 24 * MIB, sent
    assert rss_kib(server.proc.pid) - before < 30 * 1024  # nothing like the body was held
    # declared too long: refused before the body is read
    answer, sent = stream_upload(server, tenant.token, two_gb, declared=two_gb)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 24 * MIB, sent
    # nothing stored, the staging folder is empty, and the server goes on
    assert not [p for p in (server.workdir / "files").rglob("*") if p.is_file()]
    with server.client(tenant) as api:
        r = upload(api, b"x" * (4 * MIB + 1), "over.bin")
        assert_error(r, 413, "payload_too_large")
        assert upload(api, b"x" * (4 * MIB), "at-the-limit.bin").status_code == 201


def test_video_answers_byte_ranges(api: httpx.Client) -> None:
    clip = mp4(100_000)
    url = upload(api, clip, "howto.mp4").json()["url"]
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == clip
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-disposition"].startswith("inline;")
    part = httpx.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(clip)}"
    assert part.content == clip[1000:2000]
    tail = httpx.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == clip[-10:]
    rest = httpx.get(url, headers={"Range": f"bytes={len(clip) - 5}-"})
    assert rest.status_code == 206 and rest.content == clip[-5:]
    past = httpx.get(url, headers={"Range": f"bytes={len(clip)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(clip)}"
    several = httpx.get(url, headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and several.content == clip
    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(clip)) and head.content == b""
