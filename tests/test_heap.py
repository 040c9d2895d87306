"""app/heap.py: a started app freezes what startup made and runs young passes less often;
cyclic garbage is still collected; shutdown undoes both."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from app import heap
from tests.conftest import InProcessServer


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cycle collector frees it


def test_a_started_app_freezes_startup_and_raises_the_young_threshold(app_server_factory: Any) -> None:
    before = gc.get_threshold()
    server: InProcessServer = app_server_factory()
    try:
        assert gc.get_threshold()[0] == max(heap.YOUNG_THRESHOLD, before[0])
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > 10_000  # modules, tables, statements: never walked again
    finally:
        server.stop()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0  # a process that starts many apps frees what each left


def test_cyclic_garbage_is_still_collected_without_asking() -> None:
    with heap.tuned_for_serving():
        first = _Node()
        gone = weakref.ref(first)
        del first
        # No gc.collect(): allocations alone reach the threshold and start a pass.
        for _ in range(heap.YOUNG_THRESHOLD * 3):
            _Node()
        assert gone() is None
