"""One established encrypted session: reliability, congestion and flow control, liveness.

Sans-IO: :meth:`Session.receive` takes an authenticated-or-not datagram and ``now``;
:meth:`Session.datagrams_to_send` returns sealed datagrams; :meth:`Session.get_timer`
and :meth:`Session.handle_timer` drive time.  Events accumulate in ``events``.

Reliability follows RFC 9002: packet numbers are never reused, ACK frames carry
ranges, losses are declared by packet (3) and time (9/8 RTT) thresholds, and a
probe timeout (PTO) with exponential backoff recovers tail losses.  Congestion
control is NewReno with pacing; flow control is a MAX_DATA window.

Liveness: any authentic packet refreshes ``last_recv``; an idle session sends a
PING every ``keepalive_interval`` (the initiator; the responder only at 1.5x,
so one side carries the keep-alive); silence for ``idle_timeout`` is death.

States: CONFIRMING (responder, until the first authentic packet under the new
keys) -> ESTABLISHED -> CLOSING (our CLOSE queued) -> CLOSED.
"""

from __future__ import annotations

import math
from collections import deque
from enum import Enum
from typing import Any

from node.transport.config import TransportConfig
from node.transport.events import (
    Addr,
    Connected,
    DatagramReceived,
    Event,
    MessageReceived,
    PeerClosed,
    PeerDead,
)
from node.transport.handshake import SessionKeys
from node.transport.recovery import PACKET_THRESHOLD, NewReno, Pacer, RttEstimator
from node.transport.streams import PacketNumberSet, RecvStream, SendStream, StreamError
from node.transport.wire import (
    MAX_DATAGRAM,
    MAX_DATAGRAM_FRAME,
    MAX_PAYLOAD,
    PING_BYTES,
    STREAM_HEADER_LEN,
    AckFrame,
    CloseFrame,
    DatagramFrame,
    MaxDataFrame,
    PingFrame,
    StreamFrame,
    WireError,
    decode_frames,
    encode_ack,
    encode_close,
    encode_datagram,
    encode_max_data,
    encode_stream,
)

INITIAL_MAX_DATA = 256 * 1024
"""Flow-control limit both sides assume before the first MAX_DATA frame."""
MAX_PTO_BACKOFF = 6
ACK_FRAME_RESERVE = 1 + 8 + 4 + 1 + 4 + 8 * 31
CLOSE_REPEATS = 2
CODE_NORMAL = 0
CODE_PROTOCOL = 1
CODE_IDLE = 2
"""The session was idle and is closed to save keep-alives; the peer is not leaving."""


COUNTERS = (
    "packets_sent",
    "packets_received",
    "bytes_sent",
    "bytes_received",
    "packets_lost",
    "retransmits",
    "duplicates",
    "messages_sent",
    "messages_received",
    "datagrams_sent",
    "datagrams_received",
    "datagrams_dropped",
    "pto_count",
)


KEEPALIVE_GRID = 0.05
"""Keep-alive deadlines are rounded up to this grid so many sessions ping in one wake-up."""


def _coarse(t: float) -> float:
    return math.ceil(t / KEEPALIVE_GRID) * KEEPALIVE_GRID


class SessionState(Enum):
    CONFIRMING = "confirming"
    ESTABLISHED = "established"
    CLOSING = "closing"
    CLOSED = "closed"


class ProtocolViolation(ValueError):
    """An authentic packet broke the protocol; the session must close."""


SentPacket = tuple[float, int, list[tuple[int, int]] | None]
"""(time sent, bytes, stream chunks carried)."""


class Session:
    """State of one peer connection after the handshake."""

    def __init__(
        self,
        keys: SessionKeys,
        addr: Addr,
        config: TransportConfig,
        *,
        now: float,
        initiator: bool,
    ) -> None:
        self.peer = keys.peer_public_key
        self.addr = addr
        self.config = config
        self.initiator = initiator
        self.local_cid = keys.local_cid
        self._remote_cid = keys.remote_cid
        self._send_keys = keys.send
        self._recv_keys = keys.recv
        self.state = SessionState.ESTABLISHED if initiator else SessionState.CONFIRMING
        self.events: list[Event] = []
        self.replaced = False
        self._next_pn = 0
        self._sent: dict[int, SentPacket] = {}
        self._largest_acked = -1
        self._rtt = RttEstimator(config.initial_rtt)
        self._cc = NewReno()
        self._pacer = Pacer(updated=now)
        self._pto_count = 0
        self._probes = 0
        self._loss_time: float | None = None
        self._last_eliciting_sent = now
        self._recv_pns = PacketNumberSet()
        self._ack_queued = 0
        self._ack_deadline: float | None = None
        self._largest_recv_time = now
        self._send = SendStream()
        self._recv = RecvStream(config.stream_window)
        self._recv.max_data = INITIAL_MAX_DATA
        self._peer_max_data = INITIAL_MAX_DATA
        self._max_data_pending: int | None = None
        self._max_data_pns: set[int] = set()
        self._datagrams: deque[bytes] = deque()
        self._ping_pending = initiator
        self._close: tuple[int, str] | None = None
        self._close_sent = 0
        self.last_recv = now
        self._keepalive = config.keepalive_interval * (1.0 if initiator else 1.5)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._grow_window()
        if initiator:
            self.events.append(Connected(self.peer, addr, True))

    # ------------------------------------------------------------------ application side

    @property
    def alive(self) -> bool:
        return self.state in (SessionState.CONFIRMING, SessionState.ESTABLISHED)

    def send_message(self, data: bytes) -> None:
        """Queue a reliable ordered message (raises StreamError if too large)."""
        self._send.write(data)
        self.counters["messages_sent"] += 1

    def send_datagram(self, data: bytes) -> None:
        """Queue an unreliable datagram; the oldest is dropped when the queue is full."""
        if len(data) > MAX_DATAGRAM_FRAME:
            raise StreamError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM_FRAME}")
        if len(self._datagrams) >= self.config.datagram_queue:
            self._datagrams.popleft()
            self.counters["datagrams_dropped"] += 1
        self._datagrams.append(data)

    @property
    def send_buffered(self) -> int:
        return self._send.buffered

    def close(self, reason: str = "", code: int = CODE_NORMAL) -> None:
        """Graceful close: a CLOSE frame goes out on the next send, then the session ends."""
        if self.alive:
            self._close = (code, reason)
            self.state = SessionState.CLOSING

    def abandon(self) -> None:
        """End silently (replaced by a newer session, or the endpoint is shutting down)."""
        self.state = SessionState.CLOSED

    # ------------------------------------------------------------------ receive path

    def receive(self, packet: bytes, *, now: float) -> bool:
        """Process one datagram addressed to our connection ID.

        Returns True for an authentic packet never seen before, False for a duplicate
        or replay.  Raises ProtectionError (not authentic: state untouched) or
        ProtocolViolation (authentic but malformed: the caller closes the session).
        """
        if self.state is SessionState.CLOSED:
            return False
        keys = self._recv_keys
        pn = keys.unmask_pn(packet, self._recv_pns.largest + 1)
        if pn in self._recv_pns:
            self.counters["duplicates"] += 1
            return False
        payload = keys.open(packet, pn)
        self._recv_pns.add(pn)
        if pn == self._recv_pns.largest:
            self._largest_recv_time = now
        self.last_recv = now
        c = self.counters
        c["packets_received"] += 1
        c["bytes_received"] += len(packet)
        if self.state is SessionState.CONFIRMING:
            self.state = SessionState.ESTABLISHED
            self.events.append(Connected(self.peer, self.addr, False, self.replaced))
        try:
            frames = decode_frames(payload)
            eliciting = self._dispatch(frames, now)
        except (WireError, StreamError) as exc:
            raise ProtocolViolation(str(exc)) from exc
        if eliciting:
            self._on_eliciting(pn, now, probe=payload == PING_BYTES)
        return True

    def _on_eliciting(self, pn: int, now: float, *, probe: bool) -> None:
        """Schedule an ACK; a lone PING (keep-alive or probe) is answered at once."""
        self._ack_queued += 1
        if probe or pn != self._recv_pns.largest or self._ack_queued >= self.config.ack_every:
            self._ack_deadline = now
        elif self._ack_deadline is None:
            self._ack_deadline = now + self.config.max_ack_delay

    def _dispatch(self, frames: list[Any], now: float) -> bool:
        eliciting = False
        for frame in frames:
            kind = type(frame)
            if kind is StreamFrame:
                self._on_stream(frame)
                eliciting = True
            elif kind is AckFrame:
                self._on_ack(frame, now)
            elif kind is PingFrame:
                eliciting = True
            elif kind is DatagramFrame:
                self.counters["datagrams_received"] += 1
                self.events.append(DatagramReceived(self.peer, frame.data))
                eliciting = True
            elif kind is MaxDataFrame:
                self._peer_max_data = max(self._peer_max_data, frame.limit)
                eliciting = True
            elif kind is CloseFrame:
                self._on_close(frame)
                return False
        return eliciting

    def _on_stream(self, frame: StreamFrame) -> None:
        for message in self._recv.receive(frame.offset, frame.data):
            self.counters["messages_received"] += 1
            self.events.append(MessageReceived(self.peer, message))
        self._grow_window()

    def _grow_window(self) -> None:
        update = self._recv.window_update()
        if update is not None:
            self._max_data_pending = update

    def _on_close(self, frame: CloseFrame) -> None:
        if self.state in (SessionState.ESTABLISHED, SessionState.CONFIRMING):
            self.events.append(PeerClosed(self.peer, frame.code, frame.reason))
        self.state = SessionState.CLOSED

    # ------------------------------------------------------------------ ACKs and loss

    def _on_ack(self, frame: AckFrame, now: float) -> None:
        largest = frame.largest
        if largest >= self._next_pn:
            raise StreamError("peer acknowledged a packet we never sent")
        sent = self._sent
        newly: list[SentPacket] = []
        largest_sp: SentPacket | None = None
        for lo, hi in frame.ranges:
            pns = range(lo, hi + 1) if hi - lo < len(sent) else [p for p in sent if lo <= p <= hi]
            for pn in pns:
                sp = sent.pop(pn, None)
                if sp is not None:
                    newly.append(sp)
                    self._max_data_pns.discard(pn)
                    if pn == largest:
                        largest_sp = sp
        if not newly:
            return
        self._largest_acked = max(self._largest_acked, largest)
        if largest_sp is not None:
            self._rtt.update(now - largest_sp[0], frame.ack_delay, self.config.max_ack_delay)
        cc = self._cc
        stream = self._send
        for time_sent, size, chunks in newly:
            cc.on_acked(size, time_sent)
            if chunks:
                for offset, length in chunks:
                    stream.on_acked(offset, length)
        self._pto_count = 0
        self._detect_lost(now)

    def _detect_lost(self, now: float) -> None:
        """RFC 9002 s6.1: packet and time thresholds."""
        loss_delay = self._rtt.loss_delay()
        self._loss_time = None
        lost: list[int] = []
        for pn, sp in self._sent.items():
            if pn > self._largest_acked:
                break
            if sp[0] + loss_delay <= now or self._largest_acked >= pn + PACKET_THRESHOLD:
                lost.append(pn)
            else:
                self._loss_time = sp[0] + loss_delay
                break
        if lost:
            self._on_lost(lost, now)

    def _on_lost(self, lost: list[int], now: float) -> None:
        latest_sent = 0.0
        for pn in lost:
            time_sent, size, chunks = self._sent.pop(pn)
            if pn in self._max_data_pns:
                self._max_data_pns.discard(pn)
                self._max_data_pending = self._recv.max_data  # RFC 9000 s13.3: resend the latest
            self._cc.on_lost_packet(size)
            latest_sent = max(latest_sent, time_sent)
            if chunks:
                for offset, length in chunks:
                    self._send.on_lost(offset, length)
        self.counters["packets_lost"] += len(lost)
        self._cc.on_congestion(latest_sent, now=now)

    def _pto_deadline(self) -> float | None:
        if not self._sent:
            return None
        backoff = 1 << min(self._pto_count, MAX_PTO_BACKOFF)
        return self._last_eliciting_sent + self._rtt.pto(self.config.max_ack_delay) * backoff

    def _on_pto(self, now: float) -> None:
        """RFC 9002 s6.2.4: send one or two probes, retransmitting the oldest data."""
        self._pto_count += 1
        self.counters["pto_count"] += 1
        self._probes = 2
        oldest = self._send.oldest_unacked()
        if oldest is not None:
            self._send.on_lost(*oldest)
        else:
            self._ping_pending = True

    # ------------------------------------------------------------------ timers

    def get_timer(self) -> float | None:
        """Earliest time :meth:`handle_timer` must run, or None."""
        if self.state is SessionState.CLOSED:
            return None
        if self.state is SessionState.CLOSING:
            return None
        times = [self.last_recv + self.config.idle_timeout]
        if self._ack_deadline is not None:
            times.append(self._ack_deadline)
        if self._loss_time is not None:
            times.append(self._loss_time)
        else:
            pto = self._pto_deadline()
            if pto is not None:
                times.append(pto)
        if not self._sent and self.state is SessionState.ESTABLISHED:
            times.append(_coarse(self.last_recv + self._keepalive))
        if self._blocked_by_pacer():
            times.append(self._pacer.next_send_time(MAX_DATAGRAM))
        return min(times)

    def handle_timer(self, *, now: float) -> None:
        if not self.alive:
            return
        if now >= self.last_recv + self.config.idle_timeout:
            self.state = SessionState.CLOSED
            if self.initiator or self.counters["packets_received"]:
                self.events.append(PeerDead(self.peer, "idle timeout"))
            return
        if self._loss_time is not None and now >= self._loss_time:
            self._detect_lost(now)
        else:
            pto = self._pto_deadline()
            if pto is not None and now >= pto:
                self._on_pto(now)
        if (
            not self._sent
            and self.state is SessionState.ESTABLISHED
            and now >= _coarse(self.last_recv + self._keepalive)
        ):
            self._ping_pending = True

    def die(self, reason: str) -> None:
        """The endpoint learned the peer is gone (e.g. ICMP port unreachable)."""
        if self.alive or self.state is SessionState.CLOSING:
            if self.state is not SessionState.CONFIRMING:
                self.events.append(PeerDead(self.peer, reason))
            self.state = SessionState.CLOSED

    # ------------------------------------------------------------------ send path

    def _blocked_by_pacer(self) -> bool:
        if not self.config.pacing or self.state is not SessionState.ESTABLISHED:
            return False
        wants = self._send.has_retransmit() or self._send.has_new(self._peer_max_data)
        return wants and not self._pacer.allows(MAX_DATAGRAM) and self._cc.can_send(MAX_DATAGRAM)

    def datagrams_to_send(self, *, now: float) -> list[bytes]:
        """Seal every packet that congestion control, pacing and flow control allow now."""
        if self.state is SessionState.CLOSED:
            return []
        if self.state is SessionState.CLOSING:
            return self._send_close()
        if self.config.pacing:
            self._pacer.refresh(self._cc.cwnd, self._rtt.smoothed, now=now)
        out: list[bytes] = []
        while True:
            packet = self._build_packet(now)
            if packet is None:
                return out
            out.append(packet)

    def _send_close(self) -> list[bytes]:
        assert self._close is not None
        payload = encode_close(*self._close)
        self.state = SessionState.CLOSED
        return [self._seal(payload) for _ in range(CLOSE_REPEATS)]

    def _seal(self, payload: bytes) -> bytes:
        pn = self._next_pn
        self._next_pn = pn + 1
        packet = self._send_keys.seal(self._remote_cid, pn, payload)
        self.counters["packets_sent"] += 1
        self.counters["bytes_sent"] += len(packet)
        return packet

    def _may_elicit(self) -> bool:
        if self.state is not SessionState.ESTABLISHED:
            return False
        if self._probes > 0:
            return True
        if not self._cc.can_send(MAX_DATAGRAM):
            return False
        return not self.config.pacing or self._pacer.allows(MAX_DATAGRAM)

    def _has_eliciting(self) -> bool:
        return (
            self._ping_pending
            or self._max_data_pending is not None
            or self._send.peek_retransmit() is not None
            or self._send.has_new(self._peer_max_data)
            or bool(self._datagrams)
        )

    def _build_packet(self, now: float) -> bytes | None:
        elicit = self._may_elicit() and self._has_eliciting()
        ack_due = self._ack_deadline is not None and now >= self._ack_deadline
        if not elicit and not ack_due:
            return None
        parts: list[bytes] = []
        room = MAX_PAYLOAD
        if self._ack_queued or ack_due:
            ack = encode_ack(self._recv_pns.ack_ranges(), now - self._largest_recv_time)
            parts.append(ack)
            room -= len(ack)
            self._ack_queued = 0
            self._ack_deadline = None
        chunks: list[tuple[int, int]] | None = None
        if elicit:
            room, chunks = self._fill(parts, room)
        payload = b"".join(parts)
        packet = self._seal(payload)
        if elicit:
            self._on_sent_eliciting(packet, chunks, now)
        return packet

    def _fill(self, parts: list[bytes], room: int) -> tuple[int, list[tuple[int, int]] | None]:
        before = len(parts)
        if self._max_data_pending is not None:
            parts.append(encode_max_data(self._max_data_pending))
            self._max_data_pending = None
            self._max_data_pns.add(self._next_pn)  # the packet being built
            room -= 9
        if self._ping_pending:
            parts.append(PING_BYTES)
            self._ping_pending = False
            room -= 1
        chunks: list[tuple[int, int]] = []
        room = self._fill_stream(parts, room, chunks)
        while self._datagrams and len(self._datagrams[0]) + 3 <= room:
            frame = encode_datagram(self._datagrams.popleft())
            parts.append(frame)
            room -= len(frame)
            self.counters["datagrams_sent"] += 1
        if len(parts) == before:
            parts.append(PING_BYTES)
            room -= 1
        return room, chunks or None

    def _fill_stream(self, parts: list[bytes], room: int, chunks: list[tuple[int, int]]) -> int:
        stream = self._send
        while True:
            lost = stream.peek_retransmit()
            if lost is None or lost[1] + STREAM_HEADER_LEN > room:
                break
            offset, data = stream.take_retransmit()
            parts.append(encode_stream(offset, data))
            chunks.append((offset, len(data)))
            room -= STREAM_HEADER_LEN + len(data)
            self.counters["retransmits"] += 1
        if stream.peek_retransmit() is not None:
            return room
        limit = self._peer_max_data
        while room > STREAM_HEADER_LEN + 16 and stream.has_new(limit):
            offset, data = stream.take_new(room - STREAM_HEADER_LEN, limit)
            parts.append(encode_stream(offset, data))
            chunks.append((offset, len(data)))
            room -= STREAM_HEADER_LEN + len(data)
        return room

    def _on_sent_eliciting(
        self, packet: bytes, chunks: list[tuple[int, int]] | None, now: float
    ) -> None:
        size = len(packet)
        self._sent[self._next_pn - 1] = (now, size, chunks)
        self._cc.on_sent(size)
        if self.config.pacing:
            self._pacer.consume(size)
        if self._probes > 0:
            self._probes -= 1
        self._last_eliciting_sent = now

    # ------------------------------------------------------------------ introspection

    def stats(self) -> dict[str, float | int | str]:
        """Per-connection figures for operators (admin API, console)."""
        rtt = self._rtt
        return {
            "state": self.state.value,
            "srtt_ms": round(rtt.smoothed * 1000, 3),
            "rttvar_ms": round(rtt.rttvar * 1000, 3),
            "min_rtt_ms": round(rtt.min_rtt * 1000, 3) if rtt.has_sample else -1.0,
            "cwnd": int(self._cc.cwnd),
            "bytes_in_flight": self._cc.bytes_in_flight,
            "send_buffered": self._send.buffered,
            **self.counters,
        }
