"""Webhook endpoints: the management actions the API routes and the console share (one write
path), the JSON shapes they answer with, and the delivery log they read.

An endpoint's secrets and keys are made and used in ``signing.py``; delivery is
``dispatcher.py`` over the row state machine in ``deliveries.py``, sent by ``sender.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, delete, select

from app import errors, events
from app.api.pagination import decode_cursor, encode_cursor
from app.ids import isoformat, new_id, utcnow
from app.store.engine import get_in_workspace
from app.store.runner import Tx
from app.store.tables import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks.netguard import literal_refusal
from app.webhooks.schemas import WebhookEndpointIn, WebhookEndpointPatch
from app.webhooks.signing import new_secret, new_signing_key, public_key_or_none

MAX_ENDPOINTS_PER_WORKSPACE = 50
UNFINISHED = ("pending", "delivering")


# --- JSON shapes ------------------------------------------------------------------------


def endpoint_json(e: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": e.id,
        "url": e.url,
        "events": e.events,
        "description": e.description,
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "asymmetric_signing": e.ed25519_private_key is not None,
        "public_key": public_key_or_none(e.ed25519_private_key),
        "previous_secret_expires_at": isoformat(e.previous_secret_expires_at)
        if e.previous_secret
        else None,
        "failing_since": isoformat(e.failing_since),
        "created_at": isoformat(e.created_at),
        "updated_at": isoformat(e.updated_at),
    }
    if with_secret:
        out["secret"] = e.secret
    return out


def delivery_json(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "endpoint_id": d.endpoint_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": isoformat(d.next_attempt_at) if d.status in UNFINISHED else None,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": isoformat(d.created_at),
        "updated_at": isoformat(d.updated_at),
    }


def attempt_json(a: WebhookAttempt) -> dict[str, Any]:
    return {
        "id": a.id,
        "started_at": isoformat(a.started_at),
        "duration_ms": a.duration_ms,
        "status_code": a.status_code,
        "response_excerpt": a.response_excerpt,
        "error": a.error,
    }


# --- endpoint actions -------------------------------------------------------------------


def get_endpoint(s: Session, workspace_id: str, endpoint_id: str) -> WebhookEndpoint:
    return get_in_workspace(s, WebhookEndpoint, endpoint_id, workspace_id, "webhook endpoint")


def list_endpoints(
    s: Session, workspace_id: str, *, limit: int = 200, cursor: str | None = None
) -> tuple[list[WebhookEndpoint], str | None]:
    """Oldest first; ``(rows, next_cursor)``."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.workspace_id == workspace_id)
    if cursor:
        (after_id,) = decode_cursor(cursor, 1)
        query = query.where(col(WebhookEndpoint.id) > str(after_id))
    rows = list(s.exec(query.order_by(col(WebhookEndpoint.id)).limit(limit + 1)))
    more = len(rows) > limit
    return rows[:limit], encode_cursor(rows[limit - 1].id) if more else None


LISTEN_HINT = (
    "Backchannel delivers from its own server, which cannot reach your machine. While you develop, "
    "run `backchannel listen --api-url {server} --token <API token> --forward-to {url}`: it "
    "forwards every event to that URL, signed, with no endpoint to add. Or give a public URL here "
    "(a tunnel), or set BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true on a server whose own "
    "network you trust."
)


def check_endpoint_url(url: str | None, allow_private_networks: bool, server_url: str) -> None:
    """422 on ``url`` when its host is literally loopback or private (SPEC §14): such an
    endpoint would accept the subscription and then refuse every delivery. Needs no store
    or DNS, so callers run it before the write is queued; names are resolved at delivery."""
    if url is None or allow_private_networks:
        return
    problem = literal_refusal(url)
    if problem is not None:
        message = f"{problem}, which webhooks never reach. " + LISTEN_HINT.format(url=url, server=server_url)
        raise errors.Unprocessable(
            f"Invalid field: url. {message}", code="private_endpoint_url",
            details=[{"field": "url", "message": message}],
        )


def create_endpoint(tx: Tx, workspace_id: str, body: WebhookEndpointIn) -> WebhookEndpoint:
    """A new endpoint; its ``secret`` (and ``endpoint_json(…, with_secret=True)``) is the one
    moment the API shows the secret."""
    s = tx.session
    count = s.exec(
        select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.workspace_id == workspace_id)
    ).one()
    if count >= MAX_ENDPOINTS_PER_WORKSPACE:
        raise errors.Conflict(
            f"A workspace has at most {MAX_ENDPOINTS_PER_WORKSPACE} webhook endpoints.",
            code="too_many_endpoints",
        )
    now = utcnow()
    endpoint = WebhookEndpoint(
        id=new_id("whe"),
        workspace_id=workspace_id,
        url=body.url,
        description=body.description,
        events=list(body.events),
        enabled=body.enabled,
        disabled_reason=None if body.enabled else "disabled when created",
        secret=body.secret or new_secret(),
        ed25519_private_key=new_signing_key() if body.asymmetric_signing else None,
        created_at=now,
        updated_at=now,
    )
    s.add(endpoint)
    s.flush()
    tx.endpoints_changed()  # later emits in this transaction see it
    return endpoint


def update_endpoint(
    tx: Tx, workspace_id: str, endpoint_id: str, patch: WebhookEndpointPatch
) -> WebhookEndpoint:
    endpoint = get_endpoint(tx.session, workspace_id, endpoint_id)
    changes = patch.model_dump(exclude_unset=True)
    for key in ("url", "description", "events"):
        if changes.get(key) is not None:
            setattr(endpoint, key, changes[key])
    if changes.get("asymmetric_signing") is not None:
        if changes["asymmetric_signing"] and endpoint.ed25519_private_key is None:
            endpoint.ed25519_private_key = new_signing_key()
        elif not changes["asymmetric_signing"]:
            endpoint.ed25519_private_key = endpoint.previous_ed25519_private_key = None
    if changes.get("enabled") is True and not endpoint.enabled:
        # A fresh start: the 5-day failure clock restarts with the next failure.
        endpoint.enabled, endpoint.disabled_reason, endpoint.failing_since = True, None, None
    elif changes.get("enabled") is False and endpoint.enabled:
        disable_endpoint(tx.session, endpoint, "disabled by an admin")
    endpoint.updated_at = utcnow()
    tx.session.add(endpoint)
    tx.endpoints_changed()
    return endpoint


def disable_endpoint(s: Session, endpoint: WebhookEndpoint, reason: str) -> None:
    """Stop delivering to ``endpoint``: nothing new is queued for it (``Tx.emit`` skips disabled
    endpoints) and what was queued fails, so it can be retried by hand after re-enabling."""
    now = utcnow()
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    endpoint.updated_at = now
    s.add(endpoint)
    fail_unfinished(s, endpoint.id, reason, now)


def fail_unfinished(s: Any, endpoint_id: str, reason: str, now: datetime) -> None:
    """Mark what is queued for a disabled endpoint ``failed`` (``s``: a session or a connection)."""
    s.execute(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.endpoint_id) == endpoint_id,
            col(WebhookDelivery.status).in_(UNFINISHED),
        )
        .values(
            status="failed", last_error=f"endpoint disabled: {reason}",
            lease_owner=None, lease_until=None, updated_at=now,
        )
    )


def delete_endpoint(tx: Tx, workspace_id: str, endpoint_id: str) -> None:
    """Delete the endpoint with its delivery log (events stay: other endpoints may share them)."""
    endpoint = get_endpoint(tx.session, workspace_id, endpoint_id)
    s = tx.session
    s.execute(delete(WebhookAttempt).where(col(WebhookAttempt.endpoint_id) == endpoint.id))
    s.execute(delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint.id))
    s.delete(endpoint)
    tx.endpoints_changed()


def rotate_secret(
    tx: Tx, workspace_id: str, endpoint_id: str, *, overlap_seconds: float = 24 * 3600
) -> WebhookEndpoint:
    """A new secret (and ed25519 key, if on); the old ones keep signing for ``overlap_seconds``
    so receivers can switch without dropping a delivery (``0`` ends them now, after a leak)."""
    endpoint = get_endpoint(tx.session, workspace_id, endpoint_id)
    now = utcnow()
    keep = overlap_seconds > 0
    endpoint.previous_secret = endpoint.secret if keep else None
    endpoint.previous_secret_expires_at = now + timedelta(seconds=overlap_seconds) if keep else None
    endpoint.secret = new_secret()
    if endpoint.ed25519_private_key is not None:
        endpoint.previous_ed25519_private_key = endpoint.ed25519_private_key if keep else None
        endpoint.ed25519_private_key = new_signing_key()
    endpoint.updated_at = now
    tx.session.add(endpoint)
    return endpoint


def send_test_event(tx: Tx, workspace_id: str, endpoint_id: str) -> WebhookDelivery:
    """Queue a ``webhook.test`` event for this endpoint only; returns its delivery."""
    endpoint = get_endpoint(tx.session, workspace_id, endpoint_id)
    if not endpoint.enabled:
        raise errors.Conflict("This endpoint is disabled; enable it first.", code="endpoint_disabled")
    data = {"endpoint_id": endpoint.id, "message": "A test event from Backchannel."}
    event = tx.emit(workspace_id, events.WEBHOOK_TEST, data, only_endpoint=endpoint)
    tx.session.flush()
    delivery = tx.session.exec(
        select(WebhookDelivery).where(WebhookDelivery.event_id == event.id)
    ).one()
    return delivery


# --- the delivery log -------------------------------------------------------------------


def get_delivery(s: Session, workspace_id: str, delivery_id: str) -> WebhookDelivery:
    return get_in_workspace(s, WebhookDelivery, delivery_id, workspace_id, "webhook delivery")


def delivery_payload(s: Session, delivery: WebhookDelivery) -> dict[str, Any]:
    event = s.get(Event, delivery.event_id)
    return event.payload if event is not None else {}


def list_deliveries(
    s: Session,
    workspace_id: str,
    endpoint_id: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    status: str | None = None,
    event_type: str | None = None,
) -> tuple[list[WebhookDelivery], str | None]:
    """Newest first; ``(rows, next_cursor)``."""
    get_endpoint(s, workspace_id, endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if event_type is not None:
        query = query.where(WebhookDelivery.event_type == event_type)
    if cursor:
        (before_id,) = decode_cursor(cursor, 1)
        query = query.where(col(WebhookDelivery.id) < str(before_id))
    rows = list(s.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit + 1)))
    more = len(rows) > limit
    return rows[:limit], encode_cursor(rows[limit - 1].id) if more else None


def list_attempts(
    s: Session, workspace_id: str, delivery_id: str, *, limit: int = 100
) -> list[WebhookAttempt]:
    """Every attempt of one delivery, oldest first (at most 8 per retry round)."""
    get_delivery(s, workspace_id, delivery_id)
    return list(
        s.exec(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(col(WebhookAttempt.started_at), col(WebhookAttempt.id))
            .limit(limit)
        )
    )


def retry_delivery(tx: Tx, workspace_id: str, delivery_id: str) -> WebhookDelivery:
    """Deliver again now, whatever happened before, with a fresh retry schedule."""
    delivery = get_delivery(tx.session, workspace_id, delivery_id)
    now = utcnow()
    if delivery.status == "delivering" and delivery.lease_until and delivery.lease_until > now:
        raise errors.Conflict("This delivery is being attempted right now.", code="delivery_in_progress")
    endpoint = tx.session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None or not endpoint.enabled:
        raise errors.Conflict("The endpoint is disabled; enable it first.", code="endpoint_disabled")
    delivery.status = "pending"
    delivery.schedule_step = 0
    delivery.next_attempt_at = now
    delivery.lease_owner = delivery.lease_until = None
    delivery.updated_at = now
    tx.session.add(delivery)
    tx.webhooks_enqueued += 1  # wakes the dispatcher after commit
    return delivery
