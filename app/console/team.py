"""Settings > Team: the console users of this workspace (admins: invite, change a role, reset
a password, remove), and ``/console/account``, where each user changes their own name and password.

Passwords are checked and hashed (Argon2) in a worker thread before any write is queued; every
team change is in the audit log, in its own transaction."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import anyio
from sqlmodel import Session, col, select
from starlette.responses import Response

from app import accounts, errors
from app.accounts import create_console_user, new_console_user
from app.console.auth import Ctx, form_error
from app.console.pages import console_page
from app.console.render import redirect, render
from app.store.tables import ConsoleUser

PATH = "/console/settings/team"
ACCOUNT = "/console/account"


def list_members(s: Session, workspace_id: str) -> list[ConsoleUser]:
    query = select(ConsoleUser).where(ConsoleUser.workspace_id == workspace_id)
    return list(s.exec(query.order_by(col(ConsoleUser.created_at))))


async def _page(
    ctx: Ctx, *, values: dict[str, str] | None = None, errors_: dict[str, str] | None = None, status: int = 200
) -> Response:
    members = await ctx.state.runner.read(list_members, ctx.workspace_id)
    return render(
        ctx.request,
        "team.html",
        ctx=ctx,
        status=status,
        members=members,
        errors=errors_ or {},
        values=values or {"role": "agent"},
        admins=sum(1 for m in members if m.role == "admin"),
    )


@console_page(admin=True)
async def team_page(ctx: Ctx) -> Response:
    return await _page(ctx)


@console_page(admin=True)
async def invite(ctx: Ctx) -> Response:
    values = {
        "name": ctx.field("name").strip(),
        "email": ctx.field("email").strip(),
        "role": "admin" if ctx.field("role") == "admin" else "agent",
    }
    password = ctx.field("password")
    try:
        # Checked and hashed (Argon2: tens of ms of CPU) in a worker thread of its own,
        # before the write is queued: the writer only stores the result.
        account = await anyio.to_thread.run_sync(
            functools.partial(
                new_console_user, values["email"], password, name=values["name"] or None, role=values["role"]
            )
        )
        await ctx.write_audited(
            "console_user.created",
            "console_user",
            create_console_user,
            ctx.workspace_id,
            account,
            target_id=lambda user: user.id,
        )
    except errors.Unprocessable as exc:
        return await _page(ctx, values=values, errors_=form_error(exc), status=422)
    except errors.Conflict as exc:
        return await _page(ctx, values=values, errors_={"email": exc.message}, status=409)
    notice = f"{values['email']} can now log in at /console with the password you set. Share it privately."
    return redirect(ctx, PATH, notice)


def _member_id(ctx: Ctx) -> str:
    return str(ctx.request.path_params["user_id"])


async def _change_member(
    ctx: Ctx, action: str, fn: Callable[..., ConsoleUser], *args: Any, notice: Callable[[ConsoleUser], str]
) -> Response:
    """One team change to the member in the path: ``fn(tx, workspace_id, user_id, *args)``,
    audited as ``action``; back to Team with ``notice``, or with the refusal (a 404 stays one)."""
    user_id = _member_id(ctx)
    try:
        user = await ctx.write_audited(
            action, "console_user", fn, ctx.workspace_id, user_id, *args, target_id=user_id
        )
    except errors.NotFound:
        raise
    except errors.ApiError as exc:
        return redirect(ctx, PATH, exc.message)
    return redirect(ctx, PATH, notice(user))


@console_page(admin=True)
async def change_role(ctx: Ctx) -> Response:
    return await _change_member(
        ctx, "console_user.role_changed", accounts.change_role, ctx.field("role"),
        notice=lambda user: f"{user.name} is now {'an admin' if user.role == 'admin' else 'an agent'}.",
    )


@console_page(admin=True)
async def reset_password(ctx: Ctx) -> Response:
    password = ctx.field("password")
    problem = accounts.password_problem(password)
    if problem:
        return redirect(ctx, PATH, f"The password was not changed: it needs {problem}.")
    password_hash = await anyio.to_thread.run_sync(accounts.hash_password, password)
    return await _change_member(
        ctx, "console_user.password_reset", accounts.set_password, password_hash,
        notice=lambda user: f"New password set for {user.email}; their sessions ended. Share it privately.",
    )


@console_page(admin=True)
async def remove(ctx: Ctx) -> Response:
    return await _change_member(
        ctx, "console_user.removed", accounts.remove_member, ctx.user.id,
        notice=lambda user: f"{user.email} was removed and can no longer log in. "
        "Their open conversations are unassigned.",
    )


# --- each user's own account ---------------------------------------------------------------


async def _account_page(
    ctx: Ctx, *, errors_: dict[str, str] | None = None, name: str | None = None, status: int = 200
) -> Response:
    return render(
        ctx.request,
        "account.html",
        ctx=ctx,
        status=status,
        errors=errors_ or {},
        name=ctx.user.name if name is None else name,
    )


@console_page()
async def account_page(ctx: Ctx) -> Response:
    return await _account_page(ctx)


@console_page()
async def save_name(ctx: Ctx) -> Response:
    name = ctx.field("name").strip()
    try:
        await ctx.state.runner.write(accounts.rename, ctx.workspace_id, ctx.user.id, name)
    except errors.Unprocessable as exc:
        return await _account_page(ctx, errors_=form_error(exc), name=name, status=422)
    return redirect(ctx, ACCOUNT, "Your name is saved. Customers see it on your replies.")


@console_page()
async def change_password(ctx: Ctx) -> Response:
    current, new, again = ctx.field("current_password"), ctx.field("new_password"), ctx.field("new_password_again")
    problems: dict[str, str] = {}
    if not await anyio.to_thread.run_sync(accounts.verify_password, ctx.user, current):
        problems["current_password"] = "This is not your current password."
    problem = accounts.password_problem(new)
    if problem:
        problems["new_password"] = f"The new password needs {problem}."
    elif new != again:
        problems["new_password_again"] = "The two new passwords differ."
    if problems:
        return await _account_page(ctx, errors_=problems, status=422)
    password_hash = await anyio.to_thread.run_sync(accounts.hash_password, new)
    await ctx.write_audited(
        "console_user.password_changed",
        "console_user",
        accounts.set_password,
        ctx.workspace_id,
        ctx.user.id,
        password_hash,
        target_id=ctx.user.id,
    )
    # Every session ended, this one too: log in again with the new password.
    return redirect(ctx, "/console/login", "Password changed. Log in again with your new password.")
