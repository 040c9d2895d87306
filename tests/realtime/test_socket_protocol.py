"""The widget socket under hostile or broken clients: a close-code suite standing in for Autobahn.

Each test pins what the server does with one kind of bad input (docs/widget.md, "Close codes"):
1007 for bytes that are not UTF-8 JSON objects, 1009 for oversize frames (whole or fragmented),
an ``error`` frame (the socket stays) for unknown types and malformed fields, 1013 for a reader
too slow to keep up (its queue is bounded; it catches up on reconnect, nothing lost).
Floods (1008) and silent peers (4408) are pinned in ``tests/realtime/test_realtime.py``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import LiveServer, Tenant
from tests.factories import messages
from tests.realtime.test_realtime import ORIGIN, WidgetClient, opened


@pytest.fixture
def widget() -> Iterator[Callable[..., WidgetClient]]:
    """``widget(server, tenant, **identity)``: a scripted widget (tests/realtime/test_realtime.py)."""
    with ExitStack() as stack:
        yield lambda server, tenant, **kw: WidgetClient(stack, server, tenant, **kw)


def ready_client(widget: Any, server: LiveServer, tenant: Tenant) -> WidgetClient:
    client: WidgetClient = widget(server, tenant)
    client.connect()
    return client


def still_open(client: WidgetClient) -> None:
    client.send({"type": "ping"})
    client.expect("pong")


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (b'{"type": "ping", "x": "\xff\xfe"}', True),  # a text frame that is not UTF-8: the protocol layer
        (b'{"type": "ping", "x": "\xc3\x28"}', False),  # a binary frame that is not UTF-8: the app
        (b"[1, 2, 3]", True),
        (b'"just a string"', True),
        (b"null", True),
        (b"{}", True),  # no type
        (b'{"type": 7}', True),
        (b"", True),
        (b"\x00\x01\x02", False),
    ],
    ids=["bad-utf8-text", "bad-utf8-binary", "array", "string", "null", "no-type", "numeric-type", "empty", "binary-junk"],
)
def test_frames_that_are_not_utf8_json_objects_close_1007(
    widget: Any, module_server: LiveServer, module_tenant: Tenant, payload: bytes, text: bool
) -> None:
    client = ready_client(widget, module_server, module_tenant)
    assert client.ws is not None
    client.ws.send(payload, text=text)
    assert client.close_code() == 1007


def test_valid_json_in_a_binary_frame_is_accepted(widget: Any, module_server: LiveServer, module_tenant: Tenant) -> None:
    client = ready_client(widget, module_server, module_tenant)
    assert client.ws is not None
    client.ws.send(json.dumps({"type": "ping"}).encode(), text=False)
    client.expect("pong")


def test_oversize_frames_close_1009_whole_or_fragmented(
    widget: Any, module_server: LiveServer, module_tenant: Tenant
) -> None:
    whole = ready_client(widget, module_server, module_tenant)
    assert whole.ws is not None
    whole.ws.send(json.dumps({"type": "typing", "pad": "x" * 200_000}))
    assert whole.close_code() == 1009
    fragmented = ready_client(widget, module_server, module_tenant)
    assert fragmented.ws is not None
    # Only the last fragment crosses 64 KiB, so the client has sent it all before the server can
    # refuse (an earlier refusal would race the client's own writes, not test the server).
    fragments = ['{"type": "typing", "pad": "', *["y" * 16_384] * 3, "y" * 17_000 + '"}']
    try:
        fragmented.ws.send(fragments)
    except ConnectionClosed as closed:  # the close can land while send() still holds the connection
        assert closed.rcvd is not None and closed.rcvd.code == 1009
    else:
        assert fragmented.close_code() == 1009
    # Just under the limit is read, and refused politely by the field limit instead.
    under = ready_client(widget, module_server, module_tenant)
    under.send({"type": "message", "text": "z" * 60_000, "client_message_id": "under"})
    error = under.expect("error", ref="message")
    assert error["code"] == "validation_failed" and error["client_message_id"] == "under"
    still_open(under)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "no.such.type"}, "unknown_type"),
        ({"type": "x" * 5000}, "unknown_type"),
        ({"type": "message", "text": 5, "client_message_id": "a"}, "validation_failed"),
        ({"type": "message", "text": "", "client_message_id": "b"}, "validation_failed"),
        ({"type": "message", "text": "x" * 4097, "client_message_id": "c"}, "validation_failed"),
        ({"type": "message", "text": "hi", "client_message_id": "d", "reply_to": "nope"}, "validation_failed"),
        ({"type": "message", "text": "hi", "client_message_id": ["e"]}, "validation_failed"),
        ({"type": "webview.open"}, "validation_failed"),
        ({"type": "webview.open", "message_id": 1, "webview_id": {}}, "validation_failed"),
        ({"type": "webview.close", "message_id": "m", "webview_id": "w", "status": "exploded"}, "validation_failed"),
    ],
)
def test_unknown_types_and_malformed_fields_get_an_error_frame_and_the_socket_stays(
    widget: Any, module_server: LiveServer, module_tenant: Tenant, frame: dict[str, Any], code: str
) -> None:
    client = ready_client(widget, module_server, module_tenant)
    client.send({"type": "open"})
    client.expect("conversation")
    client.send(frame)
    error = client.expect("error")
    assert error["code"] == code and error["ref"] == frame["type"][:5000]
    assert set(error) >= {"type", "ref", "code", "message", "details"}
    assert "Traceback" not in json.dumps(error)
    still_open(client)


def test_fields_of_the_wrong_type_are_ignored_where_harmless(
    widget: Any, module_server: LiveServer, module_tenant: Tenant
) -> None:
    client = ready_client(widget, module_server, module_tenant)
    client.send({"type": "open"})
    client.expect("conversation")
    for frame in (
        {"type": "read", "seq": "7"},
        {"type": "read", "seq": None},
        {"type": "read", "seq": 10**30},
        {"type": "typing", "on": {"deep": [1, 2]}},
        {"type": "pong", "extra": [None] * 100},
    ):
        client.send(frame)
    still_open(client)
    assert not [f for f in client.seen if f["type"] == "error"], client.seen


def test_a_reader_too_slow_to_keep_up_is_dropped_and_catches_up_on_reconnect(
    widget: Any, server_factory: Any
) -> None:
    server: LiveServer = server_factory(env={"BACKCHANNEL_WS_SEND_QUEUE": "4"})
    tenant: Tenant = server.new_tenant()
    fast = widget(server, tenant)
    conversation_id = opened(fast)
    url = server.ws_url + fast.session["socket_path"]

    # A peer that stops reading: a tiny receive window, and a client queue of one frame, so the
    # server's writes back up into its own bounded queue.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    with connect(url, sock=sock, origin=ORIGIN, compression=None, max_queue=1, ping_interval=None) as slow:  # type: ignore[arg-type,call-overload]
        slow.send(json.dumps({"type": "auth", "token": fast.session["session_token"]}))
        card = {"title": "t", "image_url": "https://example.com/" + "i" * 2000,
                "buttons": [{"url_button": {"label": "b", "url": "https://example.com/" + "u" * 2000}}] * 3}
        with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=30) as api:
            posted = 0
            for _ in range(80):  # ~650 KiB of frames each 8 messages: far beyond any socket buffer
                r = api.post(
                    f"/api/v1/conversations/{conversation_id}/messages",
                    json={"message_parts": [{"carousel": {"cards": [card] * 10}}]},
                )
                assert r.status_code == 201, r.text
                posted += 1
            # The healthy client got everything, in order, while the slow one lagged.
            got = [m["seq"] for m in fast.messages_until_quiet(quiet=2)]
            assert got == list(range(1, posted + 1))
            # The slow one, once it reads again, finds it was dropped (1013) before the end.
            held: list[int] = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    frame = json.loads(slow.recv(timeout=30))
                    if frame["type"] == "message":
                        held.append(frame["message"]["seq"])
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            assert len(held) < posted and held == list(range(1, len(held) + 1))
            # Reconnecting from the last seq it holds brings exactly the rest.
            again = widget(server, tenant, visitor_token=fast.session["visitor_token"])
            again.connect(conversation_id=conversation_id, last_seq=held[-1] if held else 0)
            rest = [m["seq"] for m in again.messages_until_quiet(quiet=2)]
            assert held + rest == [m["seq"] for m in messages(api, conversation_id)]
