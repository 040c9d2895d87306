"""The OpenAPI document as a bot developer reads it (SPEC §14): a ``webhooks`` section naming
every webhook event of ``app/events.py`` with its payload schema, an example on every
operation and payload (each valid against its schema), stable operationIds, and ``/docs``
showing both without any outside asset."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema
import pytest

from app import events
from app.api.openapi_webhooks import split_fields
from tests.factories import openapi_spec

# Clients generated from the document name their methods by these: they must not change.
PINNED_OPERATION_IDS = {
    ("post", "/api/v1/conversations/{conversation_id}/messages"): "post_conversations_conversation_id_messages",
    ("get", "/api/v1/conversations/{conversation_id}/messages"): "get_conversations_conversation_id_messages",
    ("post", "/api/v1/conversations"): "post_conversations",
    ("post", "/api/v1/users"): "post_users",
    ("patch", "/api/v1/agents/{agent_id}"): "patch_agents_agent_id",
    ("post", "/api/v1/webhook-endpoints"): "post_webhook_endpoints",
    ("post", "/api/v1/webview-contexts/verify"): "post_webview_contexts_verify",
    ("get", "/api/v1/events"): "get_events",
}


def check(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> None:
    # "#/components/…" refs resolve against the root: carry the components along.
    jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(value)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in spec["paths"].items() for m, op in item.items()]


def test_every_webhook_event_has_its_payload_schema_and_an_example_that_fits(app_api: httpx.Client) -> None:
    spec = openapi_spec(app_api)
    assert spec["openapi"].startswith("3.1")
    assert list(spec["webhooks"]) == list(events.WEBHOOK_EVENT_TYPES)
    for name, item in spec["webhooks"].items():
        op = item["post"]
        assert op["operationId"] == "webhook_" + name.replace(".", "_")
        assert {p["name"] for p in op["parameters"]} == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        content = op["requestBody"]["content"]["application/json"]
        envelope = spec["components"]["schemas"][content["schema"]["$ref"].rsplit("/", 1)[-1]]
        assert envelope["properties"]["type"] == {"const": name}
        # Every field events.py declares for the event's data is in the schema.
        declared = [f.partition(":")[0].strip().rstrip("?") for f in split_fields(events.EVENTS[name].data)[0]]
        assert list(envelope["properties"]["data"]["properties"]) == declared, name
        check(spec, content["schema"], content["example"], name)


def test_the_nouns_of_a_payload_are_the_apis_own_shapes(app_api: httpx.Client) -> None:
    schemas = openapi_spec(app_api)["components"]["schemas"]
    data = schemas["Event_message_created"]["properties"]["data"]["properties"]
    assert data["message"] == {"$ref": "#/components/schemas/MessageOut"}
    assert data["conversation"] == {"$ref": "#/components/schemas/ConversationOut"}
    closed = schemas["Event_webview_closed"]["properties"]["data"]
    assert closed["properties"]["status"]["enum"] == ["submitted", "closed", "dismissed"]
    assert "result" not in closed["required"] and "webview_id" in closed["required"]


def test_every_operation_has_examples_that_fit_and_a_stable_unique_operation_id(app_api: httpx.Client) -> None:
    spec = openapi_spec(app_api)
    ids = [op["operationId"] for _, _, op in operations(spec)] + [
        item["post"]["operationId"] for item in spec["webhooks"].values()
    ]
    assert len(ids) == len(set(ids))
    for (method, path), op_id in PINNED_OPERATION_IDS.items():
        assert spec["paths"][path][method]["operationId"] == op_id
    for method, path, op in operations(spec):
        where = f"{method.upper()} {path}"
        assert re.fullmatch(r"[a-z]+(_[a-z0-9]+)+", op["operationId"]), where
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            assert "example" in body, f"{where}: no request example"
            check(spec, body["schema"], body["example"], where)
        successes = [r for code, r in op["responses"].items() if code.startswith("2") and "content" in r]
        for response in successes:
            content = response["content"]["application/json"]
            assert "example" in content, f"{where}: no response example"
            check(spec, content["schema"], content["example"], where)


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/api/v1/users"), ("post", "/api/v1/conversations/{conversation_id}/messages"),
     ("patch", "/api/v1/agents/{agent_id}"), ("post", "/api/v1/conversations/{conversation_id}/typing")],
)
def test_the_written_out_request_examples_work_as_they_are(app_api: httpx.Client, method: str, path: str) -> None:
    spec = openapi_spec(app_api)
    example = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["example"]
    user = app_api.post("/api/v1/users", json={}).json()
    conversation = app_api.post("/api/v1/conversations", json={"user_id": user["id"]}).json()
    bot = app_api.get("/api/v1/agents").json()["data"][0]
    url = path.replace("/api/v1", "/api/v1").format(conversation_id=conversation["id"], agent_id=bot["id"])
    r = app_api.request(method.upper(), url, json=example)
    assert r.status_code < 300, r.text


def test_docs_shows_examples_and_webhook_payloads_from_this_server_alone(app_api: httpx.Client) -> None:
    html = app_api.get("/docs").text
    assert 'id="webhooks"' in html and "Example response" in html and "Example request" in html
    for name in events.WEBHOOK_EVENT_TYPES:
        assert f'id="webhook_{name.replace(".", "_")}"' in html
    assert "&#34;reply_to&#34;" in html or "&quot;reply_to&quot;" in html or '"reply_to"' in html
    # No CDN: every script, stylesheet and image comes from this server.
    assets = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert assets and all(a.startswith("/") for a in assets), [a for a in assets if not a.startswith("/")]
