"""Tests for node.transport.protection: AEAD sealing and header protection (RFC 9001 s5)."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.transport.protection import PacketKeys, ProtectionError
from node.transport.wire import CID_LEN, HEADER_LEN, MIN_PACKET, PN_LEN, TAG_LEN

SECRET = bytes(range(32))
DCID = b"\x11" * CID_LEN
KEYS = PacketKeys(SECRET)


def open_packet(keys: PacketKeys, packet: bytes, expected: int) -> tuple[int, bytes]:
    pn = keys.unmask_pn(packet, expected)
    return pn, keys.open(packet, pn)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, (1 << 40)), st.binary(min_size=1, max_size=1200))
def test_seal_open_round_trip(pn: int, payload: bytes) -> None:
    packet = KEYS.seal(DCID, pn, payload)
    assert len(packet) == HEADER_LEN + len(payload) + TAG_LEN
    assert packet[:CID_LEN] == DCID
    assert open_packet(KEYS, packet, pn) == (pn, payload)


def test_same_secret_gives_interoperable_keys() -> None:
    packet = PacketKeys(SECRET).seal(DCID, 3, b"hello")
    assert open_packet(PacketKeys(bytes(SECRET)), packet, 0) == (3, b"hello")


@pytest.mark.parametrize("pn", [0, 7, (1 << 32) + 9])
def test_every_single_bit_flip_is_rejected(pn: int) -> None:
    payload = b"frames" * 5
    packet = KEYS.seal(DCID, pn, payload)
    for bit in range(len(packet) * 8):
        bad = bytearray(packet)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ProtectionError):
            open_packet(KEYS, bytes(bad), pn)


def test_flipping_the_packet_number_yields_another_number_that_fails() -> None:
    packet = KEYS.seal(DCID, 100, b"x" * 20)
    bad = bytearray(packet)
    bad[CID_LEN + PN_LEN - 1] ^= 0x01
    pn = KEYS.unmask_pn(bytes(bad), 100)
    assert pn != 100
    with pytest.raises(ProtectionError):
        KEYS.open(bytes(bad), pn)


def test_opening_under_the_wrong_packet_number_fails() -> None:
    packet = KEYS.seal(DCID, 5, b"payload")
    with pytest.raises(ProtectionError):
        KEYS.open(packet, 6)


def test_wrong_key_fails() -> None:
    packet = KEYS.seal(DCID, 1, b"secret frames")
    other = PacketKeys(os.urandom(32))
    with pytest.raises(ProtectionError):
        open_packet(other, packet, 1)


@pytest.mark.parametrize("length", [0, 1, CID_LEN, HEADER_LEN, MIN_PACKET - 1])
def test_short_packets_are_rejected(length: int) -> None:
    with pytest.raises(ProtectionError):
        KEYS.unmask_pn(os.urandom(length), 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=MIN_PACKET, max_size=300), st.integers(0, 1 << 40))
def test_random_packets_never_authenticate(data: bytes, expected: int) -> None:
    pn = KEYS.unmask_pn(data, expected)
    with pytest.raises(ProtectionError):
        KEYS.open(data, pn)


def test_header_after_dcid_is_masked() -> None:
    """The 4 bytes after the DCID differ between consecutive packet numbers, not by +1."""
    headers = [KEYS.seal(DCID, pn, b"same payload")[CID_LEN:HEADER_LEN] for pn in range(64)]
    assert len(set(headers)) == len(headers)
    plain = [pn.to_bytes(PN_LEN, "big") for pn in range(64)]
    assert sum(h == p for h, p in zip(headers, plain, strict=True)) <= 1
    steps = [
        int.from_bytes(b, "big") - int.from_bytes(a, "big") for a, b in itertools.pairwise(headers)
    ]
    assert steps.count(1) <= 2


def test_same_payload_gives_different_ciphertext_per_packet_number() -> None:
    a = KEYS.seal(DCID, 1, b"same")
    b = KEYS.seal(DCID, 2, b"same")
    assert a[HEADER_LEN:] != b[HEADER_LEN:]


@pytest.mark.parametrize(
    ("pn", "expected"),
    [
        ((1 << 32) + 5, (1 << 32) - 3),  # first packet after the wrap
        ((1 << 32) - 1, (1 << 32) + 2),  # a late packet from just before the wrap
        ((5 << 32) + 17, (5 << 32) + 10),
        ((1 << 32), (1 << 32)),
    ],
)
def test_unmask_recovers_pn_across_the_32_bit_wrap(pn: int, expected: int) -> None:
    packet = KEYS.seal(DCID, pn, b"wrap")
    assert open_packet(KEYS, packet, expected) == (pn, b"wrap")


def test_packets_equal_mod_2_32_are_not_interchangeable() -> None:
    """The full packet number feeds the nonce: pn and pn + 2^32 do not open as each other."""
    packet = KEYS.seal(DCID, 9, b"p")
    pn = KEYS.unmask_pn(packet, (1 << 32) + 9)
    assert pn == (1 << 32) + 9
    with pytest.raises(ProtectionError):
        KEYS.open(packet, pn)


def test_dcid_is_authenticated() -> None:
    packet = KEYS.seal(DCID, 4, b"bound to its connection")
    moved = b"\x22" * CID_LEN + packet[CID_LEN:]
    with pytest.raises(ProtectionError):
        open_packet(KEYS, moved, 4)
