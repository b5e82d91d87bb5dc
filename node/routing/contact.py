"""A contact: a peer's name, public key and UDP address (Kademlia's "contact triple").

The paper (Maymounkov & Mazieres 2002, section 2.2) keeps <IP address, UDP port, Node ID>
triples in k-buckets.  Here the node ID is not chosen by the node: it is
``BLAKE3(public key)``, and the transport handshake proves the key, so nobody picks their
position in XOR space.

Invariants (checked on every construction, so a ``Contact`` instance is always valid):
``name == xor_name(public_key)``; both are 32 bytes; ``address`` is ``(host, port)`` with a
literal IPv4/IPv6 host (no DNS anywhere; never 0.0.0.0 or ::) and a port in 1..65535.
Every malformed input raises :class:`RoutingError`, the one error type of the routing layer.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from node.identity import PUBLIC_KEY_SIZE, xor_name
from node.routing.xorname import NAME_BYTES

MAX_PORT = 65535
MAX_HOST_CHARS = 64  # the longest IPv6 text form with a scope id fits easily


class RoutingError(ValueError):
    """A malformed contact, name, table or lookup input."""


@dataclass(frozen=True, slots=True, repr=False)
class Contact:
    """A peer we can reach: its XorName, Ed25519 public key and UDP address."""

    name: bytes
    public_key: bytes
    address: tuple[str, int]

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, bytes) or len(self.public_key) != PUBLIC_KEY_SIZE:
            raise RoutingError(f"public_key must be {PUBLIC_KEY_SIZE} bytes")
        if not isinstance(self.name, bytes) or len(self.name) != NAME_BYTES:
            raise RoutingError(f"name must be {NAME_BYTES} bytes")
        if self.name != xor_name(self.public_key):
            raise RoutingError("name is not BLAKE3(public_key)")
        check_address(self.address)

    @classmethod
    def of(cls, public_key: bytes, address: tuple[str, int]) -> Contact:
        """The contact for ``public_key`` at ``address``; its name is derived, never given."""
        if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
            raise RoutingError(f"public_key must be {PUBLIC_KEY_SIZE} bytes")
        return cls(xor_name(public_key), public_key, address)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: hex strings and ``[host, port]``."""
        host, port = self.address
        return {
            "name": self.name.hex(),
            "public_key": self.public_key.hex(),
            "address": [host, port],
        }

    @classmethod
    def from_dict(cls, obj: object) -> Contact:
        """Inverse of :meth:`to_dict`; raises :class:`RoutingError` naming the bad field."""
        name, public_key, address = fields_from_dict(obj)
        return cls(name, public_key, address)

    def __repr__(self) -> str:
        host, port = self.address
        return f"Contact({self.name.hex()[:12]}.. @ {host}:{port})"


def fields_from_dict(obj: object) -> tuple[bytes, bytes, tuple[str, int]]:
    """Parse the fields of a contact dict without checking ``name == BLAKE3(public_key)``.

    Lets a caller (the bootstrap cache) tell a malformed entry from a forged one.
    """
    if not isinstance(obj, dict):
        raise RoutingError("a contact must be an object")
    if set(obj) != {"name", "public_key", "address"}:
        raise RoutingError("a contact has exactly the keys name, public_key, address")
    name = _hex_field(obj, "name", NAME_BYTES)
    public_key = _hex_field(obj, "public_key", PUBLIC_KEY_SIZE)
    raw = obj["address"]
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise RoutingError("address must be [host, port]")
    address = (raw[0], raw[1])
    check_address(address)
    return name, public_key, address


def _hex_field(obj: dict[Any, Any], field: str, size: int) -> bytes:
    value = obj[field]
    if not isinstance(value, str) or len(value) != 2 * size:
        raise RoutingError(f"{field} must be {2 * size} hex characters")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise RoutingError(f"{field} is not hex") from None


def check_address(address: object) -> None:
    """Raise :class:`RoutingError` unless ``address`` is ``(literal IP, port 1..65535)``."""
    if not isinstance(address, tuple) or len(address) != 2:
        raise RoutingError("address must be a (host, port) tuple")
    host, port = address
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= MAX_PORT:
        raise RoutingError(f"port must be an integer in 1..{MAX_PORT}")
    if not isinstance(host, str) or not 0 < len(host) <= MAX_HOST_CHARS:
        raise RoutingError("host must be a non-empty string")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise RoutingError(f"host {host!r} is not a literal IP address (no DNS)") from None
    if ip.is_unspecified:
        raise RoutingError(f"host {host!r} is the unspecified address")
