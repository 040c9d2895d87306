"""Console sessions: signed cookies, CSRF tokens, login throttling, and the page guard.

The session cookie carries ``{console user id, session_version, csrf}``, signed with the
server's secret key. Every request reloads the user and compares ``session_version``, so
logging out (which bumps it) ends every session of that user at once, on every instance.
The CSRF token is a random value inside the signed session (synchronizer token): a form
posts it back, and the server compares it in constant time. Login, which has no session
yet, uses a double-submit cookie instead.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel import Session
from starlette.datastructures import FormData
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from app import errors, events
from app.data import audit
from app.proxies import client_address, client_limit_key
from app.state import AppState
from app.store.runner import Tx
from app.store.tables import Agent, ConsoleUser, Workspace

T = TypeVar("T")
log = logging.getLogger("backchannel.console")

SESSION_COOKIE = "bc_console"
LOGIN_COOKIE = "bc_console_login"
SESSION_MAX_AGE = 7 * 24 * 3600  # a working week and a weekend; then log in again
LOGIN_WINDOW = 15 * 60.0


@dataclass
class SessionData:
    user_id: str
    version: int
    csrf: str
    agent_status: str | None = None  # the user's agent's chosen status (the "Available" toggle), once loaded


def _serializer(state: AppState, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(state.settings.secret_key.get_secret_value(), salt=salt)


def read_session(state: AppState, conn: HTTPConnection) -> SessionData | None:
    raw = conn.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(state, "console-session").loads(raw, max_age=SESSION_MAX_AGE)
        return SessionData(str(data["u"]), int(data["v"]), str(data["c"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None


def is_https(request: Request, state: AppState) -> bool:
    return request.url.scheme == "https" or state.settings.public_url.startswith("https://")


def set_session(response: Response, request: Request, state: AppState, user: ConsoleUser) -> None:
    value = _serializer(state, "console-session").dumps(
        {"u": user.id, "v": user.session_version, "c": secrets.token_urlsafe(24)}
    )
    response.set_cookie(
        SESSION_COOKIE, value, max_age=SESSION_MAX_AGE, path="/console", httponly=True,
        samesite="lax", secure=is_https(request, state),
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/console")


async def load_user(state: AppState, conn: HTTPConnection) -> tuple[ConsoleUser, Workspace, SessionData] | None:
    """The logged-in user, or None when there is no valid, current session."""
    session = read_session(state, conn)
    if session is None:
        return None

    def find(s: Session) -> tuple[ConsoleUser, Workspace, str | None] | None:
        user = s.get(ConsoleUser, session.user_id)
        if user is None or user.session_version != session.version:
            return None
        workspace = s.get(Workspace, user.workspace_id)
        agent = s.get(Agent, user.agent_id) if user.agent_id else None
        return (user, workspace, agent.status if agent else None) if workspace is not None else None

    found = await state.runner.read(find)
    if not found:
        return None
    session.agent_status = found[2]
    return found[0], found[1], session


# --- origin and CSRF checks -------------------------------------------------------------


def own_origins(conn: HTTPConnection, state: AppState) -> set[str]:
    """Origins the console is served from: the Host it was reached at, and PUBLIC_URL."""
    host = conn.headers.get("host", "")
    scheme = "https" if conn.url.scheme in ("https", "wss") else "http"
    public = urlsplit(state.settings.public_url)
    return {f"{scheme}://{host}".lower(), f"{public.scheme}://{public.netloc}".lower()}


def same_origin(conn: HTTPConnection, state: AppState, *, required: bool) -> bool:
    """Browsers send Origin on every POST and WebSocket handshake; a foreign one is refused."""
    origin = conn.headers.get("origin")
    if origin is None or origin == "null":
        return not required
    return origin.lower() in own_origins(conn, state)


def check_csrf(request: Request, state: AppState, expected: str, form: FormData) -> None:
    sent = str(form.get("csrf_token") or request.headers.get("x-csrf-token") or "")
    if not sent or not hmac.compare_digest(sent, expected) or not same_origin(request, state, required=False):
        raise CsrfFailed()


class CsrfFailed(errors.ApiError):
    status, code = 403, "csrf_failed"
    message = "This form has expired or did not come from the console. Reload the page and try again."


def login_csrf(request: Request) -> str:
    """The double-submit value for the login form (kept in its own short-lived cookie)."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)


def set_login_csrf(response: Response, request: Request, state: AppState, value: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE, value, max_age=3600, path="/console", httponly=True, samesite="lax",
        secure=is_https(request, state),
    )


def _login_keys(request: Request, email: str) -> tuple[str, str]:
    ip = client_limit_key(request)
    return f"console-login:ip:{ip}", f"console-login:email:{email.strip().lower()}"


async def throttle_login(state: AppState, request: Request, email: str) -> None:
    """At most N attempts per 15 minutes per account, and 5N per client address (a team
    behind one office NAT logs in from one address), through ``state.limiter``."""
    limit = state.settings.login_attempts_per_15min
    ip_key, email_key = _login_keys(request, email)
    await state.limiter.consume_or_raise(ip_key, limit * 5, LOGIN_WINDOW)
    await state.limiter.consume_or_raise(email_key, limit, LOGIN_WINDOW)


async def login_succeeded(state: AppState, request: Request, email: str) -> None:
    """The account's counter starts over after a good password (the address's does not)."""
    await state.limiter.clear(_login_keys(request, email)[1])


def end_all_sessions(tx: Tx, user_id: str) -> None:
    """Logout everywhere: bump the version every cookie carries, and tell live sockets."""
    user = tx.session.get(ConsoleUser, user_id)
    if user is None:
        return
    user.session_version += 1
    tx.session.add(user)
    tx.publish({"type": events.CONSOLE_LOGOUT, "workspace_id": user.workspace_id, "data": {"console_user_id": user.id}})


# --- the page guard ---------------------------------------------------------------------


@dataclass
class Ctx:
    """One console request: who is asking, in which workspace, with what form."""

    request: Request
    state: AppState
    user: ConsoleUser
    workspace: Workspace
    csrf: str
    form: FormData | None = None

    @property
    def workspace_id(self) -> str:
        return self.user.workspace_id

    @property
    def agent_id(self) -> str | None:
        return self.user.agent_id

    available: bool | None = None  # the "Available" toggle: None without an agent profile

    @property
    def is_admin(self) -> bool:
        return self.user.role == "admin"

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else default

    def fields(self, name: str) -> list[str]:
        return [v for v in self.form.getlist(name) if isinstance(v, str)] if self.form is not None else []

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor.console(self.user, client_address(self.request))

    async def write_audited(
        self,
        action: str,
        target_type: str,
        fn: Callable[..., T],
        *args: Any,
        target_id: str | Callable[[T], str | None] | None = None,
        **kwargs: Any,
    ) -> T:
        """``runner.write(fn, …)``, with this admin action in the audit log of the same transaction."""
        write = audit.audited(fn, self.workspace_id, self.actor, action, target_type, target_id)
        return await self.state.runner.write(write, *args, **kwargs)


def form_error(exc: errors.ApiError) -> dict[str, str]:
    """An ``Unprocessable`` as ``{field: message}`` for showing errors next to their fields."""
    out: dict[str, str] = {}
    details: Any = exc.details
    if isinstance(details, list):
        for item in details:
            if isinstance(item, dict) and "field" in item:
                out.setdefault(str(item["field"]).split(".")[0], str(item.get("message", "invalid")))
    if not out:
        out["_form"] = exc.message
    return out
