"""Events the transport endpoint emits.  Peers are named by their Ed25519 public key."""

from __future__ import annotations

from typing import NamedTuple

Addr = tuple[str, int]


class Connected(NamedTuple):
    """A session with ``peer`` is established (``initiator``: we dialled)."""

    peer: bytes
    addr: Addr
    initiator: bool
    replaced: bool = False


class MessageReceived(NamedTuple):
    """A whole reliable message, delivered once and in order."""

    peer: bytes
    data: bytes


class DatagramReceived(NamedTuple):
    """An unreliable datagram."""

    peer: bytes
    data: bytes


class PeerClosed(NamedTuple):
    """The peer closed the session gracefully (e.g. it is leaving the network)."""

    peer: bytes
    code: int
    reason: str


class PeerDead(NamedTuple):
    """The session ended without a goodbye: idle timeout, unreachable or protocol error."""

    peer: bytes
    reason: str


class HandshakeFailed(NamedTuple):
    """A dial to ``peer`` at ``addr`` did not complete."""

    peer: bytes
    addr: Addr
    reason: str
    dropped_messages: int = 0


Event = Connected | MessageReceived | DatagramReceived | PeerClosed | PeerDead | HandshakeFailed
