"""Helpers for console tests: make console users and log in with a plain HTTP client."""

from __future__ import annotations

import re

import httpx

from app.accounts import create_console_user, new_console_user
from tests.conftest import Server, Tenant

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_console_user(
    server: Server, tenant: Tenant, email: str = "ada@example.com", role: str = "admin", name: str | None = None
) -> str:
    account = new_console_user(email, PASSWORD, role=role, name=name)
    server.in_tx(lambda tx: create_console_user(tx, tenant.workspace_id, account))
    return email


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


def console_client(server: Server, email: str, password: str = PASSWORD) -> httpx.Client:
    """An httpx client with a console session cookie (logged in through the real form)."""
    client = server.client(headers={"origin": server.url})
    page = client.get("/console/login")
    r = client.post(
        "/console/login", data={"email": email, "password": password, "csrf_token": csrf_from(page.text)}
    )
    assert r.status_code == 303, r.text
    return client


def page_csrf(client: httpx.Client, path: str) -> str:
    r = client.get(path)
    assert r.status_code == 200, r.text
    return csrf_from(r.text)
