"""The one client-address resolver: rate limits, /metrics, the logs and the audit trail
all ask this module, so they all name the same client for the same request."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

Network = IPv4Network | IPv6Network
IpAddress = IPv4Address | IPv6Address

# What a Unix-socket peer (nginx on this host, `serve-nginx`) is called when no trusted
# proxy names the client: it is this machine.
LOCAL_PEER = "127.0.0.1"


@lru_cache(maxsize=16)
def trusted_networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ip_network(item, strict=False) for item in proxies)


def parse_ip(value: str) -> IpAddress | None:
    """An address (IPv4-mapped IPv6 as IPv4), or None when `value` is not one."""
    try:
        address = ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: IpAddress, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def peer_is_trusted(peer: str | None, trusted: tuple[Network, ...]) -> bool:
    """A Unix-socket peer (None: nginx on this host) or an address in TRUSTED_PROXIES."""
    if peer is None:
        return True
    address = parse_ip(peer)
    return address is not None and in_networks(address, trusted)


def resolve_client_ip(
    peer: str | None, forwarded_for: list[str], trusted: tuple[Network, ...]
) -> str:
    """The client's address as this service may believe it.

    `peer` is the socket peer's host, None for a Unix socket. A Unix-socket peer is the
    local proxy (nginx on this host), trusted like a TRUSTED_PROXIES address. From a
    trusted peer, the rightmost X-Forwarded-For hop that is not itself a trusted proxy is
    the client (hops left of it could be forged by the client); otherwise the peer is.
    """
    if peer is None:
        peer_ip: IpAddress | None = None
    else:
        peer_ip = parse_ip(peer)
        if peer_ip is None:  # a named peer (a test transport, say): not an address
            return peer or "unknown"
        if not forwarded_for or not in_networks(peer_ip, trusted):
            return str(peer_ip)
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    client = str(peer_ip) if peer_ip is not None else LOCAL_PEER
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:  # garbage: trust nothing further left
            break
        client = str(address)
        if not in_networks(address, trusted):
            break
    return client
