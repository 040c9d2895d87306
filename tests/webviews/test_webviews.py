"""Web views over HTTP (the app in process): opening, bc_ctx verification, closing, hosted form pages."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import col, select

from app import errors
from app.ids import utcnow
from app.store.runner import Tx
from app.store.tables import Event, Message, WebhookEndpoint, WebviewOpening
from app.webviews import openings as webviews
from app.webviews.context import InvalidContext, verify_webview_context
from tests.conftest import InProcessServer, StoreAccess, Tenant
from tests.factories import assert_error, make_conversation
from tests.webviews.support import card_form, open_in_store, post_webview_message, settings_for


def external(url: str = "https://pay.example.com/card?lang=en", **extra: Any) -> dict[str, Any]:
    return {"web_view": {"label": "Enter card", "url": url, "height": "tall", **extra}}


def bc_ctx(opened: dict[str, Any]) -> str:
    return parse_qs(urlsplit(opened["url"]).query)["bc_ctx"][0]


def events_of(server: StoreAccess, workspace_id: str, type_: str) -> list[dict[str, Any]]:
    def read(tx: Tx) -> list[dict[str, Any]]:
        rows = tx.session.exec(
            select(Event).where(Event.workspace_id == workspace_id, Event.type == type_).order_by(col(Event.created_at))
        )
        return [e.payload["data"] for e in rows]

    return server.in_tx(read)  # type: ignore[no-any-return]


def transcript(server: StoreAccess, conversation_id: str) -> list[Message]:
    def read(tx: Tx) -> list[Message]:
        rows = list(tx.session.exec(select(Message).where(Message.conversation_id == conversation_id).order_by(col(Message.seq))))
        for m in rows:
            tx.session.expunge(m)
        return rows

    return server.in_tx(read)  # type: ignore[no-any-return]


# --- external web views and bc_ctx ------------------------------------------------------


def test_external_url_carries_a_context_the_owner_can_verify_online_and_offline(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    scene = post_webview_message(app_api, [{"text": {"content": "Your card, please"}}, external()])
    assert scene.webview_id == "wv_1"
    opened = open_in_store(app_server, app_tenant, scene)

    parts = urlsplit(opened["url"])
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "pay.example.com", "/card")
    assert parse_qs(parts.query)["lang"] == ["en"], "the owner's own query survives"
    assert opened["origin"] == "https://pay.example.com"
    assert opened["kind"] == "url" and opened["height"] == "tall" and opened["label"] == "Enter card"
    token = bc_ctx(opened)

    r = app_api.post("/api/v1/webview-contexts/verify", json={"token": token})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in ("workspace_id", "conversation_id", "user_id", "message_id", "webview_id")} == {
        "workspace_id": app_tenant.workspace_id, "conversation_id": scene.conversation_id,
        "user_id": scene.user_id, "message_id": scene.message_id, "webview_id": "wv_1",
    }
    assert body["expires_at"].endswith("Z")

    # Offline: the public key from the API and the documented helper, no shared secret.
    jwks = app_api.get("/api/v1/webview-contexts/keys").json()
    key = jwks["keys"][0]
    assert (key["kty"], key["crv"], key["alg"]) == ("OKP", "Ed25519", "EdDSA")
    claims = verify_webview_context(token, key["x"], workspace_id=app_tenant.workspace_id)
    assert claims["message_id"] == scene.message_id
    assert 890 <= claims["exp"] - time.time() <= 900, "default lifetime is 15 minutes"

    assert events_of(app_server, app_tenant.workspace_id, "webview.opened") == [
        {"conversation_id": scene.conversation_id, "message_id": scene.message_id, "webview_id": "wv_1"}
    ]


def test_tampered_expired_and_foreign_contexts_are_refused(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    scene = post_webview_message(app_api, [external()])
    token = bc_ctx(open_in_store(app_server, app_tenant, scene))
    header, payload, signature = token.split(".")
    verify = "/api/v1/webview-contexts/verify"

    # A payload edited to name another conversation no longer matches its signature.
    import base64
    import json

    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "conversation_id": "cnv_other"}).encode()).rstrip(b"=").decode()
    assert_error(app_api.post(verify, json={"token": f"{header}.{forged}.{signature}"}), 422, "invalid_webview_context")
    assert_error(app_api.post(verify, json={"token": f"{header}.{payload}.{signature[:-4]}AAAA"}), 422, "invalid_webview_context")
    assert_error(app_api.post(verify, json={"token": "not-a-token"}), 422, "invalid_webview_context")
    none_alg = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    assert_error(app_api.post(verify, json={"token": f"{none_alg}.{payload}."}), 422, "invalid_webview_context")

    expired = open_in_store(app_server, app_tenant, scene, webview_ttl_seconds=-5)
    assert_error(app_api.post(verify, json={"token": bc_ctx(expired)}), 422, "webview_context_expired")
    with pytest.raises(InvalidContext):
        verify_webview_context(bc_ctx(expired), app_api.get("/api/v1/webview-contexts/keys").json()["keys"][0]["x"])

    other = app_server.new_tenant("Other")
    with app_server.client(other) as other_api:
        assert_error(other_api.post(verify, json={"token": token}), 404, "not_found")
    with app_server.client() as anonymous:
        assert_error(anonymous.post(verify, json={"token": token}), 401)
    assert app_api.post(verify, json={"token": token}).status_code == 200, "the genuine token still verifies"


def test_open_checks_the_message_the_web_view_and_the_customer(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    carousel = {"carousel": {"cards": [
        {"title": "Gold", "buttons": [{"postback": {"label": "Pick", "payload": "gold"}}]},
        {"title": "Silver", "buttons": [
            {"postback": {"label": "Pick", "payload": "silver"}},
            {"web_view": {"label": "Apply", "url": "https://apply.example.com/"}},
        ]},
    ]}}
    scene = post_webview_message(app_api, [{"text": {"content": "Cards"}}, carousel, external(id="terms")])
    ids = [wid for wid, _ in webviews.iter_webviews(transcript(app_server, scene.conversation_id)[-1].message_parts)]
    assert ids == ["wv_1_1_1", "terms"]
    assert open_in_store(app_server, app_tenant, scene, "wv_1_1_1")["origin"] == "https://apply.example.com"
    assert open_in_store(app_server, app_tenant, scene, "terms")["webview_id"] == "terms"

    with pytest.raises(errors.NotFound):
        open_in_store(app_server, app_tenant, scene, "wv_0")  # the text part is no web view
    other = post_webview_message(app_api, [external()])
    wrong_message = type(scene)(scene.conversation_id, scene.user_id, other.message_id, "wv_0")
    with pytest.raises(errors.NotFound):
        open_in_store(app_server, app_tenant, wrong_message)
    wrong_user = type(scene)(scene.conversation_id, other.user_id, scene.message_id, "terms")
    with pytest.raises(errors.NotFound):
        open_in_store(app_server, app_tenant, wrong_user)


def test_every_close_adds_a_system_event_and_fires_once_per_opening(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    scene = post_webview_message(app_api, [external()])
    open_in_store(app_server, app_tenant, scene)

    def close(status: str, result: str | None = None) -> Any:
        return app_server.in_tx(lambda tx: webviews.close_webview(
            tx, app_tenant.workspace_id, scene.conversation_id, scene.message_id, scene.webview_id, status, result))

    first = close("closed", "card ending 1111" + "x" * 500)
    assert first is not None and first["result"] == ("card ending 1111" + "x" * 500)[:200]
    assert close("dismissed") is None, "a second close of the same opening is ignored"
    with pytest.raises(errors.Unprocessable):
        close("exploded")

    open_in_store(app_server, app_tenant, scene)
    assert close("dismissed") == {
        "conversation_id": scene.conversation_id, "message_id": scene.message_id,
        "webview_id": scene.webview_id, "status": "dismissed",
    }

    closed = events_of(app_server, app_tenant.workspace_id, "webview.closed")
    assert [e["status"] for e in closed] == ["closed", "dismissed"]
    assert "result" not in closed[1]
    system = [m for m in transcript(app_server, scene.conversation_id) if m.actor_type == "system"]
    assert [m.message_parts for m in system] == [[{"text": {"content": "Web view closed"}}]] * 2
    api_view = app_api.get(f"/api/v1/conversations/{scene.conversation_id}/messages").json()["data"]
    assert api_view[-1]["actor"] == {"type": "system"}


# --- hosted form pages (no callback needed) ---------------------------------------------


def test_hosted_form_page_is_signed_strict_and_hints_card_fields(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    from tests.webviews.support import add_endpoint

    add_endpoint(app_server, app_tenant.workspace_id, "https://bot.example.com/webhooks")
    scene = post_webview_message(app_api, [{"web_view": {"label": "Card details", "form": card_form(
        "https://bot.example.com/webhooks/card"), "height": "full"}}])
    opened = open_in_store(app_server, app_tenant, scene)
    assert opened["origin"] == app_server.url and opened["kind"] == "form" and opened["height"] == "full"
    assert opened["url"].startswith(app_server.url + "/webviews/form?token=")

    r = app_server.get(opened["url"])
    assert r.status_code == 200, r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "form-action 'self'" in csp
    assert "default-src 'none'" in csp and "frame-ancestors *" in csp
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.text
    assert "<script>" not in html and " style=" not in html, "no inline script or style"
    assert 'autocomplete="cc-number"' in html and 'inputmode="numeric"' in html
    assert 'autocomplete="cc-exp"' in html and 'autocomplete="cc-name"' in html
    assert '<label for="f-card_number">Card number' in html and "Verify card" in html

    # The workspace's allowed origins become the pages allowed to frame the form.
    app_api.patch("/api/v1/widget-settings", json={"allowed_origins": ["https://shop.example.com"]})
    r = app_server.get(open_in_store(app_server, app_tenant, scene)["url"])
    assert "frame-ancestors 'self' https://shop.example.com" in r.headers["content-security-policy"]

    # The earlier URL died when a newer opening replaced it.
    assert app_server.get(opened["url"]).status_code == 410


def test_hosted_form_url_tampered_expired_or_closed_is_refused(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    from tests.webviews.support import add_endpoint

    add_endpoint(app_server, app_tenant.workspace_id, "https://bot.example.com/")
    scene = post_webview_message(app_api, [{"web_view": {"label": "Card", "form": card_form("https://bot.example.com/cb")}}])
    url = open_in_store(app_server, app_tenant, scene)["url"]
    token = parse_qs(urlsplit(url).query)["token"][0]

    assert app_server.get(url).status_code == 200
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    r = app_server.get(f"{app_server.url}/webviews/form", params={"token": tampered})
    assert r.status_code == 404 and "not valid" in r.text
    assert r.headers["cache-control"] == "no-store"
    assert app_server.post(f"{app_server.url}/webviews/form", params={"token": tampered}, data={"name": "x"}).status_code == 404

    def expired_token(tx: Tx) -> str:
        opening = tx.session.exec(select(WebviewOpening).where(WebviewOpening.message_id == scene.message_id)).one()
        return webviews.form_token(settings_for(app_server), opening, utcnow() - timedelta(seconds=1))

    r = app_server.get(f"{app_server.url}/webviews/form", params={"token": app_server.in_tx(expired_token)})
    assert r.status_code == 410 and "expired" in r.text

    app_server.in_tx(lambda tx: webviews.close_webview(
        tx, app_tenant.workspace_id, scene.conversation_id, scene.message_id, scene.webview_id, "dismissed"))
    r = app_server.get(url)
    assert r.status_code == 410 and "closed" in r.text
    r = app_server.post(url, data={"card_number": "4111111111111111"}, headers={"Accept": "application/json"})
    assert r.status_code == 410 and r.json()["retryable"] is False


def test_callback_without_a_matching_enabled_endpoint_is_refused(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    from tests.webviews.support import add_endpoint

    add_endpoint(app_server, app_tenant.workspace_id, "https://bot.example.com/webhooks", enabled=False)
    add_endpoint(app_server, app_tenant.workspace_id, "https://other.example.com/webhooks")
    add_endpoint(app_server, app_tenant.workspace_id, "http://bot.example.com/webhooks")  # another scheme
    form = {"web_view": {"label": "Card", "form": card_form("https://bot.example.com/webhooks/card")}}
    conv = make_conversation(app_api)
    # Refused when the message is created (SPEC §14), naming the field and the origin.
    r = app_api.post(f"/api/v1/conversations/{conv['id']}/messages", json={"message_parts": [form]})
    (detail,) = assert_error(r, 422)["details"]
    assert detail["field"] == "message_parts.0.web_view.form.callback_url"
    assert "https://bot.example.com" in detail["message"] and "no enabled webhook endpoint" in detail["message"]

    # And when its endpoint is disabled after the message was created, the page refuses it.
    usable = add_endpoint(app_server, app_tenant.workspace_id, "https://bot.example.com/")
    scene = post_webview_message(app_api, [form], conv)
    app_server.in_tx(lambda tx: setattr(tx.session.get(WebhookEndpoint, usable.id), "enabled", False))
    r = app_server.get(open_in_store(app_server, app_tenant, scene)["url"])
    assert r.status_code == 503 and "not available" in r.text
