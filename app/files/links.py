"""Signed, expiring download links, and the message parts that carry them.

A link is ``{PUBLIC_URL}/files/{file_id}?expires=UNIX&signature=HMAC``: the HMAC-SHA256 of
the file id and the expiry, keyed from ``SECRET_KEY``. Expiries are rounded up to the next
whole hour after one hour from now, so a link is valid for one to two hours and every answer
within the same hour carries the same link (browsers cache the image; a webhook retried
within the hour is signed over the same body).

Stored message parts keep ``file_id`` with the file's ``name``, ``content_type`` and ``size``
(filled in when the message is written); the ``url`` is added each time a message leaves
the server (``present_message``), so it is always fresh. Messages without file parts are
not touched: the stored JSON of such messages is sent as it is (``store/sql.py``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import time
from typing import Any

LINK_SECONDS = 3600  # a link is valid at least this long, at most twice this
FILE_PART_KINDS = ("file", "image", "video", "audio")
MARKER = '"file_id"'  # in stored JSON text only where a part names a file (a text's quotes are escaped)


class FileLinks:
    """Signs and checks download links with a key derived from the secret key."""

    def __init__(self, secret_key: str, public_url: str) -> None:
        self._key = hmac.new(secret_key.encode(), b"backchannel.files.link", hashlib.sha256).digest()
        self.base = public_url.rstrip("/")

    def _signature(self, file_id: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{file_id}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def expiry(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        return (int(now) // LINK_SECONDS + 2) * LINK_SECONDS

    def url(self, file_id: str, now: float | None = None) -> tuple[str, int]:
        """The link and its expiry (Unix seconds)."""
        expires = self.expiry(now)
        return f"{self.base}/files/{file_id}?expires={expires}&signature={self._signature(file_id, expires)}", expires

    def valid(self, file_id: str, expires: str | None, signature: str | None, now: float | None = None) -> bool:
        if not expires or not signature or not expires.isdigit() or len(expires) > 12 or len(signature) > 64:
            return False
        if int(expires) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self._signature(file_id, int(expires)), signature)

    # -- parts ---------------------------------------------------------------------------

    def present_parts(self, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The parts with a fresh ``url`` beside every ``file_id`` (new dicts where changed)."""
        out = []
        for part in parts:
            if _names_file(part):
                kind, body = next(iter(part.items()))
                if isinstance(body.get("file_id"), str):
                    part = {kind: {**body, "url": self.url(body["file_id"])[0]}}
            out.append(part)
        return out

    def present_message(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message as it leaves the server. Parts still in their stored text (an
        ``orjson.Fragment``, how ``store/sql.py`` passes messages without files) stay as they are."""
        parts = message.get("message_parts")
        if isinstance(parts, list) and any(_names_file(p) for p in parts):
            return {**message, "message_parts": self.present_parts(parts)}
        return message

    def present_event(self, payload: dict[str, Any]) -> dict[str, Any]:
        """An event body (webhook or broker) whose ``data.message`` may name files."""
        data = payload.get("data")
        if isinstance(data, dict) and isinstance(data.get("message"), dict):
            message = self.present_message(data["message"])
            if message is not data["message"]:
                return {**payload, "data": {**data, "message": message}}
        return payload


def _names_file(part: Any) -> bool:
    if not isinstance(part, dict) or len(part) != 1:
        return False
    kind, body = next(iter(part.items()))
    return kind in FILE_PART_KINDS and isinstance(body, dict) and "file_id" in body


def links_for(settings: Any) -> FileLinks:
    """The signer for these settings (one per secret key and public URL, made once)."""
    return _links(settings.secret_key.get_secret_value(), settings.public_url)


@functools.lru_cache(maxsize=8)
def _links(secret_key: str, public_url: str) -> FileLinks:
    return FileLinks(secret_key, public_url)
