"""Tests for node.transport.handshake: Noise IK in memory, mac1/mac2 cookies, sizes.

Each test runs a whole exchange between an InitiatorHandshake and a Responder object;
no endpoint, no sockets.  Cookie lifetimes use a fake ``now``.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.identity import Identity
from node.transport.handshake import (
    COOKIE_REPLY_LEN,
    COOKIE_ROTATION,
    MAC_LEN,
    MSG1_LEN,
    MSG2_LEN,
    HandshakeError,
    InitiatorHandshake,
    Responder,
    SessionKeys,
    mac1_key,
)
from node.transport.protection import PacketKeys
from node.transport.wire import CID_LEN

ADDR = ("192.0.2.1", 4000)
OTHER_ADDR = ("192.0.2.2", 4000)
ALICE = Identity.generate()
BOB = Identity.generate()
CAROL = Identity.generate()


def dial(initiator: Identity = ALICE, responder_key: bytes = BOB.public_key) -> InitiatorHandshake:
    return InitiatorHandshake(initiator, responder_key, os.urandom(CID_LEN))


def exchange(
    hs: InitiatorHandshake, responder: Responder
) -> tuple[SessionKeys, SessionKeys, bytes, bytes]:
    msg1 = hs.message()
    assert responder.looks_like_msg1(msg1)
    r_keys, msg2 = responder.respond(msg1, os.urandom(CID_LEN))
    return hs.on_response(msg2), r_keys, msg1, msg2


def roundtrip(send: PacketKeys, recv: PacketKeys, dcid: bytes, payload: bytes) -> bytes:
    packet = send.seal(dcid, 0, payload)
    return recv.open(packet, recv.unmask_pn(packet, 0))


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


# -- the IK exchange -----------------------------------------------------------------------------


def test_full_exchange_gives_matching_keys_both_ways() -> None:
    hs = dial()
    i_keys, r_keys, msg1, msg2 = exchange(hs, Responder(BOB, now=0.0))
    assert len(msg1) == MSG1_LEN
    assert len(msg2) == MSG2_LEN
    assert i_keys.peer_public_key == BOB.public_key
    assert r_keys.peer_public_key == ALICE.public_key
    assert i_keys.local_cid == hs.local_cid == r_keys.remote_cid
    assert r_keys.local_cid == i_keys.remote_cid
    assert roundtrip(i_keys.send, r_keys.recv, i_keys.remote_cid, b"to bob") == b"to bob"
    assert roundtrip(r_keys.send, i_keys.recv, r_keys.remote_cid, b"to alice") == b"to alice"


def test_the_two_directions_use_different_keys() -> None:
    i_keys, _, _, _ = exchange(dial(), Responder(BOB, now=0.0))
    packet = i_keys.send.seal(b"\x00" * CID_LEN, 0, b"reflected")
    with pytest.raises(ValueError, match="authentication"):
        i_keys.recv.open(packet, 0)


def test_each_handshake_yields_fresh_keys() -> None:
    responder = Responder(BOB, now=0.0)
    a, _, _, _ = exchange(dial(), responder)
    b, _, _, _ = exchange(dial(), responder)
    packet = a.send.seal(a.remote_cid, 0, b"old session")
    with pytest.raises(ValueError, match="authentication"):
        b.send.open(packet, 0)


def test_responder_with_another_key_cannot_answer() -> None:
    msg1 = dial().message()
    carol = Responder(CAROL, now=0.0)
    assert not carol.looks_like_msg1(msg1)
    with pytest.raises(HandshakeError):
        carol.respond(msg1, os.urandom(CID_LEN))


def test_responder_sharing_only_the_x25519_image_is_refused() -> None:
    """Dialling Bob's key with the Edwards sign bit flipped maps to Bob's X25519 key, so Bob
    can finish the DH; his Ed25519 signature must still be refused as not the key dialled."""
    twin = BOB.public_key[:31] + bytes([BOB.public_key[31] ^ 0x80])
    hs = dial(responder_key=twin)
    bob = Responder(BOB, now=0.0)
    msg1 = hs.message()
    assert not bob.looks_like_msg1(msg1)  # mac1 is keyed by the exact Ed25519 key
    _, msg2 = bob.respond(msg1, os.urandom(CID_LEN))
    with pytest.raises(HandshakeError, match="not who we dialled"):
        hs.on_response(msg2)


def test_msg2_for_another_dial_is_refused() -> None:
    bob = Responder(BOB, now=0.0)
    first, second = dial(), dial()
    _, msg2 = bob.respond(first.message(), os.urandom(CID_LEN))
    with pytest.raises(HandshakeError):
        second.on_response(msg2)


def test_unparseable_peer_key_is_refused_at_dial_time() -> None:
    with pytest.raises(HandshakeError):
        dial(responder_key=b"\x00" * 31 + b"\x80")


# -- tampering -------------------------------------------------------------------------------------


def test_tampered_msg1_rejected_at_every_byte() -> None:
    """Body bytes break mac1 and the AEAD; mac1 bytes break mac1; mac2 bytes break the cookie."""
    hs = dial()
    bob = Responder(BOB, now=0.0)
    hs.on_cookie_reply(bob.cookie_reply(hs.message(), ADDR, now=0.0))
    msg1 = hs.message()
    assert bob.looks_like_msg1(msg1) and bob.has_valid_cookie(msg1, ADDR, now=0.0)
    body_len = MSG1_LEN - 2 * MAC_LEN
    for i in range(MSG1_LEN):
        bad = flip(msg1, i)
        if i < body_len + MAC_LEN:
            assert not bob.looks_like_msg1(bad), i
        else:
            assert not bob.has_valid_cookie(bad, ADDR, now=0.0), i
        if i < body_len:
            with pytest.raises(HandshakeError):
                bob.respond(bad, os.urandom(CID_LEN))


def test_tampered_msg2_rejected_at_every_authenticated_byte() -> None:
    """Bytes 0-7 are the routing connection ID (the endpoint demultiplexes on it); every byte
    after it is bound into the handshake hash or the AEAD."""
    hs = dial()
    _, msg2 = Responder(BOB, now=0.0).respond(hs.message(), os.urandom(CID_LEN))
    for i in range(CID_LEN, MSG2_LEN):
        with pytest.raises(HandshakeError):
            hs.on_response(flip(msg2, i))
    assert hs.on_response(msg2).peer_public_key == BOB.public_key


@pytest.mark.parametrize("length", [0, MSG2_LEN - 1, MSG2_LEN + 1, MSG1_LEN])
def test_msg2_of_wrong_length_rejected(length: int) -> None:
    with pytest.raises(HandshakeError):
        dial().on_response(os.urandom(length))


HS_FOR_RANDOM = dial()
BOB_RESPONDER = Responder(BOB, now=0.0)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=MSG2_LEN, max_size=MSG2_LEN))
def test_random_msg2_rejected(data: bytes) -> None:
    with pytest.raises(HandshakeError):
        HS_FOR_RANDOM.on_response(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2 * MSG1_LEN))
def test_mac1_check_rejects_random_data(data: bytes) -> None:
    assert not BOB_RESPONDER.looks_like_msg1(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=MSG1_LEN, max_size=MSG1_LEN))
def test_mac1_check_rejects_random_msg1_sized_data(data: bytes) -> None:
    assert not BOB_RESPONDER.looks_like_msg1(data)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=MSG1_LEN - 2 * MAC_LEN, max_size=MSG1_LEN - 2 * MAC_LEN))
def test_garbage_body_with_valid_mac1_raises_only_handshake_error(body: bytes) -> None:
    """mac1's key is public (derived from the responder key); past it, garbage must still
    fail cleanly."""
    mac1 = hashlib.blake2s(body, key=mac1_key(BOB.public_key), digest_size=MAC_LEN).digest()
    msg1 = body + mac1 + bytes(MAC_LEN)
    assert BOB_RESPONDER.looks_like_msg1(msg1)
    with pytest.raises(HandshakeError):
        BOB_RESPONDER.respond(msg1, os.urandom(CID_LEN))


# -- cookies ---------------------------------------------------------------------------------------


def test_msg1_without_cookie_has_no_valid_mac2() -> None:
    msg1 = dial().message()
    assert msg1[-MAC_LEN:] == bytes(MAC_LEN)
    assert not Responder(BOB, now=0.0).has_valid_cookie(msg1, ADDR, now=0.0)


def test_cookie_flow_gives_mac2_valid_for_that_address_only() -> None:
    hs = dial()
    bob = Responder(BOB, now=0.0)
    first = hs.message()
    reply = bob.cookie_reply(first, ADDR, now=0.0)
    assert len(reply) == COOKIE_REPLY_LEN
    assert reply[:CID_LEN] == hs.local_cid  # routed back to the dial
    hs.on_cookie_reply(reply)
    retry = hs.message()
    assert retry[:-MAC_LEN] == first[:-MAC_LEN]
    assert bob.looks_like_msg1(retry)
    assert bob.has_valid_cookie(retry, ADDR, now=1.0)
    assert not bob.has_valid_cookie(retry, OTHER_ADDR, now=1.0)
    assert not bob.has_valid_cookie(retry, (ADDR[0], ADDR[1] + 1), now=1.0)
    keys, _ = bob.respond(retry, os.urandom(CID_LEN))
    assert keys.peer_public_key == ALICE.public_key


def test_cookie_is_bound_to_its_msg1() -> None:
    """The reply's AEAD uses the msg1's mac1 as associated data (WireGuard s5.4.7)."""
    bob = Responder(BOB, now=0.0)
    reply = bob.cookie_reply(dial().message(), ADDR, now=0.0)
    with pytest.raises(HandshakeError):
        dial().on_cookie_reply(reply)


def test_cookie_reply_from_another_responder_is_refused() -> None:
    hs = dial()
    reply = Responder(CAROL, now=0.0).cookie_reply(hs.message(), ADDR, now=0.0)
    with pytest.raises(HandshakeError):
        hs.on_cookie_reply(reply)


def test_tampered_cookie_reply_rejected_at_every_sealed_byte() -> None:
    hs = dial()
    reply = Responder(BOB, now=0.0).cookie_reply(hs.message(), ADDR, now=0.0)
    for i in range(CID_LEN, COOKIE_REPLY_LEN):
        with pytest.raises(HandshakeError):
            hs.on_cookie_reply(flip(reply, i))
    assert hs.message()[-MAC_LEN:] == bytes(MAC_LEN)  # nothing was stored


@pytest.mark.parametrize("length", [0, COOKIE_REPLY_LEN - 1, COOKIE_REPLY_LEN + 1])
def test_cookie_reply_of_wrong_length_rejected(length: int) -> None:
    with pytest.raises(HandshakeError):
        dial().on_cookie_reply(os.urandom(length))


def test_cookie_survives_one_rotation_but_not_two() -> None:
    hs = dial()
    bob = Responder(BOB, now=0.0)
    hs.on_cookie_reply(bob.cookie_reply(hs.message(), ADDR, now=0.0))
    msg1 = hs.message()
    assert bob.has_valid_cookie(msg1, ADDR, now=COOKIE_ROTATION + 1)
    assert not bob.has_valid_cookie(msg1, ADDR, now=2 * COOKIE_ROTATION + 2)


def test_cookie_expires_after_a_long_quiet_spell() -> None:
    hs = dial()
    bob = Responder(BOB, now=0.0)
    hs.on_cookie_reply(bob.cookie_reply(hs.message(), ADDR, now=0.0))
    assert not bob.has_valid_cookie(hs.message(), ADDR, now=10 * COOKIE_ROTATION)


# -- amplification -------------------------------------------------------------------------------


def test_sizes_never_amplify() -> None:
    hs = dial()
    bob = Responder(BOB, now=0.0)
    msg1 = hs.message()
    reply = bob.cookie_reply(msg1, ADDR, now=0.0)
    _, msg2 = bob.respond(msg1, os.urandom(CID_LEN))
    assert len(msg1) == MSG1_LEN
    assert len(reply) == COOKIE_REPLY_LEN <= MSG1_LEN
    assert len(msg2) == MSG2_LEN <= MSG1_LEN
