"""Delivery to widget sockets, as the hub does it (app/realtime/hub.py; docs/widget.md "Delivery").

One heartbeat task serves every socket, a connection's sender exists only while it has
something to send, frames are serialized once per event, and the handshake reads the store
once: these tests pin what that must not change. Every frame arrives once and in order, on
every tab; a history longer than the send queue still arrives whole; a message posted while a
socket is connecting is not lost; a silent peer among live ones is the only one closed; an
``allowed_origins`` change applies to the very next handshake.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import LiveServer, Tenant
from tests.realtime.test_realtime import ORIGIN, WidgetClient, bot_says, opened


@pytest.fixture
def widget() -> Iterator[Callable[..., WidgetClient]]:
    with ExitStack() as stack:
        yield lambda server, tenant, **kw: WidgetClient(stack, server, tenant, **kw)


def seqs_until(client: WidgetClient, last: int, limit: int = 1000) -> list[int]:
    """Every message seq the client receives until it holds ``last`` (bounded)."""
    got: list[int] = []
    for _ in range(limit):
        if got and got[-1] >= last:
            break
        frame = client.expect("message", timeout=15)
        got.append(frame["message"]["seq"])
    return got


def post_concurrently(server: LiveServer, tenant: Tenant, conversation_id: str, posters: int, each: int) -> None:
    def poster(n: int) -> None:
        with server.client(tenant) as api:
            for i in range(each):
                bot_says(api, conversation_id, f"poster {n} message {i}")

    threads = [threading.Thread(target=poster, args=(n,)) for n in range(posters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)


def test_every_tab_gets_every_message_once_and_in_order_under_concurrent_posts(
    widget: Any, server: LiveServer, tenant: Tenant
) -> None:
    first = widget(server, tenant)
    conversation_id = opened(first)
    tabs = [first]
    for _ in range(2):
        tab = widget(server, tenant, visitor_token=first.session["visitor_token"])
        assert tab.connect()["conversation"]["id"] == conversation_id
        tabs.append(tab)
    post_concurrently(server, tenant, conversation_id, posters=4, each=10)
    for tab in tabs:
        assert seqs_until(tab, 40) == list(range(1, 41))
        assert tab.messages_until_quiet() == []  # and nothing after: no duplicate


def test_a_message_posted_while_a_socket_connects_is_not_lost(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    owner = widget(server, tenant)
    conversation_id = opened(owner)
    stop = threading.Event()
    posted: list[int] = []

    def poster() -> None:
        with server.client(tenant) as api2:
            for i in range(150):  # bounded (and under the 200-message history); stopped once connected
                if stop.is_set():
                    return
                posted.append(bot_says(api2, conversation_id, f"m{i}")["seq"])

    thread = threading.Thread(target=poster)
    thread.start()
    try:
        tabs = []
        for _ in range(6):  # handshakes racing with the posts
            tab = widget(server, tenant, visitor_token=owner.session["visitor_token"])
            tab.connect(conversation_id=conversation_id, last_seq=0)
            tabs.append(tab)
    finally:
        stop.set()
        thread.join(timeout=60)
    last = bot_says(api, conversation_id, "the end")["seq"]
    for tab in tabs:
        got = seqs_until(tab, last)
        # A fresh client gets the history then the live messages: no gap, no duplicate.
        assert got == list(range(got[0], last + 1)), got
        assert got[0] == 1


def test_a_history_longer_than_the_send_queue_arrives_whole_and_live_messages_follow(
    widget: Any, server_factory: Any
) -> None:
    server: LiveServer = server_factory(env={"BACKCHANNEL_WS_SEND_QUEUE": "4"})
    tenant: Tenant = server.new_tenant()
    client = widget(server, tenant)
    conversation_id = opened(client)
    with server.client(tenant) as api:
        for i in range(30):
            bot_says(api, conversation_id, f"history {i}")
        assert seqs_until(client, 30) == list(range(1, 31))
        again = widget(server, tenant, visitor_token=client.session["visitor_token"])
        again.connect(conversation_id=conversation_id, last_seq=0)
        assert seqs_until(again, 30) == list(range(1, 31))  # not closed 1013: history is not queued frame by frame
        bot_says(api, conversation_id, "live")
        assert again.expect("message")["message"]["seq"] == 31


def test_the_history_of_a_long_conversation_is_its_last_200_messages(
    widget: Any, server: LiveServer, tenant: Tenant
) -> None:
    client = widget(server, tenant)
    conversation_id = opened(client)
    post_concurrently(server, tenant, conversation_id, posters=3, each=70)
    seqs_until(client, 210)
    fresh = widget(server, tenant, visitor_token=client.session["visitor_token"])
    fresh.connect()
    assert seqs_until(fresh, 210) == list(range(11, 211))
    with server.client(tenant) as api:
        bot_says(api, conversation_id, "and one more")
    assert fresh.expect("message")["message"]["seq"] == 211


def test_one_heartbeat_serves_every_socket_and_closes_only_the_silent_one(widget: Any, server_factory: Any) -> None:
    server = server_factory(env={"BACKCHANNEL_WS_HEARTBEAT_SECONDS": "0.3"})
    tenant = server.new_tenant()
    live = [widget(server, tenant) for _ in range(4)]
    for client in live:
        client.connect()
    silent = widget(server, tenant)
    silent.connect()
    silent.expect("ping")  # and never answer: only this one is dead
    for _ in range(8):  # well past 2.5 intervals, every live socket answering each ping
        for client in live:
            client.expect("ping")
            client.send({"type": "pong"})
    assert silent.close_code() == 4408
    for client in live:
        client.send({"type": "ping"})
        client.expect("pong")


def test_an_origin_change_applies_to_the_very_next_handshake(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    client = widget(server, tenant)
    client.connect()  # the workspace is now known to the hub
    api.patch("/api/v1/widget-settings", json={"allowed_origins": ["http://elsewhere.test"]}).raise_for_status()
    url = server.ws_url + client.session["socket_path"]
    with pytest.raises(InvalidStatus) as info, connect(url, origin=ORIGIN):  # type: ignore[arg-type]
        pass
    assert info.value.response.status_code == 403
    api.patch("/api/v1/widget-settings", json={"allowed_origins": [ORIGIN]}).raise_for_status()
    assert client.connect()["type"] == "ready"  # and back again, at once
