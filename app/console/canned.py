"""Canned responses (SPEC §11): the page that lists, adds and deletes them (every console user:
agents keep their own replies too), and the list the Reply box's ``/`` listbox reads."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from app import canned, errors
from app.console.auth import Ctx
from app.console.pages import console_page
from app.console.render import redirect, render

PATH = "/console/canned-responses"


async def _page(ctx: Ctx, *, values: dict[str, str] | None = None, errors_: dict[str, str] | None = None,
                status: int = 200) -> Response:
    responses = await ctx.state.runner.read(canned.list_all, ctx.workspace_id)
    return render(ctx.request, "canned.html", ctx=ctx, status=status, responses=responses,
                  values=values or {}, errors=errors_ or {})  # fmt: skip


@console_page()
async def canned_page(ctx: Ctx) -> Response:
    return await _page(ctx)


@console_page()
async def add(ctx: Ctx) -> Response:
    values = {"shortcut": ctx.field("shortcut").strip().lstrip("/").lower(), "text": ctx.field("text").strip()}
    problems: dict[str, str] = {}
    if not values["shortcut"] or len(values["shortcut"]) > 32 or not all(
        ch.isascii() and (ch.isalnum() or ch in "_-") for ch in values["shortcut"]
    ):
        problems["shortcut"] = "1–32 letters a–z, digits, _ or -."
    if not values["text"]:
        problems["text"] = "Write the reply this shortcut inserts."
    elif len(values["text"]) > canned.MAX_TEXT:
        problems["text"] = f"At most {canned.MAX_TEXT} characters."
    if problems:
        return await _page(ctx, values=values, errors_=problems, status=422)
    try:
        await ctx.state.runner.write(canned.create, ctx.workspace_id, values["shortcut"], values["text"])
    except errors.Conflict:
        return await _page(ctx, values=values, errors_={"shortcut": f"/{values['shortcut']} is taken."}, status=409)
    except errors.Unprocessable as exc:
        return await _page(ctx, values=values, errors_={"text": exc.message}, status=422)
    return redirect(ctx, PATH, f"Added /{values['shortcut']}.")


@console_page()
async def delete(ctx: Ctx) -> Response:
    await ctx.state.runner.write(canned.delete, ctx.workspace_id, ctx.request.path_params["canned_id"])
    return redirect(ctx, PATH, "Canned response deleted.")


@console_page()
async def list_json(ctx: Ctx) -> Response:
    """What the Reply box's ``/`` listbox offers (console.js fetches it once per page)."""
    responses = await ctx.state.runner.read(canned.list_all, ctx.workspace_id)
    return JSONResponse([{"shortcut": c.shortcut, "text": c.text} for c in responses],
                        headers={"cache-control": "no-store"})  # fmt: skip
