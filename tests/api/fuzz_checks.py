"""Schemathesis checks of our own, loaded by ``test_api_fuzz.py`` through ``SCHEMATHESIS_HOOKS``.

The built-in checks cover 5xx and schema conformance; these add what the contract says of
every error: JSON of the one shape, never HTML, never a stack trace.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import schemathesis

# What a leaked traceback or framework error page looks like.
LEAK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|<html|<!doctype", re.IGNORECASE)


@schemathesis.check
def errors_are_json_without_leaks(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx is ``{"error": {code, message, details}}`` as JSON; no body leaks a trace."""
    text = response.text or ""
    if LEAK.search(text):
        raise AssertionError(f"response leaks a stack trace or HTML: {text[:300]!r}")
    if response.status_code < 400:
        return None
    ctype = response.headers.get("content-type", [""])
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if not ctype.startswith("application/json"):
        raise AssertionError(f"error {response.status_code} is {ctype!r}, not JSON")
    body = json.loads(text)
    if not (
        isinstance(body, dict)
        and set(body) == {"error"}
        and isinstance(body["error"], dict)
        and set(body["error"]) == {"code", "message", "details"}
        and isinstance(body["error"]["code"], str)
        and isinstance(body["error"]["message"], str)
    ):
        raise AssertionError(f"error {response.status_code} breaks the error shape: {text[:300]!r}")
    if response.status_code in (429, 503) and "retry-after" not in {k.lower() for k in response.headers}:
        raise AssertionError(f"{response.status_code} without Retry-After")
    return None


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """In the stateful phase, give every well-formed ``Idempotency-Key`` a fresh suffix.

    The fuzzer's two workers share one seed, so both may send the same key and body; the API then
    rightly replays the first response -- a resource the other worker may have deleted since, which
    the stateful phase reads as "created resource not found". Replay itself is tested in
    ``tests/api/test_api_consistency.py``. Only that phase is touched: the others send the keys
    as generated (a hook's edit makes schemathesis re-derive what a case is testing).
    """
    phase = getattr(getattr(case.meta, "phase", None), "name", None)
    if getattr(phase, "value", phase) != "stateful" or not case.headers:
        return
    for name, value in list(case.headers.items()):
        if name.lower() == "idempotency-key" and isinstance(value, str) and 0 < len(value) <= 200:
            case.headers[name] = f"{value}-{uuid.uuid4().hex}"
