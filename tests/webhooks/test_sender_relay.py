"""The web-view form relay sends through the app's one guarded sender (``relay_form`` with a real
``GuardedSender`` and real loopback callbacks): signed, refused for private addresses unless
allowed, redirects not followed, at most 64 KiB of the answer kept, one deadline for the
whole exchange."""

from __future__ import annotations

import socket
import threading
import time

from standardwebhooks.webhooks import Webhook

from app.ids import utcnow
from app.store.tables import WebhookEndpoint, WebviewOpening
from app.webhooks.sender import GuardedSender
from app.webhooks.signing import new_secret
from app.webviews.forms import RESPONSE_MAX_BYTES, RelayOutcome, relay_form
from tests.receivers import Receiver
from tests.webhooks.test_netguard import run

VALUES = {"card_number": "4111 1111 1111 1111", "name": "Ada"}


def relay(sender: GuardedSender, url: str, secret: str, timeout: float = 5.0) -> RelayOutcome:
    endpoint = WebhookEndpoint(
        id="whe_1",
        workspace_id="wsp_1",
        url=url,
        description="",
        events=["*"],
        enabled=True,
        secret=secret,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    opening = WebviewOpening(
        id="wvo_1",
        workspace_id="wsp_1",
        conversation_id="cnv_1",
        message_id="msg_1",
        webview_id="wv_1",
        user_id="usr_1",
        kind="form",
    )

    async def go() -> RelayOutcome:
        try:
            return await relay_form(sender, endpoint, opening, url, VALUES, list(VALUES), timeout)
        finally:
            await sender.aclose()

    return run(go())


def test_the_relay_posts_signed_values_through_the_sender() -> None:
    secret = new_secret()
    with Receiver(lambda req: (204, {}, b"")) as rx:
        outcome = relay(GuardedSender(allow_private=True), rx.url + "/hooks/card", secret)
        (req,) = rx.received()
    assert outcome.kind == "submitted"
    payload = Webhook(secret).verify(req.body, req.headers)
    assert payload["type"] == "webview.submitted" and payload["data"]["values"] == VALUES
    assert req.headers["user-agent"] == "Backchannel-Webhooks/1.0" and req.headers["accept-encoding"] == "identity"


def test_a_callback_on_a_private_address_is_refused_without_a_connection() -> None:
    with Receiver() as rx:
        for url in (rx.url, rx.url.replace("127.0.0.1", "localhost"), rx.url.replace("127.0.0.1", "2130706433")):
            assert relay(GuardedSender(allow_private=False), url + "/hooks/card", new_secret()).kind == "failed"
        assert rx.received() == []


def test_the_relay_does_not_follow_a_redirect() -> None:
    with Receiver(lambda req: (307, {"Location": "http://169.254.169.254/"}, b"")) as rx:
        outcome = relay(GuardedSender(allow_private=True), rx.url + "/hooks/card", new_secret())
        assert outcome.kind == "failed" and len(rx.received()) == 1


def test_a_422_s_errors_are_read_from_at_most_64_kib_of_the_answer() -> None:
    errors = b'{"errors": {"card_number": "Declined.", "other": "Check the form."}}'
    padded = b'{"errors": {"card_number": "' + b"x" * RESPONSE_MAX_BYTES + b'"}}'  # cut: no longer JSON
    answers = iter([errors, padded])
    with Receiver(lambda req: (422, {"content-type": "application/json"}, next(answers))) as rx:
        first = relay(GuardedSender(allow_private=True), rx.url + "/hooks/card", new_secret())
        second = relay(GuardedSender(allow_private=True), rx.url + "/hooks/card", new_secret())
    assert first == RelayOutcome("invalid", {"card_number": "Declined.", "_form": "Check the form."})
    assert second.kind == "failed"


def test_one_deadline_bounds_the_whole_exchange_even_when_the_answer_drips() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def drip() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 422 No\r\ncontent-length: 200\r\n\r\n")
            for _ in range(200):  # a byte every 0.1 s: every read is quick, the answer takes 20 s
                if stop.is_set():
                    return
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.1)

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        outcome = relay(GuardedSender(allow_private=True), f"http://127.0.0.1:{port}/hooks/card", new_secret(), 1.0)
        took = time.monotonic() - started
    finally:
        stop.set()
        server.close()
        thread.join(5)
    assert outcome.kind == "failed" and took < 3, took
