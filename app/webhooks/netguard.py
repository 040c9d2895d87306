"""The SSRF guard: outgoing HTTP (webhooks, web-view callbacks) only reaches public addresses.

A URL is checked when it is used, not when it is saved: DNS answers change. The host is
resolved once, every address is checked, and the connection goes to a checked address
with the original ``Host`` header and TLS SNI, so a second, different DNS answer (DNS
rebinding) is never used. ``BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` turns the address
check off (demo, tests, private deployments); the scheme check stays.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

import httpx

Address = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Named so a refusal says why; anything else that is not globally routable is refused too.
_CGNAT = ip_network("100.64.0.0/10")
_METADATA: dict[Address, str] = {
    ip_address("169.254.169.254"): "AWS/GCP/Azure/OpenStack",
    ip_address("169.254.170.2"): "AWS ECS",
    ip_address("100.100.100.200"): "Alibaba Cloud",
    ip_address("192.0.0.192"): "Oracle Cloud",
    ip_address("168.63.129.16"): "Azure WireServer",  # a public address, so named explicitly
    ip_address("fd00:ec2::254"): "AWS IPv6",
}
# IPv6 ranges that carry an IPv4 address in their low 32 bits (translated on the way out).
_EMBEDS_IPV4: list[IPv6Network] = [
    IPv6Network("64:ff9b::/96"),  # NAT64 well-known prefix
    IPv6Network("64:ff9b:1::/48"),  # NAT64 local use
    IPv6Network("::/96"),  # deprecated IPv4-compatible
]


class UrlRefused(httpx.TransportError):
    """The URL may not be fetched: wrong scheme, no host, or a non-public address.

    An ``httpx.TransportError`` so callers that already treat network failures as
    "try again later" (the web-view relay, the dispatcher) handle it the same way.
    """


def refusal_reason(ip: Address) -> str | None:
    """Why this address is off limits (``None`` if it is a public unicast address)."""
    if isinstance(ip, IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None and (reason := refusal_reason(embedded)):
            return f"{reason}, IPv4 {embedded} inside IPv6"
    if ip in _METADATA:
        return f"cloud metadata ({_METADATA[ip]})"
    checks: list[tuple[bool, str]] = [
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_unspecified, "unspecified"),
        (isinstance(ip, IPv4Address) and ip in _CGNAT, "carrier-grade NAT"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "non-public"),
    ]
    for hit, reason in checks:
        if hit:
            return reason
    return None


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in _EMBEDS_IPV4) and int(ip) > 1:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives, in its order (it knows IPv4/IPv6 preference)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for *_, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.append(str(sockaddr[0]))
    return seen


async def resolve_checked(
    url: httpx.URL, *, allow_private: bool, resolver: Resolver = system_resolver
) -> list[Address]:
    """The addresses to connect to for ``url``; raises ``UrlRefused`` if any is off limits.

    Literal hosts in odd spellings (``2130706433``, ``0x7f.1``, ``127.1``) go through the
    resolver too, which reads them the way a socket would, so they are checked as what
    they really are.
    """
    if url.scheme not in ("http", "https"):
        raise UrlRefused(f"only http and https URLs may be called, not {url.scheme or 'none'}:")
    host = url.host
    if not host:
        raise UrlRefused("the URL has no host")
    port = url.port or (443 if url.scheme == "https" else 80)
    literal = True
    try:
        addresses = [ip_address(host)]
    except ValueError:
        literal = False
        try:
            answers = await resolver(host, port)
        except OSError as exc:
            raise UrlRefused(f"{host} does not resolve ({exc.strerror or exc})") from None
        addresses = [ip_address(a) for a in answers]
    if not addresses:
        raise UrlRefused(f"{host} does not resolve")
    if not allow_private:
        # Every answer must be public: otherwise a name with one public and one private
        # address could be steered to the private one by a connection failure.
        for ip in addresses:
            if (reason := refusal_reason(ip)) is not None:
                shown = host if literal else f"{host} resolves to {ip}, which"
                raise UrlRefused(
                    f"{shown} is not a public address ({reason}); webhook and callback URLs "
                    "must reach the public internet (or set BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS)"
                )
    return addresses


async def check_url_allowed(url: str, settings: Any, *, resolver: Resolver = system_resolver) -> None:
    """Raise ``UrlRefused`` (with a message fit for a delivery log) if ``url`` may not be called."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UrlRefused(f"not a valid URL: {exc}") from None
    await resolve_checked(
        parsed, allow_private=settings.webhook_allow_private_networks, resolver=resolver
    )


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that checks each request's host and connects to that checked address.

    The request goes to ``scheme://<address>:port`` with the original ``Host`` header and,
    for https, the original name as SNI (httpcore verifies the certificate against it).
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        inner: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.inner = inner or httpx.AsyncHTTPTransport(
            retries=0,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=20),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        addresses = await resolve_checked(
            request.url, allow_private=self.allow_private, resolver=self.resolver
        )
        extensions = dict(request.extensions)
        if request.url.scheme == "https":
            extensions.setdefault("sni_hostname", request.url.host)
        failure: httpx.ConnectError | None = None
        for ip in addresses[:4]:
            pinned = httpx.Request(
                request.method,
                request.url.copy_with(host=str(ip)),
                headers=request.headers,  # already carries Host: the original name
                stream=request.stream,
                extensions=extensions,
            )
            try:
                return await self.inner.handle_async_request(pinned)
            except httpx.ConnectError as exc:
                # Nothing was sent yet: the next checked address (e.g. IPv4 after IPv6) is safe.
                failure = exc
        assert failure is not None
        raise failure

    async def aclose(self) -> None:
        await self.inner.aclose()


def make_http_client(settings: Any, *, resolver: Resolver = system_resolver) -> httpx.AsyncClient:
    """The outgoing HTTP client for web-view callbacks (``AppState.http``); webhook
    deliveries use ``webhook_client.WebhookClient``, which connects through ``resolve_checked`` too.

    Redirects are not followed (a redirect is a failed delivery), environment proxies are
    ignored (they would connect to an address nobody checked), and ``timeout`` is per phase;
    callers bound the whole request themselves.
    """
    return httpx.AsyncClient(
        transport=GuardedTransport(
            allow_private=settings.webhook_allow_private_networks,
            resolver=resolver,
            max_connections=max(10, settings.webhook_concurrency * 2),
        ),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.webhook_timeout_seconds),
        headers={"user-agent": "Backchannel-Webhooks/1.0"},
    )
