"""``python -m bench.instructions [--widgets 100] [--seconds 20]``: instructions per message
end to end (REST → widget socket, SQLite), counted by valgrind's callgrind.

Not a section of ``scripts/bench``: CPU seconds on a shared machine vary by ±15 % between
identical runs, and by up to twice under other load, so a change worth 5 % cannot be seen in
them. Instructions executed can: the same build, input and machine give the same count to
about 1 %, whatever else the machine is doing. This counts them for the end-to-end path:

the server runs under callgrind with counting off (start-up, the widgets connecting), the load
generator posts as fast as 32 posters go for ``--seconds`` (counting on), and the count is
divided by the messages delivered. Under callgrind the server runs ~50 times slower, so the
batches it commits are larger than at full speed, and time in the kernel (socket writes, the
WAL's writes) is not counted: compare builds with it, and confirm with ``scripts/bench``.
``--threads`` also splits the count by thread (the event loop; the store's worker threads).
``--postgres [URL]`` counts the production engine instead: PostgreSQL (a fresh database made
from URL, local by default) with the Redis broker (``--redis``), the app process alone (the
database's and Redis's own work is not counted; ``scripts/bench`` measures their CPU).
Needs valgrind (Debian's ``valgrind`` package).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import loadgen
from bench.servers import PostgresDatabase, Server, backchannel_env, seed, sqlite_database, wait_ready

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


class CountedServer(Server):
    """A Backchannel server under callgrind, counting only while told to."""

    out_dir: Path = Path()
    by_thread: bool = False

    def command(self) -> list[str]:
        threads = ["--separate-threads=yes"] if self.by_thread else []
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={self.out_dir}/callgrind.out.%p", *threads, *super().command()]  # fmt: skip

    def counting(self, on: bool) -> None:
        assert self.proc is not None
        subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(self.proc.pid)],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip

    def counts(self) -> dict[str, int]:
        """Instructions counted so far: ``{"all": n}``, and by thread file where split."""
        assert self.proc is not None
        subprocess.run(["callgrind_control", "-d", str(self.proc.pid)], check=True, stdout=subprocess.DEVNULL)
        time.sleep(1)
        found: dict[str, int] = {}
        for path in sorted(self.out_dir.glob(f"callgrind.out.{self.proc.pid}.*")):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("totals:"):
                    found[path.name.rpartition("-")[2] if self.by_thread else "all"] = int(line.split()[1])
        if self.by_thread:
            found = {k: v for k, v in found.items() if v}
            found["all"] = sum(found.values())
        return found


def measure(
    widgets: int,
    seconds: float,
    by_thread: bool = False,
    postgres: str | None = None,
    redis: str = LOCAL_REDIS,
    keep: bool = False,
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bc-instructions-"))
    server = CountedServer("backchannel", work)
    server.out_dir, server.by_thread = work, by_thread
    database = PostgresDatabase(postgres) if postgres else None
    try:
        url = database.url if database else sqlite_database(work)
        tenant = seed(url, widgets)
        server.env = backchannel_env(url, redis) if database else backchannel_env(url)
        server.launch()
        wait_ready([server], timeout=600)

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "phase_start":
                server.counting(True)
            elif event["event"] == "phase":
                server.counting(False)

        spec = {
            "kind": "backchannel", "urls": [server.url], "widget_key": tenant.widget_key, "token": tenant.token,
            "widgets": tenant.widgets, "scenario": "e2e", "connections": widgets, "duration": seconds,
            "phases": [{"name": "max", "concurrency": 32}], "connect_concurrency": 20, "then": [], "timeout": 900,
        }  # fmt: skip
        phase = loadgen(spec, work, on_event)["phases"]["max"]
        counts = server.counts()
        delivered = phase["delivered"]
        return {
            "delivered": delivered,
            "expected": phase["expected"],
            "instructions": counts,
            "per_message": {k: round(v / max(1, delivered)) for k, v in counts.items()},
        }
    finally:
        server.stop()
        if database is not None:
            database.drop()
        if keep:
            print(f"callgrind's files kept in {work} (callgrind_annotate reads them)")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--widgets", type=int, default=100, help="connected widgets, one conversation each")
    parser.add_argument("--seconds", type=float, default=20, help="how long to post (under callgrind)")
    parser.add_argument("--threads", action="store_true", help="also split the count by thread")
    parser.add_argument("--postgres", nargs="?", const=LOCAL_POSTGRES, default=None, metavar="URL",
                        help=f"PostgreSQL + Redis instead of SQLite (a database made from URL; {LOCAL_POSTGRES})")
    parser.add_argument("--redis", default=LOCAL_REDIS, help="the Redis broker, with --postgres")
    parser.add_argument("--keep", action="store_true", help="keep callgrind's files, for callgrind_annotate")
    args = parser.parse_args(argv)
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    result = measure(args.widgets, args.seconds, args.threads, args.postgres, args.redis, args.keep)
    print(f"{result['delivered']} messages delivered of {result['expected']} posted")
    for name, per in result["per_message"].items():
        label = "in all" if name == "all" else f"thread {name}"
        print(f"{per:>12,} instructions per message {label}")
    return 0 if result["delivered"] == result["expected"] else 1


if __name__ == "__main__":
    sys.exit(main())
