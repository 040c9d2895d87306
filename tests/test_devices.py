"""app/devices.py: a User-Agent in a few words, or None."""

from __future__ import annotations

from typing import Any

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


def test_changed_says_whether_a_write_is_needed(app_server: Any, app_tenant: Any, app_api: Any) -> None:
    from app.devices import changed
    from app.mail.replies import record_presence

    user = app_api.post("/api/v1/users", json={"name": "Dee"}).json()["id"]
    assert app_server.in_tx(lambda tx: changed(tx.session, user, "https://shop.example/a", None))
    app_server.in_tx(lambda tx: record_presence(tx, user, "https://shop.example/a", "Chrome 131 on Linux"))
    assert not app_server.in_tx(lambda tx: changed(tx.session, user, "https://shop.example/a", "Chrome 131 on Linux"))
    assert not app_server.in_tx(lambda tx: changed(tx.session, user, None, None))
    assert app_server.in_tx(lambda tx: changed(tx.session, user, "https://shop.example/b", None))
    assert app_server.in_tx(lambda tx: changed(tx.session, user, None, "Safari 17 on iPhone"))
    assert not app_server.in_tx(lambda tx: changed(tx.session, "usr_nobody", "https://shop.example/a", None))
