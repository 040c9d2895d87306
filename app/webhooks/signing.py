"""Standard Webhooks signing: an endpoint's secrets and keys, and the headers that prove a request.

A request carries ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``: a ``v1``
HMAC-SHA256 per active secret and, with asymmetric signing on, a ``v1a`` ed25519 signature
per active key, all over ``{id}.{timestamp}.{body}``. Webhook deliveries and the web-view
form relay are signed the same way, so one verifier serves both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from app.store.tables import WebhookEndpoint


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes: the HMAC key, as Standard Webhooks libraries read it."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_signing_key() -> str:
    """``whsk_`` + base64 of an ed25519 seed (the Standard Webhooks asymmetric key format)."""
    return "whsk_" + base64.b64encode(bytes(SigningKey.generate())).decode()


def public_key(signing_key: str) -> str:
    """``whpk_`` + base64 of the ed25519 public key: all a receiver needs to verify ``v1a``."""
    seed = base64.b64decode(signing_key.removeprefix("whsk_"))
    return "whpk_" + base64.b64encode(bytes(SigningKey(seed).verify_key)).decode()


def public_key_or_none(signing_key: str | None) -> str | None:
    """The endpoint's ``whpk_`` key; none for a stored key that is not one (the dispatcher
    disables such an endpoint, and its page must still show why)."""
    if not signing_key:
        return None
    try:
        return public_key(signing_key)
    except Exception:
        return None


def _keys(current: str | None, previous: str | None, until: float | None) -> list[tuple[str, float | None]]:
    keys: list[tuple[str, float | None]] = [(current, None)] if current else []
    if previous and until is not None:
        keys.append((previous, until))
    return keys


class Signer:
    """An endpoint's signing keys, decoded once: HMAC keys ready to copy, ed25519 keys loaded.

    The dispatcher keeps one per endpoint while its keys stay the same, so signing a delivery
    costs a keyed-hash copy, not a base64 decode and a key schedule. A previous key signs
    until its rotation window ends, checked at each signature.
    """

    __slots__ = ("_hmacs", "_ed25519", "cache_key")

    def __init__(self, endpoint: Any) -> None:
        expires = endpoint.previous_secret_expires_at
        until = expires.timestamp() if expires is not None else None
        # Each key with the time it signs until (None: for ever). A previous key without an
        # expiry never signs, as before a rotation.
        self._hmacs: list[tuple[Any, float | None]] = [
            (hmac.new(base64.b64decode(secret.removeprefix("whsec_")), digestmod=hashlib.sha256), end)
            for secret, end in _keys(endpoint.secret, endpoint.previous_secret, until)
        ]
        self._ed25519: list[tuple[SigningKey, float | None]] = [
            (SigningKey(base64.b64decode(seed.removeprefix("whsk_"))), end)
            for seed, end in _keys(endpoint.ed25519_private_key, endpoint.previous_ed25519_private_key, until)
        ]
        self.cache_key = Signer.key_of(endpoint)

    @staticmethod
    def key_of(endpoint: Any) -> tuple[Any, ...]:
        """What a cached ``Signer`` depends on: any change (a rotation, signing switched on) makes a new one."""
        return (
            endpoint.secret,
            endpoint.previous_secret,
            endpoint.previous_secret_expires_at,
            endpoint.ed25519_private_key,
            endpoint.previous_ed25519_private_key,
        )

    def headers(self, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The Standard Webhooks headers for one request carrying ``body``.

        ``webhook-signature`` holds a ``v1`` HMAC-SHA256 per active secret (two during a
        rotation window) and, with asymmetric signing on, a ``v1a`` ed25519 signature per
        active key, all over ``{msg_id}.{timestamp}.{body}``.
        """
        now = time.time()
        ts = int(now) if timestamp is None else int(timestamp)
        signed = f"{msg_id}.{ts}.".encode() + body
        signatures = []
        for keyed, end in self._hmacs:
            if end is None or end > now:
                mac = keyed.copy()
                mac.update(signed)
                signatures.append("v1," + base64.b64encode(mac.digest()).decode())
        for signing_key, end in self._ed25519:
            if end is None or end > now:
                signatures.append("v1a," + base64.b64encode(signing_key.sign(signed).signature).decode())
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": " ".join(signatures),
            "content-type": "application/json",
        }


def signature_headers(
    endpoint: WebhookEndpoint, msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers for one request (see ``Signer.headers``)."""
    return Signer(endpoint).headers(msg_id, body, timestamp)


@dataclass
class Signers:
    """Decoded keys per endpoint, reused across claims while the endpoint's keys are unchanged."""

    by_endpoint: dict[str, Signer] = field(default_factory=dict)

    def for_row(self, row: Any) -> Signer:
        signer = self.by_endpoint.get(row.id)
        if signer is None or signer.cache_key != Signer.key_of(row):
            if len(self.by_endpoint) > 10_000:  # endpoints come and go: never grow without bound
                self.by_endpoint.clear()
            signer = self.by_endpoint[row.id] = Signer(row)
        return signer
