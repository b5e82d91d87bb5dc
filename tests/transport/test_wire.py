"""Tests for node.transport.wire: frame codec, size caps, packet-number recovery.

Shapes (DESIGN s3 rule 9): every frame decoded whole, truncated at every byte and with
trailing bytes; Hypothesis round trips and "any bytes parse or raise WireError".
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from node.transport.wire import (
    ACK,
    CLOSE,
    DATAGRAM,
    MAX_ACK_RANGES,
    MAX_CLOSE_REASON,
    MAX_DATAGRAM_FRAME,
    MAX_PAYLOAD,
    PING_BYTES,
    STREAM,
    AckFrame,
    CloseFrame,
    DatagramFrame,
    Frame,
    MaxDataFrame,
    PingFrame,
    StreamFrame,
    WireError,
    decode_frames,
    decode_pn,
    encode_ack,
    encode_close,
    encode_datagram,
    encode_max_data,
    encode_stream,
    pack_pn,
)

U32 = 0xFFFFFFFF
WIN = 1 << 32
HWIN = WIN // 2
PN_MAX = 1 << 62


def same_frame(got: Frame, want: Frame) -> bool:
    """Equality, except an ACK delay survives only to the microsecond."""
    if isinstance(want, AckFrame):
        return (
            isinstance(got, AckFrame)
            and got.ranges == want.ranges
            and abs(got.ack_delay - want.ack_delay) <= 1e-6
        )
    return got == want


# -- strategies --------------------------------------------------------------------------------


@st.composite
def ack_ranges(draw: st.DrawFn, max_ranges: int = MAX_ACK_RANGES) -> list[tuple[int, int]]:
    """Disjoint, non-adjacent inclusive ranges, highest first, gaps and lengths within u32."""
    n = draw(st.integers(1, max_ranges))
    lo = draw(st.integers(0, 1 << 40))
    out: list[tuple[int, int]] = []
    for i in range(n):
        if i:
            lo = out[-1][1] + 2 + draw(st.integers(0, U32))
        hi = lo + draw(st.integers(0, U32))
        out.append((lo, hi))
    return out[::-1]


def _ack(ranges: list[tuple[int, int]], delay_us: int) -> tuple[bytes, Frame]:
    return encode_ack(ranges, delay_us / 1e6), AckFrame(tuple(ranges), delay_us / 1e6)


frames = st.one_of(
    st.just((PING_BYTES, PingFrame())),
    st.builds(_ack, ack_ranges(), st.integers(0, 10_000_000)),
    st.builds(
        lambda off, data: (encode_stream(off, data), StreamFrame(off, data)),
        st.integers(0, (1 << 62) - 2000),
        st.binary(max_size=MAX_PAYLOAD - 11),
    ),
    st.builds(
        lambda data: (encode_datagram(data), DatagramFrame(data)),
        st.binary(max_size=MAX_DATAGRAM_FRAME),
    ),
    st.builds(
        lambda limit: (encode_max_data(limit), MaxDataFrame(limit)),
        st.integers(0, (1 << 64) - 1),
    ),
    st.builds(
        lambda code, reason: (encode_close(code, reason), CloseFrame(code, reason)),
        st.integers(0, 0xFFFF),
        st.text(max_size=60).filter(lambda s: len(s.encode()) <= MAX_CLOSE_REASON),
    ),
)

SAMPLES: list[tuple[bytes, Frame]] = [
    (PING_BYTES, PingFrame()),
    _ack([(10, 10)], 0),
    _ack([(100, 120), (50, 60), (0, 0)], 1234),
    _ack([(i * 10 + 5, i * 10 + 7) for i in range(MAX_ACK_RANGES - 1, -1, -1)], 9),
    (encode_stream(0, b""), StreamFrame(0, b"")),
    (encode_stream(12345, b"hello world"), StreamFrame(12345, b"hello world")),
    (encode_datagram(b"d" * MAX_DATAGRAM_FRAME), DatagramFrame(b"d" * MAX_DATAGRAM_FRAME)),
    (encode_datagram(b""), DatagramFrame(b"")),
    (encode_max_data(1 << 40), MaxDataFrame(1 << 40)),
    (encode_close(7, "bye \u00e9"), CloseFrame(7, "bye \u00e9")),
    (encode_close(0, ""), CloseFrame(0, "")),
]
SAMPLE_IDS = [type(f).__name__ + str(i) for i, (_, f) in enumerate(SAMPLES)]


# -- whole, truncated, trailing ----------------------------------------------------------------


@pytest.mark.parametrize(("encoded", "frame"), SAMPLES, ids=SAMPLE_IDS)
def test_sample_frame_decodes_whole(encoded: bytes, frame: Frame) -> None:
    [got] = decode_frames(encoded)
    assert same_frame(got, frame)


@pytest.mark.parametrize(("encoded", "frame"), SAMPLES, ids=SAMPLE_IDS)
def test_sample_frame_truncated_at_every_byte_raises(encoded: bytes, frame: Frame) -> None:
    for cut in range(len(encoded)):
        with pytest.raises(WireError):
            decode_frames(encoded[:cut])


@pytest.mark.parametrize(("encoded", "frame"), SAMPLES, ids=SAMPLE_IDS)
@pytest.mark.parametrize("trailer", [b"\x00", b"\xff" * 3, PING_BYTES, b"\x03\x00"])
def test_sample_frame_with_trailing_bytes(encoded: bytes, frame: Frame, trailer: bytes) -> None:
    try:
        got = decode_frames(encoded + trailer)
    except WireError:
        return
    assert same_frame(got[0], frame)
    assert trailer == PING_BYTES and got[1:] == [PingFrame()]


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, min_size=1, max_size=5))
def test_frame_sequences_round_trip(items: list[tuple[bytes, Frame]]) -> None:
    got = decode_frames(b"".join(enc for enc, _ in items))
    assert len(got) == len(items)
    for g, (_, want) in zip(got, items, strict=True):
        assert same_frame(g, want)


@settings(max_examples=200, deadline=None)
@given(frames)
def test_any_frame_truncated_anywhere_raises(item: tuple[bytes, Frame]) -> None:
    encoded, _ = item
    for cut in range(len(encoded)):
        with pytest.raises(WireError):
            decode_frames(encoded[:cut])


@settings(max_examples=300, deadline=None)
@given(frames, st.binary(min_size=1, max_size=64))
def test_any_frame_with_trailing_garbage_parses_first_or_raises(
    item: tuple[bytes, Frame], garbage: bytes
) -> None:
    encoded, frame = item
    try:
        got = decode_frames(encoded + garbage)
    except WireError:
        return
    assert same_frame(got[0], frame)
    assert len(got) >= 2


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    try:
        out = decode_frames(data)
    except WireError:
        return
    assert out
    assert all(isinstance(f, Frame) for f in out)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from([ACK, STREAM, DATAGRAM, CLOSE, 0x05]), st.binary(max_size=80))
def test_any_body_after_a_known_type_decodes_or_raises(kind: int, body: bytes) -> None:
    try:
        out = decode_frames(bytes([kind]) + body)
    except WireError:
        return
    assert out[0] is not None


# -- ACK ranges ----------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(ack_ranges(), st.integers(0, U32))
def test_ack_ranges_round_trip(ranges: list[tuple[int, int]], delay_us: int) -> None:
    [got] = decode_frames(encode_ack(ranges, delay_us / 1e6))
    assert isinstance(got, AckFrame)
    assert list(got.ranges) == ranges
    assert got.largest == ranges[0][1]
    assert abs(got.ack_delay - delay_us / 1e6) <= 1e-6


@settings(max_examples=100, deadline=None)
@given(ack_ranges(max_ranges=3 * MAX_ACK_RANGES))
def test_ack_keeps_only_the_highest_ranges(ranges: list[tuple[int, int]]) -> None:
    [got] = decode_frames(encode_ack(ranges, 0.0))
    assert isinstance(got, AckFrame)
    assert list(got.ranges) == ranges[:MAX_ACK_RANGES]


def test_ack_delay_saturates_at_u32_microseconds() -> None:
    [got] = decode_frames(encode_ack([(0, 1)], 1e9))
    assert isinstance(got, AckFrame)
    assert got.ack_delay == pytest.approx(U32 / 1e6)


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack("!BQIBI", ACK, 5, 0, 0, 6),  # first range below zero
        struct.pack("!BQIBI", ACK, 5, 0, MAX_ACK_RANGES, 0) + b"\x00" * 8 * MAX_ACK_RANGES,
        struct.pack("!BQIBI", ACK, 5, 0, 1, 1) + struct.pack("!II", 3, 0),  # gap below zero
        struct.pack("!BQIBI", ACK, 10, 0, 1, 0) + struct.pack("!II", 0, 9),  # range below zero
    ],
)
def test_bad_ack_frames_raise(raw: bytes) -> None:
    with pytest.raises(WireError):
        decode_frames(raw)


# -- caps and malformed frames -----------------------------------------------------------------


def test_empty_payload_raises() -> None:
    with pytest.raises(WireError):
        decode_frames(b"")


@pytest.mark.parametrize("kind", [0x00, 0x07, 0x80, 0xFF])
def test_unknown_frame_type_raises(kind: int) -> None:
    with pytest.raises(WireError):
        decode_frames(bytes([kind]) + b"\x00" * 16)


def test_oversized_datagram_refused_by_encoder() -> None:
    with pytest.raises(WireError):
        encode_datagram(b"x" * (MAX_DATAGRAM_FRAME + 1))


def test_close_reason_over_cap_raises() -> None:
    raw = struct.pack("!BHH", CLOSE, 0, MAX_CLOSE_REASON + 1) + b"a" * (MAX_CLOSE_REASON + 1)
    with pytest.raises(WireError):
        decode_frames(raw)


def test_long_close_reason_is_cut_to_the_cap_and_still_decodes() -> None:
    encoded = encode_close(3, "\u00e9" * 300)  # 600 utf-8 bytes
    [got] = decode_frames(encoded)
    assert isinstance(got, CloseFrame)
    assert got.code == 3
    assert got.reason == "\u00e9" * (MAX_CLOSE_REASON // 2)


def test_invalid_utf8_close_reason_decodes_with_replacement() -> None:
    raw = struct.pack("!BHH", CLOSE, 1, 2) + b"\xff\xfe"
    [got] = decode_frames(raw)
    assert got == CloseFrame(1, "\ufffd\ufffd")


def test_stream_offset_beyond_2_62_raises() -> None:
    with pytest.raises(WireError):
        decode_frames(struct.pack("!BQH", STREAM, 1 << 62, 1) + b"x")


# -- packet numbers (RFC 9000 appendix A.3) ----------------------------------------------------


def test_pack_pn_keeps_low_32_bits() -> None:
    assert pack_pn(WIN + 7) == pack_pn(7) == b"\x00\x00\x00\x07"


@settings(max_examples=1000, deadline=None)
@given(st.integers(0, PN_MAX - 1), st.integers(-HWIN + 1, HWIN))
def test_decode_pn_recovers_values_within_half_a_window(expected: int, delta: int) -> None:
    pn = expected + delta
    assume(0 <= pn < PN_MAX)
    assert decode_pn(pn & U32, expected) == pn


@pytest.mark.parametrize(
    ("expected", "pn"),
    [
        (0, 0),
        (0, 5),
        (WIN - 2, WIN + 3),  # forward across the wrap
        (WIN + 2, WIN - 3),  # a late packet from before the wrap
        (3 * WIN, 3 * WIN - HWIN + 1),
        (3 * WIN, 3 * WIN + HWIN),
        (PN_MAX - 1, PN_MAX - 10),
    ],
)
def test_decode_pn_examples(expected: int, pn: int) -> None:
    assert decode_pn(pn & U32, expected) == pn


def test_decode_pn_never_negative_or_beyond_2_62() -> None:
    for truncated in (0, 1, HWIN, U32):
        assert decode_pn(truncated, 0) >= 0
        assert decode_pn(truncated, PN_MAX - 1) < PN_MAX
