"""Self-authentication: key derivation, sealing the account record and logging in."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.pwhash import argon2id
from nacl.secret import SecretBox

from node.data.account import (
    ACCOUNT_TAG,
    MAX_DATAMAPS,
    MAX_PACKET,
    WRONG_CREDENTIALS,
    AccountError,
    AccountKeys,
    AccountPacket,
    Credentials,
    KdfCost,
    account_address,
    account_keys,
    account_location,
    account_record,
    derive_keys,
    open_account,
    open_with_keys,
    seal_with_keys,
)
from node.data.records import Record, record_address, sign_record
from node.identity import Identity

CHEAP = KdfCost(ops=1, mem=8192, testing=True)
USER = Credentials("bluebird", "4711", "correct horse battery")
PACKET = AccountPacket(
    identity_seed=b"\x11" * 32,
    wallet_seed=b"\x22" * 32,
    datamaps={"notes.txt": b"datamap-1", "photo.jpg": b"datamap-2"},
    created=1_700_000_000,
)
SECRETS = (USER.keyword, USER.pin, USER.password)


def test_default_cost_is_moderate() -> None:
    assert KdfCost() == KdfCost(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)


def test_round_trip_at_the_real_default_cost() -> None:
    # The one test that pays the documented cost (~1 s: two Argon2id runs at MODERATE).
    keys = derive_keys(USER, KdfCost())
    assert open_with_keys(keys, seal_with_keys(keys, PACKET, 0)) == PACKET


def test_round_trip() -> None:
    record = account_record(PACKET, USER, CHEAP, 0)
    record.verify()
    assert record.tag == ACCOUNT_TAG
    assert record.address == account_address(USER, CHEAP)
    assert open_account(record, USER, CHEAP) == PACKET
    for secret in (b"datamap-1", b"notes.txt", PACKET.identity_seed):
        assert secret not in record.encode()


def test_update_is_a_higher_version_by_the_same_owner() -> None:
    first = account_record(PACKET, USER, CHEAP, 0)
    grown = dataclasses.replace(PACKET, datamaps={**PACKET.datamaps, "new": b"map"})
    second = account_record(grown, USER, CHEAP, 1)
    assert second.address == first.address and second.version == 1
    assert open_account(second, USER, CHEAP).datamaps["new"] == b"map"


@pytest.mark.parametrize(
    "wrong",
    [
        Credentials("bluebirt", "4711", "correct horse battery"),
        Credentials("bluebird", "4712", "correct horse battery"),
        Credentials("bluebird", "4711", "correct horse batterz"),
    ],
)
def test_every_wrong_input_gives_the_same_error(wrong: Credentials) -> None:
    record = account_record(PACKET, USER, CHEAP, 0)
    # What a client really sees: nothing at the address it derives ...
    assert account_address(wrong, CHEAP) != record.address
    with pytest.raises(AccountError) as nothing:
        open_account(None, wrong, CHEAP)
    # ... and, should it be handed the right record anyway, no way in either.
    with pytest.raises(AccountError) as handed:
        open_account(record, wrong, CHEAP)
    assert str(nothing.value) == str(handed.value) == WRONG_CREDENTIALS


def test_wrong_key_with_the_right_owner_cannot_decrypt() -> None:
    # Owner matches but the box key is wrong: still the one message, no plaintext.
    keys = derive_keys(USER, CHEAP)
    record = seal_with_keys(keys, PACKET, 0)
    confused = AccountKeys(keys.location, keys.identity, b"\x00" * 32)
    with pytest.raises(AccountError, match=f"^{WRONG_CREDENTIALS}$"):
        open_with_keys(confused, record)


def test_tampered_record_is_refused() -> None:
    record = account_record(PACKET, USER, CHEAP, 0)
    flipped = bytes([record.payload[0] ^ 1]) + record.payload[1:]
    for tampered in (
        dataclasses.replace(record, payload=flipped),
        dataclasses.replace(record, version=5),
        dataclasses.replace(record, tag=b"other"),
    ):
        with pytest.raises(AccountError, match="failed verification"):
            open_account(tampered, USER, CHEAP)


def test_record_by_the_owner_under_another_tag_is_not_an_account() -> None:
    keys = derive_keys(USER, CHEAP)
    other = sign_record(keys.identity, b"profile", 0, b"x")
    with pytest.raises(AccountError, match="not an account record"):
        open_with_keys(keys, other)


def test_same_password_different_users_get_different_keys() -> None:
    bob = Credentials("otheruser", "4711", USER.password)
    carol = Credentials("bluebird", "0000", USER.password)
    derived = [account_keys(c, CHEAP) for c in (USER, bob, carol)]
    assert len({identity.public_key for identity, _ in derived}) == 3
    assert len({box_key for _, box_key in derived}) == 3
    assert all(len(box_key) == 32 for _, box_key in derived)


def test_derivation_is_deterministic_and_bound_to_the_cost() -> None:
    again = derive_keys(USER, CHEAP)
    assert derive_keys(USER, CHEAP).box_key == again.box_key
    other_cost = KdfCost(ops=2, mem=8192, testing=True)
    assert derive_keys(USER, other_cost).address != again.address


def test_location_depends_on_keyword_and_pin_only() -> None:
    location = account_location(USER.keyword, USER.pin, CHEAP)
    assert len(location) == 32
    assert derive_keys(USER, CHEAP).location == location
    other_password = Credentials(USER.keyword, USER.pin, "another password")
    assert derive_keys(other_password, CHEAP).location == location
    assert account_location(USER.keyword, "4712", CHEAP) != location
    # The record address is not the location: it also depends on the password.
    assert account_address(USER, CHEAP) != account_address(other_password, CHEAP)
    assert account_address(USER, CHEAP) != location


def test_unicode_is_normalized() -> None:
    composed = Credentials("caf\u00e9ier", "1234", "pass\u00e9word")
    decomposed = Credentials("cafe\u0301ier", "1234", "passe\u0301word")
    assert derive_keys(composed, CHEAP).box_key == derive_keys(decomposed, CHEAP).box_key


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("abc", "1234", "password1"), "keyword"),
        (("abcd", "123", "password1"), "pin"),
        (("abcd", "123456789", "password1"), "pin"),
        (("abcd", "12a4", "password1"), "pin"),
        (("abcd", "\u0661\u0662\u0663\u0664", "password1"), "pin"),
        (("abcd", "1234", "short"), "password"),
        ((b"abcd", "1234", "password1"), "keyword"),
    ],
)
def test_validation_names_the_field_and_hides_the_secret(
    args: tuple[str, str, str], field: str
) -> None:
    with pytest.raises(AccountError, match=f"^{field} must") as caught:
        Credentials(*args)
    for secret in args:
        if len(secret) >= 3:
            assert str(secret) not in str(caught.value)


def test_repr_hides_secrets() -> None:
    keys = derive_keys(USER, CHEAP)
    for shown in (repr(USER), repr(keys), repr(PACKET)):
        for secret in SECRETS:
            assert secret not in shown
        assert keys.box_key.hex() not in shown


def test_weak_cost_needs_the_testing_flag() -> None:
    with pytest.raises(AccountError, match="weaker than libsodium's INTERACTIVE"):
        KdfCost(ops=1, mem=8192)
    with pytest.raises(AccountError, match="weaker"):
        KdfCost(ops=argon2id.OPSLIMIT_INTERACTIVE, mem=argon2id.MEMLIMIT_INTERACTIVE - 1)
    assert KdfCost(argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE).ops == 2
    with pytest.raises(AccountError, match=r"KdfCost\.mem"):
        KdfCost(ops=1, mem=1024, testing=True)  # below Argon2id's own minimum
    with pytest.raises(AccountError, match=r"KdfCost\.ops"):
        KdfCost(ops=1000, mem=8192, testing=True)


def test_packet_round_trip_and_limits() -> None:
    assert AccountPacket.decode(PACKET.encode()) == PACKET
    assert PACKET.datamaps == {"notes.txt": b"datamap-1", "photo.jpg": b"datamap-2"}
    with pytest.raises(TypeError):
        PACKET.datamaps["x"] = b"y"  # type: ignore[index]
    huge = AccountPacket(b"\x11" * 32, b"\x22" * 32, {"big": b"x" * MAX_PACKET})
    with pytest.raises(AccountError, match="cap"):
        huge.encode()
    too_many = {str(n): b"m" for n in range(MAX_DATAMAPS + 1)}
    with pytest.raises(AccountError, match="too many datamaps"):
        AccountPacket(b"\x11" * 32, b"\x22" * 32, too_many)
    with pytest.raises(AccountError, match="identity_seed"):
        AccountPacket(b"short", b"\x22" * 32)
    with pytest.raises(AccountError, match="created"):
        AccountPacket(b"\x11" * 32, b"\x22" * 32, created=-1)


def test_garbage_inside_a_valid_seal_is_reported_as_malformed() -> None:
    keys = derive_keys(USER, CHEAP)
    payload = bytes(SecretBox(keys.box_key).encrypt(b"\xc1"))
    record = sign_record(keys.identity, ACCOUNT_TAG, 0, payload)
    with pytest.raises(AccountError, match="not valid msgpack"):
        open_with_keys(keys, record)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_account_error(data: bytes) -> None:
    try:
        packet = AccountPacket.decode(data)
    except AccountError:
        return
    assert AccountPacket.decode(packet.encode()) == packet


def test_record_address_relation() -> None:
    keys = derive_keys(USER, CHEAP)
    assert keys.address == record_address(keys.identity.public_key, ACCOUNT_TAG)
    assert isinstance(keys.identity, Identity)
    assert isinstance(account_record(PACKET, USER, CHEAP, 0), Record)
