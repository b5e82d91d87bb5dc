"""Messaging: sealed signed letters and the inbox state a node keeps."""

from __future__ import annotations

import dataclasses

import blake3
import msgpack
import nacl.public
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.data.inbox import (
    MAX_INBOX,
    MAX_MESSAGE,
    MAX_SEALED,
    Envelope,
    InboxError,
    InboxState,
    Letter,
    delete_message,
    delete_proof,
    inbox_address,
    open_message,
    seal_message,
)
from node.identity import Identity

ALICE = Identity.from_seed(b"\x01" * 32)
BOB = Identity.from_seed(b"\x02" * 32)
EVE = Identity.from_seed(b"\x03" * 32)


def letter_to(recipient: Identity, body: bytes, sender: Identity = ALICE, at: int = 1) -> Envelope:
    return seal_message(sender, recipient.public_key, body, sent_at=at)


def raw_seal(recipient: Identity, inner: list[object]) -> Envelope:
    """Seal arbitrary inner content, bypassing seal_message (to forge letters)."""
    box = nacl.public.SealedBox(nacl.public.PublicKey(recipient.x25519_public()))
    return Envelope(recipient.public_key, bytes(box.encrypt(msgpack.packb(inner))))


def test_round_trip() -> None:
    envelope = letter_to(BOB, b"a DataMap, say", at=1_700_000_000)
    assert Envelope.decode(envelope.encode()) == envelope
    assert open_message(BOB, envelope) == Letter(ALICE.public_key, 1_700_000_000, b"a DataMap, say")
    assert envelope.id == blake3.blake3(envelope.sealed).digest()
    assert envelope.address == inbox_address(BOB.public_key)
    assert (
        inbox_address(BOB.public_key) == blake3.blake3(b"troon/inbox/v1" + BOB.public_key).digest()
    )
    assert b"a DataMap" not in envelope.encode()


def test_sealing_is_randomized() -> None:
    assert letter_to(BOB, b"same").id != letter_to(BOB, b"same").id


def test_a_third_party_cannot_open() -> None:
    envelope = letter_to(BOB, b"secret")
    with pytest.raises(InboxError, match="addressed to someone else"):
        open_message(EVE, envelope)
    # Even re-addressing the sealed bytes to herself does not help.
    with pytest.raises(InboxError, match="cannot open"):
        open_message(EVE, Envelope(EVE.public_key, envelope.sealed))


def test_forged_sender_signature_is_rejected() -> None:
    body, at = b"pay mallory", 5
    forged = raw_seal(BOB, [1, ALICE.public_key, at, body, EVE.sign(b"whatever")])
    with pytest.raises(InboxError, match="sender signature does not verify"):
        open_message(BOB, forged)


def test_letter_cannot_be_readdressed() -> None:
    # Bob opens a letter and re-seals Alice's signed contents to Eve: the signature names Bob.
    original = letter_to(BOB, b"for bob only", at=9)
    letter = open_message(BOB, original)
    inner = [1, letter.sender, letter.sent_at, letter.body]
    signature = msgpack.unpackb(
        nacl.public.SealedBox(nacl.public.PrivateKey(BOB.x25519_secret())).decrypt(original.sealed)
    )[4]
    with pytest.raises(InboxError, match="signature"):
        open_message(EVE, raw_seal(EVE, [*inner, signature]))


@pytest.mark.parametrize(
    "inner",
    [
        [2, ALICE.public_key, 1, b"x", bytes(64)],
        [1, b"short", 1, b"x", bytes(64)],
        [1, ALICE.public_key, -1, b"x", bytes(64)],
        [1, ALICE.public_key, True, b"x", bytes(64)],
        [1, ALICE.public_key, 1, "text", bytes(64)],
        [1, ALICE.public_key, 1, b"x", "sig"],
        [1, ALICE.public_key, 1, b"x"],
    ],
)
def test_malformed_inner_letters_are_rejected(inner: list[object]) -> None:
    with pytest.raises(InboxError):
        open_message(BOB, raw_seal(BOB, inner))


def test_oversized_is_refused() -> None:
    envelope = letter_to(BOB, b"x" * MAX_MESSAGE)
    assert len(envelope.sealed) <= MAX_SEALED
    assert open_message(BOB, envelope).body == b"x" * MAX_MESSAGE
    with pytest.raises(InboxError, match="body is 65537 bytes"):
        letter_to(BOB, b"x" * (MAX_MESSAGE + 1))
    with pytest.raises(InboxError, match="sealed letter must be"):
        Envelope(BOB.public_key, b"x" * (MAX_SEALED + 1))
    with pytest.raises(InboxError):
        Envelope.decode(msgpack.packb([1, BOB.public_key, b"x" * (MAX_SEALED + 1)]))


def test_bad_arguments() -> None:
    with pytest.raises(InboxError, match="recipient must be"):
        seal_message(ALICE, b"short", b"x", sent_at=0)
    with pytest.raises(InboxError, match="sent_at"):
        seal_message(ALICE, BOB.public_key, b"x", sent_at=-1)
    with pytest.raises(InboxError, match="not a valid Ed25519"):
        seal_message(ALICE, bytes(32), b"x", sent_at=0)  # a small-order point


def test_add_dedups_and_lists_in_arrival_order() -> None:
    state = InboxState()
    first, second = letter_to(BOB, b"1"), letter_to(BOB, b"2")
    assert state.add(first) is True
    assert state.add(second) is True
    assert state.add(first) is False
    assert state.list(inbox_address(BOB.public_key)) == [first, second]
    assert state.list(inbox_address(EVE.public_key)) == []
    assert len(state) == 2


def test_inbox_is_bounded_and_drops_the_oldest() -> None:
    state = InboxState()
    filler = [Envelope(BOB.public_key, n.to_bytes(4, "big") * 12) for n in range(MAX_INBOX + 5)]
    for envelope in filler:
        assert state.add(envelope)
    held = state.list(inbox_address(BOB.public_key))
    assert len(held) == MAX_INBOX
    assert held == filler[5:]
    assert state.add(letter_to(EVE, b"other inbox"))
    assert len(state) == MAX_INBOX + 1


def test_delete_needs_the_recipients_signature() -> None:
    state = InboxState()
    keep, drop = letter_to(BOB, b"keep"), letter_to(BOB, b"drop")
    state.add(keep)
    state.add(drop)
    address = inbox_address(BOB.public_key)
    for proof in (delete_proof(EVE, [drop.id]), delete_proof(ALICE, [drop.id]), bytes(64)):
        with pytest.raises(InboxError, match="not the recipient's signature"):
            state.delete(address, [drop.id], proof)
    # A proof for other ids does not cover this one.
    with pytest.raises(InboxError):
        state.delete(address, [drop.id], delete_proof(BOB, [keep.id]))
    assert state.list(address) == [keep, drop]  # failed calls changed nothing
    assert state.delete(address, [drop.id], delete_proof(BOB, [drop.id])) == 1
    assert state.list(address) == [keep]
    assert state.delete(address, [drop.id], delete_proof(BOB, [drop.id])) == 0  # replay: no-op
    assert state.delete(address, [keep.id], delete_proof(BOB, [keep.id])) == 1
    assert state.addresses() == []
    assert state.delete(address, [keep.id], delete_proof(BOB, [keep.id])) == 0


def test_delete_argument_checks() -> None:
    address = inbox_address(BOB.public_key)
    with pytest.raises(InboxError, match=r"1\.\."):
        delete_message(address, [])
    with pytest.raises(InboxError, match="envelope id"):
        delete_message(address, [b"short"])
    with pytest.raises(InboxError, match="64-byte"):
        InboxState().delete(address, [bytes(32)], b"sig")
    assert delete_message(address, [b"\x01" * 32]).startswith(b"troon/inbox/v1/delete" + address)


def test_state_round_trip() -> None:
    state = InboxState()
    envelopes = [letter_to(BOB, b"1"), letter_to(EVE, b"2"), letter_to(BOB, b"3")]
    for envelope in envelopes:
        state.add(envelope)
    again = InboxState.decode(state.encode())
    for who in (BOB, EVE):
        address = inbox_address(who.public_key)
        assert again.list(address) == state.list(address)
    assert InboxState.decode(InboxState().encode()).addresses() == []


def test_state_decode_rejects_duplicates_and_bad_shapes() -> None:
    sealed = letter_to(BOB, b"1").sealed
    for bad in (
        [1, [[BOB.public_key, [sealed, sealed]]]],
        [1, [[BOB.public_key, [sealed]], [BOB.public_key, [sealed]]]],
        [1, [[BOB.public_key, []]]],
        [1, [[BOB.public_key]]],
        [2, []],
        [1, "x"],
    ):
        with pytest.raises(InboxError):
            InboxState.decode(msgpack.packb(bad))


def test_decoders_reject_trailing_and_truncated_bytes() -> None:
    data = letter_to(BOB, b"hello").encode()
    with pytest.raises(InboxError):
        Envelope.decode(data + b"\x00")
    for end in range(len(data)):
        with pytest.raises(InboxError):
            Envelope.decode(data[:end])


@given(st.binary(max_size=300))
def test_any_bytes_envelope_decode_or_raise(data: bytes) -> None:
    try:
        envelope = Envelope.decode(data)
    except InboxError:
        return
    assert Envelope.decode(envelope.encode()) == envelope


@given(st.binary(max_size=300))
def test_any_bytes_state_decode_or_raise(data: bytes) -> None:
    try:
        state = InboxState.decode(data)
    except InboxError:
        return
    assert InboxState.decode(state.encode()).encode() == state.encode()


@given(st.binary(min_size=48, max_size=200))
def test_any_sealed_bytes_open_or_raise(sealed: bytes) -> None:
    with pytest.raises(InboxError):
        open_message(BOB, Envelope(BOB.public_key, sealed))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=60))
def test_state_model(ops: list[int]) -> None:
    # Compare InboxState with a trivial model: an ordered, deduplicated, bounded list.
    state = InboxState()
    model: list[Envelope] = []
    for n in ops:
        envelope = Envelope(BOB.public_key, n.to_bytes(1, "big") * 48)
        added = state.add(envelope)
        assert added == (envelope not in model)
        if added:
            model.append(envelope)
    assert state.list(inbox_address(BOB.public_key)) == model[-MAX_INBOX:]


def test_envelope_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        letter_to(BOB, b"x").sealed = b""  # type: ignore[misc]
