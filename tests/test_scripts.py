"""The README's commands: ``scripts/serve`` starts a working server with data in the current folder."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port


def test_scripts_serve_no_demo_serves_from_the_current_folder(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "serve"), "--no-demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
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
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json").status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    assert (ROOT / ".ci" / "run").read_text().count("scripts/test") >= 1
