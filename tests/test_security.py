"""Attacks from docs/security.md not pinned elsewhere: cross-workspace access on every route of
the OpenAPI document, open redirects after login, and secrets in the server log (read from a
real uvicorn process's output; the other two run the app in process)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from tests.conftest import InProcessServer, LiveServer, Tenant
from tests.console.support import PASSWORD, csrf_from, make_console_user
from tests.factories import make_conversation, openapi_spec, post_text
from tests.receivers import Receiver, eventually

# A body that passes validation for each write, so only the ownership check can refuse it.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/api/v1/users/{user_id}"): {"name": "taken over"},
    ("PATCH", "/api/v1/conversations/{conversation_id}"): {"status": "resolved"},
    ("POST", "/api/v1/conversations/{conversation_id}/messages"): {"message_parts": [{"text": {"content": "hi"}}]},
    ("POST", "/api/v1/conversations/{conversation_id}/typing"): {"on": True},
    ("POST", "/api/v1/conversations/{conversation_id}/handover"): {"to": "human"},
    ("PATCH", "/api/v1/webhook-endpoints/{endpoint_id}"): {"enabled": False},
    ("POST", "/api/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): {},
}


def test_every_route_with_an_id_is_404_for_another_workspace(app_server: InProcessServer) -> None:
    a, b = app_server.new_tenant("A"), app_server.new_tenant("B")
    with Receiver() as rx, app_server.client(a) as ca, app_server.client(b) as cb:
        spec = openapi_spec(ca)
        conv = make_conversation(ca)
        endpoint = ca.post("/api/v1/webhook-endpoints", json={"url": rx.url}).json()
        post_text(ca, conv["id"], "A's secret")
        delivery = eventually(lambda: ca.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries").json()["data"])
        ids = {
            "user_id": conv["user_id"],
            "conversation_id": conv["id"],
            "agent_id": ca.post("/api/v1/agents", json={"name": "Ann", "kind": "human"}).json()["id"],
            "token_id": ca.post("/api/v1/api-tokens", json={"name": "a"}).json()["id"],
            "endpoint_id": endpoint["id"],
            "delivery_id": delivery[0]["id"],
            "file_id": ca.post("/api/v1/files", files={"file": ("a.txt", b"A's secret", "text/plain")}).json()["id"],
            "canned_response_id": ca.post(
                "/api/v1/canned-responses", json={"shortcut": "secret", "text": "A's secret"}
            ).json()["id"],
        }
        tried = 0
        for template, ops in spec["paths"].items():
            names = re.findall(r"{(\w+)}", template)
            if not names:
                continue
            path = template
            for name in names:
                assert name in ids, f"no id of A for {name}: add it to this test"
                path = path.replace("{" + name + "}", ids[name])
            for method in ops:
                body = BODIES.get((method.upper(), template))
                r = cb.request(method.upper(), path, json=body)
                assert r.status_code == 404, (method, template, r.status_code, r.text)
                assert "A's secret" not in r.text
                tried += 1
        assert tried >= 15
        # Nothing of A changed: its token, endpoint, conversation and user are as they were.
        assert any(t["id"] == ids["token_id"] for t in ca.get("/api/v1/api-tokens").json()["data"])
        assert ca.get(f"/api/v1/webhook-endpoints/{endpoint['id']}").json()["enabled"] is True
        assert ca.get(f"/api/v1/conversations/{conv['id']}").json()["status"] == "open"
        assert ca.get(f"/api/v1/conversations/{conv['id']}").json()["handled_by"] == "bot"
        assert [c["shortcut"] for c in ca.get("/api/v1/canned-responses").json()["data"]] == ["secret"]
        assert ca.get(f"/api/v1/users/{conv['user_id']}").json()["name"] != "taken over"


OFF_SITE = [
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "/console\\@evil.example",
    "javascript:alert(1)",
    "https:evil.example",
    "/%2F%2Fevil.example",
    "/console/../..//evil.example",
]


def test_login_never_redirects_off_site(app_server: InProcessServer, app_tenant: Tenant) -> None:
    email = make_console_user(app_server, app_tenant)
    own = urlsplit(app_server.url).netloc
    for target in OFF_SITE:
        with app_server.client(headers={"origin": app_server.url}) as c:
            page = c.get("/console/login", params={"next": target})
            r = c.post(
                "/console/login",
                data={"email": email, "password": PASSWORD, "csrf_token": csrf_from(page.text), "next": target},
            )
            assert r.status_code == 303, (target, r.status_code)
            location = r.headers["location"]
            assert urlsplit(urljoin(app_server.url + "/console/login", location)).netloc == own, (target, location)
            assert location.startswith("/") and not location.startswith(("//", "/\\")), (target, location)
            # Already logged in, the login page redirects too: same rule.
            again = c.get("/console/login", params={"next": target})
            assert urlsplit(urljoin(app_server.url, again.headers.get("location", "/"))).netloc == own


def test_secrets_never_reach_the_server_log(server: LiveServer, tenant: Tenant) -> None:
    secrets: list[str] = [tenant.token, PASSWORD]
    with Receiver() as rx, server.client(tenant) as api:
        token = api.post("/api/v1/api-tokens", json={"name": "bot"}).json()["token"]
        endpoint = api.post("/api/v1/webhook-endpoints", json={"url": rx.url}).json()
        rotated = api.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", json={}).json()
        secrets += [token, endpoint["secret"], rotated["secret"]]
        session = httpx.post(
            server.url + "/widget/v1/session", json={"widget_key": tenant.widget_key}, headers={"Origin": "http://a.test"}
        ).json()
        secrets += [session["session_token"], session["visitor_token"]]
        api.post("/api/v1/users", json={"name": "x"})
        rx.wait_count(1)
        api.delete(f"/api/v1/api-tokens/{api.get('/api/v1/api-tokens').json()['data'][0]['id']}")
        # Secrets where they do not belong: in a query string, a revoked or mangled bearer, a body.
        httpx.get(server.url + "/api/v1/users", params={"token": token, "secret": endpoint["secret"]})
        httpx.get(server.url + "/api/v1/users", headers={"Authorization": f"Bearer {token}x"})
        httpx.get(server.url + "/api/v1/users", headers={"Authorization": f"Bearer {tenant.token}"})
        api.post("/api/v1/webview-contexts/verify", json={"token": session["session_token"]})
    email = make_console_user(server, tenant)
    with httpx.Client(base_url=server.url, headers={"origin": server.url}) as c:
        for password in ("wrong " + PASSWORD, PASSWORD):
            page = c.get("/console/login")
            c.post("/console/login", data={"email": email, "password": password, "csrf_token": csrf_from(page.text)})
    log = server.log()
    assert log.strip(), "the server logged nothing at all: this test would prove nothing"
    leaked = [s[:12] + "…" for s in secrets if s in log or s[-16:] in log]
    assert leaked == [], leaked
