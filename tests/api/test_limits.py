"""Limits, each answered in the one error shape and each writing nothing when it refuses:
body size (413), per-token and per-visitor rates (429 + ``Retry-After``), page size, web-view forms."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.conftest import InProcessServer, LiveServer, Tenant
from tests.factories import assert_error, make_conversation, messages, openapi_spec
from tests.webviews.support import Receiver, add_endpoint, card_form, open_in_store, post_webview_message

ORIGIN = "http://shop.test"
MIB = 1024 * 1024


# Stays on uvicorn, with the per-address and per-visitor limits below: bytes on the wire (a
# chunked body, a declared length with no body), the client's address, WebSockets.
def test_bodies_over_the_limit_are_413_even_when_streamed_without_a_length(
    module_server: LiveServer, module_tenant: Tenant
) -> None:
    with module_server.client(module_tenant) as api:
        before = len(api.get("/api/v1/users", params={"limit": 200}).json()["data"])

        def chunks() -> Iterator[bytes]:
            # A chunked upload declares no Content-Length: the limit is counted while reading.
            yield b'{"name": "'
            for _ in range(3 * 64):
                yield b"x" * 16384
            yield b'"}'

        assert_error(api.post("/api/v1/users", content=chunks()), 413, "payload_too_large")
        # Refused on the declared length alone, before the body is sent: no server reads 2 MiB to say no.
        with socket.create_connection(("127.0.0.1", module_server.port), timeout=10) as raw:
            raw.sendall(
                f"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {module_tenant.token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {2 * MIB}\r\n\r\n{{".encode()
            )
            assert raw.recv(4096).startswith(b"HTTP/1.1 413 ")
        assert len(api.get("/api/v1/users", params={"limit": 200}).json()["data"]) == before
        # Just under the limit is fine (properties are free-form, so they can be big).
        ok = api.post("/api/v1/users", json={"properties": {"blob": "y" * (MIB - 1000)}})
        assert ok.status_code == 201, ok.text[:200]
    session = httpx.post(
        module_server.url + "/widget/v1/session",
        content=b'{"widget_key": "' + b"k" * (2 * MIB) + b'"}',
        headers={"Origin": ORIGIN, "content-type": "application/json"},
    )
    assert_error(session, 413, "payload_too_large")


def test_the_per_token_rate_limit_is_429_with_retry_after_and_per_token(app_server_factory: Any) -> None:
    srv: InProcessServer = app_server_factory(env={"BACKCHANNEL_API_RATE_PER_MINUTE": "5"})
    tenant: Tenant = srv.new_tenant()
    other = srv.token_for(tenant.workspace_id, ["read", "write"])
    with srv.client(tenant) as api:
        for i in range(5):
            assert api.post("/api/v1/users", json={"name": f"u{i}"}).status_code == 201
        refused = api.post("/api/v1/users", json={"name": "one too many"})
        err = assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert err["details"]["retry_after"] == int(refused.headers["retry-after"])
        assert_error(api.get("/api/v1/users"), 429)  # reads count too
    with srv.client(headers={"Authorization": f"Bearer {other}"}) as api2:
        names = [u["name"] for u in api2.get("/api/v1/users").json()["data"]]  # another token: its own budget
    assert "one too many" not in names and len(names) == 5


def test_the_per_visitor_rate_limit_holds_across_tabs_and_stores_nothing_extra(server_factory: Any) -> None:
    srv: LiveServer = server_factory(env={"BACKCHANNEL_VISITOR_RATE_PER_MINUTE": "4"})
    tenant: Tenant = srv.new_tenant()
    session = httpx.post(
        srv.url + "/widget/v1/session", json={"widget_key": tenant.widget_key}, headers={"Origin": ORIGIN}
    ).json()
    url = srv.ws_url + session["socket_path"]
    with connect(url, origin=ORIGIN) as tab1, connect(url, origin=ORIGIN) as tab2:  # type: ignore[arg-type,call-overload]
        for ws in (tab1, tab2):
            ws.send(json.dumps({"type": "auth", "token": session["session_token"]}))
        acks, errors = 0, []
        for i in range(6):  # 3 per tab, alternating: one visitor, one budget
            ws = (tab1, tab2)[i % 2]
            ws.send(json.dumps({"type": "message", "text": f"m{i}", "client_message_id": f"c{i}"}))
            while True:
                frame = json.loads(ws.recv(timeout=10))
                if frame["type"] == "ack":
                    acks += 1
                    break
                if frame["type"] == "error":
                    errors.append(frame)
                    break
    assert acks == 4
    assert [e["code"] for e in errors] == ["rate_limited", "rate_limited"]
    assert all(e["details"]["retry_after"] >= 1 and e["client_message_id"] for e in errors)
    with srv.client(tenant) as api:
        conv = api.get("/api/v1/conversations").json()["data"][0]
        assert [m["seq"] for m in messages(api, conv["id"])] == [1, 2, 3, 4]


def test_widget_sessions_are_rate_limited_per_address(module_server: LiveServer, module_tenant: Tenant) -> None:
    statuses = []
    for _ in range(70):
        r = httpx.post(
            module_server.url + "/widget/v1/session",
            json={"widget_key": module_tenant.widget_key},
            headers={"Origin": ORIGIN},
        )
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert_error(r, 429, "rate_limited")
            assert int(r.headers["retry-after"]) >= 1
            assert r.headers["access-control-allow-origin"] == ORIGIN  # the widget can read why
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}


def test_every_list_is_capped_at_200_a_page(module_app_api: httpx.Client) -> None:
    spec = openapi_spec(module_app_api)
    conv = make_conversation(module_app_api)
    lists = [
        path
        for path, ops in spec["paths"].items()
        if "get" in ops and any(p["name"] == "limit" for p in ops["get"]["parameters"])
    ]
    assert len(lists) >= 5, lists
    endpoint = module_app_api.post("/api/v1/webhook-endpoints", json={"url": "https://example.com/h"}).json()
    for template in lists:
        path = template.replace("{endpoint_id}", endpoint["id"]).replace("{conversation_id}", conv["id"])
        for bad in (201, 0, -1, 10**12, "many"):
            assert_error(module_app_api.get(path, params={"limit": bad}), 422)
        page = module_app_api.get(path, params={"limit": 200})
        assert page.status_code == 200, (path, page.text)
        assert set(page.json()) == {"data", "next_cursor"}
        limit = next(p for p in spec["paths"][template]["get"]["parameters"] if p["name"] == "limit")
        assert limit["schema"]["maximum"] == 200


def test_a_list_never_returns_more_than_asked(module_app_api: httpx.Client) -> None:
    conv = make_conversation(module_app_api)
    for i in range(12):
        r = module_app_api.post(
            f"/api/v1/conversations/{conv['id']}/messages", json={"message_parts": [{"text": {"content": f"{i}"}}]}
        )
        assert r.status_code == 201
    page = module_app_api.get(f"/api/v1/conversations/{conv['id']}/messages", params={"limit": 5}).json()
    assert len(page["data"]) == 5 and page["next_cursor"]


def test_web_view_forms_are_bounded_in_definition_and_submission(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    receiver = Receiver()
    try:
        add_endpoint(app_server, app_tenant.workspace_id, receiver.url + "/hooks")
        conv = make_conversation(app_api)
        too_many = card_form(receiver.url + "/hooks/card")
        too_many["fields"] = [{"name": f"f{i}", "label": f"F{i}", "type": "text"} for i in range(31)]
        r = app_api.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={"message_parts": [{"web_view": {"label": "Big", "form": too_many}}]},
        )
        err = assert_error(r, 422)
        assert any("form.fields" in d["field"] for d in err["details"]), err
        long_label = card_form(receiver.url + "/hooks/card")
        long_label["fields"][0]["label"] = "L" * 81
        r = app_api.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={"message_parts": [{"web_view": {"label": "Card", "form": long_label}}]},
        )
        assert_error(r, 422)

        form = card_form(receiver.url + "/hooks/card")
        scene = post_webview_message(app_api, [{"web_view": {"label": "Card", "form": form}}])
        url = open_in_store(app_server, app_tenant, scene)["url"]
        huge = {"card_number": "4111 1111 1111 1111", "expiry": "09/39", "name": "A" * (70 * 1024)}
        r = app_api.post(url, data=huge, headers={"Accept": "application/json"})
        assert r.status_code == 413, r.text[:300]
        long_value = {"card_number": "4111 1111 1111 1111", "expiry": "09/39", "name": "A" * 61}  # max_length 60
        r = app_api.post(url, data=long_value, headers={"Accept": "application/json"})
        assert r.status_code == 422 and "name" in r.json()["errors"], r.text[:300]
        assert receiver.at("/hooks/card") == []  # nothing over a limit is relayed
    finally:
        receiver.close()
