"""Settings > Widget: origins, colour, greeting, language, business hours and away message,
ratings, identity verification, embed snippet."""

from __future__ import annotations

from typing import Any
from zoneinfo import available_timezones

from pydantic import ValidationError
from starlette.responses import Response

from app import errors, workspaces
from app.api.schemas import WEEKDAYS, WidgetSettingsPatch
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


DAY_NAMES = dict(
    zip(WEEKDAYS, ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"), strict=True)
)
SPANS_PER_DAY = 2  # the form's; the API takes up to six
TIMEZONES = sorted(available_timezones())


def hours_form(hours: dict[str, Any] | None) -> dict[str, Any]:
    """The schedule editor's values: per day, two spans of ``[start, end]`` ("" when unused)."""
    weekly = (hours or {}).get("weekly", {})
    days = []
    for code in WEEKDAYS:
        spans = [list(span) for span in weekly.get(code, [])][:SPANS_PER_DAY]
        spans += [["", ""]] * (SPANS_PER_DAY - len(spans))
        days.append({"code": code, "name": DAY_NAMES[code], "spans": spans})
    return {"enabled": hours is not None, "timezone": (hours or {}).get("timezone", "UTC"), "days": days}


def hours_from_form(ctx: Ctx) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The posted schedule as the API's ``business_hours`` (None when off), and the form's values.
    A span ending at 00:00 ends at midnight ("24:00"); a span with one time missing is kept so
    the validation names it."""
    enabled = ctx.field("hours_enabled") == "on"
    timezone = ctx.field("hours_timezone").strip() or "UTC"
    weekly: dict[str, list[list[str]]] = {}
    days = []
    for code in WEEKDAYS:
        spans = []
        for n in range(1, SPANS_PER_DAY + 1):
            start = ctx.field(f"hours_{code}_{n}_start").strip()
            end = ctx.field(f"hours_{code}_{n}_end").strip()
            spans.append([start, end])
            if start or end:
                weekly.setdefault(code, []).append([start, "24:00" if end == "00:00" else end])
        days.append({"code": code, "name": DAY_NAMES[code], "spans": spans})
    form = {"enabled": enabled, "timezone": timezone, "days": days}
    return ({"timezone": timezone, "weekly": weekly} if enabled else None), form


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
        "away_message": w.away_message,
        "ratings_enabled": w.ratings_enabled,
        "hours": hours_form(w.business_hours),
    }
    return render(
        ctx.request,
        "widget.html",
        ctx=ctx,
        status=status,
        values={**current, **(values or {})},
        languages=LANGUAGES,
        timezones=TIMEZONES,
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
        "away_message": ctx.field("away_message").strip(),
        "ratings_enabled": ctx.field("ratings_enabled") == "on",
    }
    business_hours, values["hours"] = hours_from_form(ctx)
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
                "away_message": values["away_message"],
                "ratings_enabled": values["ratings_enabled"],
                "business_hours": business_hours,
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
