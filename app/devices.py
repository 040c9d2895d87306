"""A customer's device in a few words ("Chrome 131 on Android"), from the widget's User-Agent.

Only the summary is stored (``user.widget_device``), never the User-Agent itself: the Inbox's
customer panel shows it, nothing decides anything by it. Unknown agents give ``None``.
"""

from __future__ import annotations

import re

from sqlmodel import Session, col, select

from app.store.tables import User

MAX_AGENT = 512  # longer headers are not read

# Order matters: Edge and Opera say "Chrome" too, Chrome says "Safari", iPads may say "Macintosh".
_BROWSERS = (
    ("Edge", re.compile(r"Edg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"(?:OPR|Opera)/(\d+)")),
    ("Samsung Internet", re.compile(r"SamsungBrowser/(\d+)")),
    ("Firefox", re.compile(r"(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"(?:Chrome|CriOS)/(\d+)")),
    ("Safari", re.compile(r"Version/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/")),
)
_SYSTEMS = (
    ("iPad", re.compile(r"iPad")),
    ("iPhone", re.compile(r"iPhone")),
    ("Android", re.compile(r"Android")),
    ("Windows", re.compile(r"Windows NT")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("macOS", re.compile(r"Mac OS X|Macintosh")),
    ("Linux", re.compile(r"Linux")),
)


def summary(user_agent: str | None) -> str | None:
    """"Firefox 128 on Windows", "Safari 17 on iPhone", "Chrome on Linux"; None if nothing is known."""
    agent = (user_agent or "")[:MAX_AGENT]
    browser = next(((name, m.group(1)) for name, rx in _BROWSERS if (m := rx.search(agent))), None)
    system = next((name for name, rx in _SYSTEMS if rx.search(agent)), None)
    if browser is None and system is None:
        return None
    said = f"{browser[0]} {browser[1]}" if browser else "A browser"
    return f"{said} on {system}" if system else said


def changed(s: Session, user_id: str, page: str | None, device: str | None) -> bool:
    """Whether the widget's page or device differs from what is stored for the customer."""
    found = s.exec(select(User.widget_page, User.widget_device).where(col(User.id) == user_id)).first()
    if found is None:
        return False
    stored_page, stored_device = found
    return bool((page and page[:2048] != stored_page) or (device and device[:120] != stored_device))
