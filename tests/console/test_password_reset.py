""""Forgot password" by email (issue 23, a19), against a real SMTP server on loopback
(aiosmtpd): the same answer whether or not an account exists, a signed link that expires and
works once, only its hash stored, every old session ended, rate limits, the audit log, and
nothing offered (but "ask an admin") without SMTP."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.ids import utcnow
from app.settings import Settings
from app.store.migrate import upgrade
from tests.conftest import InProcessServer, Tenant
from tests.console.support import PASSWORD, console_client, csrf_from, make_console_user
from tests.mail.smtp import Inbox
from tests.receivers import eventually

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def mail_server(
    request: pytest.FixtureRequest, app_server_factory: Any, smtp_port: int, smtp: Inbox
) -> InProcessServer:
    """The app with SMTP on loopback, on SQLite and on PostgreSQL (when configured)."""
    env = {
        "BACKCHANNEL_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "BACKCHANNEL_EMAIL_FROM": "Backchannel <console@acme.test>",
    }
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_database")
        upgrade(Settings(database_url=url, env="test"))
        return app_server_factory(env=env, database_url=url)  # type: ignore[no-any-return]
    return app_server_factory(env=env)  # type: ignore[no-any-return]


def _ask(client: httpx.Client, email: str) -> httpx.Response:
    page = client.get("/console/password-reset")
    assert page.status_code == 200
    return client.post("/console/password-reset", data={"email": email, "csrf_token": csrf_from(page.text)})


def _link(inbox: Inbox, n: int = 1) -> str:
    eventually(lambda: inbox.count() >= n, timeout=10)
    _, message = inbox.messages[n - 1]
    body = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(r"(http://\S+/console/password-reset/new\?token=\S+)", body)
    assert match, body
    return match.group(1)


def _set_password(client: httpx.Client, link: str, password: str, again: str | None = None) -> httpx.Response:
    parts = urlsplit(link)
    page = client.get(parts.path, params=parse_qs(parts.query))
    if page.status_code != 200:
        return page
    token = parse_qs(parts.query)["token"][0]
    return client.post(parts.path, data={
        "csrf_token": csrf_from(page.text), "token": token, "password": password,
        "password_again": password if again is None else again})


def _can_log_in(server: InProcessServer, email: str, password: str) -> bool:
    with server.client(headers={"origin": server.url}) as c:
        page = c.get("/console/login")
        r = c.post("/console/login", data={"email": email, "password": password, "csrf_token": csrf_from(page.text)})
        return r.status_code == 303


def _audit(server: InProcessServer, tenant: Tenant) -> list[str]:
    rows = server.in_tx(lambda tx: tx.db.run(
        "SELECT action FROM audit_entry WHERE workspace_id = ? ORDER BY at", (tenant.workspace_id,)))
    return [r[0] for r in rows]


def test_forgot_password_by_email_sets_a_new_one_and_ends_old_sessions(
    mail_server: InProcessServer, smtp: Inbox
) -> None:
    server = mail_server
    tenant = server.new_tenant()
    email = make_console_user(server, tenant, "Ada@Example.com", name="Ada")
    stolen = console_client(server, email)  # a session open elsewhere (a stolen cookie, say)
    assert stolen.get("/console/inbox").status_code == 200

    with server.client(headers={"origin": server.url}) as c:
        login = c.get("/console/login")
        assert 'href="/console/password-reset"' in login.text and "Forgot password?" in login.text
        r = _ask(c, "  ADA@example.com ")
        assert r.status_code == 200 and "Check your email" in r.text
        assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"
        link = _link(smtp)
        rcpt, message = smtp.messages[0]
        assert rcpt == ["ada@example.com"] and message["From"] == "Backchannel <console@acme.test>"
        assert link.startswith(server.url + "/")  # PUBLIC_URL, never the Host header
        assert message.get_body(preferencelist=("html",)) is not None

        # Only the secret's hash is stored: the link's token is nowhere in the database.
        token = parse_qs(urlsplit(link).query)["token"][0]
        stored = server.in_tx(lambda tx: tx.db.run("SELECT id, token_hash FROM console_password_reset", ()))
        assert len(stored) == 1 and len(stored[0][1]) == 64
        assert all(token not in str(v) and v not in token for v in [stored[0][1]])

        # Mismatched passwords and a short one: named, nothing changed.
        r = _set_password(c, link, NEW_PASSWORD, again="something else")
        assert r.status_code == 422 and "not the same" in r.text
        r = _set_password(c, link, "short")
        assert r.status_code == 422 and "at least 8 characters" in r.text
        assert _can_log_in(server, email, PASSWORD)

        r = _set_password(c, link, NEW_PASSWORD)
        assert r.status_code == 303 and r.headers["location"] == "/console/login?reset=done"
        assert "Your password has been changed" in c.get("/console/login?reset=done").text

    assert _can_log_in(server, email, NEW_PASSWORD) and not _can_log_in(server, email, PASSWORD)
    assert stolen.get("/console/inbox", follow_redirects=False).status_code in (302, 303)  # the old session ended
    with server.client(headers={"origin": server.url}) as c:
        again = _set_password(c, link, "yet another passphrase")  # single use
        assert again.status_code == 410 and "no longer works" in again.text
    assert _can_log_in(server, email, NEW_PASSWORD)
    actions = _audit(server, tenant)
    assert "console_user.password_reset_requested" in actions and "console_user.password_reset_by_email" in actions


def test_unknown_and_known_emails_get_the_same_answer(mail_server: InProcessServer, smtp: Inbox) -> None:
    server = mail_server
    tenant = server.new_tenant()
    make_console_user(server, tenant, "ada@example.com")
    with server.client(headers={"origin": server.url}) as c:
        known = _ask(c, "ada@example.com")
        unknown = _ask(c, "nobody@example.com")

    def words(r: httpx.Response, email: str) -> str:
        return re.sub(r'name="csrf_token" value="[^"]*"', "", r.text).replace(email, "EMAIL")

    assert (known.status_code, known.headers.get("set-cookie") is None) == (
        unknown.status_code, unknown.headers.get("set-cookie") is None)
    assert words(known, "ada@example.com") == words(unknown, "nobody@example.com")
    _link(smtp)
    assert [rcpt for rcpt, _ in smtp.messages] == [["ada@example.com"]]  # nobody@ got nothing
    assert server.in_tx(lambda tx: tx.db.run("SELECT count(*) FROM console_password_reset", ()))[0][0] == 1


def test_a_link_expires_is_signed_and_a_newer_one_retires_the_older(
    mail_server: InProcessServer, smtp: Inbox
) -> None:
    server = mail_server
    tenant = server.new_tenant()
    email = make_console_user(server, tenant, "ada@example.com")
    with server.client(headers={"origin": server.url}) as c:
        _ask(c, email)
        first = _link(smtp, 1)
        _ask(c, email)
        second = _link(smtp, 2)
        assert first != second
        assert _set_password(c, first, NEW_PASSWORD).status_code == 410  # the newest link only

        # A token whose signature is changed, or no token at all: refused, not a 500.
        parts = urlsplit(second)
        token = parse_qs(parts.query)["token"][0]
        # (Not the last character: base64's padding bits there may decode to the same bytes.)
        signature_start = token.rindex(".") + 1
        flipped = "A" if token[signature_start] != "A" else "B"
        forged = token[:signature_start] + flipped + token[signature_start + 1:]
        r = c.get(parts.path, params={"token": forged})
        assert r.status_code == 400 and "no longer works" in r.text
        assert c.get(parts.path).status_code == 400

        # An hour later the link is dead (the stored expiry; the signature's age says the same).
        server.in_tx(lambda tx: tx.db.run("UPDATE console_password_reset SET expires_at = ?",
                                          (utcnow() - timedelta(seconds=1),)))
        assert _set_password(c, second, NEW_PASSWORD).status_code == 410
    assert _can_log_in(server, email, PASSWORD)


def test_asking_is_rate_limited_per_email_and_per_address(mail_server: InProcessServer, smtp: Inbox) -> None:
    server = mail_server
    tenant = server.new_tenant()
    make_console_user(server, tenant, "ada@example.com")
    with server.client(headers={"origin": server.url}) as c:
        statuses = [_ask(c, "ada@example.com").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        r = _ask(c, "ada@example.com")
        assert "Too many reset requests" in r.text and int(r.headers["retry-after"]) > 0
        # Many addresses from one client: the per-address limit.
        statuses = [_ask(c, f"someone{i}@example.com").status_code for i in range(8)]
        assert statuses[:5] == [200] * 5 and statuses[-1] == 429
    eventually(lambda: smtp.count() == 3, timeout=10)


def test_csrf_and_bad_input_are_refused(mail_server: InProcessServer) -> None:
    with mail_server.client(headers={"origin": mail_server.url}) as c:
        c.get("/console/password-reset")
        assert c.post("/console/password-reset", data={"email": "a@b.c", "csrf_token": "forged"}).status_code == 403
        page = c.get("/console/password-reset")
        r = c.post("/console/password-reset", data={"email": "not an email", "csrf_token": csrf_from(page.text)})
        assert r.status_code == 400 and "Enter the email address you log in with" in r.text
        r = c.post("/console/password-reset/new", data={"csrf_token": csrf_from(page.text), "token": "x" * 5000,
                                                        "password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
        assert r.status_code == 400


def test_without_smtp_the_login_page_says_to_ask_an_admin(app_server: InProcessServer, app_tenant: Tenant) -> None:
    make_console_user(app_server, app_tenant, "ada@example.com")
    with app_server.client(headers={"origin": app_server.url}) as c:
        login = c.get("/console/login").text
        assert 'href="/console/password-reset"' not in login
        assert "Ask an admin of your workspace to reset it" in login
        assert "backchannel admins" not in login and "<code>" not in login  # no command line for agents
        page = c.get("/console/password-reset")
        assert page.status_code == 200 and "Ask an admin of your workspace" in page.text and "<form" not in page.text
        r = c.post("/console/password-reset", data={"email": "ada@example.com", "csrf_token": csrf_from(login)})
        assert r.status_code == 409
    assert app_server.in_tx(lambda tx: tx.db.run("SELECT count(*) FROM console_password_reset", ()))[0][0] == 0
