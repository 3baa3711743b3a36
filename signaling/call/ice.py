"""ICE servers for the browsers, TURN credentials, and the candidate filter.

TURN credentials follow coturn's REST-API scheme (``use-auth-secret``): the
username is ``"<expiry unix time>:<account id>"`` and the password is
base64(HMAC-SHA1(secret, username)), so coturn checks them without a database and
they stop working at the expiry.

``allowed_networks``, when set, limits the candidates relayed between browsers
(and the ``a=candidate`` lines of relayed SDP) to those networks: tests keep every
packet on loopback with it, and a hospital can keep calls on its private network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from datetime import datetime

from signaling.call.outbound import IceServer

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, kw_only=True)
class IceConfig:
    """What the browsers are told about ICE."""

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_ttl_seconds: int = 3600
    transport_policy: str = "all"
    allowed_networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.transport_policy not in ("all", "relay"):
            raise ValueError("ice transport policy must be 'all' or 'relay'")
        if self.turn_urls and not self.turn_secret:
            raise ValueError("TURN URLs need the shared TURN secret")
        for net in self.allowed_networks:
            ipaddress.ip_network(net, strict=False)

    @property
    def networks(self) -> tuple[Network, ...]:
        """The allowed networks, parsed."""
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_networks)

    def servers(self, user_id: str, now: datetime) -> tuple[IceServer, ...]:
        """``RTCConfiguration.iceServers`` for one user, with fresh TURN credentials."""
        out: list[IceServer] = []
        if self.stun_urls:
            out.append(IceServer(urls=self.stun_urls))
        if self.turn_urls:
            username, credential = turn_credentials(
                self.turn_secret, user_id, int(now.timestamp()) + self.turn_ttl_seconds
            )
            out.append(IceServer(urls=self.turn_urls, username=username, credential=credential))
        return tuple(out)

    def candidate_allowed(self, candidate: str) -> bool:
        """Whether a candidate line may be relayed (always, when no networks are set)."""
        if not self.allowed_networks or not candidate:
            return True
        parts = candidate.removeprefix("a=").split()
        if len(parts) < 8:
            return False
        try:
            address = ipaddress.ip_address(parts[4])
        except ValueError:
            return False  # mDNS names (x.local) cannot be checked
        return any(address in net for net in self.networks)

    def filter_sdp(self, sdp: str) -> str:
        """The SDP without the ``a=candidate`` lines that are not allowed."""
        if not self.allowed_networks:
            return sdp
        lines = sdp.split("\r\n")
        kept = [
            line
            for line in lines
            if not line.startswith("a=candidate:") or self.candidate_allowed(line)
        ]
        return "\r\n".join(kept)


def turn_credentials(secret: str, user_id: str, expiry: int) -> tuple[str, str]:
    """Username and password for coturn's ``use-auth-secret`` mode."""
    username = f"{expiry}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()
