"""OpenAPI 3.1 generated from the endpoint declarations and their pydantic models."""

from __future__ import annotations

import json
import re
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.api.examples import CURATED, example
from app.api.framework import PREFIX, Endpoint
from app.api.openapi_webhooks import WEBHOOK_MODELS, webhooks_section
from app.api.schemas import ErrorOut

REF = "#/components/schemas/{model}"
_ERROR_TEXT = {
    400: "Malformed request",
    401: "Missing or invalid token",
    403: "Token lacks the scope",
    404: "Not found in this workspace",
    409: "Conflict",
    413: "Body too large",
    422: "Validation failed; details name each field",
    429: "Rate limited; see Retry-After",
    503: "Briefly unavailable; see Retry-After",
}


def _response_model(ep: Endpoint) -> type[BaseModel] | None:
    if ep.response is None:
        return None
    if isinstance(ep.response, tuple):
        return ep.response[1]  # type: ignore[no-any-return]
    return ep.response  # type: ignore[no-any-return]


def build_openapi(endpoints: list[Endpoint], version: str) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [(ErrorOut, "serialization")]
    models += [(m, "serialization") for m in WEBHOOK_MODELS]
    for ep in endpoints:
        if ep.body is not None:
            models.append((ep.body, "validation"))
        if (out := _response_model(ep)) is not None:
            models.append((out, "serialization"))
    keymap, top = models_json_schema(models, ref_template=REF)
    schemas = top.get("$defs", {})

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return keymap[(model, mode)]  # type: ignore[index,return-value]

    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "operationId": _operation_id(ep),
            "summary": ep.summary,
            "tags": [ep.tag],
            "security": [{"bearer": []}],
            "parameters": _parameters(ep),
            "responses": {},
        }
        if ep.description:
            op["description"] = ep.description
        if ep.scope:
            op["x-required-scope"] = ep.scope
        if ep.form is not None:
            op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": ep.form}}}
        if ep.body is not None:
            body_schema = ref(ep.body, "validation")
            body_example = CURATED.get(ep.body.__name__)
            if body_example is None:
                body_example = example(body_schema, schemas)
            op["requestBody"] = {
                # An empty body is read as ``{}``: it is only "required" when the model has required fields.
                "required": bool(ep.body.model_json_schema().get("required")),
                "content": {"application/json": {"schema": body_schema, "example": body_example}},
            }
        out = _response_model(ep)
        if out is None:
            op["responses"][str(ep.status)] = {"description": "Done; no content"}
        else:
            schema = ref(out, "serialization")
            if isinstance(ep.response, tuple):
                schema = {
                    "type": "object",
                    "required": ["data", "next_cursor"],
                    "properties": {
                        "data": {"type": "array", "items": schema},
                        "next_cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    },
                }
                if ep.response[0] == "changes":  # a change listing for a sync (app/api/changes.py)
                    schema["properties"]["sync_cursor"] = {
                        "anyOf": [{"type": "string"}, {"type": "null"}],
                        "description": "With updated_after (or a change cursor): on the last page, "
                        "the cursor to poll with later for what changes next.",
                    }
            content = {"application/json": {"schema": schema, "example": example(schema, schemas)}}
            op["responses"][str(ep.status)] = {"description": "OK", "content": content}
            if ep.path.endswith("/messages") and ep.method == "POST":
                op["responses"]["200"] = {"description": "Repeated client_message_id", "content": content}
        codes = {400, 401, 429, 503, *ep.errors}
        if ep.writes:
            codes |= {413, 422}
            if ep.method == "POST":
                codes.add(409)
        if ep.query is not None:
            codes.add(422)
        if ep.scope != "read":
            codes.add(403)
        if "{" in ep.path:
            codes.add(404)
        for code in sorted(codes):
            op["responses"][str(code)] = {
                "description": _ERROR_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": ref(ErrorOut, "serialization")}},
            }
        paths.setdefault(PREFIX + ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Backchannel API",
            "version": version,
            "description": "Conversations, messages with interactive parts, webhooks and web views.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "webhooks": webhooks_section(lambda model: ref(model, "serialization"), schemas),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "bch_…"}},
        },
    }


def _operation_id(ep: Endpoint) -> str:
    words = re.sub(r"[{}]", "", ep.path).strip("/").replace("-", "_").split("/")
    return ep.method.lower() + "_" + "_".join(w for w in words if w)


def _parameters(ep: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
        for name in re.findall(r"{(\w+)}", ep.path)
    ]
    if ep.query is not None:
        schema = ep.query.model_json_schema()
        for name, prop in schema.get("properties", {}).items():
            prop = dict(prop)
            description = prop.pop("description", None)
            prop.pop("title", None)
            param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": prop}
            if description:
                param["description"] = description
            params.append(param)
    if ep.method == "POST":
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "Replays the first response for the same key and body.",
            }
        )
    return params


def render_docs(spec: dict[str, Any], templates_dir: Any) -> str:
    """The human-readable reference at ``/docs``: rendered once, with no outside assets."""
    def schema_text(schema: dict[str, Any]) -> str:
        if "$ref" in schema:
            return str(schema["$ref"]).rsplit("/", 1)[-1]
        return json.dumps(schema, separators=(", ", ": "))

    groups: dict[str, list[dict[str, Any]]] = {}
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            responses = []
            success: dict[str, Any] = next((r for c, r in op["responses"].items() if c.startswith("2")), {})
            response_example = success.get("content", {}).get("application/json", {}).get("example")
            request_example = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("example")
            for code, resp in op["responses"].items():
                schema = resp.get("content", {}).get("application/json", {}).get("schema")
                name = schema_text(schema) if schema and "$ref" in schema else ("page" if schema else "")
                responses.append((code, name))
            groups.setdefault(op["tags"][0], []).append(
                {
                    "id": op["operationId"],
                    "method": method,
                    "path": path,
                    "summary": op["summary"],
                    "scope": op.get("x-required-scope"),
                    "params": [{**p, "schema_text": schema_text(p["schema"])} for p in op["parameters"]],
                    "body": schema_text(body) if body else None,
                    "responses": responses,
                    "description": op.get("description"),
                    "request_example": _pretty(request_example),
                    "response_example": _pretty(response_example),
                }
            )
    hooks = []
    for name, item in spec.get("webhooks", {}).items():
        op = item["post"]
        content = op["requestBody"]["content"]["application/json"]
        hooks.append({"id": op["operationId"], "name": name, "description": op["description"],
                      "schema": schema_text(content["schema"]), "example": _pretty(content["example"])})
    schemas = {name: json.dumps(s, indent=2) for name, s in spec["components"]["schemas"].items()}
    env = Environment(loader=FileSystemLoader(str(templates_dir)), autoescape=select_autoescape(["html"]))
    env.filters["ticks"] = _code_spans
    return env.get_template("docs.html").render(spec=spec, groups=list(groups.items()), schemas=schemas, hooks=hooks)


def _code_spans(text: str) -> Markup:
    """Escaped text whose `backticked` spans become <code> (descriptions are Markdown-ish)."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _pretty(value: Any) -> str | None:
    return None if value is None else json.dumps(value, indent=2, ensure_ascii=False)
