"""The garbage collector, set for a long-running server.

CPython's cycle collector runs a young-generation pass every 700 net allocations of
container objects and, every hundred of those, may walk every object the process holds. A
request here allocates a few hundred containers, and a started app holds some 160,000
objects (modules, tables, compiled statements, templates): at 2,000 messages a second that
was a young pass every few requests and a full walk of the heap several times a second,
about a quarter of the server's CPU per message end to end, and pauses of 70 ms and more
in the latency tail (measured: docs/performance.md, section 10b).

So, once the app has started:

- what startup made is frozen (``gc.freeze``): it lives as long as the process, and the full
  passes no longer walk it;
- the young generation's threshold is raised to ``YOUNG_THRESHOLD``: a request's objects are
  mostly freed by reference counting before a pass would look at them, so a pass comes
  once in many requests, and fewer objects still in flight are promoted to be walked later.

Cyclic garbage is still collected: it counts towards the threshold like any allocation, so
at most ``YOUNG_THRESHOLD`` such objects wait for a pass. Both are undone at shutdown, so a
process that starts and stops many apps (the test suite) frees what each app left.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

YOUNG_THRESHOLD = 10_000


@contextlib.contextmanager
def tuned_for_serving() -> Iterator[None]:
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(YOUNG_THRESHOLD, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
