"""The README's commands: ``scripts/serve`` starts a working server with data in the current folder,
and when something stops it (a taken port, a crashed demo bot) it says why in one line and exits
non-zero. The fresh-machine run of the same command is ``tests/test_fresh_clone.py``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port
from tests.outside import stop_group

SECRET = {"BACKCHANNEL_SECRET_KEY": "scripts-test-secret-0123456789-abcdefghij"}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_") and k != "WEB_CONCURRENCY"}
    return {**env, **extra}


def start_serve(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = open(folder / "serve.log", "wb")  # noqa: SIM115 - the child holds it; closed when this returns
    try:
        return subprocess.Popen(
            [str(ROOT / "scripts" / "serve"), *args],
            cwd=folder,
            env=env or clean_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def wait_for(folder: Path, proc: subprocess.Popen[bytes], text: str, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        log = (folder / "serve.log").read_text(errors="replace")
        if text in log:
            return log
        assert proc.poll() is None, log
        time.sleep(0.2)
    raise AssertionError((folder / "serve.log").read_text(errors="replace"))


def test_scripts_serve_no_demo_serves_from_the_current_folder(tmp_path: Path) -> None:
    port = free_port()
    proc = start_serve(tmp_path, "--no-demo", "--port", str(port))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError((tmp_path / "serve.log").read_text())
        assert (tmp_path / "backchannel.db").exists()
        out = (tmp_path / "serve.log").read_text()
        assert "workspaces create" in out and "tokens create" in out
        assert "==> applying database migrations to sqlite:///./backchannel.db" in out
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json").status_code == 200
    finally:
        stop_group(proc)
    assert (ROOT / ".ci" / "run").read_text().count("scripts/test") >= 1


def test_ci_runs_scripts_check_first_in_the_venv_scripts_test_uses() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert 0 <= ci.index("scripts/check") < ci.index("scripts/test")
    check = (ROOT / "scripts" / "check").read_text()
    # The test extras as well as dev: scripts/test afterwards finds every marker and installs nothing.
    assert "ensure_venv demo,test,dev" in check and "ensure_venv demo,test" in (ROOT / "scripts" / "test").read_text()
    assert "ruff\" check" in check and "mypy\" app" in check


def test_scripts_serve_says_in_one_line_that_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [str(ROOT / "scripts" / "serve"), "--port", str(port)],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use (is another Backchannel running?); "
        "stop it, or choose another port with --port"
    ]
    assert not (tmp_path / "backchannel.db").exists()  # said before anything slow or lasting happened


def test_scripts_serve_stops_and_says_why_when_the_demo_bot_dies(tmp_path: Path) -> None:
    port = free_port()
    proc = start_serve(tmp_path, "--port", str(port), env=clean_env(**SECRET))
    try:
        wait_for(tmp_path, proc, "Demo page (chat with Freddy)")
        freddy_port = int(json.loads((tmp_path / "backchannel-demo.json").read_text())["freddy_url"].rsplit(":", 1)[1])
        freddy = next(pid for pid in _descendants(proc.pid) if f"--port\0{freddy_port}" in _cmdline(pid))
        os.kill(freddy, signal.SIGKILL)
        assert proc.wait(timeout=30) == 1
        last = (tmp_path / "serve.log").read_text().strip().splitlines()[-1]
        assert last == "error: Freddy, the demo bot exited with code -9: no output (the demo stopped)"
        # and the server was stopped with it
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            raise AssertionError("the server outlived the demo")
        except httpx.HTTPError:
            pass
    finally:
        stop_group(proc)


def _descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [d for c in map(int, children) for d in (c, *_descendants(c))]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except FileNotFoundError:
        return ""


def test_scripts_serve_refuses_to_listen_beyond_loopback_with_the_dev_secret(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "serve"), "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: refusing to listen on 0.0.0.0 with the public development secret key")
    assert not (tmp_path / "backchannel.db").exists()
