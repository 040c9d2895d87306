"""Rendering console pages: one Jinja2 environment, a strict CSP, flash notices, error pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.assets import TEMPLATES_DIR
from app.console.auth import Ctx, is_https

TEMPLATES = TEMPLATES_DIR
FLASH_COOKIE = "bc_console_flash"

# No inline script or style anywhere in the console: everything comes from /static.
# Images, video and audio in transcripts are the bot's own http(s) URLs or signed file links,
# shown as the customer saw them.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: http: data:; "
    "media-src 'self' https: http:; "
    "connect-src 'self'; frame-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)

_URL = re.compile(r"\bhttps?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")


def linkify(text: str) -> Markup:
    """Escape first, then turn http(s) URLs into links: customer text is never HTML."""
    out: list[str] = []
    last = 0
    for match in _URL.finditer(text):
        out.append(str(escape(text[last : match.start()])))
        url = escape(match.group(0))
        out.append(f'<a href="{url}" target="_blank" rel="noopener noreferrer nofollow">{url}</a>')
        last = match.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))


def when(value: datetime | None) -> str:
    """A short, human time: "14:05" today, "3 Mar" this year, else "3 Mar 2024"."""
    if value is None:
        return "never"
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if value.date() == now.date():
        return value.strftime("%H:%M")
    if value.year == now.year:
        return f"{value.day} {value.strftime('%b')}"
    return f"{value.day} {value.strftime('%b %Y')}"


def when_exact(value: datetime | None) -> str:
    """``when`` with the time of day on other days too: "14:05", "3 Mar 14:05"."""
    if value is None:
        return "never"
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    day = when(value)
    time_ = value.strftime("%H:%M")
    return time_ if day == time_ else f"{day} {time_}"


def filesize(value: object) -> str:
    """1258291 -> "1.2 MB" (binary units, as the widget shows them); "" when unknown."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return ""
    if value < 1024:
        return f"{value} B"
    size = float(value)
    for unit in ("KB", "MB", "GB", "TB"):
        size /= 1024
        if size < 1024 or unit == "TB":
            break
    return f"{size:.1f} {unit}" if size < 10 else f"{round(size)} {unit}"


_KIND = re.compile(r"^[a-z]+/([a-z0-9]{1,5})(?:;|$)", re.IGNORECASE)


def filekind(content_type: object) -> str:
    """"application/pdf" -> "PDF"; "" for long or odd subtypes."""
    match = _KIND.match(content_type) if isinstance(content_type, str) else None
    return match.group(1).upper() if match else ""


def iso(value: datetime | None) -> str:
    if value is None:
        return ""
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["linkify"] = linkify
    env.filters["when"] = when
    env.filters["iso"] = iso
    env.filters["when_exact"] = when_exact
    env.filters["filesize"] = filesize
    env.filters["filekind"] = filekind
    return env


def render(
    request: Request, template: str, *, ctx: Ctx | None = None, status: int = 200, **values: Any
) -> HTMLResponse:
    flash = _take_flash(request)
    html = environment().get_template(f"console/{template}").render(
        request=request,
        me=ctx.user if ctx else None,
        workspace=ctx.workspace if ctx else None,
        is_admin=bool(ctx and ctx.is_admin),
        available=ctx.available if ctx else None,
        csrf_token=ctx.csrf if ctx else values.pop("csrf_token", ""),
        path=request.url.path,
        flash=flash,
        **values,
    )
    response = HTMLResponse(html, status_code=status, headers=page_headers())
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/console")
    return response


def render_fragment(template: str, **values: Any) -> HTMLResponse:
    """A piece of a page (conversation list, new messages) fetched by console.js."""
    html = environment().get_template(f"console/{template}").render(**values)
    return HTMLResponse(html, headers=page_headers())


def page_headers() -> dict[str, str]:
    return {
        "content-security-policy": CSP,
        "cache-control": "no-store",
        "x-frame-options": "DENY",
    }


def redirect(ctx: Ctx, url: str, notice: str | None = None) -> Response:
    """Post/Redirect/Get, carrying a one-line notice to the next page."""
    response = RedirectResponse(url, status_code=303)
    if notice:
        value = URLSafeSerializer(ctx.state.settings.secret_key.get_secret_value(), salt="flash").dumps(notice)
        response.set_cookie(
            FLASH_COOKIE, value, max_age=60, path="/console", httponly=True, samesite="lax",
            secure=is_https(ctx.request, ctx.state),
        )
    return response


def set_once(ctx: Ctx, response: Response, name: str, value: str, *, path: str) -> None:
    """A signed cookie for the next page alone (a minute long, HttpOnly): what to show once."""
    signed = URLSafeSerializer(ctx.state.settings.secret_key.get_secret_value(), salt=name).dumps(value)
    response.set_cookie(
        name, signed, max_age=60, path=path, httponly=True, samesite="lax", secure=is_https(ctx.request, ctx.state)
    )


def take_once(ctx: Ctx, name: str) -> str | None:
    """The value of a ``set_once`` cookie, if it is there and signed by this server."""
    raw = ctx.request.cookies.get(name)
    if not raw:
        return None
    try:
        return str(URLSafeSerializer(ctx.state.settings.secret_key.get_secret_value(), salt=name).loads(raw))
    except BadSignature:
        return None


def _take_flash(request: Request) -> str | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        secret = request.app.state.bc.settings.secret_key.get_secret_value()
        return str(URLSafeSerializer(secret, salt="flash").loads(raw))
    except (BadSignature, AttributeError):
        return None


def error_page(request: Request, status: int, message: str, *, ctx: Ctx | None = None) -> HTMLResponse:
    titles = {401: "Session ended", 403: "Not allowed", 404: "Not found", 429: "Too many attempts"}
    return render(
        request, "error.html", ctx=ctx, status=status, title=titles.get(status, "Something went wrong"),
        message=message,
    )
