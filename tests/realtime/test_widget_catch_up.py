"""A widget far behind catches up whole, by itself (SPEC §7; docs/widget.md "Delivery").

Issue 16.1: a socket that resumed more than one page (200 messages) behind used to get one
page and then nothing until a newer message happened to be posted. These tests store
hundreds of messages while the widget is away (some large, so pages are cut by size as
well as by count), resume from the very start or from a low ``seq``, post nothing further,
and expect every message exactly once and in order; then the same with live messages
posted while the catch-up runs; then on PostgreSQL + Redis across two instances.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from app.settings import Settings
from app.store.migrate import upgrade
from tests.conftest import LiveServer, Tenant
from tests.realtime.test_realtime import WidgetClient, bot_says, opened

AWAY = 650  # messages stored while the widget is away: more than three pages
BIG = "x" * 4000  # a large text: 60 of these fill a page by size long before 200 do


@pytest.fixture
def widget() -> Iterator[Callable[..., WidgetClient]]:
    with ExitStack() as stack:
        yield lambda server, tenant, **kw: WidgetClient(stack, server, tenant, **kw)


def store_while_away(server: LiveServer, tenant: Tenant, conversation_id: str, first: int, count: int) -> None:
    """``count`` bot messages from four writers, every third one large."""

    def writer(n: int) -> None:
        with server.client(tenant) as api:
            for i in range(n, count, 4):
                bot_says(api, conversation_id, BIG if i % 3 == 0 else f"away {first + i}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads)


def every_message(client: WidgetClient, last: int, quiet: float = 1.5) -> list[int]:
    """Every message seq the client receives until it has been quiet for ``quiet`` seconds
    (nothing is posted meanwhile, so a catch-up that stalls shows as a short list)."""
    out: list[int] = []
    while not out or out[-1] < last:
        got = client.messages_until_quiet(quiet)
        if not got:
            break
        out += [m["seq"] for m in got]
    out += [m["seq"] for m in client.messages_until_quiet(0.5)]  # and nothing after it
    return out


def away_and_back(widget: Any, api_server: LiveServer, widget_server: LiveServer, tenant: Tenant) -> None:
    client = widget(widget_server, tenant)
    conversation_id = opened(client)
    with api_server.client(tenant) as api:
        assert bot_says(api, conversation_id, "before you left")["seq"] == 1
    assert client.expect("message")["message"]["seq"] == 1
    client.ws.close()  # type: ignore[union-attr]
    store_while_away(api_server, tenant, conversation_id, 2, AWAY - 1)
    for held in (0, 1, 37):
        again = widget(widget_server, tenant, visitor_token=client.session["visitor_token"])
        again.connect(conversation_id=conversation_id, last_seq=held)
        assert every_message(again, AWAY) == list(range(held + 1, AWAY + 1)), f"resumed from {held}"


def test_a_widget_far_behind_gets_every_message_once_in_order_without_a_newer_one(
    widget: Any, server: LiveServer, tenant: Tenant
) -> None:
    away_and_back(widget, server, server, tenant)


def test_live_messages_during_a_long_catch_up_follow_it_with_no_gap_and_no_duplicate(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    client = widget(server, tenant)
    conversation_id = opened(client)
    client.ws.close()  # type: ignore[union-attr]
    store_while_away(server, tenant, conversation_id, 1, AWAY)
    again = widget(server, tenant, visitor_token=client.session["visitor_token"])
    live = 120

    def poster() -> None:
        with server.client(tenant) as api2:
            for i in range(live):
                bot_says(api2, conversation_id, f"live {i}")

    thread = threading.Thread(target=poster)
    thread.start()  # racing with the handshake and with every page of the catch-up
    try:
        again.connect(conversation_id=conversation_id, last_seq=0)
        got = every_message(again, AWAY + live)
    finally:
        thread.join(timeout=120)
    assert got == list(range(1, AWAY + live + 1))


def test_a_fresh_client_gets_the_last_200_even_when_they_span_several_pages(
    widget: Any, server: LiveServer, tenant: Tenant
) -> None:
    client = widget(server, tenant)
    conversation_id = opened(client)
    client.ws.close()  # type: ignore[union-attr]
    with server.client(tenant) as api:
        for _ in range(260):  # all large: the last 200 take four pages by size
            bot_says(api, conversation_id, BIG)
    fresh = widget(server, tenant, visitor_token=client.session["visitor_token"])
    fresh.connect()  # no conversation_id, no last_seq: nothing to resume from
    assert every_message(fresh, 260) == list(range(61, 261))


@pytest.mark.postgres
@pytest.mark.redis
def test_far_behind_on_postgres_and_redis_across_two_instances(
    widget: Any, server_factory: Any, postgres_database: str, redis_broker_url: str
) -> None:
    upgrade(Settings(database_url=postgres_database, env="test"))
    env = {"BACKCHANNEL_BROKER_URL": redis_broker_url}
    writer = server_factory(database_url=postgres_database, env=env)
    reader = server_factory(database_url=postgres_database, env=env)
    away_and_back(widget, writer, reader, writer.new_tenant())
