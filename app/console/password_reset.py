""""Forgot password" by email for console users (docs/console.md, docs/security.md).

The login page links to ``/console/password-reset`` only when ``SMTP_URL`` is set; without it,
it says to ask an admin (Settings > Team resets a teammate's password). Asking answers with the
same page whatever the email, and the lookup, the write and the send all happen after that
answer (a background task), so neither the words nor the time taken tell whether an account
exists. The link is ``PUBLIC_URL/console/password-reset/new?token=…`` (the configured address,
never the request's Host header; the token in the query string, which the access log leaves
out). The token is an itsdangerous signature (its own salt, an hour's age) around ``[reset id,
secret]``; only the SHA-256 of the secret is stored. A link works once; a newer one, or a new
password, retires the user's others; the new password ends every session of the user. Asking
and resetting are both in the workspace's audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import anyio
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel import Session, col, delete, select
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app import accounts, errors
from app.console import auth
from app.console.render import error_page, render
from app.data import audit
from app.ids import new_id, utcnow
from app.mail import smtp
from app.mail.password_reset import password_reset_email
from app.proxies import client_address, client_limit_key
from app.state import AppState
from app.store.runner import Tx
from app.store.tables import ConsolePasswordReset, ConsoleUser

log = logging.getLogger("backchannel.console")

RESET_MINUTES = 60
ASKS_PER_EMAIL_PER_HOUR = 3
ASKS_PER_ADDRESS_PER_15MIN = 10
_SALT = "console-password-reset"


def enabled(state: AppState) -> bool:
    """Email is the only way a forgotten password comes back without an admin."""
    return state.settings.smtp_url is not None


def _serializer(state: AppState) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(state.settings.secret_key.get_secret_value(), salt=_SALT)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _retire_others(tx: Tx, user_id: str, keep: str | None = None) -> None:
    now = utcnow()
    for row in tx.session.exec(
        select(ConsolePasswordReset).where(
            ConsolePasswordReset.console_user_id == user_id, col(ConsolePasswordReset.used_at).is_(None)
        )
    ):
        if row.id != keep:
            row.used_at = now
            tx.session.add(row)


def issue_reset(tx: Tx, email: str, ip: str | None) -> dict[str, Any] | None:
    """A new link for the account with this email (None: there is none). Older links of the
    user stop working, and links that expired a day ago are forgotten."""
    user = tx.session.exec(select(ConsoleUser).where(ConsoleUser.email == accounts.normalize_email(email))).first()
    if user is None:
        return None
    now = utcnow()
    tx.session.exec(  # type: ignore[call-overload]
        delete(ConsolePasswordReset).where(col(ConsolePasswordReset.expires_at) < now - timedelta(days=1))
    )
    _retire_others(tx, user.id)
    secret = secrets.token_urlsafe(32)
    row = ConsolePasswordReset(
        id=new_id("pwr"),
        console_user_id=user.id,
        workspace_id=user.workspace_id,
        token_hash=_digest(secret),
        expires_at=now + timedelta(minutes=RESET_MINUTES),
    )
    tx.session.add(row)
    actor = audit.Actor.console(user, ip)
    audit.record(tx, user.workspace_id, actor, "console_user.password_reset_requested", "console_user", user.id)
    return {"email": user.email, "name": user.name, "reset_id": row.id, "secret": secret}


def _current(
    s: Session, reset_id: str, secret: str, lock: bool = False
) -> tuple[ConsolePasswordReset, ConsoleUser] | None:
    row = s.get(ConsolePasswordReset, reset_id, with_for_update=lock)
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        return None
    if not hmac.compare_digest(row.token_hash, _digest(secret)):
        return None
    user = s.get(ConsoleUser, row.console_user_id)
    return (row, user) if user is not None else None


def check_reset(s: Session, reset_id: str, secret: str) -> str | None:
    """The email of the account this link resets, while the link is good."""
    found = _current(s, reset_id, secret)
    return found[1].email if found else None


def use_reset(tx: Tx, reset_id: str, secret: str, password_hash: str, ip: str | None) -> ConsoleUser | None:
    """Set the new password and spend the link (and the user's others); None: the link is no good."""
    found = _current(tx.session, reset_id, secret, lock=True)
    if found is None:
        return None
    row, user = found
    row.used_at = utcnow()
    tx.session.add(row)
    _retire_others(tx, user.id, keep=row.id)
    accounts.set_password(tx, user.workspace_id, user.id, password_hash)  # ends every session
    actor = audit.Actor.console(user, ip)
    audit.record(tx, user.workspace_id, actor, "console_user.password_reset_by_email", "console_user", user.id)
    return user


def read_token(state: AppState, token: str) -> tuple[str, str] | None:
    """``(reset id, secret)`` from a link this server signed within the hour."""
    try:
        value = _serializer(state).loads(token, max_age=RESET_MINUTES * 60)
    except (BadSignature, ValueError, TypeError):
        return None
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return value[0], value[1]
    return None


async def send_reset(state: AppState, email: str, ip: str | None) -> None:
    """After the answer has gone: find the account, store a link, email it. Failures are
    logged without the address or the link (the person can simply ask again)."""
    try:
        issued = await state.runner.write(issue_reset, email, ip)
        if issued is None or state.settings.smtp_url is None:
            return
        token = _serializer(state).dumps([issued["reset_id"], issued["secret"]])
        link = f"{state.settings.public_url.rstrip('/')}/console/password-reset/new?token={quote(token)}"
        message = password_reset_email(
            sender=state.settings.email_from, to=issued["email"], name=issued["name"], link=link, minutes=RESET_MINUTES
        )
        target = smtp.parse_smtp_url(state.settings.smtp_url.get_secret_value())
        await anyio.to_thread.run_sync(smtp.send, target, message)
    except Exception as exc:  # noqa: BLE001 - a background task has nobody to tell but the log
        log.warning("password reset email not sent: %s", type(exc).__name__)


# --- pages --------------------------------------------------------------------------------


def _page(request: Request, state: AppState, stage: str, *, status: int = 200, **values: Any) -> Response:
    token = auth.login_csrf(request)
    response = render(
        request, "password_reset.html", status=status, csrf_token=token, stage=stage,
        minutes=RESET_MINUTES, **values,
    )
    response.headers["referrer-policy"] = "no-referrer"  # the link's token never leaves in a Referer
    auth.set_login_csrf(response, request, state, token)
    return response


def _csrf_ok(request: Request, state: AppState, form: Any) -> bool:
    cookie = request.cookies.get(auth.LOGIN_COOKIE, "")
    sent = str(form.get("csrf_token") or "")
    return bool(cookie) and hmac.compare_digest(cookie, sent) and auth.same_origin(request, state, required=False)


async def ask_form(request: Request) -> Response:
    state: AppState = request.app.state.bc
    return _page(request, state, "ask" if enabled(state) else "disabled")


async def ask(request: Request) -> Response:
    state: AppState = request.app.state.bc
    form = await request.form(max_files=0, max_fields=10)
    if not _csrf_ok(request, state, form):
        return error_page(request, 403, auth.CsrfFailed.message)
    if not enabled(state):
        return _page(request, state, "disabled", status=409)
    email = str(form.get("email") or "").strip()
    if "@" not in email or len(email) > 320:
        return _page(request, state, "ask", status=400, email=email[:320],
                     error="Enter the email address you log in with.")
    try:
        await state.limiter.consume_or_raise(
            f"console-reset:ip:{client_limit_key(request)}", ASKS_PER_ADDRESS_PER_15MIN, 15 * 60.0
        )
        await state.limiter.consume_or_raise(
            f"console-reset:email:{accounts.normalize_email(email)}", ASKS_PER_EMAIL_PER_HOUR, 3600.0
        )
    except errors.RateLimited as exc:
        minutes = max(1, round(int(exc.headers["Retry-After"]) / 60))
        response = _page(request, state, "ask", status=429, email=email,
                         error=f"Too many reset requests. Try again in {minutes} minute{'s' if minutes > 1 else ''}.")
        response.headers["retry-after"] = exc.headers["Retry-After"]
        return response
    response = _page(request, state, "sent", email=email)
    response.background = BackgroundTask(send_reset, state, email, client_address(request))
    return response


async def new_password_form(request: Request) -> Response:
    state: AppState = request.app.state.bc
    token = request.query_params.get("token", "")
    ids = read_token(state, token)
    email = await state.runner.read(check_reset, *ids) if ids else None
    if email is None:
        return _page(request, state, "invalid", status=410 if ids else 400, smtp=enabled(state))
    return _page(request, state, "new", token=token, email=email)


async def set_new_password(request: Request) -> Response:
    state: AppState = request.app.state.bc
    form = await request.form(max_files=0, max_fields=10)
    if not _csrf_ok(request, state, form):
        return error_page(request, 403, auth.CsrfFailed.message)
    token = str(form.get("token") or "")
    ids = read_token(state, token)
    email = await state.runner.read(check_reset, *ids) if ids else None
    if ids is None or email is None:
        return _page(request, state, "invalid", status=410 if ids else 400, smtp=enabled(state))
    password, again = str(form.get("password") or ""), str(form.get("password_again") or "")
    errors_: dict[str, str] = {}
    problem = accounts.password_problem(password)
    if problem:
        errors_["password"] = f"The new password needs {problem}."
    elif password != again:
        errors_["password_again"] = "The two passwords are not the same."
    if errors_:
        return _page(request, state, "new", status=422, token=token, email=email, errors=errors_)
    # Argon2 outside the write, and off the event loop (it takes tens of milliseconds of CPU).
    password_hash = await anyio.to_thread.run_sync(accounts.hash_password, password)
    user = await state.runner.write(use_reset, ids[0], ids[1], password_hash, client_address(request))
    if user is None:  # spent by a second tab meanwhile
        return _page(request, state, "invalid", status=410, smtp=enabled(state))
    response = RedirectResponse("/console/login?reset=done", status_code=303)
    auth.clear_session(response)
    return response
