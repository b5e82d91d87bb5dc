"""Transport configuration: one frozen dataclass, real defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CookiePolicy = Literal["load", "always", "never"]


class ConfigError(ValueError):
    """A transport setting is out of range; the message names the field."""


@dataclass(frozen=True)
class TransportConfig:
    """Settings of one transport endpoint.

    Attributes:
        idle_timeout: a session that hears nothing for this long is declared dead (seconds).
        keepalive_interval: an idle session pings after hearing nothing for this long.
        handshake_timeout: give up a dial after this long.
        handshake_retry: first msg1 retransmission delay; doubles each time.
        max_ack_delay: longest we hold back an ACK for an ack-eliciting packet.
        ack_every: ack at once after this many ack-eliciting packets.
        stream_window: flow-control window per session (bytes of reordering/unread data).
        initial_rtt: RTT assumed before the first sample.
        pacing: pace sends at 1.25 x cwnd / srtt (RFC 9002 s7.7).
        cookie_policy: "load": require an address-proving cookie once ``load_threshold``
            half-open handshakes are pending; "always"; or "never".
        load_threshold: half-open handshakes that count as load.
        max_half_open: hard cap on half-open handshakes (more are dropped).
        max_sessions: cap on established sessions.
        datagram_queue: unreliable datagrams queued per session before the oldest drop.
        send_buffer_high: bytes buffered per session above which ``drain`` waits.
    """

    idle_timeout: float = 1.5
    keepalive_interval: float = 0.5
    handshake_timeout: float = 5.0
    handshake_retry: float = 0.2
    max_ack_delay: float = 0.005
    ack_every: int = 4
    stream_window: int = 4 * 1024 * 1024
    initial_rtt: float = 0.1
    pacing: bool = True
    cookie_policy: CookiePolicy = "load"
    load_threshold: int = 32
    max_half_open: int = 1024
    max_sessions: int = 4096
    datagram_queue: int = 64
    send_buffer_high: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        positive = ("idle_timeout", "keepalive_interval", "handshake_timeout", "handshake_retry")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"transport.{name} must be > 0")
        if self.keepalive_interval >= self.idle_timeout:
            raise ConfigError("transport.keepalive_interval must be < transport.idle_timeout")
        if self.max_ack_delay < 0 or self.ack_every < 1:
            raise ConfigError("transport.max_ack_delay must be >= 0 and ack_every >= 1")
        if self.stream_window < 64 * 1024:
            raise ConfigError("transport.stream_window must be >= 65536")
        if self.cookie_policy not in ("load", "always", "never"):
            raise ConfigError("transport.cookie_policy must be 'load', 'always' or 'never'")
        for name in ("load_threshold", "max_half_open", "max_sessions", "datagram_queue"):
            if getattr(self, name) < 1:
                raise ConfigError(f"transport.{name} must be >= 1")
