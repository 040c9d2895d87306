"""Settings > API Tokens: generate (shown once), list, revoke — through ``app.tokens``."""

from __future__ import annotations

from starlette.responses import Response

from app import errors, tokens
from app.console.auth import Ctx, form_error
from app.console.pages import console_page
from app.console.render import redirect, render

PATH = "/console/settings/tokens"


async def _page(
    ctx: Ctx, *, created: tuple[str, str] | None = None, errors_: dict[str, str] | None = None,
    name: str = "", scopes: list[str] | None = None, status: int = 200,
) -> Response:
    rows = await ctx.state.runner.read(tokens.list_tokens, ctx.workspace_id)
    return render(
        ctx.request, "tokens.html", ctx=ctx, status=status, tokens=rows, all_scopes=tokens.SCOPES,
        created=created, errors=errors_ or {}, name=name, scopes=scopes or ["read", "write"],
    )


@console_page(admin=True)
async def tokens_page(ctx: Ctx) -> Response:
    return await _page(ctx)


@console_page(admin=True)
async def generate(ctx: Ctx) -> Response:
    name = ctx.field("name").strip()
    scopes = ctx.fields("scopes")
    problems: dict[str, str] = {}
    if not name:
        problems["name"] = "Give the token a name, such as the bot or service that will use it."
    elif len(name) > 120:
        problems["name"] = "At most 120 characters."
    if not scopes:
        problems["scopes"] = "Choose at least one scope."
    if problems:
        return await _page(ctx, errors_=problems, name=name, scopes=scopes, status=422)
    try:
        tokens.check_scopes(scopes)  # before the write is queued
        token, secret = await ctx.write_audited(
            "api_token.created", "api_token", tokens.create_token, ctx.workspace_id, name, scopes,
            target_id=lambda created: created[0].id,
        )  # fmt: skip
    except errors.Unprocessable as exc:
        return await _page(ctx, errors_=form_error(exc), name=name, scopes=scopes, status=422)
    # Rendered straight into this response (never a redirect or cookie): the secret is
    # shown exactly once and then only its hash exists.
    return await _page(ctx, created=(token.name, secret))


@console_page(admin=True)
async def revoke(ctx: Ctx) -> Response:
    token_id = ctx.request.path_params["token_id"]
    token = await ctx.write_audited(
        "api_token.revoked", "api_token", tokens.revoke_token, ctx.workspace_id, token_id, target_id=token_id
    )
    return redirect(ctx, PATH, f"Token “{token.name}” revoked. Requests using it are refused from now on.")
