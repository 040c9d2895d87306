"""BACKCHANNEL_TRUSTED_PROXIES: forwarded headers are believed from trusted peers only.

The test process plays the reverse proxy: it connects from 127.0.0.1 and writes
``X-Forwarded-For`` the way nginx's ``$proxy_add_x_forwarded_for`` does (whatever the
customer sent, then the customer's address).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.proxies import TrustedProxies, client_address, client_limit_key, parse_networks
from app.settings import Settings
from tests.conftest import LiveServer, Tenant
from tests.console.support import csrf_from

ORIGIN = "http://shop.test"


def behind_proxy(customer: str, sent_by_customer: str | None = None) -> dict[str, str]:
    chain = f"{sent_by_customer}, {customer}" if sent_by_customer else customer
    return {"Origin": ORIGIN, "X-Forwarded-For": chain}


def widget_session(server: LiveServer, tenant: Tenant, headers: dict[str, str]) -> int:
    r = httpx.post(server.url + "/widget/v1/session", json={"widget_key": tenant.widget_key}, headers=headers)
    assert r.status_code in (200, 429), r.text
    return r.status_code


# -- the walk itself ------------------------------------------------------------------------


def test_the_walk_goes_from_the_right_and_skips_trusted_hops() -> None:
    proxies = TrustedProxies(parse_networks("10.0.0.0/8, 127.0.0.1, ::1"))
    # One proxy: the rightmost entry is the customer; anything left of it is theirs to invent.
    assert proxies.client_of("127.0.0.1", "203.0.113.7") == "203.0.113.7"
    assert proxies.client_of("127.0.0.1", "6.6.6.6, 203.0.113.7") == "203.0.113.7"
    # Two proxies (a load balancer in 10/8 before nginx): skip the trusted hop.
    assert proxies.client_of("127.0.0.1", "6.6.6.6, 203.0.113.7, 10.1.2.3") == "203.0.113.7"
    # An untrusted peer's header is ignored whatever it says.
    assert proxies.client_of("198.51.100.1", "203.0.113.7") == "198.51.100.1"
    # Junk is never taken for an address; the nearest trusted hop stands instead.
    assert proxies.client_of("127.0.0.1", "<script>, 10.1.2.3") == "10.1.2.3"
    assert proxies.client_of("127.0.0.1", "not-an-ip") == "127.0.0.1"
    # IPv6 and IPv4-mapped forms.
    assert proxies.client_of("::1", "2001:db8::5") == "2001:db8::5"
    assert proxies.client_of("::ffff:127.0.0.1", "203.0.113.9") == "203.0.113.9"
    # No trusted proxies (the default): nothing is believed.
    assert TrustedProxies(()).client_of("127.0.0.1", "203.0.113.7") == "127.0.0.1"


def test_a_bad_entry_in_the_setting_is_refused_at_start_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKCHANNEL_TRUSTED_PROXIES", "10.0.0.0/8, nginx")
    with pytest.raises(ValueError, match="'nginx' is not an IP address or CIDR"):
        Settings()
    monkeypatch.setenv("BACKCHANNEL_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    assert [str(n) for n in Settings().trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32"]


def test_client_address_reads_the_resolved_scope() -> None:
    from starlette.requests import Request

    proxies = TrustedProxies(parse_networks("127.0.0.1"))
    scope = {
        "type": "http",
        "client": ("127.0.0.1", 5000),
        "scheme": "http",
        "headers": [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.7"), (b"x-forwarded-proto", b"https")],
    }
    resolved = proxies.resolve_scope(scope)
    assert client_address(Request(resolved)) == "203.0.113.7" and resolved["scheme"] == "https"
    assert client_address(Request(scope)) == "127.0.0.1"  # the original is left alone
    assert client_address(Request({"type": "http", "client": None, "headers": []})) == "unknown"


def test_limits_count_an_ipv6_customer_by_their_64() -> None:
    from starlette.requests import Request

    def key(addr: str) -> str:
        return client_limit_key(Request({"type": "http", "client": (addr, 1), "headers": []}))

    assert key("2001:db8:1:2::5") == key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert key("2001:db8:1:3::5") != key("2001:db8:1:2::5")
    assert key("203.0.113.7") == "203.0.113.7" and key("::ffff:203.0.113.7") == "203.0.113.7"


# -- through a real server -------------------------------------------------------------------


def test_behind_a_trusted_proxy_two_customers_each_get_their_own_widget_session_allowance(
    server_factory: Any,
) -> None:
    srv: LiveServer = server_factory(env={"BACKCHANNEL_TRUSTED_PROXIES": "127.0.0.1"})
    tenant = srv.new_tenant()
    # Customer A uses up their 60 a minute, each time inventing a different address of their own.
    statuses = [widget_session(srv, tenant, behind_proxy("203.0.113.10", f"6.6.6.{i}")) for i in range(61)]
    assert statuses[:60] == [200] * 60 and statuses[60] == 429
    # Customer B, behind the same proxy, is not affected.
    assert widget_session(srv, tenant, behind_proxy("203.0.113.11")) == 200
    # An IPv6 customer cannot walk through their own /64 to get more.
    v6 = [widget_session(srv, tenant, behind_proxy(f"2001:db8:5:6::{i:x}")) for i in range(1, 62)]
    assert v6[:60] == [200] * 60 and v6[60] == 429
    # Customer A is still refused, whatever they write into the header.
    assert widget_session(srv, tenant, behind_proxy("203.0.113.10", "203.0.113.11")) == 429


def test_from_an_untrusted_peer_forwarded_headers_are_ignored(server_factory: Any) -> None:
    srv: LiveServer = server_factory()  # no BACKCHANNEL_TRUSTED_PROXIES: the default
    tenant = srv.new_tenant()
    # A customer connecting directly cannot pose as 61 different people.
    statuses = [widget_session(srv, tenant, behind_proxy(f"203.0.113.{i}")) for i in range(61)]
    assert statuses[:60] == [200] * 60 and statuses[60] == 429
    # Nor does X-Forwarded-Proto make the console think it is on https.
    page = httpx.get(srv.url + "/console/login", headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in page.headers["set-cookie"].lower()


def test_a_proxy_outside_the_trusted_list_is_not_believed(server_factory: Any) -> None:
    srv: LiveServer = server_factory(env={"BACKCHANNEL_TRUSTED_PROXIES": "10.0.0.0/8"})
    tenant = srv.new_tenant()
    statuses = [widget_session(srv, tenant, behind_proxy(f"203.0.113.{i}")) for i in range(61)]
    assert statuses[-1] == 429


def login_attempt(srv: LiveServer, customer: str, email: str) -> int:
    headers = {"X-Forwarded-For": customer, "Origin": srv.url}
    with httpx.Client(base_url=srv.url, timeout=10, headers=headers) as client:
        page = client.get("/console/login")
        r = client.post(
            "/console/login", data={"email": email, "password": "wrong", "csrf_token": csrf_from(page.text)}
        )
    assert r.status_code in (401, 429), r.text
    return r.status_code


def test_behind_a_trusted_proxy_console_login_limits_are_per_customer(server_factory: Any) -> None:
    # 2 attempts per account and 5 × 2 = 10 per address in 15 minutes.
    srv: LiveServer = server_factory(
        env={"BACKCHANNEL_TRUSTED_PROXIES": "127.0.0.1", "BACKCHANNEL_LOGIN_ATTEMPTS_PER_15MIN": "2"}
    )
    statuses = [login_attempt(srv, "203.0.113.20", f"guess{i}@example.com") for i in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429
    # Another customer behind the same proxy still has their own allowance.
    assert login_attempt(srv, "203.0.113.21", "someone@example.com") == 401
    assert login_attempt(srv, "203.0.113.20", "fresh@example.com") == 429


def test_untrusted_console_login_limits_ignore_the_forwarded_header(server_factory: Any) -> None:
    srv: LiveServer = server_factory(env={"BACKCHANNEL_LOGIN_ATTEMPTS_PER_15MIN": "2"})
    statuses = [login_attempt(srv, f"203.0.113.{i}", f"guess{i}@example.com") for i in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429


def test_a_trusted_proxy_says_https_and_console_cookies_are_secure(server_factory: Any) -> None:
    srv: LiveServer = server_factory(env={"BACKCHANNEL_TRUSTED_PROXIES": "127.0.0.1"})
    page = httpx.get(srv.url + "/console/login", headers={"X-Forwarded-Proto": "https"})
    assert "secure" in page.headers["set-cookie"].lower()
    plain = httpx.get(srv.url + "/console/login")
    assert "secure" not in plain.headers["set-cookie"].lower()
