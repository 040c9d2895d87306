"""``backchannel listen``: a remote Backchannel's events, forwarded to a URL on this machine.

The ``stripe listen`` of Backchannel, for developing a bot without a public URL. The CLI reads
the token's workspace events from ``GET /api/v1/events`` over a connection it opens (so the
server needs no route to this machine and no private-network setting), and POSTs each one to
``--forward-to`` exactly as a webhook delivery would be sent: the same body, ``webhook-id`` =
the event's id, signed per Standard Webhooks with a secret printed at start.

It resumes from its cursor after a dropped connection (the server restarting, the network
going away), so no event is lost while it runs. A local receiver that cannot be reached, or
answers 502/503/504 (a bot restarting behind a dev server), gets the same event again with
backoff before the next one; any other answer is printed and the next event follows.
"""

from __future__ import annotations

import json
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TextIO

import httpx

from app.webhooks.signing import Signer, new_secret

RETRY_STATUSES = frozenset({502, 503, 504})
MAX_BACKOFF_SECONDS = 30.0
SEEN_IDS = 10_000  # ids already forwarded, for the feed's overlap (a few seconds of events)


class ListenError(Exception):
    """A mistake the user must fix (a bad token, a wrong URL): printed, exit 1."""


@dataclass
class Listener:
    api_url: str
    token: str
    forward_to: str
    events: list[str] = field(default_factory=list)
    secret: str = field(default_factory=new_secret)
    interval: float = 1.0
    out: TextIO = sys.stdout
    as_json: bool = False
    sleep: Callable[[float], None] = time.sleep
    forwarded: int = 0
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.api_url = self.api_url.rstrip("/")
        if self.api_url.endswith("/api/v1"):
            self.api_url = self.api_url.removesuffix("/api/v1")
        self.signer = Signer(SimpleNamespace(
            secret=self.secret, previous_secret=None, previous_secret_expires_at=None,
            ed25519_private_key=None, previous_ed25519_private_key=None,
        ))
        self.api = httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30.0
        )
        self.local = httpx.Client(timeout=15.0, follow_redirects=False)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, until: Callable[[], bool] = lambda: False) -> int:
        """Forward events until ``until()`` or Ctrl-C. Returns the exit status."""
        try:
            cursor = self._poll(None)["next_cursor"]
            self._say("ready", {"secret": self.secret, "forward_to": self.forward_to, "api_url": self.api_url,
                                "events": self.events or ["*"]},
                      f"Ready. Forwarding events from {self.api_url} to {self.forward_to}"
                      f"{' (' + ', '.join(self.events) + ')' if self.events else ''}.\n"
                      f"Your webhook signing secret is {self.secret} (pass --secret to keep it across runs).\n"
                      "Press Ctrl-C to stop.")
            while not until():
                page = self._poll(cursor)
                fresh = [e for e in page["data"] if e["id"] not in self._seen]
                for event in fresh:
                    self._forward(event)
                cursor = page["next_cursor"]
                if not fresh:
                    self.sleep(self.interval)
        except KeyboardInterrupt:
            self._say("stopped", {"forwarded": self.forwarded}, f"Stopped after forwarding {self.forwarded} events.")
        finally:
            self.api.close()
            self.local.close()
        return 0

    def _poll(self, cursor: str | None) -> dict[str, Any]:
        """One page of the feed; waits out a dropped connection or a server restart."""
        params: dict[str, Any] = {"limit": 200}
        if cursor is not None:
            params["after"] = cursor
        if self.events:
            params["types"] = ",".join(self.events)
        delay = 1.0
        while True:
            problem: str
            try:
                r = self.api.get("/api/v1/events", params=params)
            except httpx.HTTPError as exc:
                problem = f"cannot reach {self.api_url} ({type(exc).__name__})"
            else:
                if r.status_code == 200:
                    if delay > 1.0:
                        self._say("reconnected", {}, "Reconnected; resuming where it stopped.")
                    return r.json()  # type: ignore[no-any-return]
                if r.status_code in (401, 403, 404, 422):
                    raise ListenError(_api_error(r))
                problem = f"{self.api_url} answered {r.status_code}"
            self._say("disconnected", {"error": problem, "retry_in": delay},
                      f"Connection lost: {problem}; retrying in {delay:.0f} s.")
            self.sleep(delay)
            delay = min(MAX_BACKOFF_SECONDS, delay * 2)

    def _forward(self, event: dict[str, Any]) -> None:
        body = json.dumps({k: v for k, v in event.items() if k != "id"}, separators=(",", ":")).encode()
        delay = 1.0
        while True:
            headers = self.signer.headers(event["id"], body)
            started = time.monotonic()
            status: int | None = None
            error = None
            try:
                status = self.local.post(self.forward_to, content=body, headers=headers).status_code
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            ms = round((time.monotonic() - started) * 1000)
            shown = str(status) if status is not None else f"failed ({error})"
            retry = status is None or status in RETRY_STATUSES
            self._say("forwarded", {"id": event["id"], "type": event["type"], "status": status, "error": error,
                                    "ms": ms, "retry_in": delay if retry else None},
                      f"{time.strftime('%H:%M:%S')}  {event['type']:<24} {event['id']}  -> {shown} ({ms} ms)"
                      + (f"; again in {delay:.0f} s" if retry else ""))
            if not retry:
                break
            self.sleep(delay)
            delay = min(MAX_BACKOFF_SECONDS, delay * 2)
        self.forwarded += 1
        self._seen[event["id"]] = None
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)

    def _say(self, kind: str, data: dict[str, Any], human: str) -> None:
        print(json.dumps({"event": kind, **data}) if self.as_json else human, file=self.out, flush=True)


def _api_error(r: httpx.Response) -> str:
    try:
        message = r.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = r.text[:200]
    if r.status_code == 404:
        return f"{r.request.url} is not a Backchannel API ({r.status_code}): is --api-url the server's address?"
    return f"the server refused the token ({r.status_code}): {message}"
