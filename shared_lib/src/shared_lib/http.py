"""Facts about the HTTP caller that depend on the gateway in front of us.

    from shared_lib.http import client_ip
    ip = client_ip(request)   # the browser's address, not the gateway's

TRUSTED_PROXIES lists the networks the gateway connects from; X-Forwarded-For is read
only when the direct peer is one of them, so a client cannot pick its own address.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _trusted(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(request: HttpRequest) -> str:
    """The nearest untrusted address: the peer, or X-Forwarded-For read right to left."""
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    peer = request.META.get("REMOTE_ADDR", "")
    if not _trusted(peer, networks):
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    # Right to left: each trusted proxy appended the address it saw; the first one no
    # trusted proxy vouches for is the client. Entries further left are client-supplied.
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer
