"""The SSRF guard (``netguard``), URL by URL and address by address, and the app's one guarded sender."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from app.main import create_app
from app.settings import Settings
from app.state import AppState
from app.webhooks.netguard import UrlRefused, check_url, destination
from app.webhooks.sender import GuardedSender
from tests.conftest import Tenant, migrated_sqlite
from tests.receivers import Receiver, eventually
from tests.webhooks.test_webhooks import add_endpoint, deliveries

T = TypeVar("T")

REFUSED = [
    # IPv4: loopback, private, link-local and metadata, CGNAT, unspecified, multicast, broadcast
    "http://127.0.0.1/", "http://127.8.9.10:8080/x", "http://10.0.0.1/", "http://172.16.5.4/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/", "http://169.254.170.2/",
    "http://100.64.0.1/", "http://100.100.100.200/", "http://192.0.0.192/", "http://168.63.129.16/",
    "http://0.0.0.0/", "http://224.0.0.1/", "http://239.255.255.250/", "http://255.255.255.255/",
    "http://198.18.0.1/", "http://240.0.0.1/",
    # odd spellings of 127.0.0.1 and 169.254.169.254
    "http://2130706433/", "http://0x7f.1/", "http://0x7f000001/", "http://127.1/", "http://2852039166/",
    # IPv6: loopback, unspecified, link-local, unique-local, metadata, multicast, documentation
    "http://[::1]/", "http://[::]/", "http://[fe80::1]/", "http://[fc00::1]/", "http://[fd12:3456::1]/",
    "http://[fd00:ec2::254]/", "http://[ff02::1]/", "http://[2001:db8::1]/",
    # IPv4 inside IPv6: mapped, compatible, NAT64, 6to4
    "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://[::ffff:169.254.169.254]/",
    "http://[::127.0.0.1]/", "http://[64:ff9b::a00:1]/", "http://[2002:7f00:1::]/",
    # names that resolve to loopback, names that do not resolve, other schemes
    "http://localhost/", "https://localhost:8443/", "http://does-not-exist.invalid/",
    "ftp://93.184.215.14/", "file:///etc/passwd", "gopher://1.1.1.1/",
]
ALLOWED = ["http://93.184.215.14/", "https://1.1.1.1:8443/hook", "http://8.8.8.8/", "https://[2606:4700:4700::1111]/"]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on a fresh event loop in a thread of its own: the browser tests' Playwright session
    keeps a loop running on the main thread, and asyncio cannot start another one there."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.mark.parametrize("url", REFUSED)
def test_private_and_odd_addresses_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused) as info:
        run(check_url(url, allow_private=False))
    assert str(info.value)  # a message fit for the delivery log


@pytest.mark.parametrize("url", ALLOWED)
def test_public_addresses_are_allowed(url: str) -> None:
    run(check_url(url, allow_private=False))


def test_the_flag_opens_private_networks_but_not_other_schemes() -> None:
    run(check_url("http://127.0.0.1:9/", allow_private=True))
    run(check_url("http://[::ffff:127.0.0.1]/", allow_private=True))
    for url in ("file:///etc/passwd", "gopher://1.1.1.1/", "http:///no-host", "not a url at all"):
        with pytest.raises(UrlRefused):
            run(check_url(url, allow_private=True))


def test_a_url_is_read_once_for_the_host_header_the_target_and_the_tls_name() -> None:
    dest = destination("https://Hooks.Example.com:8443/in/box?x=1")
    assert (dest.scheme, dest.host, dest.port) == ("https", "hooks.example.com", 8443)
    assert dest.host_header == b"hooks.example.com:8443" and dest.target == b"/in/box?x=1"
    assert destination("http://[2606:4700::1]/").host_header == b"[2606:4700::1]"
    assert destination("https://example.com").target == b"/"


def test_a_name_with_any_private_answer_is_refused() -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.7"]

    with pytest.raises(UrlRefused, match="10.0.0.7"):
        run(check_url("https://rebind.example/", allow_private=False, resolver=mixed))


def test_the_sender_never_follows_redirects() -> None:
    async def post(url: str) -> Any:
        sender = GuardedSender(allow_private=True)
        try:
            return await sender.post(url, {}, b"{}")
        finally:
            await sender.aclose()

    with Receiver(lambda req: (302, {"Location": "http://169.254.169.254/"}, b"")) as rx:
        reply = run(post(rx.url))
    assert reply.status_code == 302 and reply.headers["location"] == "http://169.254.169.254/"
    assert len(rx.received()) == 1


def test_with_the_flag_off_the_server_never_calls_a_loopback_receiver(server_factory: Any) -> None:
    # Endpoints added while private networks were allowed (a literal loopback host is refused
    # at creation otherwise: tests/webhooks/test_endpoint_urls.py), then the flag is turned off.
    srv = server_factory(env={"BACKCHANNEL_WEBHOOK_RETRY_SCHEDULE": "[]"})
    tenant: Tenant = srv.new_tenant()
    with Receiver() as rx:
        port = rx.port
        urls = [f"http://127.0.0.1:{port}/", f"http://localhost:{port}/", f"http://2130706433:{port}/",
                f"http://0x7f.1:{port}/", f"http://[::ffff:127.0.0.1]:{port}/"]
        with srv.client(tenant) as api:
            endpoints = [add_endpoint(api, url) for url in urls]
        srv.env["BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "false"
        srv.restart()
        with srv.client(tenant) as api:
            api.post("/api/v1/users", json={"name": "Ada"})
            for ep in endpoints:
                (d,) = eventually(lambda ep=ep: [d for d in deliveries(api, ep["id"]) if d["status"] == "failed"])
                assert d["last_error"].startswith("refused:") and "not a public address" in d["last_error"]
        assert rx.received() == []


def test_the_app_has_one_guarded_sender_for_deliveries_and_the_form_relay(tmp_path: Path) -> None:
    # The dispatcher holds it, and the web-view relay reaches the same one (app/webviews/routes.py).
    settings = Settings(env="test", database_url=migrated_sqlite(tmp_path))
    run(_check_app_services(create_app(settings)))


async def _check_app_services(app: Any) -> None:
    async with app.router.lifespan_context(app):
        state: AppState = app.state.bc
        sender = state.webhook_sender
        assert isinstance(sender, GuardedSender) and sender.allow_private is False
        assert not hasattr(state, "http")  # no second client
        assert state.runner.on_webhooks_enqueued == state.dispatcher.wake
        assert state.dispatcher.sender is sender
    assert sender.closed


def test_the_app_uses_an_injected_sender_and_leaves_it_open(tmp_path: Path) -> None:
    settings = Settings(env="test", database_url=migrated_sqlite(tmp_path))

    async def check() -> None:
        sender = GuardedSender(allow_private=True)
        app = create_app(settings, webhook_sender=sender)
        async with app.router.lifespan_context(app):
            state: AppState = app.state.bc
            assert state.webhook_sender is sender and state.dispatcher.sender is sender
        assert not sender.closed  # the caller's to close
        await sender.aclose()

    run(check())
