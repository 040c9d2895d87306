"""Web-view context tokens (``bc_ctx``): compact JWS (JWT) signed with Ed25519 ("EdDSA").

Backchannel adds ``bc_ctx=<token>`` to an external web view's URL. The bot owner's server
can check it online (``POST /api/v1/webview-contexts/verify``) or offline with the public key
from ``GET /api/v1/webview-contexts/keys``: an asymmetric signature means the owner verifies
without holding any Backchannel secret, and any JWT library that knows EdDSA works too.

This module depends only on the standard library and PyNaCl so an owner can copy it as is:

    from webview_context import verify_webview_context
    claims = verify_webview_context(token, public_key="<x from the JWKS>", workspace_id="wsp_…")

The algorithm, for other languages (docs/webviews.md has the same):
1. split the token into ``header.payload.signature`` (base64url, no padding);
2. the header must be ``{"alg": "EdDSA", "typ": "JWT", "kid": …}``;
3. verify the Ed25519 signature over the ASCII bytes ``header.payload`` with the public key;
4. the payload's ``exp`` (Unix seconds) must be in the future and ``workspace_id`` yours.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

ALGORITHM = "EdDSA"
CLAIMS = ("workspace_id", "conversation_id", "user_id", "message_id", "webview_id", "exp")


class InvalidContext(ValueError):
    """The token is malformed, tampered with, expired, or for another workspace."""

    def __init__(self, message: str, *, code: str = "invalid_webview_context") -> None:
        super().__init__(message)
        self.code = code


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidContext("The token is not valid base64url.") from None


def key_id(public_key: bytes) -> str:
    """A short, stable name for a public key, so verifiers notice a rotated key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def sign_webview_context(claims: dict[str, Any], signing_key: SigningKey) -> str:
    public = bytes(signing_key.verify_key)
    header = {"alg": ALGORITHM, "typ": "JWT", "kid": key_id(public)}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = signing_key.sign(signing_input.encode("ascii")).signature
    return signing_input + "." + b64url(signature)


def verify_webview_context(
    token: str,
    public_key: str | bytes,
    *,
    workspace_id: str | None = None,
    now: float | None = None,
    leeway: float = 0,
) -> dict[str, Any]:
    """The token's claims, or ``InvalidContext``. ``public_key``: raw 32 bytes or base64url."""
    key = b64url_decode(public_key) if isinstance(public_key, str) else public_key
    if len(key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 4096:
        raise InvalidContext("The token is not a web-view context.")
    try:
        header = json.loads(b64url_decode(parts[0]))
    except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested past Python's stack
        raise InvalidContext("The token's header is not JSON.") from None
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        # Never let the token choose its algorithm ("alg": "none", or HMAC with a public key).
        raise InvalidContext("The token is not signed with EdDSA.")
    try:
        VerifyKey(key).verify(f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2]))
    except (BadSignatureError, ValueError, UnicodeEncodeError):
        raise InvalidContext("The token's signature does not match.") from None
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, RecursionError):
        raise InvalidContext("The token's payload is not JSON.") from None
    if not isinstance(claims, dict) or any(name not in claims for name in CLAIMS):
        raise InvalidContext("The token lacks the web-view claims.")
    if not isinstance(claims["exp"], int | float):
        raise InvalidContext("The token's exp is not a number.")
    if (time.time() if now is None else now) >= claims["exp"] + leeway:
        raise InvalidContext("The token has expired.", code="webview_context_expired")
    if workspace_id is not None and claims["workspace_id"] != workspace_id:
        raise InvalidContext("The token belongs to another workspace.", code="wrong_workspace")
    return claims
