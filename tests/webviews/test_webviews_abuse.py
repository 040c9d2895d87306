"""Hosted forms and web views against hostile input: a workspace's pattern, a customer's
forged close, a callback that drips or floods its answer (issue 15, points 2, 7, 12)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from app.webviews.patterns import MAX_MATCHED_CHARS, PatternError, check_pattern, matches
from tests.conftest import LiveServer, Tenant
from tests.factories import assert_error, make_conversation
from tests.receivers import eventually
from tests.webviews.support import SENTINELS, Receiver, add_endpoint, card_form, open_in_store, post_webview_message
from tests.webviews.test_webviews import events_of

JSON = {"Accept": "application/json"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def form_with(callback_url: str, *fields: dict[str, Any]) -> dict[str, Any]:
    return {"title": "Details", "fields": list(fields), "submit_label": "Send", "callback_url": callback_url}




# --- 2. a workspace's pattern never runs in a backtracking engine -------------------------

# The freeze test and the visitor's forged closes stay on uvicorn: a blocked event loop is
# only seen from outside the process, and the visitor speaks over the widget's WebSocket.


def test_a_catastrophic_pattern_cannot_freeze_the_server(
    server: LiveServer, tenant: Tenant, api: httpx.Client, receiver: Receiver
) -> None:
    """``(a+)+$`` against 30 a's and a '!' takes Python's ``re`` minutes (it froze the whole
    process); so does the email check's old regex against ``a@....@``. Both answer at once."""
    add_endpoint(server, tenant.workspace_id, receiver.url + "/hooks")
    form = form_with(
        receiver.url + "/hooks/form",
        {"name": "code", "label": "Code", "pattern": "(a+)+$", "pattern_message": "Only a's, please."},
        {"name": "email", "label": "Email", "type": "email"},
    )
    scene = post_webview_message(api, [{"web_view": {"label": "Code", "form": form}}])
    url = open_in_store(server, tenant, scene)["url"]

    stalls: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        # Another tenant's view of the server: a health check every 20 ms.
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                started = time.monotonic()
                client.get(server.url + "/healthz")
                stalls.append(time.monotonic() - started)
                time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        deadline = time.monotonic() + 5
        while not stalls and time.monotonic() < deadline:  # the watcher is up before the submit
            time.sleep(0.01)
        started = time.monotonic()
        r = httpx.post(url, data={"code": "a" * 30 + "!", "email": "a@" + "." * 9_000 + "@"}, headers=JSON, timeout=5)
        took = time.monotonic() - started
    finally:
        stop.set()
        watcher.join()
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == {"code": "Only a's, please.", "email": "Enter an email address."}
    assert took < 1.0, f"the submit took {took:.2f} s"
    assert len(stalls) >= 2, "the health checks never ran beside the submit"
    assert max(stalls) < 0.5, f"the server stalled for {max(stalls):.2f} s"
    assert receiver.at("/hooks/form") == []

    # A match still works, and a value past the matched bound is refused without matching.
    r = httpx.post(url, data={"code": "a" * 40, "email": "a@b.example"}, headers=JSON)
    assert r.status_code == 200, r.text
    assert len(receiver.at("/hooks/form")) == 1


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "backreferences"),
        (r"(?=\d{4})\d+", "lookarounds"),
        (r"(?<!x)y", "lookarounds"),
        (r"(?i)abc", "inline flags"),
        (r"(?P<year>\d{4})", "inline flags"),
        (r"\Aabc\z", "not read the same way"),
        (r"[[:alpha:]]+", "escape '['"),
        (r"[a-z-]+", "escape a literal '-'"),
        (r"[a&&b]", "means something else"),
        (r"(\p{L}*\p{N}*){30}z", "too complex"),
        (r"a{2", "escape a literal '{'"),
        (r"(unclosed", "not a valid regular expression"),
    ],
)
def test_a_pattern_outside_the_common_subset_is_a_422_naming_the_field(
    module_app_api: httpx.Client, pattern: str, reason: str
) -> None:
    conv = make_conversation(module_app_api)
    form = form_with("https://bot.example.com/form", {"name": "code", "label": "Code", "pattern": pattern})
    r = module_app_api.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"message_parts": [{"web_view": {"label": "Code", "form": form}}]},
    )
    error = assert_error(r, 422, "validation_failed")
    (detail,) = error["details"]
    assert detail["field"] == "message_parts.0.web_view.form.fields.0.pattern"
    assert reason in detail["message"]
    assert module_app_api.get(f"/api/v1/conversations/{conv['id']}/messages").json()["data"] == []


def test_pattern_message_needs_a_pattern(module_app_api: httpx.Client) -> None:
    conv = make_conversation(module_app_api)
    form = form_with("https://bot.example.com/form", {"name": "code", "label": "Code", "pattern_message": "Digits"})
    r = module_app_api.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"message_parts": [{"web_view": {"label": "Code", "form": form}}]},
    )
    assert "pattern_message needs a pattern" in assert_error(r, 422)["details"][0]["message"]


def test_matching_is_linear_and_bounded() -> None:
    # The worst accepted pattern against the longest matched value: milliseconds, not seconds.
    worst = r"((\w*\W*){10}){10}z"
    check_pattern(worst)
    started = time.perf_counter()
    for _ in range(20):
        assert not matches(worst, "ab" * (MAX_MATCHED_CHARS // 2))
    assert (time.perf_counter() - started) / 20 < 0.05
    assert not matches(r".*", "x" * (MAX_MATCHED_CHARS + 1)), "longer values are never matched"
    assert matches(r"[0-9 ]{12,23}", "4111 1111 1111 1111")
    with pytest.raises(PatternError):
        check_pattern("x" * 201)


# --- 7. only the server says "submitted" ----------------------------------------------------


class Visitor:
    """The customer's browser, scripted: a widget session and its socket."""

    def __init__(self, stack: ExitStack, server: LiveServer, tenant: Tenant) -> None:
        r = httpx.post(server.url + "/widget/v1/session", json={"widget_key": tenant.widget_key})
        r.raise_for_status()
        self.session = r.json()
        self.ws = stack.enter_context(connect(server.ws_url + self.session["socket_path"]))
        self.send({"type": "auth", "token": self.session["session_token"]})
        self.expect("ready")
        self.send({"type": "open"})
        self.conversation_id: str = self.expect("conversation")["conversation"]["id"]

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(json.dumps(frame))

    def expect(self, type_: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if frame["type"] == type_:
                return frame  # type: ignore[no-any-return]




def test_a_close_from_the_browser_never_says_submitted(
    server: LiveServer, tenant: Tenant, api: httpx.Client, receiver: Receiver
) -> None:
    add_endpoint(server, tenant.workspace_id, receiver.url + "/hooks")
    with ExitStack() as stack:
        visitor = Visitor(stack, server, tenant)
        conversation = {"id": visitor.conversation_id, "user_id": visitor.session["user_id"]}
        form = {"web_view": {"id": "card", "label": "Card", "form": card_form(receiver.url + "/hooks/card")}}
        page = {"web_view": {"id": "page", "label": "Manage", "url": "https://pay.example.com/manage"}}
        scene = post_webview_message(api, [form, page], conversation)

        # A hosted form never submitted: the browser claims it was, with a result of its choosing.
        visitor.send({"type": "webview.open", "message_id": scene.message_id, "webview_id": "card"})
        visitor.expect("webview.url")
        visitor.send({"type": "webview.close", "message_id": scene.message_id, "webview_id": "card",
                      "status": "submitted", "result": "card verified"})
        # An external page may reveal a result, but its status is still the browser's word.
        visitor.send({"type": "webview.open", "message_id": scene.message_id, "webview_id": "page"})
        visitor.expect("webview.url")
        visitor.send({"type": "webview.close", "message_id": scene.message_id, "webview_id": "page",
                      "status": "submitted", "result": "frozen"})
        closed = eventually(lambda: (e := events_of(server, tenant.workspace_id, "webview.closed")) and len(e) == 2 and e)
        assert closed[0] == {"conversation_id": scene.conversation_id, "message_id": scene.message_id,
                             "webview_id": "card", "status": "closed"}
        assert closed[1] == {"conversation_id": scene.conversation_id, "message_id": scene.message_id,
                             "webview_id": "page", "status": "closed", "result": "frozen"}
        assert receiver.at("/hooks/card") == [], "nothing was submitted"

        # The server's own "submitted" stands: a real submit, then the page's close is a no-op.
        url = open_in_store(server, tenant, scene, "card")["url"]
        assert httpx.post(url, data=SENTINELS, headers=JSON).json() == {"status": "submitted"}
        visitor.send({"type": "webview.close", "message_id": scene.message_id, "webview_id": "card",
                      "status": "submitted", "result": "card verified"})
        visitor.send({"type": "ping"})
        visitor.expect("pong")
    time.sleep(0.3)
    closed = events_of(server, tenant.workspace_id, "webview.closed")
    assert [e["status"] for e in closed] == ["closed", "closed", "submitted"]
    assert "result" not in closed[2]


# --- 12. the relay bounds the callback's answer in time and size ----------------------------


class SlowCallback:
    """A loopback HTTP server whose answer is a 422 that drips (one byte per interval) or floods."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sent = 0
        self.requests = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            while len(body) < length:
                body += conn.recv(65536)
            try:
                if not head.startswith(b"POST /hooks/card "):
                    conn.sendall(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")  # webhooks
                    return
                self.requests += 1
                if self.mode == "drip":
                    # Headers at once, then the body a byte every 0.2 s: each read is quick,
                    # so a per-read timeout never trips; it would take 40 s to finish.
                    conn.sendall(b"HTTP/1.1 422 Unprocessable\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n")
                    for _ in range(200):
                        if self.stop.is_set():
                            return
                        conn.sendall(b" ")
                        self.sent += 1
                        time.sleep(0.2)
                else:
                    # 50 MB of a JSON string, as fast as the relay will read it.
                    conn.sendall(b"HTTP/1.1 422 Unprocessable\r\ncontent-type: application/json\r\n"
                                 b"content-length: 50000000\r\n\r\n" + b'{"errors": {"code": "')
                    chunk = b"x" * 65536
                    while self.sent < 50_000_000 and not self.stop.is_set():
                        conn.sendall(chunk)
                        self.sent += len(chunk)
            except OSError:
                return  # the relay hung up: what we want

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.mark.parametrize("mode", ["drip", "flood"])
def test_the_relay_caps_the_callbacks_answer_in_time_and_bytes(
    app_server_factory: Any, mode: str
) -> None:
    server = app_server_factory(env={"BACKCHANNEL_WEBHOOK_TIMEOUT_SECONDS": "2"})
    tenant = server.new_tenant()
    callback = SlowCallback(mode)
    try:
        add_endpoint(server, tenant.workspace_id, callback.url + "/hooks")
        with server.client(tenant) as api:
            scene = post_webview_message(api, [{"web_view": {"label": "Card", "form": card_form(callback.url + "/hooks/card")}}])
        url = open_in_store(server, tenant, scene)["url"]
        started = time.monotonic()
        r = server.post(url, data=SENTINELS, headers=JSON, timeout=30)
        took = time.monotonic() - started
        assert callback.requests == 1
        assert r.status_code == 502 and r.json()["retryable"] is True, r.text
        assert took < 4, f"the relay waited {took:.1f} s for a callback with a 2 s deadline"
        if mode == "flood":
            # The relay stopped reading at its cap; the socket buffers hold at most a few MB more.
            time.sleep(0.5)
            assert callback.sent < 8_000_000, f"{callback.sent} bytes were pushed before the relay hung up"
        assert "web-view callback" in server.log()
    finally:
        callback.close()


@pytest.mark.parametrize(
    ("pattern", "advice"),
    [(r"(a)\1", "form callback"), (r"(?=\d)\d+", "form callback"), (r"(?i)abc", "[Aa]"),
     (r"\Aabc\z", "always matches the whole value"), (r"[a-z-]+", "as '\\-'")],
)
def test_a_refused_pattern_says_what_to_write_instead(pattern: str, advice: str) -> None:
    # Fail at the moment of the mistake, and say what to do (issue 22).
    with pytest.raises(PatternError) as refused:
        check_pattern(pattern)
    assert advice in str(refused.value)
