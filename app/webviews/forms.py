"""Hosted web-view forms: fields for the template, server-side validation, and the relay.

The values a customer submits live only in local variables of ``validate`` and
``relay_form``: they are never stored, logged, put in an exception message, or echoed in a
webhook or a message. Exceptions raised while relaying are caught and reported by type.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlmodel import Session, col, select

from app import errors, events
from app.ids import isoformat, new_id, utcnow
from app.store.tables import WebhookEndpoint, WebviewOpening
from app.webhooks.netguard import UrlRefused, destination
from app.webhooks.sender import Sender
from app.webhooks.signing import signature_headers
from app.webviews import patterns as form_patterns
from app.webviews.openings import origin_of

log = logging.getLogger("backchannel.webviews")
MAX_VALUE_CHARS = 10_000
ERROR_MAX_CHARS = 200
RESPONSE_MAX_BYTES = 65_536  # of a callback's answer kept; only a 422's errors are read

_CARD_HINTS: list[tuple[str, tuple[str, ...]]] = [
    # Checked in order on the field's name and label, squashed to lowercase letters and digits.
    ("cc-csc", ("cvc", "cvv", "csc", "securitycode", "cardcode", "cardverification")),
    ("cc-exp-month", ("expmonth", "expirymonth", "expirationmonth")),
    ("cc-exp-year", ("expyear", "expiryyear", "expirationyear")),
    ("cc-exp", ("expiry", "expiration", "expdate", "validthru", "mmyy", "ccexp")),
    ("cc-name", ("nameoncard", "cardholder", "cardname", "holdername", "ccname")),
    ("cc-number", ("cardnumber", "cardno", "ccnumber", "ccnum", "creditcard", "debitcard", "pan")),
]


def autocomplete_hint(spec: dict[str, Any]) -> str | None:
    """The field's explicit ``autocomplete``, else a card hint its name or label suggests."""
    if spec.get("autocomplete"):
        return str(spec["autocomplete"])
    for source in (spec.get("name", ""), spec.get("label", "")):
        squashed = re.sub(r"[^a-z0-9]", "", str(source).lower())
        for hint, needles in _CARD_HINTS:
            if any(n == squashed or (len(n) > 3 and n in squashed) for n in needles):
                return hint
        if squashed == "exp":
            return "cc-exp"
    return {"email": "email", "tel": "tel"}.get(spec.get("type", "text"))


@dataclass
class FieldView:
    """One form field as the template renders it."""

    name: str
    label: str
    type: str
    required: bool
    options: list[tuple[str, str]]  # (value, label)
    pattern: str | None
    pattern_message: str | None
    max_length: int | None
    placeholder: str | None
    autocomplete: str | None

    @property
    def input_id(self) -> str:
        return f"f-{self.name}"

    @property
    def sensitive(self) -> bool:
        # Never written back into a re-rendered page (the no-JavaScript error path).
        return self.type == "password" or (self.autocomplete or "").startswith(("cc-number", "cc-csc"))

    @property
    def inputmode(self) -> str | None:
        if self.autocomplete in ("cc-number", "cc-csc"):
            return "numeric"
        return None


def field_views(form: dict[str, Any]) -> list[FieldView]:
    views = []
    for spec in form.get("fields", []):
        options = [
            (o, o) if isinstance(o, str) else (str(o["value"]), str(o["label"])) for o in spec.get("options") or []
        ]
        views.append(
            FieldView(
                name=spec["name"],
                label=spec["label"],
                type=spec.get("type", "text"),
                required=bool(spec.get("required")),
                options=options,
                pattern=spec.get("pattern"),
                pattern_message=spec.get("pattern_message"),
                max_length=spec.get("max_length"),
                placeholder=spec.get("placeholder"),
                autocomplete=autocomplete_hint(spec),
            )
        )
    return views


# Every check on a customer's value is linear in its length: no backtracking regex runs on
# one (the email check used to be quadratic: 1.6 s for 10,000 characters).
_TEL = re.compile(r"^[0-9+()\-.\s]{3,32}$")  # one class, one bounded repeat: linear


def _is_email(value: str) -> bool:
    """``local@domain.tld`` with no spaces and one ``@`` (what the old regex meant)."""
    local, _, domain = value.partition("@")
    if not local or "@" in domain or any(ch.isspace() for ch in value):
        return False
    return "." in domain[1:-1]


def validate(fields: list[FieldView], submitted: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(values, errors)``: the declared fields' values, and a message per invalid field."""
    values: dict[str, str] = {}
    problems: dict[str, str] = {}
    for f in fields:
        value = submitted.get(f.name, "")
        if f.type != "textarea":
            value = value.strip()
        values[f.name] = value
        problem = _check(f, value)
        if problem:
            problems[f.name] = problem
    return values, problems


def _check(f: FieldView, value: str) -> str | None:
    if not value:
        return "This field is required." if f.required else None
    limit = min(f.max_length or MAX_VALUE_CHARS, MAX_VALUE_CHARS)
    if len(value) > limit:
        return f"Use at most {limit} characters."
    if f.type == "email" and not _is_email(value):
        return "Enter an email address."
    if f.type == "tel" and not _TEL.match(value):
        return "Enter a phone number."
    if f.type == "number":
        try:
            if not math.isfinite(float(value)):
                raise ValueError
        except ValueError:
            return "Enter a number."
    if f.type == "date":
        try:
            date.fromisoformat(value)
        except ValueError:
            return "Enter a date."
    if f.type == "select" and value not in {v for v, _ in f.options}:
        return "Choose one of the options."
    if f.pattern is not None:
        if len(value) > form_patterns.MAX_MATCHED_CHARS:
            return f"Use at most {form_patterns.MAX_MATCHED_CHARS} characters."
        if not form_patterns.matches(f.pattern, value):
            return f.pattern_message or "Use the format asked for."
    return None


# --- the callback and its signing endpoint ----------------------------------------------


def _form_callbacks(message_parts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(field path, callback_url)`` of every hosted form in a message's parts."""
    found = []
    for i, part in enumerate(message_parts):
        form = part.get("web_view", {}).get("form")
        if form:
            found.append((f"message_parts.{i}.web_view.form.callback_url", form["callback_url"]))
        for c, card in enumerate(part.get("carousel", {}).get("cards", [])):
            for b, button in enumerate(card.get("buttons", [])):
                form = button.get("web_view", {}).get("form")
                if form:
                    path = f"message_parts.{i}.carousel.cards.{c}.buttons.{b}.web_view.form.callback_url"
                    found.append((path, form["callback_url"]))
    return found


HTTPS_ONLY = "a hosted form's callback_url must be https"


def callback_refusal(callback_url: str, allow_private_networks: bool) -> str | None:
    """Why a hosted form may not post to ``callback_url`` (``None``: it may).

    The URL must be one the guarded sender can call (``netguard.destination``: http or
    https, with a host); and since a form posts what the customer typed (card numbers),
    only ``https`` unless private networks are allowed (a development or demo set-up, over
    ``http``). Where it resolves is checked when the relay connects."""
    try:
        dest = destination(callback_url)
    except UrlRefused as exc:
        return f"a hosted form's callback_url cannot be called: {exc}"
    if dest.scheme != "https" and not allow_private_networks:
        return HTTPS_ONLY
    return None


def check_form_urls(message_parts: list[dict[str, Any]], allow_private_networks: bool, prefix: str = "") -> None:
    """422 naming the field when a hosted form's ``callback_url`` could not be used
    (``callback_refusal``, SPEC §14). Needs no database: callers run it before the write is queued."""
    for path, url in _form_callbacks(message_parts):
        problem = callback_refusal(url, allow_private_networks)
        if problem:
            field = prefix + path
            raise errors.Unprocessable(f"Invalid field: {field}", details=[{"field": field, "message": problem}])


def check_form_signers(s: Session, workspace_id: str, message_parts: list[dict[str, Any]], prefix: str = "") -> None:
    """422 naming the field when a hosted form's ``callback_url`` shares its origin with no
    enabled webhook endpoint of the workspace (whose secret would sign the relay): read in
    the write's own transaction, so an endpoint disabled a moment ago counts."""
    for path, url in _form_callbacks(message_parts):
        if signing_endpoint(s, workspace_id, url) is None:
            field = prefix + path
            problem = (
                f"shares its origin ({origin_of(url)}) with no enabled webhook endpoint of this workspace, "
                "so the form could not be sent anywhere: add (or enable) a webhook endpoint on "
                f"{origin_of(url)} first (POST /api/v1/webhook-endpoints or Settings > Webhooks); "
                "its secret signs what the form relays"
            )
            raise errors.Unprocessable(f"Invalid field: {field}", details=[{"field": field, "message": problem}])


def _segments(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def signing_endpoint(s: Session, workspace_id: str, callback_url: str) -> WebhookEndpoint | None:
    """The enabled endpoint sharing the callback's origin whose URL shares the longest path
    prefix (whole segments) with it; ties go to the oldest. ``None``: the callback is refused."""
    origin = origin_of(callback_url)
    target = _segments(urlsplit(callback_url).path)
    best: tuple[int, Any, str] | None = None
    chosen = None
    endpoints = s.exec(
        select(WebhookEndpoint).where(
            WebhookEndpoint.workspace_id == workspace_id, col(WebhookEndpoint.enabled).is_(True)
        )
    )
    for endpoint in endpoints:
        if origin_of(endpoint.url) != origin:
            continue
        shared = 0
        for a, b in zip(_segments(urlsplit(endpoint.url).path), target, strict=False):
            if a != b:
                break
            shared += 1
        key = (-shared, endpoint.created_at, endpoint.id)
        if best is None or key < best:
            best, chosen = key, endpoint
    return chosen


@dataclass
class RelayOutcome:
    kind: str  # "submitted" | "invalid" | "failed"
    errors: dict[str, str]


async def relay_form(
    sender: Sender,
    endpoint: WebhookEndpoint,
    opening: WebviewOpening,
    callback_url: str,
    values: dict[str, str],
    field_names: list[str],
    timeout: float,
) -> RelayOutcome:
    """POST the values to the callback through the guarded sender, signed like a webhook; then
    forget them."""
    msg_id = new_id("wvs")
    body = orjson.dumps(
        {
            "type": events.WEBVIEW_SUBMITTED,
            "timestamp": isoformat(utcnow()),
            "data": {
                "conversation_id": opening.conversation_id,
                "user_id": opening.user_id,
                "message_id": opening.message_id,
                "webview_id": opening.webview_id,
                "values": values,
            },
        }
    )
    headers = {
        **signature_headers(endpoint, msg_id, body),
        "accept-encoding": "identity",  # the answer is read raw, so it cannot inflate past the cap
    }
    try:
        # One deadline for the whole exchange (connect, send, the status line and the body read),
        # so a callback that drips a byte a second cannot hold the submit open; at most
        # RESPONSE_MAX_BYTES of the answer are kept (the sender reads no further than its cap).
        async with asyncio.timeout(timeout):
            reply = await sender.post(callback_url, headers, body, excerpt_bytes=RESPONSE_MAX_BYTES)
    except Exception as exc:  # noqa: BLE001 - any failure is "retry"; its text may quote the request
        log.warning("web-view callback failed: %s (%s)", type(exc).__name__, opening.id)
        return RelayOutcome("failed", {})
    status = reply.status_code
    if 200 <= status < 300:
        return RelayOutcome("submitted", {})
    if status == 422:
        problems = _callback_errors(reply.excerpt, field_names)
        if problems:
            return RelayOutcome("invalid", problems)
    log.warning("web-view callback answered %s (%s)", status, opening.id)
    return RelayOutcome("failed", {})


def _callback_errors(content: bytes, field_names: list[str]) -> dict[str, str]:
    """``{"errors": {"field": "message"}}`` from a 422; unknown fields become a form error."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    raw = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        return {}
    problems: dict[str, str] = {}
    for name, message in raw.items():
        if not isinstance(message, str) or not message.strip():
            continue
        key = name if name in field_names else "_form"
        problems.setdefault(key, message.strip()[:ERROR_MAX_CHARS])
    return problems
