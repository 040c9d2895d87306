"""Bounds against amplification on the widget's side (issue 15.13; docs/security.md "Limits").

One session token opens at most ``WS_SOCKETS_PER_SESSION`` sockets (a newer one closes the
oldest, 4429); history is read and replayed in pages bounded in size as well as count; and
the widget session endpoint creates at most ``WIDGET_NEW_USERS_PER_HOUR`` users per client
address, however it is asked (no token, a stale token, an unsigned claim).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import orjson
import pytest
from websockets.sync.client import connect

from app.realtime import hub as realtime
from app.realtime.closecodes import CloseCode
from app.realtime.identity import TokenSigner, WidgetIdentity
from tests.conftest import LiveServer, Tenant
from tests.realtime.test_realtime import ORIGIN, WidgetClient, bot_says, opened
from tests.realtime.test_widget_catch_up import BIG


@pytest.fixture
def widget() -> Iterator[Callable[..., WidgetClient]]:
    with ExitStack() as stack:
        yield lambda server, tenant, **kw: WidgetClient(stack, server, tenant, **kw)


def test_a_session_token_holds_at_most_five_sockets_and_a_newer_one_closes_the_oldest(
    widget: Any, server: LiveServer, tenant: Tenant
) -> None:
    client = widget(server, tenant)
    opened(client)
    first = client.ws
    assert first is not None
    with ExitStack() as stack:
        others = []
        for _ in range(5):  # the same session token: sockets two to six
            ws = stack.enter_context(connect(server.ws_url + client.session["socket_path"], origin=ORIGIN))
            ws.send(json.dumps({"type": "auth", "token": client.session["session_token"]}))
            while json.loads(ws.recv(timeout=10))["type"] != "ready":
                pass
            others.append(ws)
        # The sixth closed the first, with a code that says why.
        assert client.close_code() == CloseCode.REPLACED
        assert "too many sockets" in (client.ws.close_reason or "")  # type: ignore[union-attr]
        for ws in others:  # the five newest stay open and answer
            ws.send(json.dumps({"type": "ping"}))
            while json.loads(ws.recv(timeout=10))["type"] != "pong":
                pass
    # A new session (another tab) has its own allowance.
    assert widget(server, tenant, visitor_token=client.session["visitor_token"]).connect()["type"] == "ready"


def test_history_is_read_in_pages_bounded_in_size(server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    conversation = api.post("/api/v1/conversations", json={"user_id": api.post("/api/v1/users", json={}).json()["id"]})
    cid = conversation.json()["id"]
    for _ in range(100):  # 100 messages of ~4 KB: far more than one page by size, half a page by count
        bot_says(api, cid, BIG)
    page, more = server.in_tx(lambda tx: realtime._messages_after(tx.session, cid, 0, None))
    sizes = [len(orjson.dumps(m["message_parts"])) for m in page]
    assert more and 0 < len(page) < 100, len(page)
    assert sum(sizes) - sizes[-1] < realtime.CATCH_UP_PAGE_CHARS <= sum(sizes) + max(sizes)
    rest, more = server.in_tx(lambda tx: realtime._messages_after(tx.session, cid, page[-1]["seq"], None))
    assert rest[0]["seq"] == page[-1]["seq"] + 1 and more == (rest[-1]["seq"] < 100)


def session(server: LiveServer, tenant: Tenant, **body: Any) -> httpx.Response:
    return httpx.post(
        server.url + "/widget/v1/session", json={"widget_key": tenant.widget_key, **body}, headers={"Origin": ORIGIN}
    )


def test_users_created_by_widget_sessions_are_bounded_per_address(server_factory: Any) -> None:
    server: LiveServer = server_factory(env={"BACKCHANNEL_WIDGET_NEW_USERS_PER_HOUR": "4"})
    tenant = server.new_tenant()
    with server.client(tenant) as api:
        returning = session(server, tenant).json()  # 1
        session(server, tenant, user={"external_id": "new-1"})  # 2: an unsigned claim creates a user
        signer = TokenSigner("test-secret-key-0123456789-abcdefghijklmnop")  # tests/conftest.py TEST_ENV
        claimed = api.get("/api/v1/users", params={"external_id": "new-1"}).json()["data"][0]
        stale = signer.visitor_token(WidgetIdentity(tenant.workspace_id, claimed["id"]))
        assert session(server, tenant, visitor_token=stale).status_code == 200  # 3: a token that resumes no one
        assert session(server, tenant, visitor_token="garbage").status_code == 200  # 4
        users = len(api.get("/api/v1/users", params={"limit": 200}).json()["data"])
        for body in ({}, {"visitor_token": stale}, {"user": {"external_id": "new-2"}}):
            refused = session(server, tenant, **body)
            assert refused.status_code == 429, (body, refused.text)
            assert refused.json()["error"]["code"] == "rate_limited" and int(refused.headers["retry-after"]) > 0
            assert refused.headers["access-control-allow-origin"] == ORIGIN  # the widget can read why
        assert len(api.get("/api/v1/users", params={"limit": 200}).json()["data"]) == users  # nothing created
        # Who already has a user is not counted: a returning visitor still gets in.
        again = session(server, tenant, visitor_token=returning["visitor_token"])
        assert again.status_code == 200 and again.json()["user_id"] == returning["user_id"]


def test_every_session_has_its_own_token_even_within_one_second() -> None:
    signer = TokenSigner("k" * 40)
    me = WidgetIdentity("wsp_1", "usr_1")
    tokens = {signer.session_token(me) for _ in range(10)}  # tabs opened together: each its own allowance
    assert len(tokens) == 10 and all(signer.read_session(t) == me for t in tokens)
