"""Who is on the other end: the one place that decides a request's client address and scheme.

Behind a reverse proxy every connection comes from the proxy, so the customer's address is
in ``X-Forwarded-For`` — a header anyone can send. It is believed only when the connection
comes from a peer listed in ``BACKCHANNEL_TRUSTED_PROXIES``, and then walked from the right
(the end the trusted proxies appended to), skipping further trusted hops: the first address
that is not a trusted proxy is the client. Whatever a client writes into the header itself
sits to the left of that and is never reached. ``X-Forwarded-Proto`` is believed on the
same terms.

``resolve_scope`` runs once per connection in the HTTP edge middleware and rewrites the
ASGI scope's ``client`` and ``scheme``; everything else reads ``client_address(request)``.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import Any

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN = "unknown"


def parse_networks(value: str | Iterable[str]) -> tuple[Network, ...]:
    """``"10.0.0.1, 192.168.0.0/16, ::1"`` → networks; a bad entry is a ``ValueError`` naming it."""
    items = value.split(",") if isinstance(value, str) else list(value)
    networks: list[Network] = []
    for item in items:
        entry = str(item).strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"BACKCHANNEL_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(networks)


@functools.lru_cache(maxsize=8192)  # every request asks; ipaddress parsing costs ~10 µs
def ip_of(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address (IPv4-mapped IPv6 as the IPv4 it maps), or None when it is not one."""
    try:
        addr = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class TrustedProxies:
    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        self._trusted: dict[str, bool] = {}  # the peers seen: a few proxies, or many customers

    def trusts(self, host: str) -> bool:
        known = self._trusted.get(host)
        if known is None:
            addr = ip_of(host)
            known = addr is not None and any(addr in net for net in self.networks)
            if len(self._trusted) > 4096:
                self._trusted.clear()
            self._trusted[host] = known
        return known

    def client_of(self, peer: str, forwarded_for: str | None) -> str:
        """The customer's address given the TCP peer and the ``X-Forwarded-For`` it sent."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            addr = ip_of(hop.strip())
            if addr is None:
                # Trusted proxies write addresses; anything else came from the client's side.
                return client
            client = str(addr)
            if not self.trusts(client):
                return client
        return client  # every hop is a trusted proxy: the leftmost is as far as we can see

    def resolve_scope(self, scope: Any) -> Any:
        """The scope with ``client`` (and ``scheme``) as the customer sees them; unchanged
        when no trusted proxy is configured or the peer is not one of them."""
        if not self.networks:
            return scope
        peer = scope.get("client")
        if not peer or not self.trusts(peer[0]):
            return scope
        forwarded_for: list[str] = []
        proto: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                forwarded_for.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1")
        changes: dict[str, Any] = {}
        if forwarded_for:
            client = self.client_of(peer[0], ",".join(forwarded_for))
            if client != peer[0]:
                changes["client"] = (client, 0)
        if proto:
            scheme = proto.split(",")[-1].strip().lower()
            if scheme in ("http", "https"):
                if scope["type"] == "websocket":
                    scheme = "wss" if scheme == "https" else "ws"
                changes["scheme"] = scheme
        return {**scope, **changes} if changes else scope


def client_address(conn: HTTPConnection) -> str:
    """The client's address for limits, logs and audit: the customer's, through trusted proxies
    (resolved once per request by the edge middleware, see ``TrustedProxies.resolve_scope``)."""
    client = conn.scope.get("client")
    return str(client[0]) if client else UNKNOWN


def client_limit_key(conn: HTTPConnection) -> str:
    """The client address as a per-address limit counts it: an IPv4 address, or the /64 of an
    IPv6 one (one customer's connection gets a whole /64, so a limit per /128 would be none)."""
    address = client_address(conn)
    addr = ip_of(address)
    if isinstance(addr, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr) if addr is not None else address
