"""The event vocabulary (``app/events.py``): each type declared once, every consumer derived from it.

The webhook API's list, the console's choices, the widget hub's dispatch, the console's hints,
``Tx.emit``'s outbox-or-live decision and the table in docs/webhooks.md all come from (or are
checked against) the one table; a module that spells an event type itself fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sqlmodel import Session, select

from app import events
from app.console import hub as console_hub
from app.console import webhooks as console_webhooks
from app.ids import utcnow
from app.realtime import hub
from app.settings import Settings
from app.store.engine import make_engine
from app.store.runner import Tx
from app.store.tables import Event, Workspace
from app.webhooks import schemas
from tests.conftest import migrated_sqlite

ROOT = Path(__file__).resolve().parent.parent


def test_each_event_type_is_declared_once() -> None:
    assert list(events.EVENTS) == [e.name for e in events.EVENTS.values()]
    with pytest.raises(ValueError, match="declared twice"):
        events._declare("message.created", "{}", stored=True)
    for e in events.EVENTS.values():
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", e.name), e.name
        # Stored events are for webhooks; a live-only one is for sockets or the form relay.
        assert e.stored == (e.webhook in (events.Webhook.SUBSCRIBED, events.Webhook.ENDPOINT)), e.name
        assert e.stored or e.live or e.webhook is events.Webhook.FORM_CALLBACK, e.name


def test_no_module_spells_an_event_type_itself() -> None:
    """Outside app/events.py an event type is named by its constant (``events.MESSAGE_CREATED``)."""
    found = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        if path == ROOT / "app" / "events.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in events.EVENTS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "name these with the constants of app/events.py:\n" + "\n".join(found)


def test_the_webhook_list_and_the_consoles_choices_derive_from_the_table() -> None:
    assert schemas.EVENT_TYPES is events.WEBHOOK_EVENT_TYPES
    assert events.WEBHOOK_EVENT_TYPES == (
        "message.created",
        "conversation.created",
        "conversation.assigned",
        "conversation.resolved",
        "conversation.reopened",
        "conversation.updated",
        "conversation.handover",
        "conversation.rated",
        "user.created",
        "user.updated",
        "user.deleted",
        "webview.opened",
        "webview.closed",
        "webhook.test",
    )
    # webhook.test goes only to the endpoint being tested: nothing to subscribe to in the console.
    assert console_webhooks._event_choices() == [e for e in events.WEBHOOK_EVENT_TYPES if e != "webhook.test"]
    assert schemas.WebhookEndpointIn(url="https://example.com/h", events=list(events.WEBHOOK_EVENT_TYPES)).events
    with pytest.raises(ValueError, match="unknown event type"):
        schemas.WebhookEndpointIn(url="https://example.com/h", events=["conversation.typing"])


def test_the_hub_dispatches_exactly_the_widgets_events() -> None:
    assert set(hub._ON_EVENT) == events.TO_WIDGET
    assert {events.MESSAGE_CREATED, events.CONVERSATION_TYPING, events.BROKER_RESYNC} <= events.TO_WIDGET
    assert events.USER_CREATED not in events.TO_WIDGET


def test_the_console_hears_exactly_the_consoles_events() -> None:
    assert console_hub.FORWARDED | {events.CONSOLE_LOGOUT, events.BROKER_RESYNC} == events.TO_CONSOLE
    for name in events.EVENTS:
        hint = console_hub.summarise({"type": name, "workspace_id": "wsp_1", "data": {"conversation_id": "cnv_1"}})
        assert (hint is not None) == (name in console_hub.FORWARDED), name


def test_emit_stores_what_the_table_says_and_publishes_only_live_events(tmp_path: Path) -> None:
    engine = make_engine(Settings(env="test", database_url=migrated_sqlite(tmp_path)))
    with engine.begin() as c:
        c.execute(
            Workspace.metadata.tables["workspace"]
            .insert()
            .values(
                id="wsp_1", name="w", widget_key="wk_1", identity_secret="x", allowed_origins=[], created_at=utcnow()
            )
        )
    with Session(engine) as session:
        tx = Tx(session)
        tx.emit("wsp_1", events.USER_CREATED, {"user": {"id": "usr_1"}})
        assert tx.outgoing == []  # stored for webhooks, not published
        tx.emit("wsp_1", events.WEBVIEW_OPENED, {"conversation_id": "cnv_1"})
        assert [e["type"] for e in tx.outgoing] == [events.WEBVIEW_OPENED]
        with pytest.raises(ValueError, match="live only"):
            tx.emit("wsp_1", events.CONVERSATION_TYPING, {})
        with pytest.raises(KeyError):
            tx.emit("wsp_1", "conversation.teleported", {})
        stored = [e.type for e in session.exec(select(Event).order_by(Event.created_at))]
        assert stored == [events.USER_CREATED, events.WEBVIEW_OPENED]
    engine.dispose()


# -- docs/webhooks.md --------------------------------------------------------------------------

_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _webhook_table() -> list[tuple[list[str], str]]:
    """The rows of docs/webhooks.md's event table: (event names, data shape)."""
    lines = (ROOT / "docs" / "webhooks.md").read_text().splitlines()
    start = lines.index("| event | `data` |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(line)[1:-1]]
        names = re.findall(r"`([^`]+)`", cells[0])
        rows.append((names, cells[1].strip("`")))
    return rows


def _expected_table() -> str:
    lines = ["| event | `data` |", "|---|---|"]
    for name in events.WEBHOOK_EVENT_TYPES:
        data = events.EVENTS[name].data.replace("|", "\\|")
        lines.append(f"| `{name}` | `{data}` |")
    return "\n".join(lines)


def test_the_docs_event_table_matches_the_table() -> None:
    rows = _webhook_table()
    named = [n for names, _ in rows for n in names]
    help_ = "docs/webhooks.md's event table drifted from app/events.py; it should read (rows may group names):\n" + (
        _expected_table()
    )
    assert sorted(named) == sorted(events.WEBHOOK_EVENT_TYPES), help_
    for names, data in rows:
        for name in names:
            assert events.EVENTS[name].data == data, f"{name}: docs say {data!r}\n{help_}"
