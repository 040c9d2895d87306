"""TypeScript declarations generated from the OpenAPI document, served at ``/backchannel.d.ts``
beside ``/widget.js``: every schema of the API, every webhook event (``WebhookEvent``, a union
narrowed by ``type``), each operation's body and response by ``operationId``, and the
widget's JavaScript API on ``window``. Made once at start-up from the same document ``/docs``
shows, so they cannot drift from it."""

from __future__ import annotations

import json
import re
from typing import Any

_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")

# The widget's embed API (docs/widget.md): what ``window.Backchannel`` offers today.
WIDGET = """\
/** Identity and language for the widget: set `window.BackchannelSettings` before widget.js loads. */
export interface BackchannelSettings {
  user?: { external_id: string; name?: string; email?: string };
  /** HS256 JWT with `sub` = external_id and `exp`, signed with the workspace's identity secret. */
  user_jwt?: string;
  /** A language code such as "de"; else the workspace's, else the browser's, else English. */
  locale?: string;
}

/** What `Backchannel.on(name, fn)` hands each listener. */
export interface BackchannelEvents {
  ready: Record<string, never>;
  open: Record<string, never>;
  close: Record<string, never>;
  message: { message: MessageOut };
  unread: { count: number };
}

/** `window.Backchannel`, once widget.js has loaded. */
export interface BackchannelWidget {
  open(): void;
  close(): void;
  toggle(): void;
  setLocale(code: string): void;
  /** Switch to this identity (the next conversation is theirs). */
  identify(identity: { user: { external_id: string; name?: string; email?: string }; user_jwt?: string }): void;
  /** Forget the visitor: the next open starts a new anonymous one. */
  reset(): void;
  on<K extends keyof BackchannelEvents>(name: K, fn: (detail: BackchannelEvents[K]) => void): void;
  off<K extends keyof BackchannelEvents>(name: K, fn: (detail: BackchannelEvents[K]) => void): void;
  /** Removes the widget and every listener it added. */
  destroy(): void;
}

declare global {
  interface Window {
    Backchannel?: BackchannelWidget;
    BackchannelSettings?: BackchannelSettings;
  }
}
"""


def ts_type(schema: dict[str, Any], indent: str = "") -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(dict.fromkeys(_wrap(ts_type(s, indent)) for s in schema[key]))
    if "allOf" in schema:
        return " & ".join(_wrap(ts_type(s, indent)) for s in schema["allOf"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(ts_type({**schema, "type": k}, indent) for k in kind)
    if kind == "string":
        return "string"
    if kind in ("integer", "number"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "null":
        return "null"
    if kind == "array":
        return f"{_wrap(ts_type(schema.get('items', {}), indent))}[]"
    if kind == "object" or "properties" in schema:
        return _object(schema, indent)
    return "unknown"


def _wrap(text: str) -> str:
    return f"({text})" if " | " in text or " & " in text else text


def _object(schema: dict[str, Any], indent: str) -> str:
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    if not props:
        if isinstance(extra, dict) and extra:
            return f"Record<string, {ts_type(extra, indent)}>"
        return "Record<string, unknown>"
    required = set(schema.get("required", []))
    inner = indent + "  "
    lines = ["{"]
    for name, sub in props.items():
        key = name if _IDENT.match(name) else json.dumps(name)
        if sub.get("description"):
            lines.append(f"{inner}/** {_comment(sub['description'])} */")
        lines.append(f"{inner}{key}{'' if name in required else '?'}: {ts_type(sub, inner)};")
    lines.append(indent + "}")
    return "\n".join(lines)


def _comment(text: str) -> str:
    return " ".join(str(text).split()).replace("*/", "* /")


def declarations(spec: dict[str, Any]) -> str:
    out = [
        f"// Backchannel API {spec['info']['version']}: generated from /api/v1/openapi.json. Do not edit.",
        "",
    ]
    for name, schema in spec["components"]["schemas"].items():
        if schema.get("description"):
            out.append(f"/** {_comment(schema['description'])} */")
        body = ts_type(schema)
        if body.startswith("{"):
            out.append(f"export interface {name} {body}")
        else:
            out.append(f"export type {name} = {body};")
        out.append("")
    hooks = spec["webhooks"].values()
    events = [item["post"]["requestBody"]["content"]["application/json"]["schema"] for item in hooks]
    out.append("/** Any webhook delivery's body; narrow it on `type`. */")
    out.append("export type WebhookEvent =\n  | " + "\n  | ".join(ts_type(e) for e in events) + ";")
    out.append('export type WebhookEventType = WebhookEvent["type"];')
    out.append("")
    out.append("/** Each operation (by operationId): its path, method, JSON body and success response. */")
    out.append("export interface Operations {")
    for path, item in spec["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            ok: dict[str, Any] = next((r for c, r in op["responses"].items() if c.startswith("2")), {})
            response = ok.get("content", {}).get("application/json", {}).get("schema")
            out.append(f"  /** {_comment(op['summary'])} */")
            out.append(f"  {op['operationId']}: {{")
            out.append(f'    method: "{method.upper()}";')
            out.append(f"    path: {json.dumps(path)};")
            out.append(f"    body: {ts_type(body, '    ') if body else 'never'};")
            out.append(f"    response: {ts_type(response, '    ') if response else 'void'};")
            out.append("  };")
    out.append("}")
    out.append("")
    out.append(WIDGET)
    return "\n".join(out)
