"""``/webviews/form?token=…``: the hosted web-view form page, and its submission.

GET renders the form; POST validates it, relays the values to the bot's ``callback_url``
and drops them. The token is in the query string, not the path, because the access log
writes paths (never queries). Nothing here logs a request body or a value.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from app import errors
from app.api.framework import JSONResponse, read_body
from app.assets import TEMPLATES_DIR
from app.ids import utcnow
from app.realtime.identity import valid_origins
from app.state import AppState
from app.store.runner import Tx
from app.store.tables import Message, UsedWebviewToken, WebhookEndpoint, WebviewOpening, Workspace
from app.webviews import openings as webviews
from app.webviews import outcomes
from app.webviews.forms import (
    FieldView,
    RelayOutcome,
    callback_refusal,
    field_views,
    relay_form,
    signing_endpoint,
    validate,
)
from app.webviews.openings import FormLinkError, InvalidLink, UsedLink

MAX_FORM_BYTES = 65_536
SUBMITS_PER_MINUTE = 20
FAILED = "We couldn't submit the form just now. Please try again."


class NotSetUp(FormLinkError):
    status, title, detail = 503, "This form is not available", "It is not set up to send its answers anywhere."


@cache
def _templates() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR / "webview"), autoescape=select_autoescape(default=True)
    )


def _headers(frame_ancestors: list[str]) -> dict[str, str]:
    # Framed by the widget's host pages: the workspace's allowed origins when it lists some.
    # Only entries that are origins reach the header (one stored before validation cannot
    # add a directive); a list with none left frames nowhere but here, never everywhere.
    ancestors = " ".join(["'self'", *valid_origins(frame_ancestors)]) if frame_ancestors else "*"
    csp = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    )
    return {
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def _page(name: str, status: int, ancestors: list[str], **context: Any) -> HTMLResponse:
    html = _templates().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=_headers(ancestors))


def _problem_page(exc: FormLinkError, ancestors: list[str] | None = None) -> HTMLResponse:
    return _page("message.html", exc.status, ancestors or [], title=exc.title, detail=exc.detail)


DEFAULT_ACCENT = "#1f5eff"
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def text_on(hex_color: str) -> str:
    """Dark or white text, whichever reads on ``hex_color`` (WCAG relative luminance), as the
    widget picks its header text: the form's button wears the widget's theme colour."""
    channels = [int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return "#111827" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.35 else "#ffffff"


class _Form:
    """What a valid hosted URL leads to (no customer data)."""

    def __init__(
        self, opening: WebviewOpening, form: dict[str, Any], ancestors: list[str], endpoint: WebhookEndpoint,
        accent: str = DEFAULT_ACCENT,
    ) -> None:
        self.opening, self.form, self.ancestors, self.endpoint = opening, form, ancestors, endpoint
        self.fields: list[FieldView] = field_views(form)
        self.accent = accent if _HEX.match(accent) else DEFAULT_ACCENT


def _load(s: Session, opening_id: str, workspace_id: str) -> _Form:
    opening = s.get(WebviewOpening, opening_id)
    if opening is None or opening.workspace_id != workspace_id or opening.kind != "form":
        raise InvalidLink()
    workspace = s.get(Workspace, workspace_id)
    ancestors = list(workspace.allowed_origins) if workspace else []
    if opening.closed_at is not None or s.get(UsedWebviewToken, opening.id) is not None:
        raise UsedLink()
    message = s.get(Message, opening.message_id)
    if message is None:
        raise InvalidLink()
    try:
        form = webviews.find_webview(message, opening.webview_id)["form"]
    except (errors.NotFound, KeyError):
        raise InvalidLink() from None
    endpoint = signing_endpoint(s, workspace_id, form["callback_url"])
    if endpoint is None:
        raise NotSetUp()
    s.expunge_all()  # used after the session closes
    return _Form(opening, form, ancestors, endpoint, workspace.theme_color if workspace else DEFAULT_ACCENT)


async def _resolve(request: Request) -> _Form:
    state: AppState = request.app.state.bc
    opening_id, workspace_id = webviews.read_form_token(state.settings, request.query_params.get("token", ""))
    f = await state.runner.read(_load, opening_id, workspace_id)
    # Refused at message creation too; this also covers forms stored before that check.
    if callback_refusal(f.form["callback_url"], state.settings.webhook_allow_private_networks) is not None:
        raise NotSetUp()
    return f


def _form_page(
    f: _Form, status: int = 200, problems: dict[str, str] | None = None, values: dict[str, str] | None = None
) -> HTMLResponse:
    kept = {k: v for k, v in (values or {}).items() if not next(x for x in f.fields if x.name == k).sensitive}
    return _page(
        "form.html", status, f.ancestors, title=f.form["title"], submit_label=f.form.get("submit_label", "Submit"),
        fields=f.fields, errors=problems or {}, values=kept, accent=f.accent, accent_text=text_on(f.accent),
    )


async def show_form(request: Request) -> Response:
    try:
        f = await _resolve(request)
    except FormLinkError as exc:
        return _problem_page(exc)
    return _form_page(f)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


async def submit_form(request: Request) -> Response:
    state: AppState = request.app.state.bc
    as_json = _wants_json(request)
    try:
        f = await _resolve(request)
    except FormLinkError as exc:
        if as_json:
            return JSONResponse({"error": exc.title, "retryable": False}, status_code=exc.status, headers=_headers([]))
        return _problem_page(exc)
    await state.limiter.consume_or_raise(f"webview-form:{f.opening.id}", SUBMITS_PER_MINUTE, 60)
    raw = await read_body(request, MAX_FORM_BYTES)
    submitted = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    values, problems = validate(f.fields, submitted)
    del raw, submitted
    if problems:
        return _answer(request, f, RelayOutcome("invalid", problems), values)

    try:
        claimed = await state.runner.write(_claim, f.opening.id, state.settings.webview_ttl_seconds)
    except IntegrityError:
        claimed = False
    if not claimed:
        # Another submission of this form is in flight, or it just finished.
        return _answer(request, f, RelayOutcome("failed", {"_form": "This form is already being submitted."}), values)

    outcome = await relay_form(
        state.webhook_sender, f.endpoint, f.opening, f.form["callback_url"], values, [x.name for x in f.fields],
        timeout=min(state.settings.webhook_timeout_seconds, 15.0),
    )
    if outcome.kind == "submitted":
        await state.runner.write(_close_submitted, f.opening.id)
    else:
        await state.runner.write(_release, f.opening.id)
    return _answer(request, f, outcome, values)


def _answer(request: Request, f: _Form, outcome: RelayOutcome, values: dict[str, str]) -> Response:
    if _wants_json(request):
        headers = _headers(f.ancestors)
        if outcome.kind == "submitted":
            return JSONResponse({"status": "submitted"}, headers=headers)
        if outcome.kind == "invalid":
            return JSONResponse({"errors": outcome.errors}, status_code=422, headers=headers)
        message = outcome.errors.get("_form", FAILED)
        return JSONResponse({"error": message, "retryable": True}, status_code=502, headers=headers)
    if outcome.kind == "submitted":
        return _page("submitted.html", 200, f.ancestors, title=f.form["title"])
    if outcome.kind == "invalid":
        return _form_page(f, 422, outcome.errors, values)
    return _form_page(f, 502, {"_form": outcome.errors.get("_form", FAILED)}, values)


def _claim(tx: Tx, opening_id: str, ttl_seconds: int) -> bool:
    """Mark the URL used before relaying, so two submits cannot both reach the callback."""
    s = tx.session
    opening = s.get(WebviewOpening, opening_id)
    if opening is None or opening.closed_at is not None or s.get(UsedWebviewToken, opening_id) is not None:
        return False
    s.add(UsedWebviewToken(jti=opening_id, expires_at=utcnow() + timedelta(seconds=ttl_seconds)))
    s.flush()
    return True


def _release(tx: Tx, opening_id: str) -> None:
    """The callback refused or failed: the customer may correct the form and submit again."""
    used = tx.session.get(UsedWebviewToken, opening_id)
    if used is not None:
        tx.session.delete(used)


def _close_submitted(tx: Tx, opening_id: str) -> None:
    opening = tx.session.get(WebviewOpening, opening_id)
    if opening is not None:
        webviews.close_opening(tx, opening, "submitted")


ROUTES: list[BaseRoute] = [
    Route("/webviews/form", show_form, methods=["GET", "HEAD"]),
    Route("/webviews/form", submit_form, methods=["POST"]),
    *outcomes.ROUTES,  # the widget's read of what became of each web view
]
