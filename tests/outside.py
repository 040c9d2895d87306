"""Helpers for the tests that meet Backchannel from the outside, as a newcomer does: a fresh
clone or a built wheel, a brand-new virtualenv, no ``BACKCHANNEL_*`` settings of ours, and
a process that is always stopped (its whole group) and whose log is shown when it fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.conftest import ROOT


def outside_env(**extra: str) -> dict[str, str]:
    """This process's environment minus anything that points into our repository or venv."""
    ours = {str(ROOT / ".venv" / "bin"), os.path.join(sys.prefix, "bin"), os.environ.get("VIRTUAL_ENV", "") + "/bin"}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BACKCHANNEL_", "PYTEST_")) and k not in {"VIRTUAL_ENV", "PYTHONPATH", "WEB_CONCURRENCY"}
    }
    env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p not in ours)
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def base_python() -> str:
    """The interpreter our venv was made from: what a newcomer has on a fresh machine."""
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
    return proc  # type: ignore[no-any-return]


class Background:
    """A long-running command in its own process group, its output in a log file."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_url(self, url: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.log()[-10000:]}"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{url} did not answer within {seconds} s:\n{self.log()[-10000:]}")

    def stop(self) -> None:
        stop_group(self.proc)


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """Ctrl-C the whole process group (server and demo bot), as a terminal would; kill it if
    it is still there 20 s later."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def demo_widget_key(url: str) -> str:
    """The widget key the demo page embeds (``data-workspace``), as a visitor's browser reads it."""
    page = httpx.get(url + "/demo")
    assert page.status_code == 200, page.text
    match = re.search(r'data-workspace="([^"]+)"', page.text)
    assert match, page.text
    return match[1]


def freddy_greeting(url: str, widget_key: str) -> dict[str, Any]:
    """Open the widget as a new customer (HTTP session, then the socket) and return the bot's first message."""
    origin = url  # the demo page embeds the widget from the server's own origin
    session = httpx.post(url + "/widget/v1/session", json={"widget_key": widget_key}, headers={"Origin": origin})
    assert session.status_code == 200, session.text
    body = session.json()
    ws_url = url.replace("http://", "ws://") + body["socket_path"]
    with connect(ws_url, origin=Origin(origin)) as ws:
        ws.send(json.dumps({"type": "auth", "token": body["session_token"]}))
        frames = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            frames.append(frame)
            if frame["type"] == "ready":
                ws.send(json.dumps({"type": "open"}))
            elif frame["type"] == "message" and frame["message"]["actor"]["type"] == "bot":
                return frame["message"]  # type: ignore[no-any-return]
        raise AssertionError(f"Freddy never spoke; frames: {frames}")
