"""Settings > Webhooks: endpoints, secrets, test events, and the delivery log with Retry.

Every write is an action of ``app.webhooks`` (the same ones ``/api/v1/webhook-endpoints``
calls). The list page shows each endpoint with its latest deliveries; the endpoint page
edits it and shows its full log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, col, select
from starlette.responses import Response

from app import errors, events
from app.console.auth import Ctx, form_error
from app.console.pages import console_page
from app.console.render import redirect, render
from app.store.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks import endpoints as webhooks
from app.webhooks.schemas import WebhookEndpointIn, WebhookEndpointPatch

PATH = "/console/settings/webhooks"
RECENT = 5
LOG = 50


@dataclass
class DeliveryView:
    delivery: WebhookDelivery
    attempts: list[WebhookAttempt] = field(default_factory=list)

    @property
    def last(self) -> WebhookAttempt | None:
        return self.attempts[-1] if self.attempts else None


@dataclass
class EndpointView:
    endpoint: WebhookEndpoint
    deliveries: list[DeliveryView]
    secret: str | None = None  # only when the admin asked to reveal it


def load_endpoints(s: Session, workspace_id: str, per_endpoint: int, only: str | None = None) -> list[EndpointView]:
    if only is not None:
        endpoints = [webhooks.get_endpoint(s, workspace_id, only)]
    else:
        endpoints, _ = webhooks.list_endpoints(s, workspace_id)
    views = []
    for e in endpoints:
        rows, _ = webhooks.list_deliveries(s, workspace_id, e.id, limit=per_endpoint)
        views.append(EndpointView(e, [DeliveryView(d) for d in rows]))
    by_id = {d.delivery.id: d for v in views for d in v.deliveries}
    if by_id:
        # Every attempt of the deliveries shown, in one query rather than one per delivery.
        attempts = s.exec(
            select(WebhookAttempt)
            .where(col(WebhookAttempt.delivery_id).in_(list(by_id)))
            .order_by(col(WebhookAttempt.started_at), col(WebhookAttempt.id))
        )
        for a in attempts:
            by_id[a.delivery_id].attempts.append(a)
    return views


def _event_choices() -> list[str]:
    """What an endpoint may subscribe to here: not ``webhook.test``, which only Send test sends."""
    return list(events.SUBSCRIBABLE_EVENT_TYPES)


def _form_values(ctx: Ctx) -> dict[str, Any]:
    chosen = ctx.fields("events")
    return {"url": ctx.field("url").strip(), "description": ctx.field("description").strip(),
            "events": ["*"] if "*" in chosen else chosen}



async def _list_page(ctx: Ctx, *, reveal: str | None = None, values: dict[str, Any] | None = None,
                     errors_: dict[str, str] | None = None, status: int = 200) -> Response:
    views = await ctx.state.runner.read(load_endpoints, ctx.workspace_id, RECENT)
    for v in views:
        if v.endpoint.id == reveal:
            v.secret = v.endpoint.secret
    return render(
        ctx.request, "webhooks.html", ctx=ctx, status=status, endpoints=views, event_choices=_event_choices(),
        values=values or {"url": "", "description": "", "events": ["*"]}, errors=errors_ or {},
        show_form=bool(errors_) or not views,
    )


async def _endpoint_page(ctx: Ctx, endpoint_id: str, *, reveal: bool = False, values: dict[str, Any] | None = None,
                         errors_: dict[str, str] | None = None, status: int = 200) -> Response:
    (view,) = await ctx.state.runner.read(load_endpoints, ctx.workspace_id, LOG, endpoint_id)
    if reveal:
        view.secret = view.endpoint.secret
    e = view.endpoint
    return render(
        ctx.request, "webhook_endpoint.html", ctx=ctx, status=status, v=view, event_choices=_event_choices(),
        values=values or {"url": e.url, "description": e.description, "events": e.events}, errors=errors_ or {},
    )


def _back(ctx: Ctx, endpoint_id: str) -> str:
    """Return to the page the form was on: the list, or the endpoint's own page."""
    return f"{PATH}/{endpoint_id}" if ctx.field("back") == "endpoint" else PATH


@console_page(admin=True)
async def webhooks_page(ctx: Ctx) -> Response:
    return await _list_page(ctx)


@console_page(admin=True)
async def add(ctx: Ctx) -> Response:
    values = _form_values(ctx)
    try:
        body = WebhookEndpointIn(url=values["url"], description=values["description"], events=values["events"])
        endpoint = await ctx.state.runner.write(webhooks.create_endpoint, ctx.workspace_id, body)
    except ValidationError as exc:
        return await _list_page(ctx, values=values, errors_=form_error(errors.from_validation_error(exc)), status=422)
    except errors.ApiError as exc:
        return await _list_page(ctx, values=values, errors_={"_form": exc.message}, status=exc.status)
    return redirect(ctx, PATH, f"Endpoint added: {endpoint.url}. Reveal its secret to verify signatures.")


@console_page(admin=True)
async def endpoint_page(ctx: Ctx) -> Response:
    return await _endpoint_page(ctx, ctx.request.path_params["endpoint_id"])


@console_page(admin=True)
async def save(ctx: Ctx) -> Response:
    endpoint_id = ctx.request.path_params["endpoint_id"]
    values = _form_values(ctx)
    try:
        patch = WebhookEndpointPatch(url=values["url"], description=values["description"], events=values["events"])
        await ctx.state.runner.write(webhooks.update_endpoint, ctx.workspace_id, endpoint_id, patch)
    except ValidationError as exc:
        return await _endpoint_page(ctx, endpoint_id, values=values,
                                    errors_=form_error(errors.from_validation_error(exc)), status=422)
    return redirect(ctx, f"{PATH}/{endpoint_id}", "Endpoint saved.")


@console_page(admin=True)
async def set_enabled(ctx: Ctx) -> Response:
    endpoint_id = ctx.request.path_params["endpoint_id"]
    enabled = ctx.field("enabled") == "true"
    patch = WebhookEndpointPatch(enabled=enabled)
    endpoint = await ctx.state.runner.write(webhooks.update_endpoint, ctx.workspace_id, endpoint_id, patch)
    notice = "Endpoint enabled." if enabled else "Endpoint disabled: nothing is sent to it until you enable it."
    return redirect(ctx, _back(ctx, endpoint.id), notice)


@console_page(admin=True)
async def reveal_secret(ctx: Ctx) -> Response:
    endpoint_id = ctx.request.path_params["endpoint_id"]
    # A POST, so the secret never sits in a URL, history or cache (pages are no-store too).
    if ctx.field("back") == "endpoint":
        return await _endpoint_page(ctx, endpoint_id, reveal=True)
    await ctx.state.runner.read(webhooks.get_endpoint, ctx.workspace_id, endpoint_id)
    return await _list_page(ctx, reveal=endpoint_id)


@console_page(admin=True)
async def rotate_secret(ctx: Ctx) -> Response:
    endpoint_id = ctx.request.path_params["endpoint_id"]
    overlap = ctx.state.settings.webhook_rotation_overlap_seconds
    if ctx.field("now") == "true":
        overlap = 0  # after a leak: the old secret stops signing at once
    await ctx.state.runner.write(webhooks.rotate_secret, ctx.workspace_id, endpoint_id, overlap_seconds=overlap)
    hours = round(overlap / 3600)
    notice = ("Secret rotated. The old one no longer signs." if overlap == 0 else
              f"Secret rotated. For {hours} hours deliveries carry signatures with both secrets.")
    # Redirect rather than show the new secret here, so a reload cannot rotate it again.
    return redirect(ctx, _back(ctx, endpoint_id), notice + " Reveal it to update your receiver.")


@console_page(admin=True)
async def send_test(ctx: Ctx) -> Response:
    endpoint_id = ctx.request.path_params["endpoint_id"]
    try:
        await ctx.state.runner.write(webhooks.send_test_event, ctx.workspace_id, endpoint_id)
    except errors.Conflict as exc:
        return redirect(ctx, _back(ctx, endpoint_id), exc.message)
    return redirect(ctx, _back(ctx, endpoint_id), "Test event sent. Its delivery shows in the log below.")


@console_page(admin=True)
async def delete(ctx: Ctx) -> Response:
    endpoint_id = ctx.request.path_params["endpoint_id"]
    await ctx.state.runner.write(webhooks.delete_endpoint, ctx.workspace_id, endpoint_id)
    return redirect(ctx, PATH, "Endpoint deleted with its delivery log.")


@console_page(admin=True)
async def retry(ctx: Ctx) -> Response:
    delivery_id = ctx.request.path_params["delivery_id"]
    try:
        delivery = await ctx.state.runner.write(webhooks.retry_delivery, ctx.workspace_id, delivery_id)
    except errors.Conflict as exc:
        delivery = await ctx.state.runner.read(webhooks.get_delivery, ctx.workspace_id, delivery_id)
        return redirect(ctx, _back(ctx, delivery.endpoint_id), exc.message)
    return redirect(ctx, _back(ctx, delivery.endpoint_id), "Delivery queued again; it goes out now.")
