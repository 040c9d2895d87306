"""Fail at the moment of the mistake (SPEC §14): an endpoint whose host is literally loopback
or private is a 422 at creation that says what to do (``backchannel listen``), in the API and
the console, unless the server allows private networks. DNS names are judged at delivery."""

from __future__ import annotations

from typing import Any

import pytest

from app.webhooks.netguard import literal_refusal
from tests.console.support import console_client, make_console_user, page_csrf
from tests.factories import assert_error, openapi_spec
from tests.webhooks.test_netguard import ALLOWED

EP = "/api/v1/webhook-endpoints"
PRIVATE = "BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS"
LITERAL_PRIVATE = [
    "http://localhost:3000/webhooks", "http://LOCALHOST./x", "https://bot.localhost/", "http://127.0.0.1:8080/",
    "http://127.1/", "http://2130706433/", "http://0x7f.1/", "http://10.0.0.7/hooks", "http://192.168.1.20/",
    "http://172.16.5.4/", "http://169.254.169.254/latest", "http://[::1]:3000/", "http://[fd12:3456::1]/",
    "http://[::ffff:127.0.0.1]/", "http://0.0.0.0:3000/",
]
NAMES = ["https://bot.example.com/hooks", "http://localhost.example.com/", "https://10.example/", "http://127x.io/"]


@pytest.mark.parametrize("url", LITERAL_PRIVATE)
def test_literal_loopback_and_private_hosts_are_named(url: str) -> None:
    reason = literal_refusal(url)
    assert reason is not None and ("loopback" in reason or "private" in reason or "link-local" in reason
                                   or "unspecified" in reason or "metadata" in reason), reason


@pytest.mark.parametrize("url", [*ALLOWED, *NAMES, "not a url", "ftp://10.0.0.1/"])
def test_public_addresses_and_dns_names_are_left_to_delivery(url: str) -> None:
    assert literal_refusal(url) is None


def test_a_localhost_endpoint_is_refused_with_a_pointer_to_listen(app_server_factory: Any) -> None:
    server = app_server_factory(env={PRIVATE: "false"})
    tenant = server.new_tenant()
    with server.client(tenant) as api:
        for url in ("http://localhost:3000/webhooks", "http://127.0.0.1:3000/", "http://192.168.1.20/hooks"):
            error = assert_error(api.post(EP, json={"url": url}), 422, "private_endpoint_url")
            (detail,) = error["details"]
            assert detail["field"] == "url"
            assert "backchannel listen" in detail["message"] and f"--forward-to {url}" in detail["message"]
            assert "BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS" in detail["message"]
        assert api.get(EP).json()["data"] == []  # nothing stored

        # A public endpoint cannot be moved onto the developer's machine either.
        ok = api.post(EP, json={"url": "https://bot.example.com/hooks"})
        assert ok.status_code == 201
        moved = api.patch(f"{EP}/{ok.json()['id']}", json={"url": "http://[::1]:3000/"})
        assert assert_error(moved, 422, "private_endpoint_url")["details"][0]["field"] == "url"
        assert api.get(f"{EP}/{ok.json()['id']}").json()["url"] == "https://bot.example.com/hooks"
        # Other changes to the endpoint are not judged by its URL.
        assert api.patch(f"{EP}/{ok.json()['id']}", json={"description": "prod"}).status_code == 200
        op = openapi_spec(api)["paths"][EP]["post"]
        assert "backchannel listen" in op["description"]


def test_the_server_that_allows_private_networks_accepts_them(app_api: Any) -> None:
    assert app_api.post(EP, json={"url": "http://localhost:3000/webhooks"}).status_code == 201


def test_the_console_says_the_same_next_to_the_url_field(app_server_factory: Any) -> None:
    server = app_server_factory(env={PRIVATE: "false"})
    tenant = server.new_tenant()
    email = make_console_user(server, tenant)
    browser = console_client(server, email)
    try:
        path = "/console/settings/webhooks"
        r = browser.post(path, data={"csrf_token": page_csrf(browser, path), "url": "http://localhost:3000/hook",
                                     "events": "*"})
        assert r.status_code == 422
        assert "backchannel listen" in r.text and "loopback" in r.text
    finally:
        browser.close()
    with server.client(tenant) as api:
        assert api.get(EP).json()["data"] == []
