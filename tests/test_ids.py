"""Ids and timestamps (``app/ids.py``): the fast paths give exactly what the plain ones did."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from app import ids
from app.ids import id_millis, isoformat, new_id
from app.store.dialect import SQLITE


def plain_isoformat(value: datetime) -> str:
    """``isoformat`` as it was written before it went through orjson."""
    if value.tzinfo is not UTC:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def plain_sqlite_ts(value: datetime) -> str:
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return value.isoformat(" ", "microseconds")[:26]


def test_timestamps_are_formatted_as_datetime_isoformat_formats_them() -> None:
    rng = random.Random(7)
    values = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 30, 21, 50, 6),  # naive: taken as UTC
        datetime(2026, 11, 30, 21, 50, 6, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 11, 30, tzinfo=UTC),  # no fraction: none shown
    ]
    for _ in range(5000):
        value = datetime.fromtimestamp(rng.uniform(0, 4e9), UTC)
        values.append(value.replace(microsecond=rng.choice([0, 1, 999999, rng.randrange(1_000_000)])))
    for value in values:
        assert isoformat(value) == plain_isoformat(value), value
        assert SQLITE.ts(value) == plain_sqlite_ts(value), value
        # asked again (the remembered last value), and after another value came between
        assert isoformat(value) == plain_isoformat(value)
        assert SQLITE.ts(value) == plain_sqlite_ts(value)
    assert isoformat(None) is None


def in_a_forked_child(draw: Callable[[], str]) -> str:
    """What ``draw()`` gives in a child forked now (sent back through a pipe)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, draw().encode())
        os._exit(0)
    os.close(write)
    try:
        return os.read(read, 64).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)


def test_ids_are_unique_evenly_random_and_a_forked_child_draws_its_own() -> None:
    made = [new_id("msg") for _ in range(20_000)]  # many 4 KiB reads of random bytes
    assert len(set(made)) == len(made)
    assert all(len(i) == len("msg_") + 21 and id_millis(i) is not None for i in made)
    assert set("".join(i[-12:] for i in made)) <= set(ids._ALPHABET)
    # Every character about equally likely (bytes 252-255 are dropped, not folded onto 0-3):
    # 240,000 characters, 6,667 of each expected; a fold would give 0-3 ~7,600 each.
    counts = Counter("".join(i[-12:] for i in made))
    assert len(counts) == 36 and max(counts.values()) < 7_100 and min(counts.values()) > 6_250, counts
    ids._random12()  # the buffer holds characters now: a child must not reuse them
    child = in_a_forked_child(lambda: new_id("msg")[-12:])
    assert len(child) == 12 and child != new_id("msg")[-12:]


def test_request_ids_are_128_random_bits_in_hex_and_a_forked_child_draws_its_own() -> None:
    made = [ids.request_id() for _ in range(2_000)]  # several 4 KiB reads of random bytes
    assert len(set(made)) == len(made)
    assert all(len(r) == 32 and int(r, 16) >= 0 and r == r.lower() for r in made)
    counts = Counter("".join(made))  # every hex digit about equally likely (4,000 each)
    assert len(counts) == 16 and max(counts.values()) < 4_400 and min(counts.values()) > 3_600, counts
    child = in_a_forked_child(ids.request_id)
    assert len(child) == 32 and child != ids.request_id()
