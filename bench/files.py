"""Section 6 of ``scripts/bench``: files. Upload and download throughput through one server,
and the server's memory (RSS) while a 20 MiB upload streams in: it must not hold the file.

The upload is sent by a generator (a megabyte at a time) as one multipart body with a
declared length, so neither side builds the body in memory; the server's RSS is sampled
every 10 ms from /proc while it arrives."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

MIB = 1024 * 1024
UPLOAD_MIB = 20
BOUNDARY = "benchboundary"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssWatch:
    """The highest RSS of a process while the block runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()

    def __enter__(self) -> RssWatch:
        self.before = rss_bytes(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.01)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def multipart(size: int, name: str = "bench.bin") -> tuple[int, Iterator[bytes]]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    block = bytes(range(256)) * (MIB // 256)

    def body() -> Iterator[bytes]:
        yield head
        left = size
        while left > 0:
            piece = block[: min(MIB, left)]
            left -= len(piece)
            yield piece
        yield tail

    return len(head) + size + len(tail), body()


def upload(client: httpx.Client, size: int) -> dict[str, Any]:
    length, body = multipart(size)
    r = client.post(
        "/api/v1/files",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(length)},
    )
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


def measure(server_url: str, pid: int, token: str, rounds: int) -> dict[str, Any]:
    """Upload ``rounds`` files of 20 MiB, download each, and watch the server's memory."""
    size = UPLOAD_MIB * MIB
    out: dict[str, Any] = {"file_mib": UPLOAD_MIB, "rounds": rounds}
    with httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        upload(client, MIB)  # warm-up: first request, staging folder, imports
        baseline = rss_bytes(pid)
        files, peaks = [], []
        t0 = time.perf_counter()
        for _ in range(rounds):
            with RssWatch(pid) as watch:
                files.append(upload(client, size))
            peaks.append(watch.peak)
        upload_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = 0
        for f in files:
            with httpx.stream("GET", f["url"], timeout=120) as r:
                r.raise_for_status()
                for chunk in r.iter_bytes():
                    got += len(chunk)
        download_s = time.perf_counter() - t0
    assert got == size * rounds, (got, size * rounds)
    out.update(
        upload_mib_s=round(rounds * UPLOAD_MIB / upload_s, 1),
        download_mib_s=round(rounds * UPLOAD_MIB / download_s, 1),
        rss_before_mib=round(baseline / MIB, 1),
        rss_peak_mib=round(max(peaks) / MIB, 1),
        rss_growth_mib=round((max(peaks) - baseline) / MIB, 1),
    )
    return out
