"""Settings > Webhooks: endpoints, secrets, test events, and the delivery log with Retry.

Every write is an action of ``app.webhooks`` (the same ones ``/api/v1/webhook-endpoints``
calls). The list page shows each endpoint with its latest deliveries; the endpoint page
edits it and shows its full log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from sqlmodel import Session, col, func, select
from starlette.responses import Response

from app import errors, events
from app.console.auth import Ctx, form_error
from app.console.pages import console_page
from app.console.render import redirect, render, set_once, take_once
from app.store.tables import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks import endpoints as webhooks
from app.webhooks.schemas import WebhookEndpointIn, WebhookEndpointPatch

PATH = "/console/settings/webhooks"
SECRET_ONCE_COOKIE = "bc_console_new_secret"
RECENT = 5
LOG = 50


@dataclass
class DeliveryView:
    delivery: WebhookDelivery
    attempts: list[WebhookAttempt] = field(default_factory=list)
    payload: dict[str, Any] | None = None  # the body sent (on the endpoint's own page)

    @property
    def payload_text(self) -> str:
        return json.dumps(self.payload, indent=2, ensure_ascii=False) if self.payload is not None else ""

    @property
    def next_retry(self) -> datetime | None:
        """When the next attempt goes out, for a delivery that is waiting to be retried."""
        d = self.delivery
        return d.next_attempt_at if d.status == "pending" and d.attempts > 0 else None

    @property
    def last(self) -> WebhookAttempt | None:
        return self.attempts[-1] if self.attempts else None


@dataclass
class EndpointView:
    endpoint: WebhookEndpoint
    deliveries: list[DeliveryView]
    secret: str | None = None  # only when the admin asked to reveal it, or just after creation
    older: str | None = None  # the cursor of the next page of the log
    waiting: int = 0  # deliveries not yet succeeded or given up
    last_success: datetime | None = None


@dataclass(frozen=True)
class LogQuery:
    """The endpoint page's log filters and page (query parameters ``failed``, ``event``, ``before``)."""

    failed: bool = False
    event: str | None = None
    cursor: str | None = None

    def url(self, endpoint_id: str, cursor: str | None = None) -> str:
        params = {"failed": "1" if self.failed else None, "event": self.event, "before": cursor}
        query = urlencode({k: v for k, v in params.items() if v})
        return f"{PATH}/{endpoint_id}" + (f"?{query}" if query else "")


def load_endpoints(
    s: Session, workspace_id: str, per_endpoint: int, only: str | None = None, log: LogQuery | None = None
) -> list[EndpointView]:
    if only is not None:
        endpoints = [webhooks.get_endpoint(s, workspace_id, only)]
    else:
        endpoints, _ = webhooks.list_endpoints(s, workspace_id)
    log = log or LogQuery()
    views = []
    for e in endpoints:
        rows, older = webhooks.list_deliveries(
            s,
            workspace_id,
            e.id,
            limit=per_endpoint,
            cursor=log.cursor,
            status="failed" if log.failed else None,
            event_type=log.event,
        )
        views.append(EndpointView(e, [DeliveryView(d) for d in rows], older=older))
    by_id = {d.delivery.id: d for v in views for d in v.deliveries}
    if only is not None and views:
        _health(s, views[0])
        payloads = s.exec(
            select(Event.id, Event.payload).where(col(Event.id).in_([d.delivery.event_id for d in by_id.values()]))
        )
        sent: dict[str, dict[str, Any]] = {id_: dict(payload) for id_, payload in payloads.all()}
        for d in by_id.values():
            d.payload = sent.get(d.delivery.event_id)
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


def _health(s: Session, view: EndpointView) -> None:
    """What the health line says: deliveries still waiting, and the last success."""
    e = view.endpoint
    view.waiting = s.exec(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == e.id, col(WebhookDelivery.status).in_(["pending", "delivering"]))
    ).one()
    view.last_success = s.exec(
        select(func.max(WebhookAttempt.started_at)).where(
            WebhookAttempt.endpoint_id == e.id,
            col(WebhookAttempt.status_code) >= 200,
            col(WebhookAttempt.status_code) < 300,
        )
    ).one()


def _log_query(ctx: Ctx) -> LogQuery:
    q = ctx.request.query_params
    event = q.get("event") or None
    return LogQuery(
        failed=q.get("failed") == "1",
        event=event if event in events.WEBHOOK_EVENT_TYPES else None,
        cursor=q.get("before") or None,
    )


def _event_choices() -> list[str]:
    """What an endpoint may subscribe to here: not ``webhook.test``, which only Send test sends."""
    return list(events.SUBSCRIBABLE_EVENT_TYPES)


EVENTS_BOTH = (
    "You chose “All events” and also ticked single events. Choose one: all events, or only the events you tick."
)
EVENTS_NONE = "Tick at least one event, or choose “All events”."


def _form_values(ctx: Ctx) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's values, and the errors of its events choice.

    "All events" and a list of single events are one clear choice (a radio): a submit that
    picks "All events" and ticks single events too is refused rather than silently saved as
    all events (console.js unticks them when "All events" is chosen)."""
    chosen = [e for e in ctx.fields("events") if e != "*"]
    mode = ctx.field("events_mode") or ("all" if "*" in ctx.fields("events") else "some")
    problems: dict[str, str] = {}
    if mode == "all":
        events_ = ["*"]
        if chosen:
            problems["events"] = EVENTS_BOTH
    else:
        events_ = chosen
        if not chosen:
            problems["events"] = EVENTS_NONE
    values = {
        "url": ctx.field("url").strip(),
        "description": ctx.field("description").strip(),
        "events": events_,
        "events_mode": mode,
        "chosen": chosen,
    }
    return values, problems


def _checked(values: dict[str, Any], problems: dict[str, str], model: type[Any]) -> tuple[Any, dict[str, str]]:
    """The endpoint body, or every field's error at once (the events choice's included)."""
    try:
        body = model(url=values["url"], description=values["description"], events=values["events"] or ["*"])
    except ValidationError as exc:
        return None, {**form_error(errors.from_validation_error(exc)), **problems}
    return (None if problems else body), problems


async def _list_page(
    ctx: Ctx,
    *,
    reveal: str | None = None,
    values: dict[str, Any] | None = None,
    errors_: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    views = await ctx.state.runner.read(load_endpoints, ctx.workspace_id, RECENT)
    for v in views:
        if v.endpoint.id == reveal:
            v.secret = v.endpoint.secret
    return render(
        ctx.request,
        "webhooks.html",
        ctx=ctx,
        status=status,
        endpoints=views,
        event_choices=_event_choices(),
        values=values or {"url": "", "description": "", "events": ["*"], "events_mode": "all", "chosen": []},
        errors=errors_ or {},
        show_form=bool(errors_) or not views,
    )


async def _endpoint_page(
    ctx: Ctx,
    endpoint_id: str,
    *,
    reveal: bool = False,
    values: dict[str, Any] | None = None,
    errors_: dict[str, str] | None = None,
    status: int = 200,
    log: LogQuery | None = None,
) -> Response:
    log = log or LogQuery()
    try:
        (view,) = await ctx.state.runner.read(load_endpoints, ctx.workspace_id, LOG, endpoint_id, log)
    except errors.Unprocessable:  # a cursor that is not ours: the log's first page
        log = LogQuery(log.failed, log.event)
        (view,) = await ctx.state.runner.read(load_endpoints, ctx.workspace_id, LOG, endpoint_id, log)
    if reveal:
        view.secret = view.endpoint.secret
    e = view.endpoint
    return render(
        ctx.request,
        "webhook_endpoint.html",
        ctx=ctx,
        status=status,
        v=view,
        event_choices=_event_choices(),
        values=values or _stored_values(e),
        errors=errors_ or {},
        log=log,
        log_events=list(events.WEBHOOK_EVENT_TYPES),
    )


def _stored_values(e: WebhookEndpoint) -> dict[str, Any]:
    everything = "*" in e.events
    return {
        "url": e.url,
        "description": e.description,
        "events": e.events,
        "events_mode": "all" if everything else "some",
        "chosen": [] if everything else e.events,
    }


def _back(ctx: Ctx, endpoint_id: str) -> str:
    """Return to the page the form was on: the list, or the endpoint's own page."""
    return f"{PATH}/{endpoint_id}" if ctx.field("back") == "endpoint" else PATH


@console_page(admin=True)
async def webhooks_page(ctx: Ctx) -> Response:
    fresh = take_once(ctx, SECRET_ONCE_COOKIE)
    response = await _list_page(ctx, reveal=fresh)
    if fresh is not None:
        response.delete_cookie(SECRET_ONCE_COOKIE, path=PATH)
    return response


@console_page(admin=True)
async def add(ctx: Ctx) -> Response:
    values, problems = _form_values(ctx)
    body, problems = _checked(values, problems, WebhookEndpointIn)
    if body is None:
        return await _list_page(ctx, values=values, errors_=problems, status=422)
    try:
        webhooks.check_endpoint_url(body.url, ctx.state.settings.webhook_allow_private_networks,
                                    ctx.state.settings.public_url)
        endpoint = await ctx.write_audited(
            "webhook_endpoint.created", "webhook_endpoint", webhooks.create_endpoint, ctx.workspace_id, body,
            target_id=lambda e: e.id,
        )  # fmt: skip
    except errors.ApiError as exc:
        return await _list_page(ctx, values=values, errors_=form_error(exc), status=exc.status)
    # The new secret is shown once, on the list the form was on: the cookie names the endpoint
    # only (signed, a minute long); the secret itself never leaves the server in a cookie or URL.
    response = redirect(ctx, PATH, f"Endpoint added: {endpoint.url}. Copy its signing secret into your receiver now.")
    set_once(ctx, response, SECRET_ONCE_COOKIE, endpoint.id, path=PATH)
    return response


@console_page(admin=True)
async def endpoint_page(ctx: Ctx) -> Response:
    return await _endpoint_page(ctx, ctx.request.path_params["endpoint_id"], log=_log_query(ctx))


@console_page(admin=True)
async def save(ctx: Ctx) -> Response:
    endpoint_id = ctx.request.path_params["endpoint_id"]
    values, problems = _form_values(ctx)
    patch, problems = _checked(values, problems, WebhookEndpointPatch)
    if patch is None:
        return await _endpoint_page(ctx, endpoint_id, values=values, errors_=problems, status=422)
    try:
        webhooks.check_endpoint_url(patch.url, ctx.state.settings.webhook_allow_private_networks,
                                    ctx.state.settings.public_url)
        await ctx.write_audited(
            "webhook_endpoint.updated", "webhook_endpoint", webhooks.update_endpoint, ctx.workspace_id, endpoint_id,
            patch, target_id=endpoint_id,
        )  # fmt: skip
    except errors.ApiError as exc:
        if exc.status == 404:
            raise
        return await _endpoint_page(ctx, endpoint_id, values=values, errors_=form_error(exc), status=exc.status)
    return redirect(ctx, f"{PATH}/{endpoint_id}", "Endpoint saved.")


@console_page(admin=True)
async def set_enabled(ctx: Ctx) -> Response:
    endpoint_id = ctx.request.path_params["endpoint_id"]
    enabled = ctx.field("enabled") == "true"
    patch = WebhookEndpointPatch(enabled=enabled)
    endpoint = await ctx.write_audited(
        "webhook_endpoint.updated", "webhook_endpoint", webhooks.update_endpoint, ctx.workspace_id, endpoint_id, patch,
        target_id=endpoint_id,
    )  # fmt: skip
    notice = "Endpoint enabled." if enabled else "Endpoint disabled: nothing is sent to it until you enable it."
    return redirect(ctx, _back(ctx, endpoint.id), notice)


@console_page(admin=True)
async def reveal_secret(ctx: Ctx) -> Response:
    endpoint_id = ctx.request.path_params["endpoint_id"]
    # A POST, so the secret never sits in a URL, history or cache (pages are no-store too).
    # Recorded (and the endpoint found, or 404) before the secret is shown.
    await ctx.write_audited(
        "webhook_endpoint.secret_revealed", "webhook_endpoint",
        lambda tx, ws, eid: webhooks.get_endpoint(tx.session, ws, eid), ctx.workspace_id, endpoint_id,
        target_id=endpoint_id,
    )  # fmt: skip
    if ctx.field("back") == "endpoint":
        return await _endpoint_page(ctx, endpoint_id, reveal=True)
    return await _list_page(ctx, reveal=endpoint_id)


@console_page(admin=True)
async def rotate_secret(ctx: Ctx) -> Response:
    endpoint_id = ctx.request.path_params["endpoint_id"]
    overlap = ctx.state.settings.webhook_rotation_overlap_seconds
    if ctx.field("now") == "true":
        overlap = 0  # after a leak: the old secret stops signing at once
    await ctx.write_audited(
        "webhook_endpoint.secret_rotated", "webhook_endpoint", webhooks.rotate_secret, ctx.workspace_id, endpoint_id,
        overlap_seconds=overlap, target_id=endpoint_id,
    )  # fmt: skip
    hours = round(overlap / 3600)
    notice = (
        "Secret rotated. The old one no longer signs."
        if overlap == 0
        else f"Secret rotated. For {hours} hours deliveries carry signatures with both secrets."
    )
    # Redirect rather than show the new secret here, so a reload cannot rotate it again.
    return redirect(ctx, _back(ctx, endpoint_id), notice + " Reveal it to update your receiver.")


@console_page(admin=True)
async def send_test(ctx: Ctx) -> Response:
    endpoint_id = ctx.request.path_params["endpoint_id"]
    try:
        await ctx.write_audited(
            "webhook_endpoint.tested", "webhook_endpoint", webhooks.send_test_event, ctx.workspace_id, endpoint_id,
            target_id=endpoint_id,
        )  # fmt: skip
    except errors.Conflict as exc:
        return redirect(ctx, _back(ctx, endpoint_id), exc.message)
    return redirect(ctx, _back(ctx, endpoint_id), "Test event sent. Its delivery shows in the log below.")


@console_page(admin=True)
async def delete(ctx: Ctx) -> Response:
    endpoint_id = ctx.request.path_params["endpoint_id"]
    await ctx.write_audited(
        "webhook_endpoint.deleted", "webhook_endpoint", webhooks.delete_endpoint, ctx.workspace_id, endpoint_id,
        target_id=endpoint_id,
    )  # fmt: skip
    return redirect(ctx, PATH, "Endpoint deleted with its delivery log.")


@console_page(admin=True)
async def retry(ctx: Ctx) -> Response:
    delivery_id = ctx.request.path_params["delivery_id"]
    try:
        delivery = await ctx.write_audited(
            "webhook_delivery.retried", "webhook_delivery", webhooks.retry_delivery, ctx.workspace_id, delivery_id,
            target_id=delivery_id,
        )  # fmt: skip
    except errors.Conflict as exc:
        delivery = await ctx.state.runner.read(webhooks.get_delivery, ctx.workspace_id, delivery_id)
        return redirect(ctx, _back(ctx, delivery.endpoint_id), exc.message)
    return redirect(ctx, _back(ctx, delivery.endpoint_id), "Delivery queued again; it goes out now.")
