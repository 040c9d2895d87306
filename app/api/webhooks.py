"""``/api/v1/webhook-endpoints`` and ``/api/v1/webhook-deliveries``: SPEC §5.

Thin: each handler validates through its models and calls the action in ``app.webhooks``
that the console calls too. Secrets appear only in the create and rotate responses.

Where an endpoint points, and its secret, take ``admin``: an endpoint's origin becomes an
allowed hosted-form callback signed with its secret, so a leaked bot (``write``) token must
not be able to add one, move one, or learn a secret.
"""

from __future__ import annotations

from typing import Any

from app.api.framework import Call, Endpoint, Result
from app.api.pagination import ListQuery
from app.settings import Settings
from app.webhooks import endpoints as webhooks
from app.webhooks.schemas import (
    DeliveryQuery,
    RotateSecretIn,
    WebhookDeliveryDetail,
    WebhookDeliveryOut,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointPatch,
    WebhookEndpointWithSecret,
)

TAG = "Webhooks"


def check_url(body: WebhookEndpointIn | WebhookEndpointPatch, settings: Settings) -> None:
    webhooks.check_endpoint_url(body.url, settings.webhook_allow_private_networks,
                                   settings.public_url)


def create(call: Call) -> dict[str, Any]:
    endpoint = webhooks.create_endpoint(call.write, call.workspace_id, call.body)
    return webhooks.endpoint_json(endpoint, with_secret=True)


def list_(call: Call) -> dict[str, Any]:
    q: ListQuery = call.query
    rows, next_cursor = webhooks.list_endpoints(call.session, call.workspace_id, limit=q.limit, cursor=q.cursor)
    return {"data": [webhooks.endpoint_json(e) for e in rows], "next_cursor": next_cursor}


def read(call: Call) -> dict[str, Any]:
    return webhooks.endpoint_json(
        webhooks.get_endpoint(call.session, call.workspace_id, call.params["endpoint_id"])
    )


def patch(call: Call) -> dict[str, Any]:
    body: WebhookEndpointPatch = call.body
    if body.url is not None:
        call.principal.require("admin")  # moving an endpoint moves where forms may post
    endpoint = webhooks.update_endpoint(call.write, call.workspace_id, call.params["endpoint_id"], call.body)
    return webhooks.endpoint_json(endpoint)


def delete(call: Call) -> None:
    webhooks.delete_endpoint(call.write, call.workspace_id, call.params["endpoint_id"])


def rotate(call: Call) -> dict[str, Any]:
    body: RotateSecretIn = call.body
    overlap: float = 24 * 3600
    if body.overlap_seconds is not None:
        overlap = body.overlap_seconds
    elif call.settings is not None:
        overlap = call.settings.webhook_rotation_overlap_seconds
    endpoint = webhooks.rotate_secret(
        call.write, call.workspace_id, call.params["endpoint_id"], overlap_seconds=overlap
    )
    return webhooks.endpoint_json(endpoint, with_secret=True)


def test(call: Call) -> Result:
    delivery = webhooks.send_test_event(call.write, call.workspace_id, call.params["endpoint_id"])
    return Result(202, webhooks.delivery_json(delivery))


def deliveries(call: Call) -> dict[str, Any]:
    q: DeliveryQuery = call.query
    rows, next_cursor = webhooks.list_deliveries(
        call.session, call.workspace_id, call.params["endpoint_id"],
        limit=q.limit, cursor=q.cursor, status=q.status, event_type=q.event_type,
    )
    return {"data": [webhooks.delivery_json(d) for d in rows], "next_cursor": next_cursor}


def delivery(call: Call) -> dict[str, Any]:
    d = webhooks.get_delivery(call.session, call.workspace_id, call.params["delivery_id"])
    attempts = webhooks.list_attempts(call.session, call.workspace_id, d.id)
    return {
        **webhooks.delivery_json(d),
        "payload": webhooks.delivery_payload(call.session, d),
        "attempt_log": [webhooks.attempt_json(a) for a in attempts],
    }


def retry(call: Call) -> Result:
    d = webhooks.retry_delivery(call.write, call.workspace_id, call.params["delivery_id"])
    return Result(202, webhooks.delivery_json(d))


ENDPOINTS = [
    Endpoint("GET", "/webhook-endpoints", list_, "List webhook endpoints (never their secrets)", TAG,
             query=ListQuery, response=("page", WebhookEndpointOut)),
    Endpoint("POST", "/webhook-endpoints", create, "Add a webhook endpoint (the secret is shown once)",
             TAG, body=WebhookEndpointIn, response=WebhookEndpointWithSecret, status=201,
             scope="admin", errors=(409, 422), check=check_url,
             audit=("webhook_endpoint.created", "webhook_endpoint"),
             description="Needs `admin`: an endpoint's origin may receive hosted-form callbacks. "
             "A URL whose host is literally loopback or private (`localhost`, `127.0.0.1`, `10.…`) is "
             "a 422 unless the server allows private networks: use `backchannel listen` to develop."),
    Endpoint("GET", "/webhook-endpoints/{endpoint_id}", read, "Get a webhook endpoint", TAG,
             response=WebhookEndpointOut),
    Endpoint("PATCH", "/webhook-endpoints/{endpoint_id}", patch,
             "Change a webhook endpoint: URL, events, description, enabled, asymmetric signing", TAG,
             body=WebhookEndpointPatch, response=WebhookEndpointOut, scope="write", check=check_url,
             audit=("webhook_endpoint.updated", "webhook_endpoint"),
             description="`write` for events, description, enabled and signing; changing `url` needs `admin`."),
    Endpoint("DELETE", "/webhook-endpoints/{endpoint_id}", delete,
             "Delete a webhook endpoint and its delivery log", TAG, response=None, status=204,
             scope="write", audit=("webhook_endpoint.deleted", "webhook_endpoint")),
    Endpoint("POST", "/webhook-endpoints/{endpoint_id}/rotate-secret", rotate,
             "Rotate the signing secret; the old one keeps signing for overlap_seconds", TAG,
             body=RotateSecretIn, response=WebhookEndpointWithSecret, scope="admin",
             audit=("webhook_endpoint.secret_rotated", "webhook_endpoint"),
             description="Needs `admin`: the answer carries the new secret."),
    Endpoint("POST", "/webhook-endpoints/{endpoint_id}/test", test,
             "Send a webhook.test event to this endpoint", TAG, response=WebhookDeliveryOut,
             status=202, scope="write", errors=(409,), audit=("webhook_endpoint.tested", "webhook_endpoint")),
    Endpoint("GET", "/webhook-endpoints/{endpoint_id}/deliveries", deliveries,
             "The endpoint's delivery log, newest first", TAG, query=DeliveryQuery,
             response=("page", WebhookDeliveryOut)),
    Endpoint("GET", "/webhook-deliveries/{delivery_id}", delivery,
             "One delivery with its payload and every attempt", TAG, response=WebhookDeliveryDetail),
    Endpoint("POST", "/webhook-deliveries/{delivery_id}/retry", retry,
             "Deliver again now, with a fresh retry schedule", TAG, response=WebhookDeliveryOut,
             status=202, scope="write", errors=(409,), audit=("webhook_delivery.retried", "webhook_delivery")),
]
