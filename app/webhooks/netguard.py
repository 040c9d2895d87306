"""The SSRF guard: the one check of every outgoing URL (webhook deliveries, web-view callbacks).

Two steps, both here. ``destination(url)`` reads the URL: ``http`` or ``https``, a host, the
port, the ``Host`` header and the request target; it needs no network, so an endpoint's
stored URL can be judged when it is claimed. ``resolve_checked(dest)`` runs when a
connection is made, not when a URL is saved (DNS answers change): the host is resolved
once, every address is checked, and ``sender.py`` connects to one of those addresses with
the original ``Host`` header and TLS name, so a second, different DNS answer (DNS
rebinding) is never used. ``BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` turns the address
check off (demo, tests, private deployments); the URL check stays.
"""

from __future__ import annotations

import asyncio
import socket
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address, ip_network

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


class UrlRefused(Exception):
    """The URL may not be called: not a URL, wrong scheme, no host, or a non-public address.

    The message is fit for a delivery log (it names the URL's host, never a secret).
    """


@dataclass(frozen=True)
class Destination:
    """Where a request to an ``http``/``https`` URL goes, as ``destination(url)`` read it."""

    scheme: str
    host: str  # as resolved, and as TLS names it
    port: int
    host_header: bytes  # the ``Host`` header: the name as written, with a port that is not the default
    target: bytes  # the request target: path and query

    @property
    def origin(self) -> tuple[str, str, int]:
        """What a kept connection may be reused for."""
        return self.scheme, self.host, self.port


def destination(url: str) -> Destination:
    """Read ``url``; raises ``UrlRefused`` unless it is an ``http`` or ``https`` URL with a host."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UrlRefused(f"not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise UrlRefused(f"only http and https URLs may be called, not {parsed.scheme or 'none'}:")
    if not parsed.host:
        raise UrlRefused("the URL has no host")
    default = 443 if parsed.scheme == "https" else 80
    port = parsed.port or default
    raw_host = parsed.raw_host.decode("ascii")
    shown = f"[{raw_host}]" if ":" in raw_host else raw_host
    host_header = shown if port == default else f"{shown}:{port}"
    return Destination(parsed.scheme, parsed.host, port, host_header.encode("ascii"), parsed.raw_path or b"/")


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


# RFC 6761: "localhost" and every name under it always mean this machine.
_LOOPBACK_NAMES = ("localhost", ".localhost")
_NUMERIC_IPV4 = frozenset(string.hexdigits + ".xX")


def literal_address(host: str) -> Address | None:
    """The address ``host`` spells without asking DNS: an IP literal in any of the spellings a
    socket reads (``127.0.0.1``, ``127.1``, ``2130706433``, ``0x7f.1``), else ``None``."""
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        pass
    if host and all(c in _NUMERIC_IPV4 for c in host) and host[0].isdigit():
        try:
            return IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def literal_refusal(url: str) -> str | None:
    """Why a URL's host is known, without DNS, never to be reachable from a public server:
    a literal loopback, private, link-local or metadata address, or ``localhost``. ``None`` when
    the URL names a public address or a DNS name (those are checked when a request is made)."""
    try:
        host = destination(url).host.lower().rstrip(".")
    except UrlRefused:
        return None  # the URL's own validation says what is wrong with it
    if host in _LOOPBACK_NAMES[:1] or host.endswith(_LOOPBACK_NAMES[1]):
        return f"{host} is this server itself (loopback)"
    ip = literal_address(host)
    if ip is None or (reason := refusal_reason(ip)) is None:
        return None
    return f"{host} is a {reason} address"


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
    dest: Destination, *, allow_private: bool, resolver: Resolver = system_resolver
) -> list[Address]:
    """The addresses to connect to for ``dest``; raises ``UrlRefused`` if any is off limits.

    Literal hosts in odd spellings (``2130706433``, ``0x7f.1``, ``127.1``) go through the
    resolver too, which reads them the way a socket would, so they are checked as what
    they really are.
    """
    host = dest.host
    literal = True
    try:
        addresses = [ip_address(host)]
    except ValueError:
        literal = False
        try:
            answers = await resolver(host, dest.port)
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


async def check_url(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> list[Address]:
    """Both steps for one URL: the addresses a request to it may connect to, or ``UrlRefused``."""
    return await resolve_checked(destination(url), allow_private=allow_private, resolver=resolver)
