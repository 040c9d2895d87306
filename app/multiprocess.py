"""Several worker processes (``backchannel serve --workers N``): the folder their metrics share.

prometheus_client decides when it is first imported whether values live in this process
or in files under ``PROMETHEUS_MULTIPROC_DIR``, so the folder is prepared here, before any
worker imports ``app.instruments`` (this module must not import it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def metrics_dir(workers: int) -> Iterator[str | None]:
    """For N > 1 workers (``--workers`` or ``WEB_CONCURRENCY``): a fresh folder the workers
    inherit through the environment, removed afterwards. A folder the operator set is used
    for any N, emptied first (files of an earlier run would be counted again)."""
    workers = uvicorn_workers(workers)
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.remove(stale)
        yield given
        return
    if workers <= 1:
        yield None
        return
    path = tempfile.mkdtemp(prefix="backchannel-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def uvicorn_workers(workers: int) -> int:
    """How many processes uvicorn will run: ``--workers`` when above one, else its own
    ``WEB_CONCURRENCY`` default (``serve`` passes no count for one worker)."""
    if workers > 1:
        return workers
    try:
        return max(1, int(os.environ.get("WEB_CONCURRENCY", "1") or 1))
    except ValueError:
        return 1
