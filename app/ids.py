"""Opaque, prefixed, time-sortable identifiers and random secrets."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import orjson

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # two base-36 digits per step: ids are hot


def _base36(number: int, width: int) -> str:
    out = []
    for _ in range(width // 2):
        number, rem = divmod(number, 1296)
        out.append(_PAIRS[rem])
    if width % 2:
        out.append(_ALPHABET[number % 36])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """``prefix_`` + 9 chars of milliseconds + 12 random chars: sorts by creation time."""
    return f"{prefix}_{_millis36(int(time.time() * 1000))}{_random12()}"


_last_millis: tuple[int, str] = (-1, "")


def _millis36(millis: int) -> str:
    """Ids come in bursts within one millisecond: the last one's text is kept (one tuple: safe
    across threads)."""
    global _last_millis
    last = _last_millis
    if last[0] != millis:
        last = _last_millis = (millis, _base36(millis, 9))
    return last[1]


class _RandomTexts:
    """Short texts cut from the OS's random bytes, read 4 KiB at a time instead of a system call
    each. A deque's ``popleft`` is atomic, so threads share one safely; a forked child starts
    empty, never with its parent's texts."""

    def __init__(self, cut: Callable[[bytes], Iterable[str]]) -> None:
        self._texts: deque[str] = deque()
        self._cut = cut
        os.register_at_fork(after_in_child=self._texts.clear)

    def next(self) -> str:
        try:
            return self._texts.popleft()
        except IndexError:
            self._texts.extend(self._cut(os.urandom(4096)))
            return self._texts.popleft()


# The random part: 12 characters of the alphabet, each from one byte of the OS's random bytes.
# Bytes 252-255 are dropped (252 = 7 x 36), so every character is equally likely: 62 bits
# an id, as 62 random bits in base 36 gave. The characters come in one ``translate``:
# ``secrets.randbits`` was a system call per id and base 36 a loop of divisions (3 µs an id
# against 0.1).
_CHARS = bytes(ord(_ALPHABET[b % 36]) for b in range(256))
_UNEVEN = bytes(range(252, 256))


def _twelve_chars(random: bytes) -> Iterable[str]:
    chars = random.translate(_CHARS, _UNEVEN).decode()
    return (chars[i : i + 12] for i in range(0, len(chars) - 11, 12))


def _hex32(random: bytes) -> Iterable[str]:
    text = random.hex()
    return (text[i : i + 32] for i in range(0, len(text), 32))


_random12 = _RandomTexts(_twelve_chars).next
# Request ids (``app.edge``): 128 random bits as 32 hex characters, like ``secrets.token_hex(16)``
# (a system call each, ~1 % of a message's CPU end to end).
request_id = _RandomTexts(_hex32).next


def utcnow() -> datetime:
    return datetime.now(UTC)


def id_millis(value: str) -> int | None:
    """The creation time (Unix ms) a ``new_id`` carries, or ``None`` if ``value`` is not one."""
    _, sep, rest = value.partition("_")
    stamp = rest[:9]
    if not sep or len(stamp) != 9 or any(c not in _ALPHABET for c in stamp):
        return None
    return int(stamp, 36)


def id_floor(prefix: str, millis: int) -> str:
    """The smallest id ``new_id(prefix)`` can make at ``millis``: ids made then or later sort after it."""
    return f"{prefix}_{_base36(max(0, millis), 9)}"


def new_token(prefix: str, nbytes: int = 32) -> str:
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def sha256_hex(value: str) -> str:
    """API tokens are 256 random bits, so a plain SHA-256 is the right (and fast) hash."""
    return hashlib.sha256(value.encode()).hexdigest()


def isoformat(value: datetime | None) -> str | None:
    """``2026-11-30T21:50:06.123456Z`` (no fraction when it is zero), in UTC."""
    if value is None:
        return None
    text = utc_text(value)
    return f"{text[:19]}Z" if text.endswith(".000000") else f"{text}Z"


_last_text: tuple[datetime | None, str] = (None, "")


def utc_text(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffff`` in UTC (naive values are taken as UTC): what
    ``isoformat`` and the store's timestamps (``Dialect.ts``) are made of.

    Why not ``datetime.isoformat``: it formats through C's ``sprintf`` (about 2 µs here), and a
    message's one ``now`` is formatted 8 times (its row, its event, the conversation, the JSON
    of each). orjson formats it in a third of that, and the last value is kept (one tuple: safe
    across threads), so the repeats cost an identity check."""
    global _last_text
    last = _last_text
    if last[0] is value:
        return last[1]
    utc = value
    if utc.tzinfo is not UTC:  # utcnow() and the store give UTC already: the common case skips this
        utc = utc.replace(tzinfo=UTC) if utc.tzinfo is None else utc.astimezone(UTC)
    text = orjson.dumps(utc)[1:27].decode() if utc.microsecond else orjson.dumps(utc)[1:20].decode() + ".000000"
    _last_text = (value, text)
    return text
