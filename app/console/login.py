"""Logging in and out of the console."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app import accounts, errors
from app.console import auth, password_reset
from app.console.pages import console_page
from app.console.render import error_page, redirect, render
from app.proxies import client_address
from app.state import AppState


def _safe_next(value: str | None) -> str:
    """Only ever redirect within the console after login (no open redirect)."""
    if value and value.startswith("/console") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/inbox"


async def login_form(request: Request) -> Response:
    state: AppState = request.app.state.bc
    if await auth.load_user(state, request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request, state)


def _login_page(
    request: Request, state: AppState, *, email: str = "", error: str | None = None, status: int = 200
) -> Response:
    token = auth.login_csrf(request)
    done = request.query_params.get("reset") == "done"
    response = render(
        request, "login.html", status=status, csrf_token=token, email=email, error=error,
        next=_safe_next(request.query_params.get("next")), reset_by_email=password_reset.enabled(state),
        notice="Your password has been changed. Log in with the new one." if done and not error else None,
    )
    auth.set_login_csrf(response, request, state, token)
    return response


async def login(request: Request) -> Response:
    state: AppState = request.app.state.bc
    form = await request.form(max_files=0, max_fields=20)
    email = str(form.get("email") or "").strip()
    password = str(form.get("password") or "")
    cookie = request.cookies.get(auth.LOGIN_COOKIE, "")
    sent = str(form.get("csrf_token") or "")
    if not cookie or not hmac.compare_digest(cookie, sent) or not auth.same_origin(request, state, required=False):
        return error_page(request, 403, auth.CsrfFailed.message)
    try:
        await auth.throttle_login(state, request, email)
    except errors.RateLimited as exc:
        minutes = max(1, round(int(exc.headers["Retry-After"]) / 60))
        message = f"Too many login attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
        response = _login_page(request, state, email=email, error=message, status=429)
        response.headers["retry-after"] = exc.headers["Retry-After"]
        return response
    if not email or not password:
        return _login_page(request, state, email=email, error="Enter your email and password.", status=400)
    user = await state.runner.read(accounts.authenticate, email, password)
    await state.runner.write(accounts.record_login, email, user is not None, client_address(request))
    if user is None:
        return _login_page(request, state, email=email, error="That email and password do not match.", status=401)
    await auth.login_succeeded(state, request, email)
    response = RedirectResponse(_safe_next(str(form.get("next") or "")), status_code=303)
    auth.set_session(response, request, state, user)
    response.delete_cookie(auth.LOGIN_COOKIE, path="/console")
    return response


@console_page()
async def logout(ctx: auth.Ctx) -> Response:
    # Logging out ends every session of this user (all browsers) and closes their live sockets.
    await ctx.state.runner.write(auth.end_all_sessions, ctx.user.id)
    response = redirect(ctx, "/console/login", "You have logged out.")
    auth.clear_session(response)
    return response


async def home(request: Request) -> Response:
    return RedirectResponse("/console/inbox", status_code=303)


@console_page()
async def settings_home(ctx: auth.Ctx) -> Response:
    return RedirectResponse("/console/settings/tokens" if ctx.is_admin else "/console/inbox", status_code=303)
