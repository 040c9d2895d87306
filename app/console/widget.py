"""Settings > Widget: origins, colour, greeting, identity verification, embed snippet."""

from __future__ import annotations

from pydantic import ValidationError
from starlette.responses import Response

from app import errors, workspaces
from app.api.schemas import WidgetSettingsPatch
from app.console.auth import Ctx, form_error
from app.console.pages import console_page
from app.console.render import redirect, render
from app.realtime.identity import normalize_origin

PATH = "/console/settings/widget"

# The widget's languages, named in their own language (the console's Language choice).
LANGUAGES = [
    ("", "The visitor's browser language"),
    ("en", "English"),
    ("de", "Deutsch"),
    ("fr", "Français"),
    ("es", "Español"),
    ("pt", "Português"),
    ("ar", "العربية (Arabic, right to left)"),
]


def embed_snippet(ctx: Ctx) -> str:
    base = ctx.state.settings.public_url.rstrip("/")
    return f'<script src="{base}/widget.js" data-workspace="{ctx.workspace.widget_key}" async></script>'


def _page(
    ctx: Ctx,
    *,
    values: dict[str, object] | None = None,
    errors_: dict[str, str] | None = None,
    reveal: bool = False,
    status: int = 200,
) -> Response:
    w = ctx.workspace
    current: dict[str, object] = {
        "allowed_origins": "\n".join(w.allowed_origins),
        "theme_color": w.theme_color,
        "greeting": w.greeting,
        "identity_verification": w.identity_verification,
        "locale": w.locale or "",
    }
    return render(
        ctx.request,
        "widget.html",
        ctx=ctx,
        status=status,
        values={**current, **(values or {})},
        languages=LANGUAGES,
        errors=errors_ or {},
        snippet=embed_snippet(ctx),
        identity_secret=w.identity_secret if reveal else None,
    )


@console_page(admin=True)
async def widget_page(ctx: Ctx) -> Response:
    return _page(ctx)


@console_page(admin=True)
async def save(ctx: Ctx) -> Response:
    origins = [line.strip().rstrip("/") for line in ctx.field("allowed_origins").splitlines() if line.strip()]
    values: dict[str, object] = {
        "allowed_origins": ctx.field("allowed_origins"),
        "theme_color": ctx.field("theme_color").strip(),
        "greeting": ctx.field("greeting").strip(),
        "identity_verification": ctx.field("identity_verification") == "on",
        "locale": ctx.field("locale").strip(),
    }
    for number, line in enumerate(ctx.field("allowed_origins").splitlines(), 1):
        try:
            if line.strip():
                normalize_origin(line.strip())
        except ValueError as exc:
            problem = f"Line {number}, “{line.strip()[:100]}”, is not an origin: {exc}."
            return _page(ctx, values=values, errors_={"allowed_origins": problem}, status=422)
    try:
        patch = WidgetSettingsPatch.model_validate(
            {
                "allowed_origins": origins,
                "theme_color": str(values["theme_color"]),
                "greeting": str(values["greeting"]),
                "identity_verification": bool(values["identity_verification"]),
                "locale": str(values["locale"]) or None,
            }
        )
    except ValidationError as exc:
        return _page(ctx, values=values, errors_=form_error(errors.from_validation_error(exc)), status=422)
    # The same action the REST API's PATCH /widget-settings uses: it also tells live widgets.
    await ctx.write_audited(
        "widget_settings.updated", "workspace", workspaces.update_widget_settings, ctx.workspace_id, patch,
        target_id=ctx.workspace_id,
    )
    return redirect(ctx, PATH, "Widget settings saved. Open widgets update right away.")


@console_page(admin=True)
async def reveal_secret(ctx: Ctx) -> Response:
    await ctx.write_audited(
        "widget.identity_secret_revealed", "workspace", lambda tx, ws: workspaces.get_workspace(tx.session, ws),
        ctx.workspace_id,
        target_id=ctx.workspace_id,
    )  # recorded before the secret is shown
    return _page(ctx, reveal=True)


@console_page(admin=True)
async def rotate_secret(ctx: Ctx) -> Response:
    await ctx.write_audited(
        "widget.identity_secret_rotated", "workspace", workspaces.rotate_identity_secret, ctx.workspace_id,
        target_id=ctx.workspace_id,
    )
    return redirect(
        ctx, PATH, "New identity secret generated. Sign user JWTs with it from now on; the old one no longer works."
    )
