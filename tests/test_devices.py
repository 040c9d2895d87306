"""app/devices.py: a User-Agent in a few words, or None."""

from __future__ import annotations

import pytest

from app.devices import summary

AGENTS = [  # noqa: E501 (real User-Agents are long)
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
     "Chrome 131 on Android"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
     "Safari 17 on iPhone"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128 on Windows"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
     "Edge 130 on Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
     "Safari 17 on macOS"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
     "Chrome 131 on Linux"),
    ("curl/8.5.0", None),
    ("", None),
    (None, None),
    ("Linux " + "x" * 10_000, "A browser on Linux"),
]


@pytest.mark.parametrize(("agent", "expected"), AGENTS)
def test_summary(agent: str | None, expected: str | None) -> None:
    assert summary(agent) == expected
