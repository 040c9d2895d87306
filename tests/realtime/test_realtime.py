"""The widget socket against a real uvicorn: protocol, delivery, resume, limits and security."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import LiveServer, Tenant

ORIGIN = "http://shop.test"


class WidgetClient:
    """What widget.js does, scripted: a session, then a socket with first-frame auth."""

    def __init__(
        self, stack: ExitStack, server: LiveServer, tenant: Tenant, origin: str = ORIGIN, **identity: Any
    ) -> None:
        self.stack, self.server, self.tenant, self.origin = stack, server, tenant, origin
        response = httpx.post(
            server.url + "/widget/v1/session",
            json={"widget_key": tenant.widget_key, **identity},
            headers={"Origin": origin},
        )
        response.raise_for_status()
        self.session = response.json()
        self.ws: ClientConnection | None = None
        self.seen: list[dict[str, Any]] = []

    def open_socket(self) -> ClientConnection:
        url = self.server.ws_url + self.session["socket_path"]
        self.ws = self.stack.enter_context(connect(url, origin=self.origin))  # type: ignore[arg-type]
        return self.ws

    def connect(self, **auth: Any) -> dict[str, Any]:
        self.open_socket()
        self.send({"type": "auth", "token": self.session["session_token"], **auth})
        return self.expect("ready")

    def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        self.ws.send(json.dumps(frame))

    def expect(self, type_: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        """The next frame of this type (and fields); frames before it are kept in ``seen``."""
        assert self.ws is not None
        deadline = time.monotonic() + timeout
        while True:
            frame = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            self.seen.append(frame)
            if frame["type"] == type_ and all(frame.get(k) == v for k, v in match.items()):
                return frame  # type: ignore[no-any-return]

    def messages_until_quiet(self, quiet: float = 0.7) -> list[dict[str, Any]]:
        """Every message frame that arrives until the socket is quiet for ``quiet`` seconds."""
        assert self.ws is not None
        out = []
        while True:
            try:
                frame = json.loads(self.ws.recv(timeout=quiet))
            except TimeoutError:
                return out
            if frame["type"] == "message":
                out.append(frame["message"])

    def close_code(self, timeout: float = 10) -> int:
        assert self.ws is not None
        with pytest.raises(ConnectionClosed) as info:
            deadline = time.monotonic() + timeout
            while True:
                self.seen.append(json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))))
        assert info.value.rcvd is not None, "closed without a close frame"
        return info.value.rcvd.code


@pytest.fixture
def widget() -> Iterator[Callable[..., WidgetClient]]:
    """``widget(server, tenant, **identity)``: a scripted widget; its sockets close at the end."""
    with ExitStack() as stack:
        yield lambda server, tenant, **kw: WidgetClient(stack, server, tenant, **kw)


def opened(client: WidgetClient) -> str:
    client.connect()
    client.send({"type": "open"})
    return client.expect("conversation")["conversation"]["id"]  # type: ignore[no-any-return]


def bot_says(api: httpx.Client, conversation_id: str, content: str, **extra: Any) -> dict[str, Any]:
    response = api.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"actor": {"type": "bot"}, "message_parts": [{"text": {"content": content}}], **extra},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_open_creates_the_conversation_and_bot_messages_arrive_live(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    client = widget(server, tenant)
    ready = client.connect()
    assert ready["conversation"] is None and ready["settings"]["theme_color"] == "#1f5eff"
    assert "allowed_origins" not in ready["settings"]
    client.send({"type": "open"})
    conversation_id = client.expect("conversation")["conversation"]["id"]
    listed = api.get("/api/v1/conversations", params={"user_id": client.session["user_id"]}).json()["data"]
    assert [c["id"] for c in listed] == [conversation_id]
    sent = bot_says(api, conversation_id, "Hello from the bot")
    frame = client.expect("message")
    assert frame["message"] == sent  # exactly the API's message JSON
    assert frame["sender"]["name"] == "Bot" and frame["sender"]["kind"] == "bot"


def test_customer_messages_use_the_api_write_path_once_per_client_id(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    client = widget(server, tenant)
    client.connect()
    client.send({"type": "message", "text": "Hi, I need help", "client_message_id": "c-1"})
    ack = client.expect("ack", client_message_id="c-1")
    echoed = next(f for f in client.seen if f["type"] == "message")["message"]
    assert echoed["actor"] == {"type": "user", "id": client.session["user_id"]}
    assert echoed["id"] == ack["message_id"] and echoed["client_message_id"] == "c-1"
    # The same client_message_id again (an offline resend) stores nothing new.
    client.send({"type": "message", "text": "Hi, I need help", "client_message_id": "c-1"})
    assert client.expect("ack", client_message_id="c-1")["message_id"] == ack["message_id"]
    stored = api.get(f"/api/v1/conversations/{echoed['conversation_id']}/messages").json()["data"]
    assert [m["message_parts"][0]["text"]["content"] for m in stored] == ["Hi, I need help"]


def test_reply_to_is_checked_against_the_offered_choices(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    client = widget(server, tenant)
    conversation_id = opened(client)
    offer = bot_says(
        api,
        conversation_id,
        "Pick one",
        reply_parts=[{"quick_replies": {"options": [{"label": "Yes", "payload": "YES"}]}}],
    )
    client.send(
        {
            "type": "message",
            "text": "Yes",
            "client_message_id": "bad",
            "reply_to": {"message_id": offer["id"], "payload": "SOMETHING_ELSE"},
        }
    )
    error = client.expect("error", client_message_id="bad")
    assert error["code"] == "validation_failed"
    client.send(
        {
            "type": "message",
            "text": "Yes",
            "client_message_id": "good",
            "reply_to": {"message_id": offer["id"], "payload": "YES"},
        }
    )
    client.expect("ack", client_message_id="good")
    last = api.get(f"/api/v1/conversations/{conversation_id}/messages").json()["data"][-1]
    assert last["reply_to"] == {"message_id": offer["id"], "payload": "YES"}


def test_resume_sends_only_what_the_client_lacks(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    client = widget(server, tenant)
    conversation_id = opened(client)
    for i in range(1, 6):
        bot_says(api, conversation_id, f"message {i}")
    assert [m["seq"] for m in client.messages_until_quiet()] == [1, 2, 3, 4, 5]
    client.ws.close()  # type: ignore[union-attr]
    bot_says(api, conversation_id, "message 6 (while away)")
    again = widget(server, tenant, visitor_token=client.session["visitor_token"])
    again.connect(conversation_id=conversation_id, last_seq=3)
    assert [m["seq"] for m in again.messages_until_quiet()] == [4, 5, 6]
    # A client holding another conversation (or none) gets the history from the start.
    fresh = widget(server, tenant, visitor_token=client.session["visitor_token"])
    fresh.connect(conversation_id="cnv_other", last_seq=5)
    assert [m["seq"] for m in fresh.messages_until_quiet()] == [1, 2, 3, 4, 5, 6]


def test_two_tabs_of_one_visitor_share_messages_and_read_state(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    tab1 = widget(server, tenant)
    conversation_id = opened(tab1)
    tab2 = widget(server, tenant, visitor_token=tab1.session["visitor_token"])
    assert tab2.connect()["conversation"]["id"] == conversation_id
    tab1.send({"type": "message", "text": "from tab one", "client_message_id": "t1"})
    assert tab2.expect("message")["message"]["client_message_id"] == "t1"
    bot_says(api, conversation_id, "hello both")
    tab2.expect("message", timeout=5)
    tab1.send({"type": "read", "seq": 2})
    assert tab2.expect("read")["seq"] == 2 and tab2.seen[-1]["reader"] == "user"


def test_typing_from_the_api_reaches_the_widget_and_the_customers_typing_is_not_echoed(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    client = widget(server, tenant)
    conversation_id = opened(client)
    client.send({"type": "typing", "on": True})
    response = api.post(f"/api/v1/conversations/{conversation_id}/typing", json={"on": True})
    assert response.status_code == 204
    typing = client.expect("typing")
    assert typing["actor"] == {"type": "bot", "name": "Bot"} and typing["on"] is True and typing["timeout"] > 0
    assert not [f for f in client.seen if f["type"] == "typing" and f["actor"]["type"] == "user"]


def test_assignment_and_settings_changes_are_pushed(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    client = widget(server, tenant)
    conversation_id = opened(client)
    agent = api.post("/api/v1/agents", json={"name": "Maya", "kind": "human"}).json()
    api.patch(f"/api/v1/conversations/{conversation_id}", json={"assignee_id": agent["id"]}).raise_for_status()
    frame = client.expect("conversation")
    assert frame["conversation"]["assignee"]["name"] == "Maya"
    api.patch("/api/v1/widget-settings", json={"theme_color": "#0a7d33", "greeting": "Welcome!"}).raise_for_status()
    settings = client.expect("settings")
    # Only what the widget shows: never allowed_origins or identity settings.
    assert settings == {
        "type": "settings",
        "theme_color": "#0a7d33",
        "greeting": "Welcome!",
        "locale": None,
        "away_message": "",
        "business_hours": None,
        "ratings_enabled": True,
    }


def test_a_handover_that_assigns_someone_is_one_conversation_frame(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    """One commit fires ``conversation.assigned`` and ``conversation.handover``; the widget hears
    both the same way, so it gets the frame once, and the next change still arrives."""
    client = widget(server, tenant)
    conversation_id = opened(client)
    maya = api.post("/api/v1/agents", json={"name": "Maya", "kind": "human"}).json()
    r = api.post(f"/api/v1/conversations/{conversation_id}/handover", json={"to": "human"})
    assert r.status_code == 200, r.text
    assert r.json()["assignee_id"] == maya["id"]  # routed to the one available human
    api.patch(f"/api/v1/conversations/{conversation_id}", json={"status": "resolved"}).raise_for_status()
    client.expect("conversation", timeout=10)  # up to the resolution
    while client.seen[-1]["conversation"]["status"] != "resolved":
        client.expect("conversation", timeout=10)
    frames = [f["conversation"] for f in client.seen if f["type"] == "conversation"]
    # The frame the socket opened with, the handover's (once), the resolution's.
    assert [(f["handled_by"], f["status"]) for f in frames] == [("bot", "open"), ("human", "open"), ("bot", "resolved")]


def test_a_visitor_only_ever_sees_their_own_conversation(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    alice = widget(server, tenant)
    alice_conv = opened(alice)
    mallory = widget(server, tenant)
    ready = mallory.connect(conversation_id=alice_conv, last_seq=0)
    assert ready["conversation"] is None  # naming someone else's conversation gets nothing
    bot_says(api, alice_conv, "for alice only")
    assert mallory.messages_until_quiet() == []
    mallory.send({"type": "webview.open", "message_id": "msg_x", "webview_id": "wv_0"})
    assert mallory.expect("error")["ref"] == "webview.open"


# -- security and limits -------------------------------------------------------------------------


def test_foreign_origins_are_refused_at_the_handshake(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    client = widget(server, tenant)
    api.patch("/api/v1/widget-settings", json={"allowed_origins": [ORIGIN]}).raise_for_status()
    client.connect()  # the listed origin still works
    url = server.ws_url + client.session["socket_path"]
    with pytest.raises(InvalidStatus) as info, connect(url, origin="http://evil.test"):  # type: ignore[arg-type]
        pass
    assert info.value.response.status_code == 403
    with pytest.raises(InvalidStatus), connect(url):  # no Origin at all
        pass
    unknown = server.ws_url + "/widget/v1/ws?widget_key=wk_unknown"
    with pytest.raises(InvalidStatus), connect(unknown, origin=ORIGIN):  # type: ignore[arg-type]
        pass


@pytest.mark.parametrize(
    "first_frame",
    [
        {"type": "auth", "token": "forged"},
        {"type": "auth"},
        {"type": "message", "text": "hi", "client_message_id": "x"},
    ],
)
def test_bad_or_missing_auth_closes_4401(
    widget: Any, server: LiveServer, tenant: Tenant, first_frame: dict[str, Any]
) -> None:
    client = widget(server, tenant)
    client.open_socket()
    client.send(first_frame)
    assert client.close_code() == 4401


def test_a_session_of_another_workspace_closes_4401(widget: Any, server: LiveServer, tenant: Tenant) -> None:
    other = widget(server, server.new_tenant("Other"))
    mine = widget(server, tenant)
    mine.open_socket()
    mine.send({"type": "auth", "token": other.session["session_token"]})
    assert mine.close_code() == 4401


def test_invalid_json_closes_1007(widget: Any, server: LiveServer, tenant: Tenant) -> None:
    client = widget(server, tenant)
    client.connect()
    client.ws.send("{not json")  # type: ignore[union-attr]
    assert client.close_code() == 1007


def test_frames_over_64_kib_close_1009(widget: Any, server: LiveServer, tenant: Tenant) -> None:
    client = widget(server, tenant)
    client.connect()
    client.send({"type": "message", "text": "x" * 70_000, "client_message_id": "big"})
    assert client.close_code() == 1009


def test_floods_are_throttled_then_closed_1008(widget: Any, server: LiveServer, tenant: Tenant) -> None:
    client = widget(server, tenant)
    client.connect()
    for _ in range(200):
        try:
            client.send({"type": "typing", "on": True})
        except ConnectionClosed:
            break
    assert client.close_code() == 1008
    assert any(f["type"] == "error" and f["code"] == "rate_limited" for f in client.seen)


def test_read_receipts_and_typing_never_spend_the_message_allowance(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    # An older widget that sends a receipt per message, at a brisk pace: the 30 acting frames of
    # the window (open and 29 messages) all go through, whatever receipts and typing surround
    # them (SPEC §14).
    client = widget(server, tenant)
    client.connect()
    client.send({"type": "open"})
    conversation_id = client.expect("conversation")["conversation"]["id"]
    for n in range(29):
        client.send({"type": "typing", "on": True})
        client.send({"type": "message", "text": f"m{n}", "client_message_id": f"c{n}"})
        client.send({"type": "read", "seq": n + 1})
    for n in range(29):
        client.expect("ack", client_message_id=f"c{n}")
    assert not [f for f in client.seen if f["type"] == "error"], client.seen
    stored = api.get(f"/api/v1/conversations/{conversation_id}/messages", params={"limit": 200}).json()["data"]
    assert [m["message_parts"][0]["text"]["content"] for m in stored] == [f"m{n}" for n in range(29)]
    # Messages keep their own allowance: the 31st in the window is throttled.
    client.send({"type": "message", "text": "one too many", "client_message_id": "c29"})
    refused = client.expect("error", client_message_id="c29")
    assert refused["code"] == "rate_limited" and refused["details"]["retry_after"] >= 1


def test_a_flood_of_receipts_is_dropped_with_one_error_then_closed(
    widget: Any, server: LiveServer, tenant: Tenant
) -> None:
    client = widget(server, tenant)
    client.connect()
    for n in range(200):
        try:
            client.send({"type": "read", "seq": n + 1})
        except ConnectionClosed:
            break
    assert client.close_code() == 1008
    assert [f["code"] for f in client.seen if f["type"] == "error"] == ["rate_limited"]


def test_a_silent_peer_is_closed_by_the_heartbeat(widget: Any, server_factory: Any) -> None:
    server = server_factory(env={"BACKCHANNEL_WS_HEARTBEAT_SECONDS": "0.3"})
    client = widget(server, server.new_tenant())
    ready = client.connect()
    assert ready["heartbeat"] == 0.3
    client.expect("ping")  # and never answer it
    assert client.close_code() == 4408


def test_a_peer_that_answers_pings_stays(widget: Any, server_factory: Any) -> None:
    server = server_factory(env={"BACKCHANNEL_WS_HEARTBEAT_SECONDS": "0.3"})
    client = widget(server, server.new_tenant())
    client.connect()
    for _ in range(6):  # well past 2.5 intervals
        client.expect("ping")
        client.send({"type": "pong"})
    client.send({"type": "ping"})
    client.expect("pong")


def test_a_restart_closes_sockets_for_reconnect_and_nothing_is_lost(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    client = widget(server, tenant)
    conversation_id = opened(client)
    bot_says(api, conversation_id, "before")
    client.expect("message")
    server.stop()
    assert client.close_code() == 1012  # "service restart": come back soon
    server.start()
    with server.client(tenant) as api2:
        bot_says(api2, conversation_id, "during the restart")
    again = widget(server, tenant, visitor_token=client.session["visitor_token"])
    again.connect(conversation_id=conversation_id, last_seq=1)
    assert [m["message_parts"][0]["text"]["content"] for m in again.messages_until_quiet()] == ["during the restart"]
