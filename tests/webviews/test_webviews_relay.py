"""Hosted forms end to end over HTTP: validation, the signed relay, callback answers, forgetting.

The app runs in process; each callback is a real HTTP server that its relay posts to."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import InProcessServer, Tenant
from tests.webviews.support import (
    SENTINELS,
    Receiver,
    Scene,
    add_endpoint,
    card_form,
    files_containing,
    open_in_store,
    post_webview_message,
)

JSON = {"Accept": "application/json"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def form_scene(api: httpx.Client, receiver: Receiver, path: str = "/hooks/card") -> Scene:
    return post_webview_message(api, [
        {"text": {"content": "Please confirm your card."}},
        {"web_view": {"label": "Card details", "form": card_form(receiver.url + path)}},
    ])


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_submit_relays_signed_values_and_keeps_none_of_them(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client, receiver: Receiver, tmp_path: Path
) -> None:
    endpoint = add_endpoint(app_server, app_tenant.workspace_id, receiver.url + "/hooks")
    scene = form_scene(app_api, receiver)
    url = open_in_store(app_server, app_tenant, scene)["url"]
    assert app_server.get(url).status_code == 200

    r = app_server.post(url, data=SENTINELS, headers=JSON)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "submitted"}
    assert r.headers["cache-control"] == "no-store"
    assert not any(v in r.text for v in SENTINELS.values()), "the answer echoes nothing"

    (call,) = receiver.at("/hooks/card")
    payload = Webhook(endpoint.secret).verify(call.body, call.headers)  # raises unless genuine
    assert payload["type"] == "webview.submitted"
    assert payload["data"] == {
        "conversation_id": scene.conversation_id, "user_id": scene.user_id,
        "message_id": scene.message_id, "webview_id": scene.webview_id, "values": SENTINELS,
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(call.body.replace(b"4111", b"4112"), call.headers)

    # The bot hears the close through its webhook; the transcript shows "Web view closed".
    closed = wait_for(lambda: [x.json() for x in receiver.at("/hooks") if x.json()["type"] == "webview.closed"])
    assert closed[0]["data"] == {
        "conversation_id": scene.conversation_id, "message_id": scene.message_id,
        "webview_id": scene.webview_id, "status": "submitted",
    }
    messages = app_api.get(f"/api/v1/conversations/{scene.conversation_id}/messages").json()["data"]
    assert messages[-1]["actor"] == {"type": "system"}
    assert messages[-1]["message_parts"] == [{"text": {"content": "Web view closed"}}]

    # Single use: the URL is dead now.
    assert app_server.get(url).status_code == 410
    assert app_server.post(url, data=SENTINELS, headers=JSON).status_code == 410
    assert len(receiver.at("/hooks/card")) == 1

    # Nowhere else: not in the database (nor its WAL), the app_server log, or any other webhook.
    wait_for(lambda: len(receiver.at("/hooks")) >= 4)  # message.created, opened, system message, closed
    needles = list(SENTINELS.values())
    assert files_containing(tmp_path, needles) == {}
    others = [x.body.decode() for x in receiver.received if x.path != "/hooks/card"]
    assert others and not [b for b in others if any(n in b for n in needles)]
    app_server.stop()  # checkpoints the WAL into the database file
    assert files_containing(tmp_path, needles) == {}


def test_callback_422_errors_show_in_the_form_and_allow_another_try(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client, receiver: Receiver
) -> None:
    add_endpoint(app_server, app_tenant.workspace_id, receiver.url + "/hooks")
    scene = form_scene(app_api, receiver)
    url = open_in_store(app_server, app_tenant, scene)["url"]
    receiver.answer("/hooks/card", 422, {"errors": {"card_number": "This card was declined.", "pin": "Unknown"}})

    r = app_server.post(url, data=SENTINELS, headers=JSON)
    assert r.status_code == 422
    assert r.json() == {"errors": {"card_number": "This card was declined.", "_form": "Unknown"}}

    # Without JavaScript the form comes back with the errors, and without the card number.
    r = app_server.post(url, data=SENTINELS)
    assert r.status_code == 422 and "This card was declined." in r.text
    assert 'aria-invalid="true"' in r.text
    assert SENTINELS["card_number"] not in r.text and SENTINELS["name"] in r.text

    receiver.answer("/hooks/card", 204)
    r = app_server.post(url, data=SENTINELS)
    assert r.status_code == 200 and 'data-bc-close="submitted"' in r.text
    assert len(receiver.at("/hooks/card")) == 3


@pytest.mark.parametrize("status", [500, 302, 409])
def test_other_callback_answers_are_a_retryable_error(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client, receiver: Receiver, status: int
) -> None:
    add_endpoint(app_server, app_tenant.workspace_id, receiver.url + "/hooks")
    scene = form_scene(app_api, receiver)
    url = open_in_store(app_server, app_tenant, scene)["url"]
    receiver.answer("/hooks/card", status, {"errors": {"card_number": "not a 422"}})

    r = app_server.post(url, data=SENTINELS, headers=JSON)
    assert r.status_code == 502 and r.json()["retryable"] is True
    assert "try again" in r.json()["error"]
    receiver.answer("/hooks/card", 200)
    assert app_server.post(url, data=SENTINELS, headers=JSON).json() == {"status": "submitted"}


def test_an_unreachable_callback_is_retryable_and_logs_no_values(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client, receiver: Receiver
) -> None:
    dead = Receiver()
    dead_url = dead.url
    dead.close()
    add_endpoint(app_server, app_tenant.workspace_id, dead_url + "/hooks")
    scene = post_webview_message(app_api, [{"web_view": {"label": "Card", "form": card_form(dead_url + "/hooks/card")}}])
    r = app_server.post(open_in_store(app_server, app_tenant, scene)["url"], data=SENTINELS, headers=JSON)
    assert r.status_code == 502 and r.json()["retryable"] is True
    log = app_server.log()
    assert "web-view callback failed" in log
    assert not any(v in log for v in SENTINELS.values())


def test_values_are_validated_on_the_server_before_any_relay(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client, receiver: Receiver
) -> None:
    add_endpoint(app_server, app_tenant.workspace_id, receiver.url + "/hooks")
    form = card_form(receiver.url + "/hooks/card")
    form["fields"] += [
        {"name": "email", "label": "Email", "type": "email"},
        {"name": "period", "label": "Period", "type": "select", "options": ["30 days", {"label": "Year", "value": "365"}]},
        {"name": "amount", "label": "Amount", "type": "number"},
        {"name": "born", "label": "Born", "type": "date"},
    ]
    scene = post_webview_message(app_api, [{"web_view": {"label": "Card", "form": form}}])
    url = open_in_store(app_server, app_tenant, scene)["url"]
    bad = {"card_number": "", "expiry": "13/99", "name": "x" * 61, "email": "nope", "period": "7",
           "amount": "lots", "born": "yesterday"}
    r = app_server.post(url, data=bad, headers=JSON)
    assert r.status_code == 422
    assert set(r.json()["errors"]) == set(bad)
    assert receiver.at("/hooks/card") == []

    good = {**SENTINELS, "email": "a@b.example", "period": "365", "amount": "12.5", "born": "1990-02-01", "extra": "dropped"}
    assert app_server.post(url, data=good, headers=JSON).status_code == 200
    values = receiver.at("/hooks/card")[0].json()["data"]["values"]
    assert values == {k: v for k, v in good.items() if k != "extra"}


def test_the_signing_endpoint_is_the_longest_path_match_then_the_oldest(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client, receiver: Receiver
) -> None:
    root = add_endpoint(app_server, app_tenant.workspace_id, receiver.url + "/", age_seconds=500)
    oldest_hooks = add_endpoint(app_server, app_tenant.workspace_id, receiver.url + "/hooks", age_seconds=100)
    newer_hooks = add_endpoint(app_server, app_tenant.workspace_id, receiver.url + "/hooks/", age_seconds=50)
    # Shares more characters but only as many whole segments: a path prefix is whole segments.
    char_trap = add_endpoint(app_server, app_tenant.workspace_id, receiver.url + "/hooks/car", age_seconds=10)
    scene = form_scene(app_api, receiver)
    assert app_server.post(open_in_store(app_server, app_tenant, scene)["url"], data=SENTINELS, headers=JSON).status_code == 200

    (call,) = receiver.at("/hooks/card")
    Webhook(oldest_hooks.secret).verify(call.body, call.headers)
    for other in (root, newer_hooks, char_trap):
        with pytest.raises(WebhookVerificationError):
            Webhook(other.secret).verify(call.body, call.headers)
