"""Opaque, prefixed, time-sortable identifiers and random secrets."""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
from datetime import UTC, datetime

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


@functools.lru_cache(maxsize=1)  # ids come in bursts within one millisecond
def _millis36(millis: int) -> str:
    return _base36(millis, 9)


def new_id(prefix: str) -> str:
    """``prefix_`` + 9 chars of milliseconds + 12 random chars: sorts by creation time."""
    return f"{prefix}_{_millis36(int(time.time() * 1000))}{_base36(secrets.randbits(62), 12)}"


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
    if value is None:
        return None
    if value.tzinfo is not UTC:  # utcnow() and the store give UTC already: the common case skips this
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")
