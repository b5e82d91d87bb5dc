"""Wire format of the transport: packet layout, frames, size caps.

Every datagram starts with an 8-byte destination connection ID (random, chosen
by the receiver).  Handshake messages are told apart by length and by which
table their connection ID is found in; there is no type byte, magic or version
on the wire.  A data packet is::

    DCID (8) | packet number (4, header-protected) | AEAD(frames) (n + 16)

Frames inside the encrypted payload (types are plaintext only *inside* the AEAD):

    PING        u8 type
    ACK         u8 type | u64 largest | u32 ack_delay_us | u8 n_gaps | u32 first_len
                | n_gaps x (u32 gap | u32 len)            (RFC 9000 s19.3 shape)
    STREAM      u8 type | u64 offset | u16 len | data      (one ordered byte stream)
    DATAGRAM    u8 type | u16 len | data                    (unreliable, RFC 9221 shape)
    MAX_DATA    u8 type | u64 limit                         (flow control, RFC 9000 s4.1)
    CLOSE       u8 type | u16 code | u16 len | utf-8 reason

Invariant: every decoder here either returns a fully parsed value or raises
:class:`WireError`; no other exception leaves this module for any input.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

CID_LEN = 8
PN_LEN = 4
HEADER_LEN = CID_LEN + PN_LEN
TAG_LEN = 16
MAX_DATAGRAM = 1200
"""Largest UDP payload we send (fits the IPv6 minimum MTU with headroom, as QUIC)."""
MAX_PAYLOAD = MAX_DATAGRAM - HEADER_LEN - TAG_LEN
MIN_PACKET = HEADER_LEN + TAG_LEN + 1
MAX_RECV_DATAGRAM = 2048
"""Datagrams longer than this are dropped unread (we never send them)."""
MAX_MESSAGE = 16 * 1024 * 1024
"""Largest reliable message an application may send (16 MiB)."""
MAX_DATAGRAM_FRAME = MAX_PAYLOAD - 3
MAX_ACK_RANGES = 32
MAX_CLOSE_REASON = 256

PING = 0x01
ACK = 0x02
STREAM = 0x03
DATAGRAM = 0x04
MAX_DATA = 0x05
CLOSE = 0x06

_ACK = struct.Struct("!BQIBI")
_GAP = struct.Struct("!II")
_STREAM = struct.Struct("!BQH")
_DATAGRAM = struct.Struct("!BH")
_MAX_DATA = struct.Struct("!BQ")
_CLOSE = struct.Struct("!BHH")
_PN = struct.Struct("!I")
STREAM_HEADER_LEN = _STREAM.size
MAX_STREAM_CHUNK = MAX_PAYLOAD - STREAM_HEADER_LEN


class WireError(ValueError):
    """Malformed, truncated or oversized input."""


class AckFrame(NamedTuple):
    """Acknowledged packet-number ranges, highest first, as inclusive (lo, hi) pairs."""

    ranges: tuple[tuple[int, int], ...]
    ack_delay: float

    @property
    def largest(self) -> int:
        return self.ranges[0][1]


class StreamFrame(NamedTuple):
    offset: int
    data: bytes


class DatagramFrame(NamedTuple):
    data: bytes


class MaxDataFrame(NamedTuple):
    limit: int


class CloseFrame(NamedTuple):
    code: int
    reason: str


class PingFrame(NamedTuple):
    """Ack-eliciting no-op (keep-alive, probe)."""


Frame = AckFrame | StreamFrame | DatagramFrame | MaxDataFrame | CloseFrame | PingFrame


def encode_ack(ranges: list[tuple[int, int]], ack_delay: float) -> bytes:
    """Encode up to MAX_ACK_RANGES ranges (highest first, disjoint, non-adjacent)."""
    ranges = ranges[:MAX_ACK_RANGES]
    lo0, hi0 = ranges[0]
    parts = [
        _ACK.pack(ACK, hi0, min(round(ack_delay * 1e6), 0xFFFFFFFF), len(ranges) - 1, hi0 - lo0)
    ]
    prev_lo = lo0
    for lo, hi in ranges[1:]:
        parts.append(_GAP.pack(prev_lo - hi - 2, hi - lo))
        prev_lo = lo
    return b"".join(parts)


def encode_stream(offset: int, data: bytes) -> bytes:
    return _STREAM.pack(STREAM, offset, len(data)) + data


def encode_datagram(data: bytes) -> bytes:
    if len(data) > MAX_DATAGRAM_FRAME:
        raise WireError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM_FRAME}")
    return _DATAGRAM.pack(DATAGRAM, len(data)) + data


def encode_max_data(limit: int) -> bytes:
    return _MAX_DATA.pack(MAX_DATA, limit)


def encode_close(code: int, reason: str) -> bytes:
    raw = reason.encode("utf-8")[:MAX_CLOSE_REASON]
    return _CLOSE.pack(CLOSE, code, len(raw)) + raw


PING_BYTES = bytes([PING])


def _decode_ack(buf: bytes, pos: int) -> tuple[AckFrame, int]:
    if pos + _ACK.size > len(buf):
        raise WireError("truncated ACK frame")
    _, largest, delay_us, n_gaps, first = _ACK.unpack_from(buf, pos)
    pos += _ACK.size
    if first > largest or n_gaps >= MAX_ACK_RANGES:
        raise WireError("bad ACK frame")
    ranges = [(largest - first, largest)]
    lo = largest - first
    for _ in range(n_gaps):
        if pos + _GAP.size > len(buf):
            raise WireError("truncated ACK range")
        gap, length = _GAP.unpack_from(buf, pos)
        pos += _GAP.size
        hi = lo - gap - 2
        if hi < 0 or length > hi:
            raise WireError("ACK range below zero")
        lo = hi - length
        ranges.append((lo, hi))
    return AckFrame(tuple(ranges), delay_us / 1e6), pos


def _decode_stream(buf: bytes, pos: int) -> tuple[StreamFrame, int]:
    if pos + _STREAM.size > len(buf):
        raise WireError("truncated STREAM frame")
    _, offset, length = _STREAM.unpack_from(buf, pos)
    start = pos + _STREAM.size
    end = start + length
    if end > len(buf):
        raise WireError("STREAM frame longer than packet")
    if offset + length > 1 << 62:
        raise WireError("STREAM offset out of range")
    return StreamFrame(offset, buf[start:end]), end


def _decode_datagram(buf: bytes, pos: int) -> tuple[DatagramFrame, int]:
    if pos + _DATAGRAM.size > len(buf):
        raise WireError("truncated DATAGRAM frame")
    _, length = _DATAGRAM.unpack_from(buf, pos)
    start = pos + _DATAGRAM.size
    end = start + length
    if end > len(buf):
        raise WireError("DATAGRAM frame longer than packet")
    return DatagramFrame(buf[start:end]), end


def _decode_max_data(buf: bytes, pos: int) -> tuple[MaxDataFrame, int]:
    if pos + _MAX_DATA.size > len(buf):
        raise WireError("truncated MAX_DATA frame")
    _, limit = _MAX_DATA.unpack_from(buf, pos)
    return MaxDataFrame(limit), pos + _MAX_DATA.size


def _decode_close(buf: bytes, pos: int) -> tuple[CloseFrame, int]:
    if pos + _CLOSE.size > len(buf):
        raise WireError("truncated CLOSE frame")
    _, code, length = _CLOSE.unpack_from(buf, pos)
    start = pos + _CLOSE.size
    end = start + length
    if end > len(buf) or length > MAX_CLOSE_REASON:
        raise WireError("bad CLOSE reason length")
    reason = buf[start:end].decode("utf-8", errors="replace")
    return CloseFrame(code, reason), end


def _decode_ping(buf: bytes, pos: int) -> tuple[PingFrame, int]:
    return PingFrame(), pos + 1


_DECODERS: dict[int, Callable[[bytes, int], tuple[Frame, int]]] = {
    PING: _decode_ping,
    ACK: _decode_ack,
    STREAM: _decode_stream,
    DATAGRAM: _decode_datagram,
    MAX_DATA: _decode_max_data,
    CLOSE: _decode_close,
}


def decode_frames(payload: bytes) -> list[Frame]:
    """Parse a decrypted payload into frames; raises WireError on any malformation."""
    frames: list[Frame] = []
    pos = 0
    end = len(payload)
    if end == 0:
        raise WireError("empty payload")
    while pos < end:
        decoder = _DECODERS.get(payload[pos])
        if decoder is None:
            raise WireError(f"unknown frame type {payload[pos]:#x}")
        frame, pos = decoder(payload, pos)
        frames.append(frame)
    return frames


def pack_pn(pn: int) -> bytes:
    return _PN.pack(pn & 0xFFFFFFFF)


def decode_pn(truncated: int, expected: int) -> int:
    """Recover a full packet number from its low 32 bits (RFC 9000 appendix A.3)."""
    win = 1 << 32
    hwin = win // 2
    candidate = (expected & ~(win - 1)) | truncated
    if candidate <= expected - hwin and candidate < (1 << 62) - win:
        return candidate + win
    if candidate > expected + hwin and candidate >= win:
        return candidate - win
    return candidate
