"""Settings > Team: the console users of this workspace, and inviting agents (admins only)."""

from __future__ import annotations

import functools

import anyio
from sqlmodel import Session, col, select
from starlette.responses import Response

from app import errors
from app.accounts import create_console_user, new_console_user
from app.console.auth import Ctx, form_error
from app.console.pages import console_page
from app.console.render import redirect, render
from app.store.tables import ConsoleUser

PATH = "/console/settings/team"


def list_members(s: Session, workspace_id: str) -> list[ConsoleUser]:
    query = select(ConsoleUser).where(ConsoleUser.workspace_id == workspace_id)
    return list(s.exec(query.order_by(col(ConsoleUser.created_at))))


async def _page(ctx: Ctx, *, values: dict[str, str] | None = None, errors_: dict[str, str] | None = None,
                status: int = 200) -> Response:
    members = await ctx.state.runner.read(list_members, ctx.workspace_id)
    return render(
        ctx.request, "team.html", ctx=ctx, status=status, members=members, errors=errors_ or {},
        values=values or {"role": "agent"},
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
            "console_user.created", "console_user", create_console_user, ctx.workspace_id, account,
            target_id=lambda user: user.id,
        )
    except errors.Unprocessable as exc:
        return await _page(ctx, values=values, errors_=form_error(exc), status=422)
    except errors.Conflict as exc:
        return await _page(ctx, values=values, errors_={"email": exc.message}, status=409)
    notice = f"{values['email']} can now log in at /console with the password you set. Share it privately."
    return redirect(ctx, PATH, notice)
