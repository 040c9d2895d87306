"""Settings > Data retention and Settings > Audit log (SPEC §13): the same actions as
``PATCH /api/v1/workspace`` and ``GET /api/v1/audit-log``."""

from __future__ import annotations

from pydantic import ValidationError
from starlette.responses import Response

from app import errors, workspaces
from app.api.schemas import WorkspacePatch
from app.console.auth import Ctx, form_error
from app.console.pages import console_page
from app.console.render import redirect, render
from app.data import audit

RETENTION = "/console/settings/retention"
PAGE_SIZE = 50


def _retention_page(ctx: Ctx, *, value: str | None = None, errors_: dict[str, str] | None = None,
                    status: int = 200) -> Response:  # fmt: skip
    days = ctx.workspace.retention_days
    return render(
        ctx.request, "retention.html", ctx=ctx, status=status, errors=errors_ or {},
        value=value if value is not None else ("" if days is None else str(days)), days=days,
    )  # fmt: skip


@console_page(admin=True)
async def retention_page(ctx: Ctx) -> Response:
    return _retention_page(ctx)


@console_page(admin=True)
async def save_retention(ctx: Ctx) -> Response:
    raw = ctx.field("retention_days").strip()
    keep_all = ctx.field("keep") == "all" or not raw
    try:
        patch = WorkspacePatch(retention_days=None if keep_all else int(raw))
    except (ValueError, ValidationError):
        message = "Enter a whole number of days from 1 to 36500, or choose to keep everything."
        return _retention_page(ctx, value=raw, errors_={"retention_days": message}, status=422)
    try:
        _, changed = await ctx.write_audited(
            "workspace.updated", "workspace", workspaces.update_workspace, ctx.workspace_id, patch,
            target_id=ctx.workspace_id,
        )  # fmt: skip
    except errors.Unprocessable as exc:
        return _retention_page(ctx, value=raw, errors_=form_error(exc), status=422)
    if "retention_days" in changed:
        ctx.state.data_job.wake()
    if patch.retention_days is None:
        notice = "Retention off: conversations are kept until you erase them."
    else:
        notice = f"Resolved conversations are erased {patch.retention_days} days after their last change."
    return redirect(ctx, RETENTION, notice)


@console_page(admin=True)
async def audit_log_page(ctx: Ctx) -> Response:
    cursor = ctx.request.query_params.get("cursor") or None
    found, next_cursor = await ctx.state.runner.read(audit.entries, ctx.workspace_id, PAGE_SIZE, cursor)
    return render(ctx.request, "audit_log.html", ctx=ctx, entries=found, next_cursor=next_cursor, paged=bool(cursor))
