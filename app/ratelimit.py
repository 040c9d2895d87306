"""Fixed-window rate limits behind one interface: in-process memory, or Redis across instances."""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Protocol

from app import errors


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int, window: float) -> float:
        """Count one hit; return 0 when allowed, else the seconds until the window resets."""
        ...

    def hit_or_raise(self, key: str, limit: int, window: float) -> None: ...

    def reset(self, key: str) -> None: ...


class _Base:
    def hit(self, key: str, limit: int, window: float) -> float:  # pragma: no cover
        raise NotImplementedError

    def hit_or_raise(self, key: str, limit: int, window: float) -> None:
        wait = self.hit(key, limit, window)
        if wait > 0:
            raise errors.RateLimited(max(1, math.ceil(wait)))


class MemoryRateLimiter(_Base):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, limit: int, window: float) -> float:
        now = time.monotonic()
        with self._lock:
            start, count = self._windows.get(key, (now, 0))
            if now - start >= window:
                start, count = now, 0
            count += 1
            self._windows[key] = (start, count)
            if len(self._windows) > 100_000:  # forget finished windows
                self._windows = {k: v for k, v in self._windows.items() if now - v[0] < window}
            return 0.0 if count <= limit else window - (now - start)

    def reset(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)


class RedisRateLimiter(_Base):
    """Shared across instances: INCR on a per-window key with an expiry."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def hit(self, key: str, limit: int, window: float) -> float:
        now = time.time()
        bucket = int(now // window)
        rkey = f"backchannel:rl:{key}:{bucket}"
        try:
            pipe = self._redis.pipeline()
            pipe.incr(rkey)
            pipe.expire(rkey, int(window) + 1)
            count = pipe.execute()[0]
        except Exception:
            return 0.0  # fail open: a Redis outage must not take the API down
        return 0.0 if count <= limit else (bucket + 1) * window - now

    def reset(self, key: str) -> None:
        try:
            for rkey in self._redis.scan_iter(f"backchannel:rl:{key}:*"):
                self._redis.delete(rkey)
        except Exception:
            pass


def make_rate_limiter(broker_url: str) -> RateLimiter:
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisRateLimiter(broker_url)
    return MemoryRateLimiter()
