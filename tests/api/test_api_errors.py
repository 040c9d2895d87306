"""The one error shape on every route; tenant isolation on every route; never a 500 or HTML."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import InProcessServer, Tenant
from tests.factories import assert_error, make_conversation, openapi_spec, post_text


def all_operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]


def fill(path: str, value: str) -> str:
    return re.sub(r"{\w+}", value, path)


def test_every_route_is_described_in_openapi(module_app_api: httpx.Client) -> None:
    spec = openapi_spec(module_app_api)
    assert spec["openapi"].startswith("3.1")
    ops = all_operations(spec)
    for expected in [
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/users/{user_id}"),
        ("PATCH", "/api/v1/users/{user_id}"),
        ("POST", "/api/v1/agents"),
        ("GET", "/api/v1/agents"),
        ("POST", "/api/v1/conversations"),
        ("GET", "/api/v1/conversations"),
        ("GET", "/api/v1/conversations/{conversation_id}"),
        ("PATCH", "/api/v1/conversations/{conversation_id}"),
        ("POST", "/api/v1/conversations/{conversation_id}/messages"),
        ("GET", "/api/v1/conversations/{conversation_id}/messages"),
        ("GET", "/api/v1/api-tokens"),
        ("POST", "/api/v1/api-tokens"),
        ("DELETE", "/api/v1/api-tokens/{token_id}"),
        ("GET", "/api/v1/widget-settings"),
        ("PATCH", "/api/v1/widget-settings"),
    ]:
        assert expected in ops
    for method, path in ops:
        op = spec["paths"][path][method.lower()]
        assert op["summary"] and op["responses"]
        assert any(code.startswith("2") for code in op["responses"])
        assert "401" in op["responses"]
    schemas = spec["components"]["schemas"]
    assert {"MessageIn", "MessageOut", "ConversationOut", "ErrorOut"} <= set(schemas)


def test_every_route_without_a_token_is_401_json(module_app_server: InProcessServer) -> None:
    with module_app_server.client() as c:
        spec = openapi_spec(c)
        for method, path in all_operations(spec):
            r = c.request(method, fill(path, "x_1"), json={})
            assert_error(r, 401)


def test_every_route_rejects_bad_json_and_unknown_ids_with_the_error_shape(
    module_app_server: InProcessServer, module_app_tenant: Tenant
) -> None:
    with module_app_server.client(module_app_tenant) as c:
        spec = openapi_spec(c)
        for method, path in all_operations(spec):
            url = fill(path, "nope_0000")
            if method in ("POST", "PATCH"):
                r = c.request(method, url, content=b"{not json", headers={"content-type": "application/json"})
                assert r.status_code in (400, 404), (method, path, r.status_code, r.text)
                assert_error(r, r.status_code)
                r = c.request(method, url, json=[1, 2])
                assert r.status_code in (404, 422), (method, path, r.text)
                assert_error(r, r.status_code)
            if "{" in path:
                r = c.request(method, url, json={})
                assert r.status_code in (404, 422), (method, path, r.status_code, r.text)
                assert_error(r, r.status_code)


def test_unknown_routes_methods_and_oversized_bodies(module_app_api: httpx.Client) -> None:
    assert_error(module_app_api.get("/api/v1/nothing-here"), 404, "route_not_found")
    assert_error(module_app_api.put("/api/v1/users"), 405, "method_not_allowed")
    assert_error(module_app_api.delete("/api/v1/conversations"), 405)
    huge = {"name": "x" * (2 * 1024 * 1024)}
    assert_error(module_app_api.post("/api/v1/users", json=huge), 413, "payload_too_large")
    assert_error(module_app_api.post("/api/v1/users", json={"name": 5}), 422)
    assert_error(module_app_api.post("/api/v1/users", json={"unknown": 1}), 422)


@pytest.fixture
def two_tenants(app_server: InProcessServer) -> tuple[Tenant, Tenant]:
    return app_server.new_tenant("A"), app_server.new_tenant("B")


def test_resources_of_another_workspace_are_404_everywhere(
    app_server: InProcessServer, two_tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = two_tenants
    with app_server.client(a) as ca, app_server.client(b) as cb:
        user = ca.post("/api/v1/users", json={"external_id": "shared-id"}).json()
        conv = make_conversation(ca, user["id"])
        msg = post_text(ca, conv["id"], "secret").json()
        agent = ca.post("/api/v1/agents", json={"name": "Ann", "kind": "human"}).json()
        token = ca.post("/api/v1/api-tokens", json={"name": "a"}).json()

        assert_error(cb.get(f"/api/v1/users/{user['id']}"), 404)
        assert_error(cb.patch(f"/api/v1/users/{user['id']}", json={"name": "x"}), 404)
        assert cb.get("/api/v1/users", params={"external_id": "shared-id"}).json()["data"] == []
        assert_error(cb.get(f"/api/v1/agents/{agent['id']}"), 404)
        assert_error(cb.get(f"/api/v1/conversations/{conv['id']}"), 404)
        assert_error(cb.patch(f"/api/v1/conversations/{conv['id']}", json={"status": "resolved"}), 404)
        assert_error(cb.get(f"/api/v1/conversations/{conv['id']}/messages"), 404)
        assert_error(post_text(cb, conv["id"], "intrude"), 404)
        assert_error(cb.post(f"/api/v1/conversations/{conv['id']}/typing", json={}), 404)
        assert_error(cb.delete(f"/api/v1/api-tokens/{token['id']}"), 404)
        # ids of A used inside B's own requests are refused too
        assert_error(cb.post("/api/v1/conversations", json={"user_id": user["id"]}), 422)
        own = make_conversation(cb)
        assert_error(cb.patch(f"/api/v1/conversations/{own['id']}", json={"assignee_id": agent["id"]}), 422)
        assert_error(
            cb.post(
                f"/api/v1/conversations/{own['id']}/messages",
                json={"actor": {"type": "agent", "id": agent["id"]}, "message_parts": [{"text": {"content": "x"}}]},
            ),
            422,
        )
        assert_error(
            cb.post(
                f"/api/v1/conversations/{own['id']}/messages",
                json={
                    "message_parts": [{"text": {"content": "x"}}],
                    "reply_to": {"message_id": msg["id"], "payload": "p"},
                },
            ),
            422,
        )
        # lists never show the other workspace
        assert cb.get("/api/v1/conversations").json()["data"] == [cb.get(f"/api/v1/conversations/{own['id']}").json()]
        assert all(t["id"] != token["id"] for t in cb.get("/api/v1/api-tokens").json()["data"])
        # and A still sees its own
        assert ca.get(f"/api/v1/conversations/{conv['id']}").status_code == 200
