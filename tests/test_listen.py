"""``backchannel listen`` (SPEC §14) against a real server (uvicorn) and a local receiver: the
CLI reads the workspace's events over its own connection and forwards each one signed with
the secret it printed, and resumes after the server drops it without losing an event."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.conftest import ROOT, LiveServer, Tenant
from tests.factories import assert_error
from tests.receivers import Received, Receiver, eventually


class Listen:
    """``backchannel listen`` as a user runs it, its output read line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "listen", *args], cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def line_matching(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.output)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def listening() -> Iterator[Any]:
    started: list[Listen] = []

    def start(*args: str, **kw: Any) -> Listen:
        started.append(Listen(*args, **kw))
        return started[-1]

    yield start
    for listen in started:
        listen.stop()


def verified(secret: str, req: Received) -> dict[str, Any]:
    return Webhook(secret).verify(req.body, req.headers)  # type: ignore[no-any-return]


def test_events_reach_the_local_url_signed_with_the_printed_secret(
    server: LiveServer, tenant: Tenant, api: httpx.Client, listening: Any
) -> None:
    with Receiver() as rx:
        listen = listening("--api-url", server.url, "--token", tenant.token, "--forward-to", f"http://127.0.0.1:{rx.port}/webhooks")
        secret = listen.line_matching(r"(whsec_[A-Za-z0-9+/=]+)").group(1)
        user = api.post("/api/v1/users", json={"name": "Ada"}).json()
        conversation = api.post("/api/v1/conversations", json={"user_id": user["id"]}).json()
        api.post(f"/api/v1/conversations/{conversation['id']}/messages",
                 json={"actor": {"type": "user"}, "message_parts": [{"text": {"content": "A pizza, please"}}]})
        received = rx.wait_count(3)
        bodies = [verified(secret, r) for r in received]
        assert [b["type"] for b in bodies] == ["user.created", "conversation.created", "message.created"]
        assert all(r.path == "/webhooks" for r in received)
        assert bodies[2]["data"]["message"]["message_parts"] == [{"text": {"content": "A pizza, please"}}]
        assert bodies[2]["data"]["conversation"]["id"] == conversation["id"]
        # The webhook-id is the event's id, as a webhook delivery of the same event carries it.
        assert len({r.webhook_id for r in received}) == 3
        listen.line_matching(r"message\.created\s+msg_\w+\s+-> 200")
        # Nothing was configured on the server for it: no endpoint, no private-network setting.
        assert api.get("/api/v1/webhook-endpoints").json()["data"] == []


def test_it_resumes_after_the_server_drops_it_without_losing_or_repeating_events(
    server: LiveServer, tenant: Tenant, listening: Any
) -> None:
    with Receiver() as rx:
        listen = listening("--api-url", server.url, "--token", tenant.token, "--forward-to", rx.url,
                           "--events", "user.created", "--secret", "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        listen.line_matching("Ready")
        with server.client(tenant) as api:
            api.post("/api/v1/users", json={"name": "before"}).raise_for_status()
            rx.wait_count(1)
            # Created just before the server goes away: the listener may not have read it yet.
            api.post("/api/v1/users", json={"name": "as it stops"}).raise_for_status()
        server.stop()
        listen.line_matching("Connection lost")
        server.start()
        with server.client(tenant) as api:
            api.post("/api/v1/users", json={"name": "after"}).raise_for_status()
            api.post("/api/v1/conversations", json={"user_id": api.post("/api/v1/users", json={}).json()["id"]})
        listen.line_matching("Reconnected")
        received = rx.wait_count(4)
        time.sleep(1.5)  # a further poll or two: nothing is sent twice
        names = [json.loads(r.body)["data"]["user"]["name"] for r in rx.received()]
        assert names == ["before", "as it stops", "after", None]
        assert all(json.loads(r.body)["type"] == "user.created" for r in received)  # --events


def test_a_receiver_that_is_down_gets_the_event_when_it_comes_back(
    server: LiveServer, tenant: Tenant, api: httpx.Client, listening: Any
) -> None:
    answers = iter([503, 503])
    with Receiver(lambda req: (next(answers, 200), {}, b"")) as rx:
        listen = listening("--json", "--api-url", server.url + "/api/v1", "--token", tenant.token,
                           "--forward-to", rx.url)
        ready = json.loads(listen.line_matching(r'^\{"event": "ready".*').group(0))
        assert ready["secret"].startswith("whsec_") and ready["forward_to"] == rx.url
        api.post("/api/v1/users", json={"name": "Ada"})
        eventually(lambda: [r for r in rx.answered if r[1] == 200])
        assert len({r.webhook_id for r in rx.received()}) == 1 and len(rx.received()) == 3
        statuses = [json.loads(listen.line_matching(r'"event": "forwarded".*').string)["status"] for _ in range(3)]
        assert statuses == [503, 503, 200]


def test_mistakes_are_said_plainly(server: LiveServer, tenant: Tenant, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app.cli", "listen", *args], cwd=ROOT, text=True,
                              capture_output=True, timeout=60)

    bad_token = run("--api-url", server.url, "--token", "bch_nope", "--forward-to", "http://localhost:9/")
    assert bad_token.returncode == 1 and "refused the token (401)" in bad_token.stderr
    unknown = run("--api-url", server.url, "--token", tenant.token, "--forward-to", "http://localhost:9/",
                  "--events", "message.sent")
    assert unknown.returncode == 2 and "unknown event type(s): message.sent" in unknown.stderr
    assert "--forward-to" in run("--api-url", server.url).stderr


def test_the_feed_refuses_a_cursor_it_did_not_make(api: httpx.Client) -> None:
    assert_error(api.get("/api/v1/events", params={"after": "nonsense"}), 422)
    assert_error(api.get("/api/v1/events", params={"types": "user.created,nope"}), 422)
    first = api.get("/api/v1/events").json()
    assert first["data"] == [] and first["next_cursor"]
