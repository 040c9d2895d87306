"""``GET /widget/v1/webviews``: how each web view of the customer's own conversation closed, for
the widget's wording and its completed buttons; another customer's conversation is a 404, and
the answer never carries a web view's ``result``."""

from __future__ import annotations

import httpx

from app.realtime.identity import TokenSigner, WidgetIdentity
from app.webviews import openings as webviews
from tests.conftest import InProcessServer, Tenant
from tests.factories import make_conversation
from tests.webviews.support import TEST_ENV, open_in_store, post_webview_message

ORIGIN = "https://shop.example.com"


def _token(tenant: Tenant, user_id: str) -> str:
    return TokenSigner(TEST_ENV["BACKCHANNEL_SECRET_KEY"]).session_token(WidgetIdentity(tenant.workspace_id, user_id))


def _outcomes(server: InProcessServer, token: str | None, conversation_id: str, origin: str = ORIGIN) -> httpx.Response:
    headers = {"origin": origin}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return server.get("/widget/v1/webviews", params={"conversation_id": conversation_id}, headers=headers)


def test_the_customer_reads_how_their_web_views_closed_and_nobody_elses(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    page = {"web_view": {"label": "Apply", "url": "https://owner.example.com/apply"}}
    scene = post_webview_message(app_api, [page, {"web_view": {"label": "Later", "url": "https://owner.example.com/x"}}])
    open_in_store(app_server, app_tenant, scene)
    app_server.in_tx(lambda tx: webviews.close_webview(
        tx, app_tenant.workspace_id, scene.conversation_id, scene.message_id, "wv_0", "closed", "secret result"))
    open_in_store(app_server, app_tenant, scene, "wv_1")
    open_in_store(app_server, app_tenant, scene, "wv_1")  # opened twice: the first is "replaced", not a close
    app_server.in_tx(lambda tx: webviews.close_webview(
        tx, app_tenant.workspace_id, scene.conversation_id, scene.message_id, "wv_1", "dismissed"))

    mine = _token(app_tenant, scene.user_id)
    r = _outcomes(app_server, mine, scene.conversation_id)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN and r.headers["cache-control"] == "no-store"
    data = r.json()["data"]
    assert [(o["message_id"], o["webview_id"], o["status"]) for o in data] == [
        (scene.message_id, "wv_0", "closed"), (scene.message_id, "wv_1", "dismissed")]
    assert all(o["closed_at"].endswith("Z") for o in data)
    assert "secret result" not in r.text

    other = make_conversation(app_api)
    assert _outcomes(app_server, _token(app_tenant, other["user_id"]), scene.conversation_id).status_code == 404
    assert _outcomes(app_server, mine, other["id"]).status_code == 404
    assert _outcomes(app_server, mine, "").status_code == 404
    assert _outcomes(app_server, None, scene.conversation_id).status_code == 401
    assert _outcomes(app_server, "forged." + mine, scene.conversation_id).status_code == 401
    # Another workspace's customer with the same conversation id: nothing.
    stranger = app_server.new_tenant("Globex")
    assert _outcomes(app_server, _token(stranger, scene.user_id), scene.conversation_id).status_code == 404

    with app_server.client() as client:
        preflight = client.options(
            "/widget/v1/webviews", headers={"origin": ORIGIN, "access-control-request-method": "GET"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-methods"] == "GET"
    assert "authorization" in preflight.headers["access-control-allow-headers"]


def test_a_site_outside_the_allowed_origins_is_refused(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    app_api.patch("/api/v1/widget-settings", json={"allowed_origins": [ORIGIN]})
    scene = post_webview_message(app_api, [{"web_view": {"label": "Apply", "url": "https://owner.example.com/a"}}])
    token = _token(app_tenant, scene.user_id)
    assert _outcomes(app_server, token, scene.conversation_id).status_code == 200
    r = _outcomes(app_server, token, scene.conversation_id, origin="https://evil.example.com")
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
