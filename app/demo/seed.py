"""The AG Bank demo: set up (idempotently), then run the server and Freddy side by side.

State that must survive a restart (the demo token and admin password, which the store keeps
only as hashes) lives in ``./backchannel-demo.json`` next to the database, so a second
``scripts/serve`` reuses the same workspace, token, admin and webhook endpoint.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, select

from app.accounts import create_console_user, hash_password, new_console_user
from app.people import default_bot
from app.settings import Settings
from app.store.engine import make_engine, session_scope
from app.store.runner import Tx
from app.store.tables import ConsoleUser, Workspace
from app.tokens import create_token, list_tokens
from app.webhooks.endpoints import create_endpoint, list_endpoints
from app.webhooks.schemas import WebhookEndpointIn
from app.workspaces import create_workspace

ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = "backchannel-demo.json"
ADMIN_EMAIL = "agent@agbank.example"
FREDDY_ENDPOINT = "Freddy, the demo bot"
GREETING = "Hi! Freddy and the AG Bank team are here to help."


@dataclass
class DemoState:
    workspace_id: str
    widget_key: str
    token: str
    admin_email: str
    admin_password: str
    webhook_secret: str
    freddy_url: str
    endpoint_id: str = ""


def prepare(settings: Settings, freddy_url: str, state_path: Path) -> DemoState:
    """Create what is missing; reuse what a previous run made."""
    previous = _load(state_path)
    engine = make_engine(settings)
    try:
        with session_scope(engine) as session:
            state = _ensure(Tx(session), previous, freddy_url)
    finally:
        engine.dispose()
    state_path.write_text(json.dumps(asdict(state), indent=2))
    os.chmod(state_path, 0o600)
    return state


def _load(path: Path) -> DemoState | None:
    try:
        return DemoState(**json.loads(path.read_text()))
    except (FileNotFoundError, TypeError, ValueError):
        return None


def _ensure(tx: Tx, previous: DemoState | None, freddy_url: str) -> DemoState:
    s: Session = tx.session
    workspace = s.get(Workspace, previous.workspace_id) if previous else None
    if workspace is None:
        # The state file is gone but the database is not: the demo workspace is the one whose
        # admin has the demo email (a console email is unique across the server).
        existing = s.exec(select(ConsoleUser).where(ConsoleUser.email == ADMIN_EMAIL)).first()
        workspace = s.get(Workspace, existing.workspace_id) if existing else None
    if workspace is None:
        workspace = create_workspace(tx, "AG Bank")
        previous = None
    workspace.greeting = GREETING
    workspace.theme_color = "#0b6b4f"
    s.add(workspace)
    bot = default_bot(tx, workspace.id)
    bot.name = "Freddy"
    s.add(bot)

    live_tokens = {t.prefix for t in list_tokens(s, workspace.id) if t.revoked_at is None}
    token = previous.token if previous and previous.token[:10] in live_tokens else None
    if token is None:
        token = create_token(tx, workspace.id, "Freddy (demo bot)", ["read", "write"])[1]

    admin = s.exec(
        select(ConsoleUser).where(ConsoleUser.workspace_id == workspace.id, ConsoleUser.email == ADMIN_EMAIL)
    ).first()
    password = previous.admin_password if previous and admin else None
    if admin is not None and password is None:
        # Its password was in the lost state file: give it a new one, printed at start.
        password = secrets.token_urlsafe(9)
        admin.password_hash = hash_password(password)
        s.add(admin)
    if admin is None:
        password = secrets.token_urlsafe(9)
        create_console_user(tx, workspace.id, new_console_user(ADMIN_EMAIL, password, name="Alex Morgan", role="admin"))
    assert password is not None

    hook_url = f"{freddy_url}/webhooks"
    known = previous.endpoint_id if previous else None
    endpoints = list_endpoints(s, workspace.id)[0]
    endpoint = next((e for e in endpoints if e.id == known), None)
    if endpoint is None and previous is None:  # the state file is gone: find Freddy's by its description
        endpoint = next((e for e in endpoints if e.description == FREDDY_ENDPOINT), None)
    if endpoint is not None and endpoint.url != hook_url:
        endpoint.url = hook_url  # Freddy may be on another port this time; keep its secret
    if endpoint is None:
        endpoint = create_endpoint(
            tx, workspace.id, WebhookEndpointIn(url=hook_url, events=["*"], description=FREDDY_ENDPOINT)
        )
    if not endpoint.enabled:
        endpoint.enabled = True
        endpoint.disabled_reason = None
        s.add(endpoint)
    s.flush()
    return DemoState(
        workspace.id, workspace.widget_key, token, ADMIN_EMAIL, password, endpoint.secret, freddy_url, endpoint.id
    )


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")  # pragma: no cover


FREDDY = ROOT / "examples" / "agbank" / "freddy.py"
START_SECONDS = 60.0


def demo_problem() -> str | None:
    """Why the demo bot could not start here, or None (checked before anything slow happens)."""
    if not FREDDY.is_file():
        return (
            "the AG Bank demo runs from a source checkout (scripts/serve), and this installation has no "
            "examples/agbank; start an empty server with `backchannel serve` instead"
        )
    if importlib.util.find_spec("standardwebhooks") is None:
        return (
            "the demo bot needs the [demo] extra (the standardwebhooks library): "
            "pip install -e '.[demo]' (scripts/serve installs it)"
        )
    return None


@dataclass
class Child:
    """A process run beside this one: its output passes through, its last line is kept for errors."""

    name: str
    proc: subprocess.Popen[str]
    last_line: str = ""

    @classmethod
    def start(cls, name: str, argv: list[str], **popen: Any) -> Child:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1, **popen
        )
        child = cls(name, proc)
        threading.Thread(target=child._relay, name=f"relay {name}", daemon=True).start()
        return child

    def _relay(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.strip():
                self.last_line = line.strip()

    def why_stopped(self) -> str:
        self.proc.wait()
        time.sleep(0.1)  # let the relay read the last of its output
        reason = self.last_line.removeprefix("error: ") or "no output"
        return f"{self.name} exited with code {self.proc.returncode}: {reason}"


def run_demo(settings: Settings, *, host: str, port: int, public_url: str, workers: int = 1) -> int:
    """Set up, start the server and Freddy as two processes; stop both on Ctrl-C.

    If either cannot start, or stops, say why in one line and return 1 (the other is stopped)."""
    problem = demo_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr, flush=True)
        return 2
    freddy_port = free_port(port + 1)
    freddy_url = f"http://127.0.0.1:{freddy_port}"
    state = prepare(settings, freddy_url, Path.cwd() / STATE_FILE)
    server_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "BACKCHANNEL_PUBLIC_URL": public_url,
        "BACKCHANNEL_DEMO_WIDGET_KEY": state.widget_key,
        # Freddy runs on this machine, so webhooks must be allowed to reach loopback.
        "BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    }
    freddy_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        "FREDDY_API_URL": f"{public_url}/api/v1",
        "FREDDY_API_TOKEN": state.token,
        "FREDDY_WEBHOOK_SECRET": state.webhook_secret,
        "FREDDY_PUBLIC_URL": freddy_url,
    }
    server_argv = [sys.executable, "-m", "app.cli", "serve", "--no-migrate", "--workers", str(workers)]
    freddy_argv = [sys.executable, "-m", "uvicorn", "examples.agbank.freddy:create_app", "--factory"]
    children = [
        Child.start("the Backchannel server", [*server_argv, "--host", host, "--port", str(port)], env=server_env),
        Child.start(
            "Freddy, the demo bot",
            [*freddy_argv, "--host", "127.0.0.1", "--port", str(freddy_port), "--log-level", "warning"],
            env=freddy_env,
            cwd=ROOT,
        ),
    ]

    def stop(*_: Any) -> None:
        for child in children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    try:
        failure = _wait_healthy([f"http://127.0.0.1:{port}/healthz", f"{freddy_url}/healthz"], children)
        if failure is None:
            _print_welcome(public_url, state)
            while all(c.proc.poll() is None for c in children):
                time.sleep(0.3)
            stopped = next(c for c in children if c.proc.poll() is not None)
            if stopped.proc.returncode not in (0, -signal.SIGINT, -signal.SIGTERM):
                failure = f"{stopped.why_stopped()} (the demo stopped)"
    except KeyboardInterrupt:
        failure = None
    finally:
        stop()
        for child in children:
            try:
                child.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.proc.kill()
    if failure:
        print(f"error: {failure}", file=sys.stderr, flush=True)
        return 1
    return 0


def _wait_healthy(urls: list[str], children: list[Child]) -> str | None:
    """None once every URL answers 200; else why not (a child stopped, or too slow)."""
    deadline = time.monotonic() + START_SECONDS
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        for child in children:
            if child.proc.poll() is not None:
                return f"{child.why_stopped()} (during start-up)"
        try:
            if httpx.get(pending[0], timeout=1).status_code == 200:
                pending.pop(0)
                continue
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    if pending:
        return f"{pending[0].rsplit('/', 1)[0]} did not answer within {START_SECONDS:.0f} s"
    return None


def _print_welcome(url: str, state: DemoState) -> None:
    print(
        f"""
================================================================================
  Backchannel is running, with the AG Bank demo and Freddy the bot.

  Demo page (chat with Freddy):  {url}/demo
  Console (Inbox, Settings):     {url}/console
      email:     {state.admin_email}
      password:  {state.admin_password}
  Demo API token (Freddy's):     {state.token}
  API reference:                 {url}/docs

  Try: open the demo page, click "Open chat", then "Account statement" and use the
  test card 4111 1111 1111 1111 with any future expiry. Ctrl-C stops everything.
================================================================================
""",
        flush=True,
    )
