"""The README's first command, met the way a newcomer meets it (SPEC §1, "fresh machine" literally):
``git clone`` of this repository's committed HEAD into an empty folder, then ``scripts/serve``
there — which must make its own new ``.venv`` with only what it installs itself (no test
extras), migrate, and start the server with the demo. The demo page must answer, and Freddy,
the demo bot, must greet a customer who opens the widget (its HTTP session and WebSocket
protocol, as ``widget.js`` speaks it). pip's download cache is shared; the venv is new.

CI runs this in a clean clone; it clones the repository the test runs in, so it tests what is
committed there (commit before running it locally)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.outside import Background, base_python, demo_widget_key, freddy_greeting, outside_env, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_a_fresh_clone_serves_the_demo_and_freddy_greets_a_customer(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    started = time.monotonic()
    clone = tmp_path / "backchannel"
    run(["git", "clone", "--quiet", str(ROOT), str(clone)], timeout=120)
    assert not (clone / ".venv").exists()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # PYTHON: the interpreter a newcomer has, so that ours (with every extra) is never used
    serve = Background(
        [str(clone / "scripts" / "serve"), "--port", str(port)],
        clone,
        outside_env(PYTHON=base_python()),
        tmp_path / "serve.log",
    )
    try:
        serve.wait_for_url(url + "/demo", 600)
        seconds = time.monotonic() - started
        log = serve.log()
        deadline = time.monotonic() + 30
        while "Demo page (chat with Freddy)" not in log:  # Freddy answers too, then the welcome
            assert time.monotonic() < deadline and serve.proc.poll() is None, log[-10000:]
            time.sleep(0.2)
            log = serve.log()
        for step in (
            f"==> creating a virtualenv in {clone}/.venv",
            "==> installing Backchannel with [demo]",
            "==> applying database migrations to sqlite:///./backchannel.db",
        ):
            assert step in log
        assert "Traceback" not in log and "Warning" not in log  # nothing alarming a newcomer cannot act on
        print(f"\ngit clone to the demo page answering: {seconds:.0f} s")

        # the venv holds what scripts/serve installs, and nothing a test run would add
        venv_python = str(clone / ".venv" / "bin" / "python")
        assert run([venv_python, "-c", "import standardwebhooks, app"], cwd=tmp_path).returncode == 0
        assert subprocess.run([venv_python, "-c", "import pytest"], capture_output=True).returncode != 0

        greeting = freddy_greeting(url, demo_widget_key(url))
        assert "I'm Freddy" in greeting["message_parts"][0]["text"]["content"]
        labels = [o["label"] for o in greeting["reply_parts"][0]["quick_replies"]["options"]]
        assert labels == ["Account statement", "Card services", "Talk to a human"]
    finally:
        serve.stop()
