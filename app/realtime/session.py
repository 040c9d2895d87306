"""The widget's HTTP surface: ``GET /widget.js`` and ``POST /widget/v1/session``.

The session endpoint is where identity is decided (SPEC §7; docs/widget.md "Identity") and
where the embedding page's Origin is checked against the workspace's ``allowed_origins``:

- no ``user``: an anonymous visitor, resumed by the visitor token issued to them;
- ``user`` with a valid ``user_jwt``: that user, found or created (the signed claim may
  update their name and email);
- ``user`` without one (only while identity verification is off): a *new* external_id
  creates the user and binds a visitor token to them; an existing one is reached only with
  the visitor token issued to that user, and never changes their stored fields. Anything
  else is ``401 identity_required``: knowing an external_id is not being that customer.

Creating users is bounded per workspace and client address (``WIDGET_NEW_USERS_PER_HOUR``), counted
before the write for every session that may create one. The endpoint answers with a
short-lived session token that the WebSocket's first frame carries
(``app/realtime/widget_socket.py``), so tokens never sit in a URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import select
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp

from app import errors, people
from app.api.framework import JSONResponse, error_response, parse_json_body, read_body
from app.api.schemas import WIDGET_LOCALES
from app.assets import STATIC_DIR
from app.proxies import client_limit_key
from app.realtime import widget_socket
from app.realtime.identity import (
    TokenSigner,
    WidgetIdentity,
    origin_allowed,
    verify_user_jwt,
    widget_cors,
    widget_preflight,
)
from app.realtime.widget_socket import newest_conversation
from app.state import AppState
from app.store.runner import Tx
from app.store.tables import User, Workspace
from app.workspaces import widget_public_settings, workspace_by_widget_key

WIDGET_JS = STATIC_DIR / "widget.js"
WIDGET_DTS = STATIC_DIR / "widget.d.ts"
MAX_SESSION_BODY = 16_384
SESSIONS_PER_MINUTE_PER_IP = 60
NEW_USER_WINDOW_SECONDS = 3600
SOCKET_PATH = "/widget/v1/ws"


class WidgetUser(BaseModel):
    # Extra keys are ignored, not refused: host pages pass whatever their user object holds.
    model_config = ConfigDict(extra="ignore")
    external_id: str = Field(min_length=1, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    widget_key: str = Field(min_length=1, max_length=100)
    visitor_token: str | None = Field(default=None, max_length=1024)
    user: WidgetUser | None = None
    user_jwt: str | None = Field(default=None, max_length=4096)


async def widget_js(request: Request) -> Response:
    # Unversioned URL on other people's pages: cache briefly, revalidate by ETag.
    headers = {
        "Cache-Control": "public, max-age=300, stale-while-revalidate=86400",
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    response = FileResponse(
        WIDGET_JS, media_type="text/javascript; charset=utf-8", headers=headers, stat_result=os.stat(WIDGET_JS)
    )
    if request.headers.get("if-none-match") == response.headers["etag"]:
        return Response(status_code=304, headers={**headers, "ETag": response.headers["etag"]})
    return response


async def widget_types(request: Request) -> Response:
    """``widget.d.ts``: hand-written TypeScript types of the widget's page API (docs/widget.md)."""
    headers = {"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"}
    return FileResponse(
        WIDGET_DTS, media_type="application/typescript; charset=utf-8", headers=headers, stat_result=os.stat(WIDGET_DTS)
    )


async def widget_locale(request: Request) -> Response:
    """A language's widget strings (``static/widget-locale-CODE.json``); English is inside widget.js."""
    code = request.path_params["code"]
    if code not in WIDGET_LOCALES or code == "en":
        return error_response(errors.NotFound("The widget has no strings in this language.", code="unknown_locale"))
    path = STATIC_DIR / f"widget-locale-{code}.json"
    headers = {
        "Cache-Control": "public, max-age=300, stale-while-revalidate=86400",
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    return FileResponse(path, media_type="application/json", headers=headers, stat_result=os.stat(path))


async def public_settings(request: Request) -> Response:
    """How the launcher looks before any session exists: no user is created for a page view."""
    state: AppState = request.app.state.bc
    key = request.query_params.get("widget_key", "")[:100]
    workspace = await state.runner.read(workspace_by_widget_key, key) if key else None
    if workspace is None:
        return error_response(errors.NotFound("No workspace has this widget key.", code="unknown_widget_key"))
    body = widget_public_settings(workspace)
    return JSONResponse(body, headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=60"})


async def session_preflight(request: Request) -> Response:
    return widget_preflight(request, "content-type")


async def session(request: Request) -> Response:
    state: AppState = request.app.state.bc
    origin = request.headers.get("origin")
    try:
        client = client_limit_key(request)
        await state.limiter.consume_or_raise(f"widget-session:{client}", SESSIONS_PER_MINUTE_PER_IP, 60)
        body = parse_json_body(await read_body(request, MAX_SESSION_BODY), SessionIn)
        assert isinstance(body, SessionIn)
        signer_ = state.signer
        # Tokens are checked and signed here, not in the writer: the write only finds or
        # creates the user.
        visitor = signer_.read_visitor(body.visitor_token)
        may_create = _may_create_user(body, visitor)
        if may_create:
            await _count_new_user(state, body, client)
        try:
            started = await state.runner.write(start_session, body, visitor, origin, may_create)
        except NewUserNeeded:  # a token that named no one it could resume: count, then create
            await _count_new_user(state, body, client)
            started = await state.runner.write(start_session, body, visitor, origin, True)
        result = started.answer(signer_)
    except errors.ApiError as exc:
        response = error_response(exc)
        # Readable by the page even when refused, so the widget can say "not available here"
        # instead of retrying forever; the answer reveals nothing but the refusal itself.
        response.headers.update(widget_cors(origin))
        return response
    return JSONResponse(result, headers=widget_cors(origin))


class NewUserNeeded(Exception):
    """The session would create a user that was not counted against the address's quota."""


def _may_create_user(body: SessionIn, visitor: WidgetIdentity | None) -> bool:
    """Whether this session may create a user, judged before the store is read: no signed
    identity and no visitor token that verifies. (A token that verifies but resumes no one
    is found inside the write, which then asks for the count: ``NewUserNeeded``.)"""
    if body.user is not None and body.user_jwt:
        return False  # vouched for by the business's own server
    return visitor is None


async def _count_new_user(state: AppState, body: SessionIn, client: str) -> None:
    # Per workspace too: one site's visitors behind one address never lock out another site's.
    await state.limiter.consume_or_raise(
        f"widget-new-user:{body.widget_key}:{client}", state.settings.widget_new_users_per_hour, NEW_USER_WINDOW_SECONDS
    )


@dataclass(frozen=True)
class Started:
    """Who the session is for, as the write decided it; tokens are signed after it commits."""

    identity: WidgetIdentity
    conversation_id: str | None
    issue_visitor_token: bool  # anonymous or claimed users carry one; verified users need none
    widget_key: str
    settings: dict[str, Any]

    def answer(self, signer_: TokenSigner) -> dict[str, Any]:
        return {
            "user_id": self.identity.user_id,
            "conversation_id": self.conversation_id,
            "visitor_token": signer_.visitor_token(self.identity) if self.issue_visitor_token else None,
            "session_token": signer_.session_token(self.identity),
            "socket_path": f"{SOCKET_PATH}?widget_key={self.widget_key}",
            "settings": self.settings,
        }


def start_session(
    tx: Tx, body: SessionIn, visitor: WidgetIdentity | None, origin: str | None, may_create: bool = True
) -> Started:
    """Decide who this is, inside one transaction (it may create the user when ``may_create``).
    ``visitor``: whom the request's visitor token names, already verified by the caller."""
    workspace = workspace_by_widget_key(tx.session, body.widget_key)
    if workspace is None:
        raise errors.NotFound("No workspace has this widget key.", code="unknown_widget_key")
    if not origin_allowed(workspace.allowed_origins, origin):
        raise errors.Forbidden("This site may not embed this widget.", code="origin_not_allowed")
    if body.user is not None and body.user_jwt:
        user = _verified_user(tx, workspace, body.user, body.user_jwt)
    elif body.user is not None:
        user = _claimed_user(tx, workspace, body.user, visitor, may_create)
    else:
        user = _anonymous_user(tx, workspace, visitor, may_create)
    conv = newest_conversation(tx.session, workspace.id, user.id)
    return Started(
        identity=WidgetIdentity(workspace.id, user.id),
        conversation_id=conv.id if conv else None,
        issue_visitor_token=not (body.user is not None and body.user_jwt),
        widget_key=workspace.widget_key,
        settings=widget_public_settings(workspace),
    )


def _verified_user(tx: Tx, workspace: Workspace, claimed: WidgetUser, user_jwt: str) -> User:
    verify_user_jwt(user_jwt, workspace.identity_secret, claimed.external_id)
    return people.find_or_create_user(tx, workspace.id, claimed.external_id, name=claimed.name, email=claimed.email)


def _claimed_user(
    tx: Tx, workspace: Workspace, claimed: WidgetUser, visitor: WidgetIdentity | None, may_create: bool
) -> User:
    """An unsigned claim: a new external_id only, or the user this visitor token was issued to."""
    if workspace.identity_verification:
        raise errors.Unauthorized(
            "Identity verification is on: send user_jwt signed with the identity secret.",
            code="identity_required",
        )
    existing = tx.session.exec(
        select(User).where(User.workspace_id == workspace.id, User.external_id == claimed.external_id)
    ).first()
    if existing is None:
        if not may_create:
            raise NewUserNeeded()
        return people.find_or_create_user(
            tx, workspace.id, claimed.external_id, name=claimed.name, email=claimed.email
        )
    if visitor is not None and visitor == WidgetIdentity(workspace.id, existing.id):
        return existing  # their own token; an unsigned claim never changes stored fields
    raise errors.Unauthorized(
        "This user already exists: reaching them takes their user_jwt or the visitor token issued to them.",
        code="identity_required",
    )


def _anonymous_user(tx: Tx, workspace: Workspace, visitor: WidgetIdentity | None, may_create: bool) -> User:
    if visitor is not None and visitor.workspace_id == workspace.id:
        user = tx.session.get(User, visitor.user_id)
        # No claim, no known user: a token issued to a named user resumes them only with their claim.
        if user is not None and user.workspace_id == workspace.id and user.external_id is None:
            return user
    if not may_create:
        raise NewUserNeeded()
    return people.find_or_create_user(tx, workspace.id, None)


ROUTES: list[BaseRoute] = [
    Route("/widget.js", widget_js, methods=["GET", "HEAD"]),
    Route("/widget.d.ts", widget_types, methods=["GET", "HEAD"]),
    Route("/widget/v1/settings", public_settings, methods=["GET"]),
    Route("/widget/v1/locales/{code}.json", widget_locale, methods=["GET", "HEAD"]),
    Route("/widget/v1/session", session, methods=["POST"]),
    Route("/widget/v1/session", session_preflight, methods=["OPTIONS"]),
    WebSocketRoute(SOCKET_PATH, widget_socket.endpoint),
]
# Served by ``app.edge`` before the router (the route above is what it would otherwise take).
SOCKETS: dict[str, ASGIApp] = {SOCKET_PATH: widget_socket.asgi}
