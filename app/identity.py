"""Who is on the other end of the widget: signed visitor and session tokens, verified user JWTs.

Two kinds of token, both signed with ``settings.secret_key`` (itsdangerous, each with its
own salt so one can never be replayed as the other):

- a *visitor token* names an anonymous visitor; the widget keeps it in localStorage so a
  reload or a new tab continues the same conversation. It lives long (a returning visitor
  should find their history) and is re-issued on every session, so it slides.
- a *session token* is what the WebSocket's first frame carries. It is short-lived, issued
  by ``POST /widget/v1/session`` after the identity checks, for anonymous and known users
  alike, so the socket never has to re-run those checks.

Known users arrive with ``user_jwt``: HS256 only, signed with the workspace's identity
secret, ``sub`` = external_id and a required ``exp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app import errors

VISITOR_MAX_AGE = 400 * 24 * 3600  # browsers cap script-set storage near this anyway
SESSION_MAX_AGE = 12 * 3600
JWT_LEEWAY_SECONDS = 30
MAX_JWT_LENGTH = 4096


@dataclass(frozen=True)
class WidgetIdentity:
    workspace_id: str
    user_id: str


class IdentityError(errors.ApiError):
    status, code, message = 401, "invalid_identity", "The widget identity could not be verified."


class TokenSigner:
    """Signs and checks the widget's visitor and session tokens."""

    def __init__(self, secret_key: str) -> None:
        self._visitor = URLSafeTimedSerializer(secret_key, salt="backchannel.widget.visitor")
        self._session = URLSafeTimedSerializer(secret_key, salt="backchannel.widget.session")

    def visitor_token(self, identity: WidgetIdentity) -> str:
        return self._visitor.dumps({"w": identity.workspace_id, "u": identity.user_id})

    def session_token(self, identity: WidgetIdentity) -> str:
        return self._session.dumps({"w": identity.workspace_id, "u": identity.user_id})

    def read_visitor(self, token: object) -> WidgetIdentity | None:
        """The visitor a token names, or None when it is forged, expired or malformed."""
        return _load(self._visitor, token, VISITOR_MAX_AGE)

    def read_session(self, token: object) -> WidgetIdentity | None:
        return _load(self._session, token, SESSION_MAX_AGE)


def _load(serializer: URLSafeTimedSerializer, token: object, max_age: int) -> WidgetIdentity | None:
    if not isinstance(token, str) or not token or len(token) > 1024:
        return None
    try:
        data = serializer.loads(token, max_age=max_age)
    except BadSignature:  # also covers SignatureExpired
        return None
    if not isinstance(data, dict) or not isinstance(data.get("w"), str) or not isinstance(data.get("u"), str):
        return None
    return WidgetIdentity(workspace_id=data["w"], user_id=data["u"])


def verify_user_jwt(token: str, secret: str, external_id: str) -> dict[str, Any]:
    """The claims of a valid identity JWT for ``external_id``; otherwise ``IdentityError``.

    Only HS256 is accepted: PyJWT is told so, and the header is checked first as well, so
    neither ``alg: none`` nor an asymmetric-key confusion can slip through.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_JWT_LENGTH:
        raise IdentityError("user_jwt is missing or too long.")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise IdentityError("user_jwt is not a JWT.") from None
    if header.get("alg") != "HS256":
        raise IdentityError("user_jwt must be signed with HS256.")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["sub", "exp"]},
            leeway=JWT_LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise IdentityError("user_jwt has expired.", code="identity_expired") from None
    except jwt.PyJWTError:
        raise IdentityError("user_jwt is not signed with this workspace's identity secret.") from None
    if claims.get("sub") != external_id:
        raise IdentityError("user_jwt's sub does not match user.external_id.")
    return claims


def origin_allowed(allowed_origins: list[str], origin: str | None) -> bool:
    """An empty list allows every origin; otherwise the request's Origin must be listed.

    Browsers always send Origin on cross-origin fetches and on every WebSocket handshake,
    so a missing Origin under a restricted workspace is refused rather than trusted.
    """
    if not allowed_origins:
        return True
    if not origin:
        return False
    return origin.lower().rstrip("/") in {o.lower().rstrip("/") for o in allowed_origins}


def signer_for(state: Any) -> TokenSigner:
    """The app's one signer (built on first use from ``settings.secret_key``)."""
    signer = state.services.get("widget_signer")
    if signer is None:
        signer = state.services["widget_signer"] = TokenSigner(state.settings.secret_key.get_secret_value())
    assert isinstance(signer, TokenSigner)
    return signer
