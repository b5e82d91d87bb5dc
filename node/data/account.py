"""Self-authentication: an account that lives on the network with no server to log in to.

A user remembers a keyword, a PIN and a password.  From them alone a client derives, in two
Argon2id stages (RFC 9106), everything needed to find, open and update the account:

1. ``location = Argon2id(keyword, salt=BLAKE3("troon/account/location/v1" || pin)[:16])``
   (:func:`account_location`, 32 bytes: depends on keyword + PIN only);
2. ``material = Argon2id(password, salt=BLAKE3("troon/account/keys/v1" || location)[:16])``,
   64 bytes, from which BLAKE3 ``derive_key`` makes the owner's Ed25519 seed and the
   32-byte SecretBox key (:func:`account_keys`).  Salting the password with the location means
   two users with the same password get unrelated keys.

The account is a :class:`~node.data.records.Record` at tag ``b"account"`` owned by that
identity, whose payload is ``SecretBox(key).encrypt(AccountPacket.encode())``.  Its network
address is ``BLAKE3(b"troon/record/v1" || owner || b"account")`` (:func:`account_address`).

Where the record lives, and the trade-off.  The record address binds its owner, so the address
is derivable from keyword + PIN alone exactly when the owner key is.  We derive the owner key
from all three secrets, so **the record address also depends on the password** and is *not*
``account_location``: the location is the intermediate, keyword+PIN-only name (it salts the
password stage).  The rejected alternative (owner key from keyword + PIN, only the encryption
key from the password) would let a client look an account up, or check that a keyword + PIN is
free, without the password; but keyword + PIN is a low-entropy "user name", and anyone who
guesses it would hold the owner's signing key and could overwrite the account with a higher
version, destroying it.  With our choice only the holder of all three secrets can write the
record; the price is that the network cannot tell whether a keyword + PIN is in use (two users
may share one and never collide), and a wrong password looks up an empty address, which
:func:`open_account` reports (given ``None``) with the same error as any other wrong input.

Cost.  :class:`KdfCost` defaults to libsodium's ``OPSLIMIT_MODERATE`` / ``MEMLIMIT_MODERATE``
(3 passes, 256 MiB).  Measured on the 2-core development machine: ~0.5 s per Argon2id run
(INTERACTIVE, 2 passes / 64 MiB: ~0.1 s), so deriving the keys costs ~1 s and two 256 MiB
fills per login attempt, for the user and for every guess of an attacker.  The cost is part
of the derivation: changing it moves every account, so it is a network-wide constant.  Costs
below INTERACTIVE are refused unless ``testing=True``.

Errors: :class:`AccountError`.  It names the field that is wrong and never echoes a secret;
every wrong keyword, PIN or password gives the one message :data:`WRONG_CREDENTIALS`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import blake3
import msgpack
import nacl.exceptions
import nacl.secret
from nacl.pwhash import argon2id

from node.identity import Identity

from .records import MAX_PAYLOAD, Record, RecordError, record_address, sign_record

__all__ = [
    "ACCOUNT_TAG",
    "MAX_DATAMAP_NAME",
    "MAX_DATAMAPS",
    "MAX_PACKET",
    "WRONG_CREDENTIALS",
    "AccountError",
    "AccountKeys",
    "AccountPacket",
    "Credentials",
    "KdfCost",
    "account_address",
    "account_keys",
    "account_location",
    "account_record",
    "derive_keys",
    "open_account",
    "open_with_keys",
    "seal_with_keys",
]

ACCOUNT_TAG = b"account"
"""Record tag of an account record."""

WRONG_CREDENTIALS = "wrong keyword, PIN or password"
"""The one message for every failed login."""

SEED_SIZE = 32
KEY_SIZE = nacl.secret.SecretBox.KEY_SIZE
MIN_KEYWORD, MAX_KEYWORD = 4, 256
MIN_PIN, MAX_PIN = 4, 8
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
MAX_KDF_OPS = 16
MAX_KDF_MEM = argon2id.MEMLIMIT_SENSITIVE
"""Upper bounds on :class:`KdfCost` (1 GiB), so a cost cannot be used to exhaust memory."""

MAX_PACKET = MAX_PAYLOAD - nacl.secret.SecretBox.NONCE_SIZE - nacl.secret.SecretBox.MACBYTES
"""Largest encoded :class:`AccountPacket`: it must fit one record payload once encrypted."""

MAX_DATAMAPS = 1024
"""Most named DataMaps in one packet (large collections belong in a directory file)."""

MAX_DATAMAP_NAME = 255
"""Longest DataMap name, in UTF-8 bytes."""

MAX_TIMESTAMP = 2**63 - 1
PACKET_FORMAT = 1
_LOCATION_DOMAIN = b"troon/account/location/v1"
_KEYS_DOMAIN = b"troon/account/keys/v1"
_OWNER_CONTEXT = "troon account owner seed v1"
_BOX_CONTEXT = "troon account secretbox key v1"
_DIGITS = frozenset("0123456789")


class AccountError(ValueError):
    """Invalid credentials, cost or packet, or a login that failed (never reveals a secret)."""


@dataclass(frozen=True)
class KdfCost:
    """Argon2id cost: ``ops`` passes over ``mem`` bytes.  Defaults: libsodium MODERATE."""

    ops: int = argon2id.OPSLIMIT_MODERATE
    mem: int = argon2id.MEMLIMIT_MODERATE
    testing: bool = field(default=False, kw_only=True)
    """Allow costs below INTERACTIVE (tests only: such a cost protects nothing)."""

    def __post_init__(self) -> None:
        for name, value, low, high in (
            ("ops", self.ops, argon2id.OPSLIMIT_MIN, MAX_KDF_OPS),
            ("mem", self.mem, argon2id.MEMLIMIT_MIN, MAX_KDF_MEM),
        ):
            if type(value) is not int or not low <= value <= high:
                raise AccountError(f"KdfCost.{name} must be an integer in {low}..{high}")
        weak = self.ops < argon2id.OPSLIMIT_INTERACTIVE or self.mem < argon2id.MEMLIMIT_INTERACTIVE
        if weak and not self.testing:
            raise AccountError(
                "KdfCost is weaker than libsodium's INTERACTIVE limits; pass testing=True in tests"
            )


@dataclass(frozen=True)
class Credentials:
    """What the user remembers.  Text is NFC-normalized before use; repr shows no secret."""

    keyword: str = field(repr=False)
    pin: str = field(repr=False)
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_text("keyword", self.keyword, MIN_KEYWORD, MAX_KEYWORD)
        _check_pin(self.pin)
        _check_text("password", self.password, MIN_PASSWORD, MAX_PASSWORD)


@dataclass(frozen=True)
class AccountKeys:
    """Everything derived from the credentials; the secrets stay out of repr."""

    location: bytes = field(repr=False)
    identity: Identity = field(repr=False)
    box_key: bytes = field(repr=False)

    @property
    def address(self) -> bytes:
        """Network address of the account record (depends on all three secrets)."""
        return record_address(self.identity.public_key, ACCOUNT_TAG)


@dataclass(frozen=True)
class AccountPacket:
    """The account's secret contents: the user's keys and the DataMaps of their files."""

    identity_seed: bytes = field(repr=False)
    wallet_seed: bytes = field(repr=False)
    datamaps: Mapping[str, bytes] = field(default_factory=dict, hash=False, repr=False)
    created: int = 0
    """When the account was created (Unix seconds, supplied by the caller)."""

    def __post_init__(self) -> None:
        for name in ("identity_seed", "wallet_seed"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != SEED_SIZE:
                raise AccountError(f"{name} must be {SEED_SIZE} bytes")
        if type(self.created) is not int or not 0 <= self.created <= MAX_TIMESTAMP:
            raise AccountError(f"created must be an integer in 0..{MAX_TIMESTAMP}")
        object.__setattr__(self, "datamaps", MappingProxyType(_check_datamaps(self.datamaps)))

    def encode(self) -> bytes:
        """msgpack ``[1, identity_seed, wallet_seed, {name: datamap}, created]`` (sorted names)."""
        maps = dict(sorted(self.datamaps.items()))
        fields = [PACKET_FORMAT, self.identity_seed, self.wallet_seed, maps, self.created]
        data: bytes = msgpack.packb(fields, use_bin_type=True)
        if len(data) > MAX_PACKET:
            raise AccountError(f"account packet is {len(data)} bytes, the cap is {MAX_PACKET}")
        return data

    @classmethod
    def decode(cls, data: bytes) -> AccountPacket:
        """Parse :meth:`encode` output; anything else raises :class:`AccountError`."""
        items = _unpack(data)
        if not isinstance(items, list) or len(items) != 5 or type(items[0]) is not int:
            raise AccountError("account packet: expected a 5-element array")
        if items[0] != PACKET_FORMAT:
            raise AccountError(f"account packet: unsupported format {items[0]}")
        _, identity_seed, wallet_seed, datamaps, created = items
        if not isinstance(datamaps, dict):
            raise AccountError("account packet: datamaps must be a map")
        return cls(identity_seed, wallet_seed, datamaps, created)


def account_location(keyword: str, pin: str, cost: KdfCost) -> bytes:
    """The 32-byte keyword+PIN name: ``Argon2id(keyword, salt=H(domain || pin))``."""
    _check_text("keyword", keyword, MIN_KEYWORD, MAX_KEYWORD)
    _check_pin(pin)
    salt = _salt(_LOCATION_DOMAIN + pin.encode("ascii"))
    return _argon2id(SEED_SIZE, _text(keyword), salt, cost)


def derive_keys(creds: Credentials, cost: KdfCost) -> AccountKeys:
    """Run both Argon2id stages (see the module docstring)."""
    location = account_location(creds.keyword, creds.pin, cost)
    material = _argon2id(64, _text(creds.password), _salt(_KEYS_DOMAIN + location), cost)
    seed = blake3.blake3(material, derive_key_context=_OWNER_CONTEXT).digest()
    box_key = blake3.blake3(material, derive_key_context=_BOX_CONTEXT).digest()
    return AccountKeys(location, Identity.from_seed(seed), box_key)


def account_keys(creds: Credentials, cost: KdfCost) -> tuple[Identity, bytes]:
    """(identity that owns the account record, 32-byte SecretBox key)."""
    keys = derive_keys(creds, cost)
    return keys.identity, keys.box_key


def account_address(creds: Credentials, cost: KdfCost) -> bytes:
    """Where the client fetches the account record from."""
    return derive_keys(creds, cost).address


def seal_with_keys(keys: AccountKeys, packet: AccountPacket, version: int) -> Record:
    """Encrypt ``packet`` and sign it as version ``version`` of the account record."""
    ciphertext = bytes(nacl.secret.SecretBox(keys.box_key).encrypt(packet.encode()))
    try:
        return sign_record(keys.identity, ACCOUNT_TAG, version, ciphertext)
    except RecordError as exc:
        raise AccountError(f"cannot build the account record: {exc}") from exc


def open_with_keys(keys: AccountKeys, record: Record | None) -> AccountPacket:
    """Verify and decrypt an account record; ``None`` means nothing was found at the address."""
    if record is None:
        raise AccountError(WRONG_CREDENTIALS)
    try:
        record.verify()
    except RecordError as exc:
        raise AccountError("account record failed verification") from exc
    if record.owner != keys.identity.public_key:
        raise AccountError(WRONG_CREDENTIALS)
    if record.tag != ACCOUNT_TAG:
        raise AccountError("record is not an account record")
    try:
        plaintext = nacl.secret.SecretBox(keys.box_key).decrypt(record.payload)
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, ValueError) as exc:
        raise AccountError(WRONG_CREDENTIALS) from exc
    return AccountPacket.decode(plaintext)


def account_record(
    packet: AccountPacket, creds: Credentials, cost: KdfCost, version: int
) -> Record:
    """Create (version 0) or update the account: the record to PUT at :func:`account_address`."""
    return seal_with_keys(derive_keys(creds, cost), packet, version)


def open_account(record: Record | None, creds: Credentials, cost: KdfCost) -> AccountPacket:
    """Log in: the fetched record (or None if the address was empty) -> the packet."""
    return open_with_keys(derive_keys(creds, cost), record)


def _check_text(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise AccountError(f"{name} must be text of {low} to {high} characters")


def _check_pin(pin: Any) -> None:
    if not isinstance(pin, str) or not MIN_PIN <= len(pin) <= MAX_PIN or set(pin) - _DIGITS:
        raise AccountError(f"pin must be {MIN_PIN} to {MAX_PIN} ASCII digits")


def _check_datamaps(datamaps: Any) -> dict[str, bytes]:
    if not isinstance(datamaps, Mapping):
        raise AccountError("datamaps must be a mapping of name -> DataMap bytes")
    if len(datamaps) > MAX_DATAMAPS:
        raise AccountError(f"too many datamaps: {len(datamaps)} > {MAX_DATAMAPS}")
    out: dict[str, bytes] = {}
    for name, value in datamaps.items():
        if not isinstance(name, str) or not 0 < len(name.encode()) <= MAX_DATAMAP_NAME:
            raise AccountError(f"datamap names must be 1..{MAX_DATAMAP_NAME} UTF-8 bytes")
        if not isinstance(value, bytes) or not value:
            raise AccountError("datamap values must be non-empty bytes")
        out[name] = value
    return out


def _text(value: str) -> bytes:
    return unicodedata.normalize("NFC", value).encode("utf-8")


def _salt(data: bytes) -> bytes:
    return blake3.blake3(data).digest(length=argon2id.SALTBYTES)


def _argon2id(size: int, secret: bytes, salt: bytes, cost: KdfCost) -> bytes:
    if not isinstance(cost, KdfCost):
        raise AccountError("cost must be a KdfCost")
    return bytes(argon2id.kdf(size, secret, salt, opslimit=cost.ops, memlimit=cost.mem))


def _unpack(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AccountError("account packet must be bytes")
    if len(data) > MAX_PACKET:
        raise AccountError(f"account packet is {len(data)} bytes, the cap is {MAX_PACKET}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            max_bin_len=MAX_PACKET,
            max_str_len=MAX_DATAMAP_NAME,
            max_array_len=5,
            max_map_len=MAX_DATAMAPS,
            max_ext_len=0,
        )
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise AccountError(f"account packet is not valid msgpack: {type(exc).__name__}") from exc
