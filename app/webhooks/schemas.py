"""Request and response shapes of the webhook API (they validate requests and feed OpenAPI)."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from app import events
from app.api.pagination import ListQuery
from app.api.schemas import HttpUrl, Strict

# Every event a webhook endpoint can subscribe to (SPEC §5, declared in app/events.py); "*" means all of them.
EVENT_TYPES = events.WEBHOOK_EVENT_TYPES
# ``whsec_`` + standard base64 (padded) of 24–64 random bytes. The pattern documents the shape
# in OpenAPI; ``_check_secret`` decodes it, since a pattern cannot count bytes: a secret the
# API accepts is one the dispatcher can always sign with.
_B64 = "[A-Za-z0-9+/]"
SECRET_PATTERN = (  # exactly the padded base64 lengths of 24–64 bytes
    rf"^whsec_(?:(?:{_B64}{{4}}){{8,20}}(?:{_B64}{{2}}==|{_B64}{{3}}=)?|(?:{_B64}{{4}}){{21}}(?:{_B64}{{2}}==)?)$"
)
SECRET_BYTES = (24, 64)


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ``ValueError`` unless it is 24–64 bytes of base64."""
    if not secret.startswith("whsec_"):
        raise ValueError("a secret starts with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ must be standard base64 (A-Z a-z 0-9 + /, padded with =)") from None
    low, high = SECRET_BYTES
    if not low <= len(key) <= high:
        raise ValueError(f"a secret holds {low}–{high} random bytes (base64), not {len(key)}")
    return key


def _check_secret(secret: str | None) -> str | None:
    if secret is not None:
        decode_secret(secret)
    return secret


def _check_events(events: list[str] | None) -> list[str] | None:
    if events is None:
        return None
    unknown = [e for e in events if e != "*" and e not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event type(s): {', '.join(unknown)}; known: *, {', '.join(EVENT_TYPES)}")
    # "*" swallows everything else; keep the order given, without repeats.
    return ["*"] if "*" in events else list(dict.fromkeys(events))


class WebhookEndpointIn(Strict):
    url: HttpUrl
    events: list[str] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=len(EVENT_TYPES) + 1,
        description='Event types to receive, or `["*"]` for all.',
    )
    description: str = Field(default="", max_length=500)
    enabled: bool = True
    asymmetric_signing: bool = Field(
        default=False,
        description="Also sign with ed25519 (`v1a`), verifiable with `public_key` alone.",
    )
    secret: str | None = Field(
        default=None, pattern=SECRET_PATTERN,
        description="Bring your own `whsec_…` secret (24–64 random bytes, base64); generated if omitted.",
    )

    _events = field_validator("events")(_check_events)
    _secret = field_validator("secret")(_check_secret)


class WebhookEndpointPatch(Strict):
    url: HttpUrl | None = None
    events: list[str] | None = Field(default=None, min_length=1, max_length=len(EVENT_TYPES) + 1)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(default=None, description="Re-enabling clears the failure history.")
    asymmetric_signing: bool | None = None

    _events = field_validator("events")(_check_events)


class RotateSecretIn(Strict):
    overlap_seconds: int | None = Field(
        default=None, ge=0, le=7 * 24 * 3600,
        description="How long the old secret keeps signing next to the new one (0 ends it now; "
        "default BACKCHANNEL_WEBHOOK_ROTATION_OVERLAP_SECONDS, 24 h).",
    )


class WebhookEndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None
    asymmetric_signing: bool
    public_key: str | None = Field(description="`whpk_…` ed25519 key that verifies `v1a` signatures.")
    previous_secret_expires_at: str | None
    failing_since: str | None
    created_at: str
    updated_at: str


class WebhookEndpointWithSecret(WebhookEndpointOut):
    secret: str = Field(description="`whsec_…`: shown only on create and rotate.")


class WebhookAttemptOut(BaseModel):
    id: str
    started_at: str
    duration_ms: int
    status_code: int | None
    response_excerpt: str | None
    error: str | None


class WebhookDeliveryOut(BaseModel):
    id: str
    endpoint_id: str
    event_id: str = Field(description="The `webhook-id` header of every attempt.")
    event_type: str
    status: Literal["pending", "delivering", "succeeded", "failed"]
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    updated_at: str


class WebhookDeliveryDetail(WebhookDeliveryOut):
    payload: dict[str, Any] = Field(description="The body sent: `{type, timestamp, data}`.")
    attempt_log: list[WebhookAttemptOut]


class DeliveryQuery(ListQuery):
    status: Literal["pending", "delivering", "succeeded", "failed"] | None = None
    event_type: str | None = Field(default=None, max_length=64)
