"""Offline replies by email (SPEC §12) against a real SMTP server on loopback (aiosmtpd):
asked for in the widget, batched, text and HTML, sent once across restarts, never while the
widget is open, and a link back that is a pointer, not a key."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

import httpx

from app.mail.compose import Reply, reply_email
from app.mail.replies import link_back
from app.store.tables import Conversation, EmailProgress
from tests.conftest import LiveServer, Tenant
from tests.mail.smtp import Inbox, mail_env, smtp_server
from tests.realtime.test_realtime import ORIGIN, WidgetClient
from tests.receivers import eventually

PAGE = ORIGIN + "/help/cards"


def customer_leaves_an_email(server: LiveServer, tenant: Tenant, keep_token: bool = False) -> Any:
    """A customer writes, leaves their email in the widget ("Notify me"), and closes the tab."""
    with ExitStack() as stack:
        widget = WidgetClient(stack, server, tenant)
        ready = widget.connect(page=PAGE)
        assert ready["ask_email"] is True
        widget.send({"type": "message", "client_message_id": "c1", "text": "Is my new card on its way?"})
        conv_id: str = widget.expect("message")["message"]["conversation_id"]
        widget.send({"type": "email", "email": "not an email"})
        assert widget.expect("error", ref="email")["code"] == "invalid_email"
        widget.send({"type": "email", "email": "ada@example.com"})
        assert widget.expect("email.saved")["email"] == "ada@example.com"
    return (conv_id, widget.session["visitor_token"]) if keep_token else conv_id


def bot_replies(api: httpx.Client, conv_id: str, *texts: str) -> None:
    for text in texts:
        r = api.post(
            f"/api/v1/conversations/{conv_id}/messages",
            json={"actor": {"type": "bot"}, "message_parts": [{"text": {"content": text}}]},
        )
        assert r.status_code == 201, r.text


def test_replies_to_a_customer_who_left_go_out_as_one_email_with_text_html_and_a_link_back(
    server_factory: Any, smtp_port: int, smtp: Inbox
) -> None:
    server: LiveServer = server_factory(env=mail_env(smtp_port))
    tenant = server.new_tenant()
    with server.client(tenant) as api:
        conv_id = customer_leaves_an_email(server, tenant)
        user = api.get("/api/v1/users", params={"email": "ada@example.com"}).json()["data"]
        assert len(user) == 1  # stored on the user (user.updated)
        bot_replies(api, conv_id, "Yes! It left today.", "It should arrive <b>Thursday</b>.")
        eventually(lambda: smtp.count() == 1)
        time.sleep(1.5)  # more rounds: nothing more to send
        assert smtp.count() == 1
    recipients, message = smtp.messages[0]
    assert recipients == ["ada@example.com"]
    assert message["From"] == "Acme Support <support@acme.test>"
    assert message["Subject"] == "New reply from Acme"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Yes! It left today." in text and "It should arrive <b>Thursday</b>." in text  # both replies: one email
    assert "It should arrive &lt;b&gt;Thursday&lt;/b&gt;." in html and "<b>Thursday" not in html
    assert f"Continue the conversation: {PAGE}#backchannel" in text
    assert f'href="{PAGE}#backchannel"' in html
    assert "Is my new card on its way?" not in text  # the customer's own words are not sent back


def test_nothing_is_emailed_while_the_widget_is_open_nor_what_was_read_nor_private_notes(
    server_factory: Any, smtp_port: int, smtp: Inbox
) -> None:
    server: LiveServer = server_factory(env=mail_env(smtp_port))
    tenant = server.new_tenant()
    with server.client(tenant) as api:
        conv_id, token = customer_leaves_an_email(server, tenant, keep_token=True)
        with ExitStack() as stack:
            back = WidgetClient(stack, server, tenant, visitor_token=token)  # the customer is back
            assert back.connect(page=PAGE)["ask_email"] is False  # their email is on file
            bot_replies(api, conv_id, "Answered while you are here")
            time.sleep(2.5)  # several rounds: present, so no email
            assert smtp.count() == 0
        # They read it in the widget before leaving: nothing to email for it. A private note
        # never goes out; a new reply after they left does.
        seq = api.get(f"/api/v1/conversations/{conv_id}").json()["last_message_seq"]
        server.in_tx(_mark_read, conv_id, seq)
        note = api.post(
            f"/api/v1/conversations/{conv_id}/messages",
            json={"actor": {"type": "bot"}, "private": True, "message_parts": [{"text": {"content": "internal only"}}]},
        )
        assert note.status_code == 201, note.text
        time.sleep(2.0)
        assert smtp.count() == 0
        bot_replies(api, conv_id, "One more thing after you left")
        eventually(lambda: smtp.count() == 1)
    text = smtp.messages[0][1].get_body(("plain",)).get_content()
    assert "One more thing after you left" in text
    assert "Answered while you are here" not in text and "internal only" not in text


def _mark_read(tx: Any, conv_id: str, seq: int) -> None:
    conv = tx.session.get(Conversation, conv_id)
    conv.user_read_seq = seq
    tx.session.add(conv)


def test_a_restart_loses_no_email_and_sends_none_twice(server_factory: Any, smtp_port: int) -> None:
    server: LiveServer = server_factory(env=mail_env(smtp_port))  # nothing listens on the SMTP port yet
    tenant = server.new_tenant()
    with server.client(tenant) as api:
        conv_id = customer_leaves_an_email(server, tenant)
        bot_replies(api, conv_id, "Your card is on its way.")

    def failed_once() -> bool:
        row = server.in_tx(lambda tx: tx.session.get(EmailProgress, conv_id))
        return row is not None and bool(row.last_error)

    eventually(failed_once)  # the SMTP server is down: the email waits
    server.stop()
    controller, inbox = smtp_server(smtp_port)
    try:
        server.restart()
        eventually(lambda: inbox.count() == 1)
        server.restart()  # and once more: it was recorded as sent
        time.sleep(2.0)
        assert inbox.count() == 1
        row = server.in_tx(lambda tx: tx.session.get(EmailProgress, conv_id))
        assert row.emails_sent == 1 and row.last_error is None and row.lease_until is None
    finally:
        controller.stop()


def test_the_link_back_is_a_pointer_not_a_key(server_factory: Any, smtp_port: int, smtp: Inbox) -> None:
    """Whoever else sees the email (a forward, a shared inbox) cannot read the conversation
    through its link: it names the page only, and the widget there shows a visitor their own
    conversation, found by the visitor token in *their* browser."""
    server: LiveServer = server_factory(env=mail_env(smtp_port))
    tenant = server.new_tenant()
    with server.client(tenant) as api:
        conv_id = customer_leaves_an_email(server, tenant)
        bot_replies(api, conv_id, "Here is your PIN reset link.")
        eventually(lambda: smtp.count() == 1)
    text = smtp.messages[0][1].get_body(("plain",)).get_content()
    link = next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Continue the conversation"))
    assert link == PAGE + "#backchannel"  # no token, no conversation id, no user id
    assert conv_id not in str(smtp.messages[0][1]) and "token" not in link  # not even in a header
    # A stranger who opens the link gets the widget as a new visitor: another user, no conversation.
    stranger = httpx.post(
        server.url + "/widget/v1/session", json={"widget_key": tenant.widget_key}, headers={"Origin": ORIGIN}
    )
    assert stranger.status_code == 200 and stranger.json()["conversation_id"] is None


def test_the_email_escapes_markup_and_links_only_to_http_pages() -> None:
    message = reply_email(
        sender="Acme <a@acme.test>",
        to="ada@example.com",
        customer_name="Ada <script>",
        workspace_name="Acme",
        replies=[Reply("Maya", "<img src=x onerror=alert(1)>")],
        link='https://shop.example/help"><script>#backchannel',
        thread_id="cnv_1",
        message_key="cnv_1.4",
    )
    html = message.get_body(("html",)).get_content()
    assert "<img" not in html and "<script>" not in html
    assert message["Message-ID"] == "<cnv_1.4@acme.test>"  # the same if ever sent again
    assert link_back("javascript:alert(1)") is None and link_back(None) is None
    assert link_back("https://shop.example/p?x=1#old") == "https://shop.example/p?x=1#backchannel"


def test_a_backlog_larger_than_a_round_goes_out_without_waiting_for_the_next_poll(
    server_factory: Any, smtp_port: int, smtp: Inbox
) -> None:
    """A round takes up to ``BATCH`` (50) conversations; when it was full the next round starts
    at once, so 55 due emails do not wait a poll (6 s here) for their last 5."""
    from app.mail.replies import BATCH

    wanted = BATCH + 5
    server: LiveServer = server_factory(env={**mail_env(smtp_port), "BACKCHANNEL_EMAIL_POLL_SECONDS": "6"})
    tenant = server.new_tenant()
    with server.client(tenant) as api:
        for n in range(wanted):
            user = api.post("/api/v1/users", json={"name": f"C{n}", "email": f"c{n}@example.com"}).json()
            r = api.post(
                "/api/v1/conversations",
                json={
                    "user_id": user["id"],
                    "messages": [{"actor": {"type": "bot"}, "message_parts": [{"text": {"content": f"Hi C{n}"}}]}],
                },
            )
            assert r.status_code == 201, r.text
    eventually(lambda: smtp.count() >= BATCH, timeout=20, interval=0.02)
    started = time.monotonic()
    eventually(lambda: smtp.count() >= wanted, timeout=20, interval=0.02)
    assert time.monotonic() - started < 3.0  # not the 6 s poll
    time.sleep(1.0)
    assert sorted(rcpt[0] for rcpt, _ in smtp.messages) == sorted(f"c{n}@example.com" for n in range(wanted))
