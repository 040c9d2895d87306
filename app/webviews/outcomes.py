"""``GET /widget/v1/webviews?conversation_id=…``: what became of each web view the customer
closed in their conversation, for the widget to word it ("Form sent", "Closed without
sending") and to show a submitted one as completed instead of offering a fresh form.

The session token is the bearer token (as for uploads), the page's origin is checked, and only
the token's own customer's conversation answers (any other: 404). The answer names ids,
statuses and times only: never a web view's ``result`` nor anything the customer typed.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app import errors
from app.api.framework import JSONResponse, error_response
from app.ids import isoformat
from app.realtime.identity import widget_caller, widget_cors, widget_preflight
from app.state import AppState
from app.store.tables import Conversation, WebviewOpening
from app.webviews.openings import CLOSE_STATUSES


def closed_webviews(s: Session, workspace_id: str, user_id: str, conversation_id: str) -> list[dict[str, Any]] | None:
    """The conversation's closed openings, oldest close first; None when it is not this customer's."""
    conv = s.get(Conversation, conversation_id)
    if conv is None or conv.workspace_id != workspace_id or conv.user_id != user_id:
        return None
    rows = s.exec(
        select(WebviewOpening)
        .where(
            WebviewOpening.conversation_id == conversation_id,
            col(WebviewOpening.closed_at).is_not(None),
            col(WebviewOpening.status).in_(CLOSE_STATUSES),  # not "replaced": no close the customer saw
        )
        .order_by(col(WebviewOpening.closed_at), col(WebviewOpening.id))
    ).all()
    return [
        {
            "message_id": r.message_id,
            "webview_id": r.webview_id,
            "status": r.status,
            "closed_at": isoformat(r.closed_at) if r.closed_at else None,
        }
        for r in rows
    ]


async def webview_outcomes(request: Request) -> Response:
    state: AppState = request.app.state.bc
    origin = request.headers.get("origin")
    try:
        identity, _ = await widget_caller(request, state.signer, state.runner)
        conversation_id = request.query_params.get("conversation_id", "")
        found = await state.runner.read(
            closed_webviews, identity.workspace_id, identity.user_id, conversation_id[:64]
        )
        if found is None:
            raise errors.NotFound("No such conversation.")
    except errors.ApiError as exc:
        response = error_response(exc)
        response.headers.update(widget_cors(origin))
        return response
    return JSONResponse({"data": found}, headers=widget_cors(origin))


async def webview_outcomes_preflight(request: Request) -> Response:
    response = widget_preflight(request, "authorization")
    response.headers["Access-Control-Allow-Methods"] = "GET"
    return response


ROUTES: list[BaseRoute] = [
    Route("/widget/v1/webviews", webview_outcomes, methods=["GET"]),
    Route("/widget/v1/webviews", webview_outcomes_preflight, methods=["OPTIONS"]),
]
