"""``pip install`` of the built wheel is a complete server (SPEC §1): the widget, the console,
the web-view pages and ``/docs`` come inside it, found from the installed package, not from
a source tree. Builds the sdist and, from it, the wheel (``python -m build``), installs the
wheel into a brand-new virtualenv, and runs ``backchannel migrate`` and ``backchannel serve``
from an empty folder."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.outside import Background, base_python, outside_env, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def source_files() -> list[str]:
    """The project's files as a checkout has them (tracked, plus new ones not ignored)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to build the wheel from")
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout.splitlines()
    return [f for f in listed if (ROOT / f).is_file()]


def packaged_as(path: str) -> str | None:
    """Where a source file must be inside the wheel (None: it need not be there)."""
    if "__pycache__" in path:
        return None
    for top in ("static/", "templates/"):
        if path.startswith(top):
            return "app/" + path
    return path if path.startswith("app/") else None


def test_the_built_wheel_is_a_complete_server(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name in source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((ROOT / name).read_bytes())
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], timeout=600)
    (wheel,) = dist.glob("backchannel-*.whl")

    # every file of app/, static/ and templates/ is in the wheel, static/ and templates/ under app/
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    expected = {packaged_as(f) for f in source_files()} - {None}
    assert expected - in_wheel == set(), "missing from the wheel"
    assert {"app/static/widget.js", "app/static/webview.js", "app/templates/console/login.html"} <= in_wheel
    assert not any(n.startswith(("static/", "templates/", "tests/", "examples/")) for n in in_wheel)

    venv = tmp_path / "venv"
    run([base_python(), "-m", "venv", str(venv)], timeout=120)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], timeout=600, env=outside_env())

    folder = tmp_path / "site"  # a folder of the user's, nowhere near a source tree
    folder.mkdir()
    secret = "wheel-test-secret-0123456789-abcdefghijklmnop"
    env = outside_env(BACKCHANNEL_SECRET_KEY=secret)
    bc = str(venv / "bin" / "backchannel")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert run([bc, "--version"], cwd=folder, env=env).stdout.strip() == f"backchannel {version}"
    where = run([str(venv / "bin" / "python"), "-c", "from app import assets; print(assets.STATIC_DIR)"], cwd=folder, env=env)
    assert where.stdout.strip().startswith(str(venv)), "the assets must come from the installed package"
    assert json.loads(run([bc, "migrate", "--json"], cwd=folder, env=env).stdout)["status"] == "ok"
    assert (folder / "backchannel.db").exists()
    no_demo = subprocess.run([bc, "serve", "--demo"], cwd=folder, env=env, capture_output=True, text=True, timeout=60)
    assert no_demo.returncode != 0 and no_demo.stderr.startswith("error: the AG Bank demo runs from a source checkout")

    port = free_port()
    server = Background([bc, "serve", "--port", str(port)], folder, env, tmp_path / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}"
        server.wait_for_url(url + "/healthz", 120)
        widget = httpx.get(url + "/widget.js")
        assert widget.status_code == 200 and "javascript" in widget.headers["content-type"]
        assert "attachShadow" in widget.text
        login = httpx.get(url + "/console/login")
        assert login.status_code == 200 and "Log in" in login.text and "Password" in login.text
        helper = httpx.get(url + "/static/webview.js")
        assert helper.status_code == 200 and "Backchannel" in helper.text
        docs = httpx.get(url + "/docs")
        assert docs.status_code == 200 and "/api/v1/conversations" in docs.text
        assert httpx.get(url + "/static/console.css").status_code == 200
    finally:
        server.stop()
