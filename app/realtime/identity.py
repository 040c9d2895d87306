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

import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Any

import jwt
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from app import errors
from app.store.tables import Workspace

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
        # The nonce makes each session's token its own, even two issued to one visitor in the
        # same second: sockets are counted per session token (``WS_SOCKETS_PER_SESSION``).
        return self._session.dumps({"w": identity.workspace_id, "u": identity.user_id, "n": secrets.token_urlsafe(6)})

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


ORIGIN_FORMAT = "an origin is scheme://host[:port] with http or https, e.g. https://shop.example.com"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_IPV4_SHAPE = re.compile(r"[0-9.]+")


def normalize_origin(value: str) -> str:
    """``value`` as the origin a browser sends (``https://shop.example.com``, lowercase, no
    default port, no trailing slash), or ``ValueError`` saying why it is not one.

    Entries end up in ``Content-Security-Policy: frame-ancestors`` and are compared with the
    ``Origin`` header, so only what the CSP host-source grammar and a browser's Origin agree
    on gets through: ``http``/``https``, a DNS name (internationalized names as punycode), an
    IPv4 address or a bracketed IPv6 address, an optional port. No path, query, fragment,
    userinfo, wildcard, whitespace, quote or separator (``;`` ``,``) can reach a header.
    """
    if not isinstance(value, str) or not value or len(value) > 300:
        raise ValueError(ORIGIN_FORMAT)
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 or ch in ";,'\"*\\@?#%" for ch in value):
        raise ValueError(f"{ORIGIN_FORMAT} (no spaces, quotes, wildcards, ';', ',', '@', '?', '#' or '%')")
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{ORIGIN_FORMAT} (only http and https)")
    if rest.endswith("/"):
        rest = rest[:-1]  # "https://shop.example.com/" is how people copy an origin
    if not rest:
        raise ValueError(f"{ORIGIN_FORMAT} (no host)")
    if "/" in rest:
        raise ValueError(f"{ORIGIN_FORMAT} (no path)")
    host, port = _split_port(rest)
    host = _normalize_host(host)
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _split_port(rest: str) -> tuple[str, int | None]:
    if rest.startswith("["):
        host, bracket, tail = rest.partition("]")
        host += bracket
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(ORIGIN_FORMAT)
        port_text = tail[1:] if tail else None
    else:
        host, colon, port_text_ = rest.partition(":")
        port_text = port_text_ if colon else None
    if port_text is None:
        return host, None
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise ValueError(f"{ORIGIN_FORMAT} (the port is a number from 1 to 65535)")
    return host, int(port_text)


def _normalize_host(host: str) -> str:
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{ORIGIN_FORMAT} (not an IPv6 address)") from None
        return f"[{address.compressed}]"
    try:
        ascii_host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()
    except UnicodeError:
        raise ValueError(f"{ORIGIN_FORMAT} (not a host name)") from None
    if _IPV4_SHAPE.fullmatch(ascii_host):
        try:
            return str(ipaddress.IPv4Address(ascii_host))
        except ValueError:
            raise ValueError(f"{ORIGIN_FORMAT} (not an IPv4 address)") from None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{ORIGIN_FORMAT} (not a host name)")
    return ascii_host


def valid_origins(entries: list[str]) -> list[str]:
    """The entries that are origins, normalized: what may be written into a header.

    Entries are validated when saved; this also keeps out anything stored before that."""
    out = []
    for entry in entries:
        try:
            out.append(normalize_origin(entry))
        except ValueError:
            continue
    return out


def origin_allowed(allowed_origins: list[str], origin: str | None) -> bool:
    """An empty list allows every origin; otherwise the request's Origin must be listed.

    Browsers always send Origin on cross-origin fetches and on every WebSocket handshake,
    so a missing Origin under a restricted workspace is refused rather than trusted.
    """
    if not allowed_origins:
        return True
    if not origin:
        return False
    if origin in allowed_origins:
        return True  # the usual case: stored entries are normalized as browsers send them
    try:
        wanted = normalize_origin(origin)
    except ValueError:
        return False
    return wanted in valid_origins(allowed_origins)


def widget_cors(origin: str | None) -> dict[str, str]:
    """CORS headers of the widget's own POSTs (session, uploads): the page's origin, echoed.
    Whether that origin may embed the widget is checked on the POST itself, and a refusal
    carries these headers too, so the widget can say why instead of retrying."""
    headers = {"Vary": "Origin", "Cache-Control": "no-store"}
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
    return headers


async def widget_caller(request: Request, signer: TokenSigner, runner: Any) -> tuple[WidgetIdentity, Workspace]:
    """Who sends a widget HTTP request (uploads, web-view outcomes): the visitor whose session
    token is the bearer, in a workspace that lets the request's Origin embed the widget.
    ``401 invalid_token`` or ``403 origin_not_allowed`` otherwise. ``runner`` is the store's
    (``app.store.runner.Runner``)."""
    auth = request.headers.get("authorization", "")
    identity = signer.read_session(auth[7:].strip() if auth.lower().startswith("bearer ") else None)
    workspace = None if identity is None else await runner.read(lambda s: s.get(Workspace, identity.workspace_id))
    if identity is None or workspace is None:
        raise errors.Unauthorized("Send the widget session token as Authorization: Bearer ….", code="invalid_token")
    if not origin_allowed(workspace.allowed_origins, request.headers.get("origin")):
        raise errors.Forbidden("This site may not embed this widget.", code="origin_not_allowed")
    return identity, workspace


def widget_preflight(request: Request, allow_headers: str) -> Response:
    """The answer to a widget POST's preflight: only what may be sent (the real check is on
    the POST itself)."""
    headers = widget_cors(request.headers.get("origin"))
    headers["Access-Control-Allow-Methods"] = "POST"
    headers["Access-Control-Allow-Headers"] = allow_headers
    headers["Access-Control-Max-Age"] = "600"
    return Response(status_code=204, headers=headers)
