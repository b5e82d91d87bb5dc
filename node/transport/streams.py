"""The ordered message stream of a session, and received packet-number tracking.

Each session carries one reliable ordered byte stream per direction (RFC 9000
s2-3 shape, one stream only).  Messages are framed in it as ``u32 length ||
body``; a message may be up to :data:`~node.transport.wire.MAX_MESSAGE` bytes
and is cut into packet-sized chunks.  A chunk keeps its (offset, length) for
life, so a retransmission resends exactly the chunk that was lost.

Invariants:
* the send buffer holds every byte from the lowest unacknowledged offset on;
* the receiver delivers each message once, whole and in order;
* out-of-order data is bounded by the flow-control window it advertised.
"""

from __future__ import annotations

import bisect
import struct
from collections import deque

from node.transport.wire import MAX_MESSAGE

_LEN = struct.Struct("!I")
MAX_PN_RANGES = 64
"""Received packet-number ranges remembered; below them everything counts as a replay."""
RELEASE_STEP = 256 * 1024
"""Acknowledged bytes that must accumulate before the send buffer is compacted."""


class StreamError(ValueError):
    """The peer broke the stream protocol (oversized message, flow-control violation)."""


class PacketNumberSet:
    """Received packet numbers as sorted disjoint inclusive ranges, bounded in count."""

    __slots__ = ("_floor", "_ranges")

    def __init__(self) -> None:
        self._ranges: list[list[int]] = []
        self._floor = 0
        """Everything below this was forgotten and counts as a replay."""

    def __contains__(self, pn: int) -> bool:
        if pn < self._floor:
            return True
        ranges = self._ranges
        for i in range(len(ranges) - 1, -1, -1):
            lo, hi = ranges[i]
            if pn > hi:
                return False
            if pn >= lo:
                return True
        return False

    def add(self, pn: int) -> bool:
        """Record ``pn``; returns False if it was already there (a duplicate or too old)."""
        ranges = self._ranges
        if ranges:
            top = ranges[-1]
            if pn == top[1] + 1:
                top[1] = pn
                return True
            if pn > top[1] + 1:
                ranges.append([pn, pn])
                self._trim()
                return True
        if pn in self:
            return False
        self._insert(pn)
        return True

    def _insert(self, pn: int) -> None:
        ranges = self._ranges
        i = bisect.bisect_left(ranges, [pn, pn])
        ranges.insert(i, [pn, pn])
        if i + 1 < len(ranges) and ranges[i + 1][0] == pn + 1:
            ranges[i][1] = ranges[i + 1][1]
            del ranges[i + 1]
        if i > 0 and ranges[i - 1][1] == pn - 1:
            ranges[i - 1][1] = ranges[i][1]
            del ranges[i]
        self._trim()

    def _trim(self) -> None:
        if len(self._ranges) > MAX_PN_RANGES:
            del self._ranges[0]
            self._floor = self._ranges[0][0]

    @property
    def largest(self) -> int:
        return self._ranges[-1][1] if self._ranges else -1

    def ack_ranges(self) -> list[tuple[int, int]]:
        """Ranges highest first, as ACK frames want them."""
        return [(lo, hi) for lo, hi in reversed(self._ranges)]


class SendStream:
    """Outgoing half: buffers message bytes until acknowledged, hands out chunks."""

    __slots__ = ("_base", "_buf", "_next", "_released_pending", "_retransmit", "_unacked")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0
        self._next = 0
        self._unacked: dict[int, int] = {}
        self._retransmit: deque[tuple[int, int]] = deque()
        self._released_pending = 0

    def write(self, message: bytes) -> None:
        if len(message) > MAX_MESSAGE:
            raise StreamError(f"message of {len(message)} bytes exceeds {MAX_MESSAGE}")
        self._buf += _LEN.pack(len(message))
        self._buf += message

    @property
    def end(self) -> int:
        return self._base + len(self._buf)

    @property
    def next_offset(self) -> int:
        return self._next

    @property
    def buffered(self) -> int:
        """Bytes held (unsent or unacknowledged)."""
        return len(self._buf)

    def has_new(self, limit: int) -> bool:
        return self._next < self.end and self._next < limit

    def has_retransmit(self) -> bool:
        return bool(self._retransmit)

    def has_unacked(self) -> bool:
        return bool(self._unacked)

    def take_new(self, max_len: int, limit: int) -> tuple[int, bytes]:
        """Next unsent chunk of at most ``max_len`` bytes below offset ``limit``."""
        start = self._next
        length = min(max_len, self.end - start, limit - start)
        rel = start - self._base
        data = bytes(self._buf[rel : rel + length])
        self._next = start + length
        self._unacked[start] = length
        return start, data

    def peek_retransmit(self) -> tuple[int, int] | None:
        """The next lost chunk still unacknowledged, without taking it."""
        while self._retransmit:
            offset, length = self._retransmit[0]
            if self._unacked.get(offset) == length:
                return offset, length
            self._retransmit.popleft()
        return None

    def take_retransmit(self) -> tuple[int, bytes]:
        offset, length = self._retransmit.popleft()
        rel = offset - self._base
        return offset, bytes(self._buf[rel : rel + length])

    def on_lost(self, offset: int, length: int) -> None:
        if self._unacked.get(offset) == length:
            self._retransmit.append((offset, length))

    def on_acked(self, offset: int, length: int) -> None:
        if self._unacked.pop(offset, None) is not None:
            self._released_pending += length
            if self._released_pending >= RELEASE_STEP or not self._unacked:
                self._release()

    def oldest_unacked(self) -> tuple[int, int] | None:
        if not self._unacked:
            return None
        offset = min(self._unacked)
        return offset, self._unacked[offset]

    def _release(self) -> None:
        self._released_pending = 0
        floor = min(self._unacked) if self._unacked else self._next
        drop = floor - self._base
        if drop > 0:
            del self._buf[:drop]
            self._base = floor


class RecvStream:
    """Incoming half: reorders chunks, enforces flow control, yields whole messages."""

    __slots__ = ("_delivered", "_inbuf", "_ooo", "_ooo_bytes", "max_data", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.max_data = window
        self._delivered = 0
        self._ooo: dict[int, bytes] = {}
        self._ooo_bytes = 0
        self._inbuf = bytearray()

    @property
    def delivered(self) -> int:
        return self._delivered

    def receive(self, offset: int, data: bytes) -> list[bytes]:
        """Accept a chunk; returns every message it completes, in order."""
        end = offset + len(data)
        if end > self.max_data:
            raise StreamError("peer exceeded the flow-control limit")
        if end <= self._delivered:
            return []
        if offset > self._delivered:
            if offset not in self._ooo:
                self._ooo[offset] = data
                self._ooo_bytes += len(data)
            return []
        self._append(data[self._delivered - offset :])
        while self._ooo:
            chunk = self._ooo.pop(self._delivered, None)
            if chunk is None:
                if not self._drop_stale():
                    break
                continue
            self._ooo_bytes -= len(chunk)
            self._append(chunk)
        return self._messages()

    def _drop_stale(self) -> bool:
        """Discard chunks wholly delivered; append the unseen tail of overlapping ones."""
        stale = [o for o, d in self._ooo.items() if o + len(d) <= self._delivered]
        for o in stale:
            self._ooo_bytes -= len(self._ooo.pop(o))
        partial = [o for o in self._ooo if o < self._delivered]
        for o in partial:
            d = self._ooo.pop(o)
            self._ooo_bytes -= len(d)
            if o + len(d) > self._delivered:
                self._append(d[self._delivered - o :])
        return bool(partial)

    def _append(self, data: bytes) -> None:
        self._inbuf += data
        self._delivered += len(data)

    def _messages(self) -> list[bytes]:
        out: list[bytes] = []
        buf = self._inbuf
        while len(buf) >= 4:
            (length,) = _LEN.unpack_from(buf, 0)
            if length > MAX_MESSAGE:
                raise StreamError(f"peer announced a {length}-byte message (max {MAX_MESSAGE})")
            if len(buf) < 4 + length:
                break
            out.append(bytes(buf[4 : 4 + length]))
            del buf[: 4 + length]
        return out

    def window_update(self) -> int | None:
        """A new MAX_DATA limit to advertise, when half the window has been used."""
        target = self._delivered + self.window
        if target - self.max_data >= self.window // 2:
            self.max_data = target
            return target
        return None
