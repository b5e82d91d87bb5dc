"""Signed mutable records: signatures, encoding and the replicas' convergence rule."""

from __future__ import annotations

import dataclasses
import functools

import blake3
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.data.records import (
    ACCEPTED,
    MAX_ENCODED,
    MAX_PAYLOAD,
    MAX_TAG,
    MAX_VERSION,
    Record,
    RecordError,
    Verdict,
    decide,
    judge,
    record_address,
    sign_record,
)
from node.identity import Identity

ALICE = Identity.from_seed(b"\x01" * 32)
MALLORY = Identity.from_seed(b"\x02" * 32)


@functools.cache
def _record(version: int, payload: bytes, tag: bytes = b"t") -> Record:
    return sign_record(ALICE, tag, version, payload)


def apply(existing: Record | None, incoming: Record) -> Record | None:
    """One replica's step: keep the stored record unless the rule says replace."""
    return incoming if decide(existing, incoming) else existing


def test_round_trip_and_verify() -> None:
    record = sign_record(ALICE, b"profile", 7, b"hello")
    record.verify()
    assert Record.decode(record.encode()) == record
    assert record.owner == ALICE.public_key
    assert (
        record.address == blake3.blake3(b"troon/record/v1" + ALICE.public_key + b"profile").digest()
    )
    assert record.address == record_address(ALICE.public_key, b"profile")


def test_tags_give_one_key_many_addresses() -> None:
    assert _record(0, b"", b"a").address != _record(0, b"", b"b").address
    assert _record(0, b"", b"").address != _record(0, b"", b"a").address


def test_signing_bytes_are_length_prefixed() -> None:
    # Moving a byte from the tag into the payload changes what is signed.
    one = _record(0, b"cd", b"ab").signing_bytes()
    two = _record(0, b"bcd", b"a").signing_bytes()
    assert one != two
    assert one.startswith(b"troon/record/v1" + ALICE.public_key + b"\x02ab")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("payload", b"hellp"),
        ("version", 8),
        ("tag", b"profilf"),
        ("owner", MALLORY.public_key),
        ("signature", bytes(64)),
    ],
)
def test_tampered_field_is_refused(field: str, value: object) -> None:
    record = sign_record(ALICE, b"profile", 7, b"hello")
    tampered = dataclasses.replace(record, **{field: value})  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="signature does not verify"):
        tampered.verify()
    with pytest.raises(RecordError):
        decide(None, tampered)


def test_forged_by_another_key_is_refused() -> None:
    # Mallory signs her own record and claims Alice's key as owner.
    forged = dataclasses.replace(sign_record(MALLORY, b"t", 9, b"evil"), owner=ALICE.public_key)
    with pytest.raises(RecordError):
        decide(_record(1, b"good"), forged)


def test_wrong_owner_cannot_write_at_the_address() -> None:
    # A valid record by Mallory with the same tag is a different record, not an update.
    assert _record(1, b"good").address != sign_record(MALLORY, b"t", 9, b"x").address
    with pytest.raises(RecordError, match="different address"):
        judge(_record(1, b"good"), sign_record(MALLORY, b"t", 9, b"x"))
    with pytest.raises(RecordError, match="different address"):
        judge(_record(1, b"good", b"t"), _record(2, b"good", b"u"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"payload": b"x" * (MAX_PAYLOAD + 1)}, "payload is 65537 bytes"),
        ({"tag": b"x" * (MAX_TAG + 1)}, "tag must be"),
        ({"version": -1}, "version must be"),
        ({"version": MAX_VERSION + 1}, "version must be"),
        ({"version": True}, "version must be"),
        ({"owner": b"short"}, "owner must be"),
        ({"signature": b"short"}, "signature must be"),
        ({"payload": "text"}, "payload must be bytes"),
    ],
)
def test_invalid_fields_are_refused(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "owner": ALICE.public_key,
        "tag": b"t",
        "version": 0,
        "payload": b"",
        "signature": bytes(64),
    }
    with pytest.raises(RecordError, match=message):
        Record(**{**fields, **kwargs})  # type: ignore[arg-type]
    if {"tag", "version", "payload"} & kwargs.keys():
        args = {"tag": b"t", "version": 0, "payload": b"", **kwargs}
        with pytest.raises(RecordError, match=message):
            sign_record(ALICE, **args)  # type: ignore[arg-type]


def test_limits_are_accepted() -> None:
    record = sign_record(ALICE, b"x" * MAX_TAG, MAX_VERSION, b"p" * MAX_PAYLOAD)
    record.verify()
    assert len(record.encode()) <= MAX_ENCODED
    assert Record.decode(record.encode()) == record


def test_verdicts() -> None:
    v1, v2 = _record(1, b"a"), _record(2, b"b")
    other = _record(2, b"c")
    winner, loser = sorted([v2, other], key=lambda r: r.digest, reverse=True)
    assert judge(None, v1) is Verdict.CREATE
    assert judge(v1, v2) is Verdict.UPDATE
    assert judge(v2, v1) is Verdict.STALE
    assert judge(v2, v2) is Verdict.SAME
    assert judge(loser, winner) is Verdict.CONFLICT_WON
    assert judge(winner, loser) is Verdict.CONFLICT_LOST
    assert {Verdict.CREATE, Verdict.UPDATE, Verdict.CONFLICT_WON} == ACCEPTED
    assert not decide(v2, v2)  # idempotent


def test_tie_break_is_the_digest_of_the_encoding() -> None:
    record = _record(3, b"z")
    assert record.digest == blake3.blake3(record.encode()).digest()
    assert record.precedence == (3, record.digest)


def test_decode_rejects_wrong_shapes() -> None:
    good = _record(1, b"a")
    fields = [1, good.owner, good.tag, good.version, good.payload, good.signature]
    for bad in (
        [2, *fields[1:]],
        [True, *fields[1:]],
        fields[:5],
        {"owner": good.owner},
        [1, "owner", *fields[2:]],
    ):
        with pytest.raises(RecordError):
            Record.decode(msgpack.packb(bad))
    with pytest.raises(RecordError, match="cap"):
        Record.decode(b"\x00" * (MAX_ENCODED + 1))
    with pytest.raises(RecordError, match="msgpack"):
        Record.decode(good.encode() + b"\x00")  # trailing bytes
    with pytest.raises(RecordError):
        Record.decode("text")  # type: ignore[arg-type]


def test_decode_truncated_at_every_length() -> None:
    data = _record(1, b"payload").encode()
    for end in range(len(data)):
        with pytest.raises(RecordError):
            Record.decode(data[:end])


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_record_error(data: bytes) -> None:
    try:
        record = Record.decode(data)
    except RecordError:
        return
    assert Record.decode(record.encode()) == record


@given(st.lists(st.sampled_from([1, 2, 3]), min_size=0, max_size=6).map(bytes))
def test_mutated_encoding_is_never_accepted_unless_identical(flips: bytes) -> None:
    good = _record(4, b"payload")
    data = bytearray(good.encode())
    for n, flip in enumerate(flips):
        data[(n * 37) % len(data)] ^= flip
    try:
        record = Record.decode(bytes(data))
        record.verify()
    except RecordError:
        return
    assert record == good


writes = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from([b"", b"a", b"b", b"c"])),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(writes, st.data())
def test_replicas_converge_whatever_the_order(
    spec: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    records = [_record(version, payload) for version, payload in spec]
    expected = max(records, key=lambda r: r.precedence)
    for _ in range(4):  # four replicas of the close group
        order = data.draw(st.permutations(records))
        duplicates = data.draw(st.lists(st.sampled_from(records), max_size=3))
        state: Record | None = None
        for record in [*order, *duplicates]:
            state = apply(state, record)
        assert state == expected
