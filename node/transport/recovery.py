"""Loss detection and congestion control in the style of RFC 9002.

* :class:`RttEstimator` - smoothed RTT, variance and minimum (RFC 9002 s5).
* :class:`NewReno` - slow start, congestion avoidance, one reduction per
  recovery period (RFC 9002 s7, appendix B), no growth while application-limited
  (s7.8).  Departure from the RFC: a loss reduces the window only while the
  smoothed loss rate (EWMA over ~128 packets) exceeds ``LOSS_TOLERANCE``, in the
  spirit of BBRv2's per-round loss threshold.  Testnet links carry injected random
  loss that is not congestion; real congestion (a queue overflowing) drops bursts
  and crosses the threshold within a round trip.
* :class:`Pacer` - token bucket at 1.25 x cwnd / srtt (RFC 9002 s7.7).

All are plain objects fed ``now``; none reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.transport.wire import MAX_DATAGRAM

GRANULARITY = 0.001
"""Timer granularity (RFC 9002 s6.1.2 kGranularity)."""
INITIAL_RTT = 0.1
"""RTT assumed before the first sample (RFC 9002 s6.2.2 uses 333 ms; we favour LANs)."""
PACKET_THRESHOLD = 3
TIME_THRESHOLD = 9 / 8
INITIAL_WINDOW = 32 * MAX_DATAGRAM
MINIMUM_WINDOW = 2 * MAX_DATAGRAM
LOSS_REDUCTION = 0.5
LOSS_TOLERANCE = 0.12
"""Smoothed loss rate above which losses count as congestion."""
LOSS_EWMA_GAIN = 1 / 128


class RttEstimator:
    """RFC 9002 s5.3 RTT estimation."""

    __slots__ = ("has_sample", "latest", "min_rtt", "rttvar", "smoothed")

    def __init__(self, initial: float = INITIAL_RTT) -> None:
        self.latest = 0.0
        self.smoothed = initial
        self.rttvar = initial / 2
        self.min_rtt = float("inf")
        self.has_sample = False

    def update(self, latest: float, ack_delay: float, max_ack_delay: float) -> None:
        self.latest = latest
        self.min_rtt = min(self.min_rtt, latest)
        if not self.has_sample:
            self.smoothed = latest
            self.rttvar = latest / 2
            self.has_sample = True
            return
        ack_delay = min(ack_delay, max_ack_delay)
        adjusted = latest - ack_delay if latest >= self.min_rtt + ack_delay else latest
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.smoothed - adjusted)
        self.smoothed = 0.875 * self.smoothed + 0.125 * adjusted

    def pto(self, max_ack_delay: float) -> float:
        """Probe timeout base (RFC 9002 s6.2.1), before backoff."""
        return self.smoothed + max(4 * self.rttvar, GRANULARITY) + max_ack_delay

    def loss_delay(self) -> float:
        return max(TIME_THRESHOLD * max(self.smoothed, self.latest), GRANULARITY)


class NewReno:
    """RFC 9002 s7 / appendix B congestion controller."""

    __slots__ = ("bytes_in_flight", "cwnd", "loss_rate", "recovery_start", "ssthresh", "tolerance")

    def __init__(self, tolerance: float = LOSS_TOLERANCE) -> None:
        self.cwnd = INITIAL_WINDOW
        self.ssthresh = float("inf")
        self.bytes_in_flight = 0
        self.recovery_start = -1.0
        self.loss_rate = 0.0
        self.tolerance = tolerance

    def can_send(self, size: int) -> bool:
        return self.bytes_in_flight + size <= self.cwnd

    def on_sent(self, size: int) -> None:
        self.bytes_in_flight += size

    def on_acked(self, size: int, time_sent: float) -> None:
        self.loss_rate -= self.loss_rate * LOSS_EWMA_GAIN
        limited = self.bytes_in_flight < self.cwnd // 2
        self.bytes_in_flight = max(0, self.bytes_in_flight - size)
        if time_sent <= self.recovery_start or limited:
            return
        if self.cwnd < self.ssthresh:
            self.cwnd += size
        else:
            self.cwnd += MAX_DATAGRAM * size // self.cwnd

    def on_discarded(self, size: int) -> None:
        self.bytes_in_flight = max(0, self.bytes_in_flight - size)

    def on_lost_packet(self, size: int) -> None:
        self.loss_rate += (1.0 - self.loss_rate) * LOSS_EWMA_GAIN
        self.on_discarded(size)

    def on_congestion(self, time_sent: float, *, now: float) -> None:
        """A packet sent at ``time_sent`` was lost: reduce once per recovery period."""
        if time_sent <= self.recovery_start or self.loss_rate <= self.tolerance:
            return
        self.recovery_start = now
        self.ssthresh = max(int(self.cwnd * LOSS_REDUCTION), MINIMUM_WINDOW)
        self.cwnd = int(self.ssthresh)

    def on_persistent_congestion(self) -> None:
        self.cwnd = MINIMUM_WINDOW


@dataclass(slots=True)
class Pacer:
    """Token bucket pacer: rate = 1.25 x cwnd / srtt.

    Depth is ``burst`` packets or ``horizon`` seconds of sending, whichever is more:
    an event loop's timers fire with ~1 ms granularity, so a smaller bucket would
    cap throughput at burst/granularity.
    """

    burst: int = 16
    horizon: float = 0.002
    tokens: float = 16 * MAX_DATAGRAM
    updated: float = 0.0
    rate: float = 0.0

    def refresh(self, cwnd: int, srtt: float, *, now: float) -> None:
        self.rate = 1.25 * cwnd / max(srtt, 1e-6)
        elapsed = max(0.0, now - self.updated)
        depth = max(self.burst * MAX_DATAGRAM, self.rate * self.horizon)
        self.tokens = min(depth, self.tokens + elapsed * self.rate)
        self.updated = now

    def allows(self, size: int) -> bool:
        return self.tokens + 1e-6 >= size

    def consume(self, size: int) -> None:
        self.tokens -= size

    def next_send_time(self, size: int) -> float:
        if self.tokens >= size or self.rate <= 0:
            return self.updated
        return self.updated + (size - self.tokens) / self.rate + 1e-6
