"""Web views: opening and closing them, signed contexts, and the hosted forms' single-use URLs.

Two kinds of token, for two audiences:
- ``bc_ctx`` (external pages) is read by the bot owner, so it is an Ed25519-signed JWT
  (``app/webviews/context.py``) whose public key the owner may fetch and verify offline.
- The hosted form URL is read only by Backchannel, so it is an itsdangerous signature with
  ``settings.secret_key``; it names an opening, and dies when that opening closes.

Web view ids (``find_webview``): the part's ``id`` when given, else its position:
``wv_{part}`` for a top-level part and ``wv_{part}_{card}_{button}`` for a carousel card's
button (all indexes from 0). The widget computes the same rule (docs/webviews.md).

What the customer types never reaches these functions: form values go from the route
straight to ``webview_forms.relay_form`` and are dropped there.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from itsdangerous import BadSignature, URLSafeSerializer
from nacl.signing import SigningKey
from sqlmodel import Session, col, select

from app import conversations, errors, events
from app.ids import isoformat, new_id, utcnow
from app.settings import Settings
from app.store.runner import Tx
from app.store.tables import Conversation, Message, WebviewOpening
from app.webviews.context import InvalidContext, b64url, key_id, sign_webview_context, verify_webview_context

CLOSE_STATUSES = ("submitted", "closed", "dismissed")
BROWSER_CLOSE_STATUSES = ("closed", "dismissed")  # "submitted" is the server's word alone
RESULT_MAX_CHARS = 200
SYSTEM_EVENT_TEXT = "Web view closed"
_FORM_SALT = "backchannel.webview-form"


# --- keys and tokens --------------------------------------------------------------------


def context_signing_key(settings: Settings) -> SigningKey:
    """The Ed25519 key for ``bc_ctx``, derived from the secret key: nothing extra to store
    or back up, and rotating ``BACKCHANNEL_SECRET_KEY`` rotates it (its ``kid`` changes)."""
    seed = hmac.new(
        settings.secret_key.get_secret_value().encode(), b"backchannel/webview-context/ed25519", hashlib.sha256
    ).digest()
    return SigningKey(seed)


def context_jwks(settings: Settings) -> dict[str, Any]:
    public = bytes(context_signing_key(settings).verify_key)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(public), "kid": key_id(public), "alg": "EdDSA", "use": "sig"}
    return {"keys": [jwk]}


def verify_context(settings: Settings, token: str, workspace_id: str) -> dict[str, Any]:
    """Claims of a ``bc_ctx`` token for this workspace, or a 4xx ``ApiError``."""
    public = bytes(context_signing_key(settings).verify_key)
    try:
        claims = verify_webview_context(token, public, workspace_id=workspace_id)
    except InvalidContext as exc:
        if exc.code == "wrong_workspace":
            # Every resource is invisible from other workspaces; so is a context.
            raise errors.NotFound("No such web-view context in this workspace.") from None
        raise errors.Unprocessable(
            f"Invalid field: token ({exc})", code=exc.code, details=[{"field": "token", "message": str(exc)}]
        ) from None
    return {
        "workspace_id": claims["workspace_id"],
        "conversation_id": claims["conversation_id"],
        "user_id": claims["user_id"],
        "message_id": claims["message_id"],
        "webview_id": claims["webview_id"],
        "expires_at": isoformat(datetime.fromtimestamp(claims["exp"], UTC)),
    }


def _form_serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key.get_secret_value(), salt=_FORM_SALT)


def form_token(settings: Settings, opening: WebviewOpening, expires: datetime) -> str:
    return str(
        _form_serializer(settings).dumps(
            {"o": opening.id, "w": opening.workspace_id, "exp": int(expires.timestamp())}
        )
    )


class FormLinkError(Exception):
    """Why a hosted form URL cannot be used, with the HTTP status its page is sent with."""

    status = 404
    title = "This link is not valid"
    detail = "Close this window and open the form again from the chat."


class InvalidLink(FormLinkError):
    pass


class ExpiredLink(FormLinkError):
    status, title, detail = 410, "This form has expired", "Close it and open it again from the chat."


class UsedLink(FormLinkError):
    status, title, detail = 410, "This form is closed", "It was already submitted or closed."


def read_form_token(settings: Settings, token: str) -> tuple[str, str]:
    """``(opening_id, workspace_id)`` of a signed, unexpired hosted form URL."""
    try:
        data = _form_serializer(settings).loads(token)
    except BadSignature:
        raise InvalidLink() from None
    if not isinstance(data, dict) or not {"o", "w", "exp"} <= data.keys():
        raise InvalidLink()
    if time.time() >= data["exp"]:
        raise ExpiredLink()
    return str(data["o"]), str(data["w"])


# --- finding a web view in a message ----------------------------------------------------


def iter_webviews(message_parts: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """``(webview_id, web_view body)`` for every web view of a message, in document order."""
    found: list[tuple[str, dict[str, Any]]] = []
    for i, part in enumerate(message_parts):
        if "web_view" in part:
            found.append((part["web_view"].get("id") or f"wv_{i}", part["web_view"]))
        for c, card in enumerate(part.get("carousel", {}).get("cards", [])):
            for b, button in enumerate(card.get("buttons", [])):
                if "web_view" in button:
                    found.append((button["web_view"].get("id") or f"wv_{i}_{c}_{b}", button["web_view"]))
    return found


def find_webview(message: Message, webview_id: str) -> dict[str, Any]:
    # Explicit ids should be unique in a message; if not, the first one wins.
    for wid, body in iter_webviews(message.message_parts):
        if wid == webview_id:
            return body
    raise errors.NotFound("No such web view in this message.")


def _message_in(s: Session, workspace_id: str, conversation_id: str, message_id: str) -> Message:
    message = s.get(Message, message_id)
    if message is None or message.workspace_id != workspace_id or message.conversation_id != conversation_id:
        raise errors.NotFound("No such message in this conversation.")
    return message


# --- opening and closing ----------------------------------------------------------------


def open_webview(
    tx: Tx,
    workspace_id: str,
    conversation_id: str,
    user_id: str,
    message_id: str,
    webview_id: str,
    *,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Record an opening, fire ``webview.opened``, and return where the sheet should load.

    Returns ``{url, origin, webview_id, kind, label, height, expires_at}``: ``origin`` is the
    only origin the widget may accept close messages from.
    """
    settings = settings or Settings()
    s = tx.session
    conv = s.get(Conversation, conversation_id)
    if conv is None or conv.workspace_id != workspace_id or conv.user_id != user_id:
        raise errors.NotFound("No such conversation.")
    body = find_webview(_message_in(s, workspace_id, conversation_id, message_id), webview_id)
    now = utcnow()
    # A new opening replaces older ones of the same web view, so old form URLs stop working.
    for stale in _open_openings(s, conversation_id, message_id, webview_id):
        stale.closed_at, stale.status = now, "replaced"
        s.add(stale)
    kind = "form" if body.get("form") else "url"
    opening = WebviewOpening(
        id=new_id("wvo"),
        workspace_id=workspace_id,
        conversation_id=conversation_id,
        message_id=message_id,
        webview_id=webview_id,
        user_id=user_id,
        kind=kind,
        opened_at=now,
    )
    s.add(opening)
    s.flush()
    expires = now + timedelta(seconds=settings.webview_ttl_seconds)
    if kind == "url":
        claims = {
            "workspace_id": workspace_id,
            "conversation_id": conversation_id,
            "user_id": user_id,
            "message_id": message_id,
            "webview_id": webview_id,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": opening.id,
        }
        url = add_query(body["url"], bc_ctx=sign_webview_context(claims, context_signing_key(settings)))
    else:
        token = form_token(settings, opening, expires)
        url = settings.public_url.rstrip("/") + "/webviews/form?" + urlencode({"token": token})
    tx.emit(
        workspace_id,
        events.WEBVIEW_OPENED,
        {"conversation_id": conversation_id, "message_id": message_id, "webview_id": webview_id},
    )
    return {
        "url": url,
        "origin": origin_of(url),
        "webview_id": webview_id,
        "kind": kind,
        "label": body.get("label", ""),
        "height": body.get("height", "tall"),
        "expires_at": isoformat(expires),
    }


def close_webview(
    tx: Tx,
    workspace_id: str,
    conversation_id: str,
    message_id: str,
    webview_id: str,
    status: str,
    result: str | None = None,
) -> dict[str, Any] | None:
    """The customer's browser closed the sheet: close the newest open opening of this web
    view; ``None`` when none is open (a repeat, or the server closed it first).

    Only the server says ``submitted`` (after a hosted form's callback answered 2xx), so a
    close from the browser is ``closed`` or ``dismissed`` whatever it claims. A hosted form
    is Backchannel's own page and reveals no ``result``, so one claimed for it is dropped.
    """
    _check_status(status)
    if status not in BROWSER_CLOSE_STATUSES:
        status = "closed"
    openings = _open_openings(tx.session, conversation_id, message_id, webview_id)
    if not openings or openings[-1].workspace_id != workspace_id:
        return None
    opening = openings[-1]
    return close_opening(tx, opening, status, result if opening.kind == "url" else None)


def close_opening(
    tx: Tx, opening: WebviewOpening, status: str, result: str | None = None
) -> dict[str, Any] | None:
    """Add the "Web view closed" event and fire ``webview.closed``, once per opening."""
    _check_status(status)
    s = tx.session
    # Re-read under the write lock: a hosted form's server-side close and the widget's own
    # close can race, and only the first may announce.
    s.refresh(opening, with_for_update=True)
    if opening.closed_at is not None:
        return None
    opening.closed_at, opening.status = utcnow(), status
    s.add(opening)
    conversations.add_system_event(tx, opening.workspace_id, opening.conversation_id, SYSTEM_EVENT_TEXT)
    data: dict[str, Any] = {
        "conversation_id": opening.conversation_id,
        "message_id": opening.message_id,
        "webview_id": opening.webview_id,
        "status": status,
    }
    if isinstance(result, str) and result:
        data["result"] = result[:RESULT_MAX_CHARS]
    tx.emit(opening.workspace_id, events.WEBVIEW_CLOSED, data)
    return data


def _check_status(status: str) -> None:
    if status not in CLOSE_STATUSES:
        raise errors.Unprocessable(
            "Invalid field: status", details=[{"field": "status", "message": f"one of {', '.join(CLOSE_STATUSES)}"}]
        )


def _open_openings(s: Session, conversation_id: str, message_id: str, webview_id: str) -> list[WebviewOpening]:
    return list(
        s.exec(
            select(WebviewOpening)
            .where(
                WebviewOpening.conversation_id == conversation_id,
                WebviewOpening.message_id == message_id,
                WebviewOpening.webview_id == webview_id,
                col(WebviewOpening.closed_at).is_(None),
            )
            .order_by(col(WebviewOpening.opened_at), col(WebviewOpening.id))
            .with_for_update()
        )
    )


# --- URLs -------------------------------------------------------------------------------


def add_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query string (existing ones of the same name replaced)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*query, *params.items()])))


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` as browsers write it (default ports dropped)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"
