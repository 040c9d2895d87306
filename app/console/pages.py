"""``console_page``: what every console page handler is wrapped in.

Requires a session (and the admin role where asked), checks CSRF on writes, and turns errors
into console pages instead of the API's JSON. Its own module because it needs both the
session checks (``auth``) and the error page (``render``, which needs ``auth``'s ``Ctx``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from app import errors
from app.console.auth import Ctx, check_csrf, load_user
from app.console.render import error_page
from app.state import AppState

Handler = Callable[[Ctx], Awaitable[Response]]


def console_page(
    *, admin: bool = False, upload: bool = False
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Wrap a handler: require a session (and the admin role), check CSRF on writes, and
    turn errors into console pages instead of the API's JSON.

    ``upload``: the body is a file the handler streams itself (never parsed here), the CSRF
    token comes in the ``X-CSRF-Token`` header, and errors are the API's JSON shape, for
    console.js to show."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            state: AppState = request.app.state.bc
            found = await load_user(state, request)
            if found is None:
                if upload:
                    return JSONResponse(errors.Unauthorized("Your session has ended. Log in again.").body(), 401)
                if request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"/console/login?next={quote(target)}", status_code=303)
                return error_page(request, 401, "Your session has ended. Log in again.")
            user, workspace, session = found
            ctx = Ctx(request, state, user, workspace, session.csrf)
            ctx.available = None if session.agent_status is None else session.agent_status == "online"
            try:
                if request.method == "POST":
                    ctx.form = FormData() if upload else await request.form(max_files=0, max_fields=200)
                    check_csrf(request, state, session.csrf, ctx.form)
                if admin and not ctx.is_admin:
                    raise errors.Forbidden("Only workspace admins can change settings.")
                response = await handler(ctx)
            except errors.ApiError as exc:
                if upload:
                    return JSONResponse(exc.body(), exc.status, headers=exc.headers)
                return error_page(request, exc.status, exc.message, ctx=ctx)
            response.headers.setdefault("cache-control", "no-store")
            return response

        return endpoint

    return wrap
