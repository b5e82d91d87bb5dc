"""Tests for node.transport.streams: replay window, message framing, flow control."""

from __future__ import annotations

import itertools
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.transport.streams import (
    MAX_PN_RANGES,
    PacketNumberSet,
    RecvStream,
    SendStream,
    StreamError,
)
from node.transport.wire import MAX_MESSAGE

WINDOW = 1 << 20


def model_ranges(pns: set[int]) -> list[tuple[int, int]]:
    """The set as maximal inclusive ranges, highest first."""
    out: list[list[int]] = []
    for pn in sorted(pns):
        if out and out[-1][1] == pn - 1:
            out[-1][1] = pn
        else:
            out.append([pn, pn])
    return [(lo, hi) for lo, hi in reversed(out)]


# -- PacketNumberSet -------------------------------------------------------------------------------


def test_duplicates_are_rejected() -> None:
    s = PacketNumberSet()
    assert s.add(0) and s.add(1) and s.add(5)
    assert not s.add(1)
    assert not s.add(5)
    assert s.add(3)
    assert not s.add(3)
    assert s.largest == 5


def test_ranges_merge_when_gaps_fill() -> None:
    s = PacketNumberSet()
    for pn in (0, 2, 4, 6):
        s.add(pn)
    assert s.ack_ranges() == [(6, 6), (4, 4), (2, 2), (0, 0)]
    s.add(5)
    assert s.ack_ranges() == [(4, 6), (2, 2), (0, 0)]
    s.add(1)
    s.add(3)
    assert s.ack_ranges() == [(0, 6)]


def test_empty_set() -> None:
    s = PacketNumberSet()
    assert s.largest == -1
    assert s.ack_ranges() == []
    assert 0 not in s


def test_range_count_is_bounded_and_forgotten_numbers_count_as_replays() -> None:
    s = PacketNumberSet()
    n = 3 * MAX_PN_RANGES
    for i in range(n):
        assert s.add(2 * i)  # every other number: one range each
    ranges = s.ack_ranges()
    assert len(ranges) == MAX_PN_RANGES
    assert ranges[0] == (2 * (n - 1), 2 * (n - 1))
    lowest_kept = ranges[-1][0]
    assert lowest_kept == 2 * (n - MAX_PN_RANGES)
    for pn in (0, 1, 3, lowest_kept - 1):  # never seen, but below the window
        assert pn in s
        assert not s.add(pn)
    assert s.add(lowest_kept + 1)  # a gap inside the window is still accepted


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 300), max_size=200))
def test_matches_a_set_while_within_the_bound(pns: list[int]) -> None:
    """Exact while no more than MAX_PN_RANGES ranges exist (nothing forgotten yet)."""
    s = PacketNumberSet()
    seen: set[int] = set()
    for pn in pns:
        if len(model_ranges(seen | {pn})) > MAX_PN_RANGES:
            break
        fresh = pn not in seen
        assert s.add(pn) == fresh
        if fresh:
            seen.add(pn)
        assert s.ack_ranges() == model_ranges(seen)
        assert s.largest == (max(seen) if seen else -1)


def test_reordered_packet_before_the_first_received_is_accepted() -> None:
    s = PacketNumberSet()
    assert s.add(1)
    assert s.add(0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2000), max_size=400))
def test_never_accepts_a_number_twice_and_stays_bounded(pns: list[int]) -> None:
    s = PacketNumberSet()
    seen: set[int] = set()
    for pn in pns:
        accepted = s.add(pn)
        assert not (accepted and pn in seen)
        seen.add(pn)
        assert all(p in s for p in seen)
        assert len(s.ack_ranges()) <= MAX_PN_RANGES
        ranges = s.ack_ranges()
        for (lo1, _), (_, hi2) in itertools.pairwise(ranges):
            assert hi2 + 1 < lo1  # disjoint, non-adjacent, highest first


# -- SendStream / RecvStream -----------------------------------------------------------------------


def chunk_all(send: SendStream, rng: random.Random) -> list[tuple[int, bytes]]:
    chunks = []
    while send.has_new(1 << 62):
        chunks.append(send.take_new(rng.randint(1, 700), 1 << 62))
    return chunks


messages_st = st.lists(st.binary(max_size=2000), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(messages_st, st.randoms(use_true_random=False), st.floats(0.0, 1.0))
def test_messages_delivered_once_whole_and_in_order(
    messages: list[bytes], rng: random.Random, dup_rate: float
) -> None:
    send = SendStream()
    for m in messages:
        send.write(m)
    chunks = chunk_all(send, rng)
    chunks += [c for c in chunks if rng.random() < dup_rate]
    rng.shuffle(chunks)
    recv = RecvStream(WINDOW)
    got: list[bytes] = []
    for offset, data in chunks:
        got += recv.receive(offset, data)
    assert got == messages
    assert recv.delivered == send.end


@settings(max_examples=100, deadline=None)
@given(messages_st, st.randoms(use_true_random=False))
def test_delivery_is_incremental_and_never_repeats(
    messages: list[bytes], rng: random.Random
) -> None:
    """Whatever the arrival order, each receive() returns exactly the newly completed
    messages; redelivering every chunk afterwards yields nothing."""
    send = SendStream()
    for m in messages:
        send.write(m)
    chunks = chunk_all(send, rng)
    order = list(range(len(chunks)))
    rng.shuffle(order)
    recv = RecvStream(WINDOW)
    got: list[bytes] = []
    for i in order:
        new = recv.receive(*chunks[i])
        assert got + new == messages[: len(got) + len(new)]
        got += new
    assert got == messages
    for offset, data in chunks:
        assert recv.receive(offset, data) == []


def test_empty_and_zero_length_messages() -> None:
    send = SendStream()
    for m in (b"", b"a", b""):
        send.write(m)
    recv = RecvStream(WINDOW)
    offset, data = send.take_new(1000, 1 << 62)
    assert recv.receive(offset, data) == [b"", b"a", b""]


def test_retransmission_resends_exactly_the_lost_chunk() -> None:
    send = SendStream()
    send.write(b"x" * 3000)
    a = send.take_new(1000, 1 << 62)
    b = send.take_new(1000, 1 << 62)
    send.on_lost(a[0], len(a[1]))
    assert send.has_retransmit()
    assert send.take_retransmit() == a
    send.on_acked(b[0], len(b[1]))
    send.on_lost(b[0], len(b[1]))  # already acknowledged: nothing to resend
    assert send.peek_retransmit() is None


def test_acked_bytes_are_released_from_the_send_buffer() -> None:
    send = SendStream()
    send.write(b"y" * 5000)
    chunks = chunk_all(send, random.Random(1))
    assert send.buffered == 5004
    for offset, data in chunks:
        send.on_acked(offset, len(data))
    assert send.buffered == 0
    assert not send.has_unacked()
    assert send.oldest_unacked() is None


def test_send_respects_the_peer_limit() -> None:
    send = SendStream()
    send.write(b"z" * 5000)
    offset, data = send.take_new(10_000, 1000)
    assert (offset, len(data)) == (0, 1000)
    assert not send.has_new(1000)
    assert send.has_new(1001)


def test_oversized_length_prefix_raises() -> None:
    recv = RecvStream(WINDOW)
    with pytest.raises(StreamError):
        recv.receive(0, struct.pack("!I", MAX_MESSAGE + 1))


def test_largest_allowed_length_prefix_is_accepted() -> None:
    recv = RecvStream(WINDOW)
    assert recv.receive(0, struct.pack("!I", MAX_MESSAGE) + b"partial") == []


def test_oversized_message_refused_by_sender() -> None:
    with pytest.raises(StreamError):
        SendStream().write(bytes(MAX_MESSAGE + 1))


@pytest.mark.parametrize(("offset", "length"), [(0, WINDOW + 1), (WINDOW, 1), (WINDOW - 5, 10)])
def test_flow_control_violation_raises(offset: int, length: int) -> None:
    recv = RecvStream(WINDOW)
    with pytest.raises(StreamError):
        recv.receive(offset, b"\x00" * length)


def test_chunk_ending_exactly_at_the_limit_is_accepted() -> None:
    recv = RecvStream(WINDOW)
    assert recv.receive(WINDOW - 10, b"\x00" * 10) == []


def test_window_update_moves_the_limit_as_data_is_consumed() -> None:
    window = 64 * 1024
    recv = RecvStream(window)
    assert recv.window_update() is None  # nothing consumed yet
    body = b"m" * (window // 2)
    framed = struct.pack("!I", len(body)) + body
    assert recv.receive(0, framed[:100]) == []
    assert recv.window_update() is None  # less than half the window consumed
    assert recv.receive(100, framed[100:]) == [body]
    limit = recv.window_update()
    assert limit == len(framed) + window
    assert recv.max_data == limit
    assert recv.receive(window, b"\x00" * 8) == []  # beyond the old limit, within the new one
    with pytest.raises(StreamError):
        recv.receive(limit, b"\x00")


def test_partially_overlapping_chunks_still_deliver() -> None:
    body = b"abcdefghijklmnop"
    framed = struct.pack("!I", len(body)) + body
    recv = RecvStream(WINDOW)
    assert recv.receive(3, framed[3:12]) == []
    assert recv.receive(12, framed[12:]) == []
    assert recv.receive(0, framed[:5]) == [body]
