"""``/api/v1/webview-contexts``: check a ``bc_ctx`` token online, or fetch its public key."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from app import errors
from app.api.framework import Call, Endpoint
from app.api.schemas import WebviewContextOut, WebviewVerifyIn
from app.settings import Settings
from app.store.tables import Conversation
from app.webviews import openings as webviews


class Jwk(BaseModel):
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    alg: Literal["EdDSA"]
    use: Literal["sig"]


class Jwks(BaseModel):
    keys: list[Jwk]


def _settings(call: Call) -> Settings:
    assert call.settings is not None, "run_endpoint passes the app's settings"
    return call.settings


def verify(call: Call) -> dict[str, Any]:
    context = webviews.verify_context(_settings(call), call.body.token, call.workspace_id)
    # A context outlives nothing: if its conversation was deleted, it names nothing.
    conv = call.session.get(Conversation, context["conversation_id"])
    if conv is None or conv.workspace_id != call.workspace_id:
        raise errors.NotFound("No such web-view context in this workspace.")
    return context


def keys(call: Call) -> dict[str, Any]:
    return webviews.context_jwks(_settings(call))


_VERIFY_DOC = (
    "Checks a `bc_ctx` token that the widget added to your external web view's URL: its "
    "signature, its expiry, and that it belongs to your workspace (a token of another "
    "workspace is a 404). Tampered or expired tokens are a 422. See docs/webviews.md."
)
_KEYS_DOC = (
    "The Ed25519 public key (a JWKS) that signs `bc_ctx` tokens, to verify them offline: "
    "the token is a JWT with `alg: EdDSA`. Refetch when a token names an unknown `kid`."
)

ENDPOINTS = [
    Endpoint("POST", "/webview-contexts/verify", verify, "Verify a web-view context token", "Web views",
             body=WebviewVerifyIn, response=WebviewContextOut, scope="read", errors=(404, 422),
             description=_VERIFY_DOC),
    Endpoint("GET", "/webview-contexts/keys", keys, "Public key for offline verification", "Web views",
             response=Jwks, description=_KEYS_DOC),
]
