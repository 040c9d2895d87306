"""Widget identity: visitor and session tokens, identity JWTs, and the session endpoint."""

from __future__ import annotations

import base64
import json
import time
from contextlib import ExitStack
from typing import Any

import httpx
import jwt
import pytest

from app.realtime.identity import IdentityError, TokenSigner, WidgetIdentity, origin_allowed, verify_user_jwt
from tests.conftest import InProcessServer, LiveServer, Server, StoreAccess, Tenant
from tests.console.support import console_client, make_console_user
from tests.realtime.test_realtime import WidgetClient, bot_says, opened

SECRET = "ids_test-identity-secret-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789"


def user_jwt(sub: str, secret: str = SECRET, exp: float | None = None, **extra: Any) -> str:
    claims = {"sub": sub, "exp": int(exp if exp is not None else time.time() + 600), **extra}
    return jwt.encode(claims, secret, algorithm="HS256")


def unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


# -- tokens ----------------------------------------------------------------------------------


def test_visitor_and_session_tokens_round_trip_and_never_cross() -> None:
    signer = TokenSigner("k" * 40)
    me = WidgetIdentity("wsp_1", "usr_1")
    assert signer.read_visitor(signer.visitor_token(me)) == me
    assert signer.read_session(signer.session_token(me)) == me
    # Each token has its own salt: a visitor token is not a session token, and vice versa.
    assert signer.read_session(signer.visitor_token(me)) is None
    assert signer.read_visitor(signer.session_token(me)) is None


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", None, 42, "x" * 5000])
def test_malformed_tokens_are_rejected(token: Any) -> None:
    assert TokenSigner("k" * 40).read_visitor(token) is None


def test_a_token_signed_with_another_key_is_rejected() -> None:
    forged = TokenSigner("other-key" * 5).visitor_token(WidgetIdentity("wsp_1", "usr_1"))
    assert TokenSigner("k" * 40).read_visitor(forged) is None


# -- identity JWTs ----------------------------------------------------------------------------


def test_a_valid_jwt_is_accepted() -> None:
    assert verify_user_jwt(user_jwt("cust-1"), SECRET, "cust-1")["sub"] == "cust-1"


@pytest.mark.parametrize(
    "token, why",
    [
        (lambda: user_jwt("cust-1", secret="wrong-secret-" * 6), "wrong secret"),
        (lambda: user_jwt("cust-2"), "sub mismatch"),
        (lambda: user_jwt("cust-1", exp=time.time() - 3600), "expired"),
        (lambda: jwt.encode({"sub": "cust-1"}, SECRET, algorithm="HS256"), "no exp"),
        (lambda: unsigned_jwt({"sub": "cust-1", "exp": int(time.time()) + 600}), "alg none"),
        (lambda: jwt.encode({"sub": "cust-1", "exp": int(time.time()) + 600}, SECRET, algorithm="HS512"), "HS512"),
        (lambda: "not-a-jwt", "garbage"),
        (lambda: "", "empty"),
    ],
)
def test_bad_jwts_are_refused(token: Any, why: str) -> None:
    with pytest.raises(IdentityError):
        verify_user_jwt(token(), SECRET, "cust-1")


def test_origin_rules() -> None:
    assert origin_allowed([], None)
    assert origin_allowed([], "https://anything.example")
    assert origin_allowed(["https://shop.example"], "https://shop.example")
    assert origin_allowed(["https://shop.example"], "HTTPS://SHOP.EXAMPLE")
    assert not origin_allowed(["https://shop.example"], "https://evil.example")
    assert not origin_allowed(["https://shop.example"], "http://shop.example")
    assert not origin_allowed(["https://shop.example"], None)


# -- the session endpoint ---------------------------------------------------------------------


def session(server: Server, body: dict[str, Any], origin: str = "http://shop.test") -> httpx.Response:
    with server.client() as client:
        return client.post("/widget/v1/session", json=body, headers={"Origin": origin})


def identity_secret(server: StoreAccess, tenant: Tenant) -> str:
    from app.store.tables import Workspace

    return server.in_tx(lambda tx: tx.session.get(Workspace, tenant.workspace_id).identity_secret)  # type: ignore[no-any-return]


def test_anonymous_visitor_keeps_their_identity(app_server: InProcessServer, app_tenant: Tenant) -> None:
    first = session(app_server, {"widget_key": app_tenant.widget_key})
    assert first.status_code == 200
    data = first.json()
    assert data["visitor_token"] and data["session_token"] and data["conversation_id"] is None
    assert first.headers["access-control-allow-origin"] == "http://shop.test"
    again = session(app_server, {"widget_key": app_tenant.widget_key, "visitor_token": data["visitor_token"]}).json()
    assert again["user_id"] == data["user_id"]
    stranger = session(app_server, {"widget_key": app_tenant.widget_key, "visitor_token": data["visitor_token"] + "x"}).json()
    assert stranger["user_id"] != data["user_id"]


def test_visitor_token_of_one_workspace_is_useless_in_another(app_server: InProcessServer, app_tenant: Tenant) -> None:
    other = app_server.new_tenant("Other")
    token = session(app_server, {"widget_key": app_tenant.widget_key}).json()["visitor_token"]
    mine = session(app_server, {"widget_key": other.widget_key, "visitor_token": token}).json()
    assert (
        mine["user_id"] != session(app_server, {"widget_key": app_tenant.widget_key, "visitor_token": token}).json()["user_id"]
    )


def test_unknown_widget_key_is_404_in_the_error_shape(app_server: InProcessServer) -> None:
    response = session(app_server, {"widget_key": "wk_nope"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_widget_key"


def test_allowed_origins_are_enforced(app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client) -> None:
    app_api.patch("/api/v1/widget-settings", json={"allowed_origins": ["http://shop.test"]}).raise_for_status()
    assert session(app_server, {"widget_key": app_tenant.widget_key}).status_code == 200
    refused = session(app_server, {"widget_key": app_tenant.widget_key}, origin="http://evil.test")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    # Readable, so the widget stops and says so rather than retrying forever.
    assert refused.headers["access-control-allow-origin"] == "http://evil.test"


def test_known_user_without_verification(app_server: InProcessServer, app_tenant: Tenant) -> None:
    response = session(app_server, {"widget_key": app_tenant.widget_key, "user": {"external_id": "cust-1", "name": "Ada"}})
    assert response.status_code == 200
    # A new user from an unsigned claim: the visitor token issued to them is how they come back.
    assert response.json()["visitor_token"]
    signed = session(
        app_server,
        {"widget_key": app_tenant.widget_key, "user": {"external_id": "cust-2"}, "user_jwt": user_jwt("cust-2", "x" * 40)},
    )
    assert signed.status_code == 401  # a JWT, when sent, is checked even with verification off


# -- an unsigned claim never reaches an existing user (issue 15.3) -----------------------------

ADA = {"external_id": "cust-1", "name": "Ada", "email": "ada@example.com"}
MALLORY = {"external_id": "cust-1", "name": "Mallory", "email": "mallory@evil.example"}


def widget_user(api: httpx.Client, user_id: str) -> tuple[str, str | None, str | None]:
    found = api.get(f"/api/v1/users/{user_id}").json()
    return found["external_id"], found["name"], found["email"]


def test_an_unsigned_claim_never_reaches_an_existing_user(server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    ada = session(server, {"widget_key": tenant.widget_key, "user": ADA}).json()
    with ExitStack() as stack:
        customer = WidgetClient(stack, server, tenant, user=ADA, visitor_token=ada["visitor_token"])
        conversation_id = opened(customer)
    bot_says(api, conversation_id, "Your card ending 4242 is blocked.")
    other = server.new_tenant("Other")
    mallory_anon = session(server, {"widget_key": tenant.widget_key}).json()["visitor_token"]
    mallory_claimed = session(server, {"widget_key": tenant.widget_key, "user": {"external_id": "m-1"}}).json()
    signer = TokenSigner("test-secret-key-0123456789-abcdefghijklmnop")  # tests/conftest.py TEST_ENV
    for token in (
        None,  # the external_id alone
        mallory_anon,  # a visitor token of someone else
        mallory_claimed["visitor_token"],  # issued to another claimed user
        ada["visitor_token"] + "x",  # tampered
        TokenSigner("another-key-" * 4).visitor_token(WidgetIdentity(tenant.workspace_id, ada["user_id"])),  # forged
        signer.visitor_token(WidgetIdentity(other.workspace_id, ada["user_id"])),  # of another workspace
        signer.session_token(WidgetIdentity(tenant.workspace_id, ada["user_id"])),  # a session token, not a visitor's
    ):
        body = {"widget_key": tenant.widget_key, "user": MALLORY, **({"visitor_token": token} if token else {})}
        refused = session(server, body)
        assert refused.status_code == 401, (token, refused.text)
        assert refused.json()["error"]["code"] == "identity_required"
        assert "session_token" not in refused.text and "cnv_" not in refused.text
    assert widget_user(api, ada["user_id"]) == ("cust-1", "Ada", "ada@example.com")
    # A user the business created through the API is out of reach of an unsigned claim too.
    made = api.post("/api/v1/users", json={"external_id": "crm-9", "name": "Grace"}).json()
    refused = session(server, {"widget_key": tenant.widget_key, "user": {"external_id": "crm-9", "name": "X"}})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "identity_required"
    assert widget_user(api, made["id"]) == ("crm-9", "Grace", None)
    # Anonymous visitors are still welcome, and a new external_id may still be claimed.
    assert session(server, {"widget_key": tenant.widget_key}).status_code == 200
    assert session(server, {"widget_key": tenant.widget_key, "user": {"external_id": "cust-new"}}).status_code == 200


def test_the_visitor_token_issued_to_a_claimed_user_continues_their_conversation(
    server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    first = session(server, {"widget_key": tenant.widget_key, "user": ADA}).json()
    assert widget_user(api, first["user_id"]) == ("cust-1", "Ada", "ada@example.com")
    with ExitStack() as stack:
        conversation_id = opened(WidgetClient(stack, server, tenant, user=ADA, visitor_token=first["visitor_token"]))
    # The reload: the same claim with the token issued to her. Changed fields in an unsigned
    # claim are ignored: stored fields never change from one.
    again = session(
        server,
        {"widget_key": tenant.widget_key, "user": {**ADA, "name": "Ada L."}, "visitor_token": first["visitor_token"]},
    )
    assert again.status_code == 200, again.text
    assert (again.json()["user_id"], again.json()["conversation_id"]) == (first["user_id"], conversation_id)
    assert again.json()["visitor_token"]  # re-issued, so it slides
    assert widget_user(api, first["user_id"]) == ("cust-1", "Ada", "ada@example.com")
    # Her valid user_jwt reaches her too (signed: its claim may update her fields).
    secret = identity_secret(server, tenant)
    signed = session(
        server,
        {"widget_key": tenant.widget_key, "user": {**ADA, "name": "Ada King"}, "user_jwt": user_jwt("cust-1", secret)},
    )
    assert signed.status_code == 200 and signed.json()["user_id"] == first["user_id"]
    assert widget_user(api, first["user_id"]) == ("cust-1", "Ada King", "ada@example.com")
    # Her token does not make an anonymous session hers (no claim, no known user).
    anon = session(server, {"widget_key": tenant.widget_key, "visitor_token": first["visitor_token"]}).json()
    assert anon["user_id"] != first["user_id"]


def test_identity_verification_refuses_unsigned_and_bad_identities(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    app_api.patch("/api/v1/widget-settings", json={"identity_verification": True}).raise_for_status()
    secret = identity_secret(app_server, app_tenant)
    user = {"external_id": "cust-1", "name": "Ada", "email": "ada@example.com"}
    unsigned = session(app_server, {"widget_key": app_tenant.widget_key, "user": user})
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "identity_required"
    for bad in (
        user_jwt("cust-1", secret="not-the-secret-" * 5),
        user_jwt("someone-else", secret=secret),
        user_jwt("cust-1", secret=secret, exp=time.time() - 3600),
        unsigned_jwt({"sub": "cust-1", "exp": int(time.time()) + 600}),
    ):
        refused = session(app_server, {"widget_key": app_tenant.widget_key, "user": user, "user_jwt": bad})
        assert refused.status_code == 401, bad
    good = session(
        app_server, {"widget_key": app_tenant.widget_key, "user": user, "user_jwt": user_jwt("cust-1", secret=secret)}
    )
    assert good.status_code == 200
    found = app_api.get(f"/api/v1/users/{good.json()['user_id']}").json()
    assert (found["external_id"], found["name"], found["email"]) == ("cust-1", "Ada", "ada@example.com")
    # Anonymous visitors are still welcome: verification is about claimed identities.
    assert session(app_server, {"widget_key": app_tenant.widget_key}).status_code == 200


def test_a_visitor_token_never_stands_in_for_a_known_user(app_server: InProcessServer, app_tenant: Tenant) -> None:
    known = session(app_server, {"widget_key": app_tenant.widget_key, "user": {"external_id": "cust-1"}}).json()
    signer = TokenSigner("test-secret-key-0123456789-abcdefghijklmnop")  # tests/conftest.py TEST_ENV
    # Even a correctly signed visitor token naming a known user gets a fresh anonymous user.
    token = signer.visitor_token(WidgetIdentity(app_tenant.workspace_id, known["user_id"]))
    assert (
        session(app_server, {"widget_key": app_tenant.widget_key, "visitor_token": token}).json()["user_id"] != known["user_id"]
    )


def test_widget_js_is_served_for_embedding(app_server: InProcessServer) -> None:
    response = app_server.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["access-control-allow-origin"] == "*"
    assert "max-age" in response.headers["cache-control"]
    assert "attachShadow" in response.text
    assert app_server.get("/widget.js", headers={"If-None-Match": response.headers["etag"]}).status_code == 304


def test_session_preflight(app_server: InProcessServer) -> None:
    with app_server.client() as client:
        response = client.options(
            "/widget/v1/session",
            headers={
                "Origin": "http://shop.test",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "http://shop.test"
    assert "content-type" in response.headers["access-control-allow-headers"]


def test_settings_widget_warns_while_identity_verification_is_off(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    client = console_client(app_server, make_console_user(app_server, app_tenant))
    page = client.get("/console/settings/widget").text
    assert 'id="idv-warning"' in page and "Identity verification is off" in page
    app_api.patch("/api/v1/widget-settings", json={"identity_verification": True}).raise_for_status()
    assert 'id="idv-warning"' not in client.get("/console/settings/widget").text
