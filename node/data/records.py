"""Signed mutable records: one owner's small, versioned, replicated value.

A :class:`Record` lives at ``address = BLAKE3(b"troon/record/v1" || owner || tag)`` and is kept
by the close group of that address (4 nodes, like a chunk).  The owner is an Ed25519 public key
and the tag (0..32 bytes) lets one key own many records.  Because the address binds the owner,
nobody else can write a record at it: any incoming write must carry the owner's signature over
:meth:`Record.signing_bytes`.

Acceptance rule (:func:`judge` / :func:`decide`), applied independently by every replica:

- the incoming record must verify and belong to the same address as the stored one;
- a higher ``version`` wins;
- at an equal version, different content is a conflict (the owner wrote twice, e.g. from two
  devices): the record with the larger ``BLAKE3(encode())`` wins;
- an identical record is :attr:`Verdict.SAME` and changes nothing (writes are idempotent).

So every replica's stored record is the maximum of the writes it has seen under the total order
``(version, BLAKE3(encode()))``, whatever order the writes arrived in: replicas that saw the same
writes hold the same record.  ``encode()`` is canonical (built from the fields, never from the
bytes that arrived), so the tie-break cannot depend on how a peer chose to encode.

Every malformed, oversized, forged or foreign input raises :class:`RecordError`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

import blake3
import msgpack

from node.identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Identity, IdentityError, verify

__all__ = [
    "ACCEPTED",
    "DOMAIN",
    "MAX_ENCODED",
    "MAX_PAYLOAD",
    "MAX_TAG",
    "MAX_VERSION",
    "Record",
    "RecordError",
    "Verdict",
    "decide",
    "judge",
    "record_address",
    "sign_record",
]

DOMAIN = b"troon/record/v1"
"""Domain separator for record addresses and signatures."""

MAX_PAYLOAD = 64 * 1024
"""Largest payload a record may carry (bytes)."""

MAX_TAG = 32
"""Longest tag (bytes)."""

MAX_VERSION = 2**63 - 1
"""Versions run 0..MAX_VERSION."""

FORMAT = 1
"""First element of the msgpack encoding."""

MAX_ENCODED = MAX_PAYLOAD + MAX_TAG + 256
"""Largest :meth:`Record.encode` output (payload, tag, key, signature and framing)."""

_SIGNED_HEADER = struct.Struct(">32sB")
_SIGNED_VERSION_LEN = struct.Struct(">QI")


class RecordError(ValueError):
    """A record is malformed, oversized, unsigned, forged or does not belong where it was sent."""


def record_address(owner: bytes, tag: bytes) -> bytes:
    """The 32-byte XOR-space name of the record ``owner`` keeps under ``tag``."""
    _check_owner_tag(owner, tag)
    return blake3.blake3(DOMAIN + owner + tag).digest()


@dataclass(frozen=True)
class Record:
    """One signed version of a mutable record (fields are checked on construction)."""

    owner: bytes
    tag: bytes
    version: int
    payload: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_owner_tag(self.owner, self.tag)
        if type(self.version) is not int or not 0 <= self.version <= MAX_VERSION:
            raise RecordError(f"version must be an integer in 0..{MAX_VERSION}")
        if not isinstance(self.payload, bytes):
            raise RecordError("payload must be bytes")
        if len(self.payload) > MAX_PAYLOAD:
            raise RecordError(f"payload is {len(self.payload)} bytes, the cap is {MAX_PAYLOAD}")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_SIZE:
            raise RecordError(f"signature must be {SIGNATURE_SIZE} bytes")

    @property
    def address(self) -> bytes:
        """``BLAKE3(b"troon/record/v1" || owner || tag)``: where the record lives."""
        return record_address(self.owner, self.tag)

    @property
    def digest(self) -> bytes:
        """``BLAKE3(encode())``: the tie-break between two records of equal version."""
        return blake3.blake3(self.encode()).digest()

    @property
    def precedence(self) -> tuple[int, bytes]:
        """The total order replicas converge on: the larger key wins."""
        return (self.version, self.digest)

    def signing_bytes(self) -> bytes:
        """``DOMAIN || owner || u8 len(tag) || tag || u64 version || u32 len(payload) || payload``.

        All integers are big-endian; the fixed-size owner needs no prefix.
        """
        return signing_bytes(self.owner, self.tag, self.version, self.payload)

    def verify(self) -> None:
        """Raise :class:`RecordError` unless the owner signed exactly these fields."""
        try:
            verify(self.owner, self.signing_bytes(), self.signature)
        except IdentityError as exc:
            raise RecordError("record signature does not verify for its owner") from exc

    def encode(self) -> bytes:
        """Canonical msgpack: ``[1, owner, tag, version, payload, signature]``."""
        fields = [FORMAT, self.owner, self.tag, self.version, self.payload, self.signature]
        return msgpack.packb(fields, use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> Record:
        """Parse :meth:`encode` output (signature not checked); anything else -> RecordError."""
        items = _unpack(data)
        if not isinstance(items, list) or len(items) != 6 or items[0] != FORMAT:
            raise RecordError("not a version-1 record: expected a 6-element array")
        if type(items[0]) is not int:
            raise RecordError("record format marker must be an integer")
        _, owner, tag, version, payload, signature = items
        return cls(owner, tag, version, payload, signature)


def signing_bytes(owner: bytes, tag: bytes, version: int, payload: bytes) -> bytes:
    """The exact bytes an owner signs (length-prefixed, domain-separated)."""
    return b"".join(
        (
            DOMAIN,
            _SIGNED_HEADER.pack(owner, len(tag)),
            tag,
            _SIGNED_VERSION_LEN.pack(version, len(payload)),
            payload,
        )
    )


def sign_record(identity: Identity, tag: bytes, version: int, payload: bytes) -> Record:
    """Build and sign a record owned by ``identity``."""
    unsigned = Record(identity.public_key, tag, version, payload, bytes(SIGNATURE_SIZE))
    signature = identity.sign(unsigned.signing_bytes())
    return Record(identity.public_key, tag, version, payload, signature)


class Verdict(enum.Enum):
    """What a replica does with an incoming record (see the module docstring)."""

    CREATE = "create"  # nothing stored yet: store it
    UPDATE = "update"  # higher version: replace
    SAME = "same"  # identical to the stored record: nothing to do
    STALE = "stale"  # lower version: keep the stored record
    CONFLICT_WON = "conflict_won"  # equal version, different content, larger digest: replace
    CONFLICT_LOST = "conflict_lost"  # equal version, different content, smaller digest: keep


ACCEPTED = frozenset({Verdict.CREATE, Verdict.UPDATE, Verdict.CONFLICT_WON})
"""Verdicts after which the replica stores the incoming record."""


def judge(existing: Record | None, incoming: Record) -> Verdict:
    """Classify ``incoming`` against the stored record; RecordError if it must be refused.

    ``existing`` is trusted (it passed this rule before); ``incoming`` is verified here.
    """
    incoming.verify()
    if existing is None:
        return Verdict.CREATE
    if existing.owner != incoming.owner or existing.tag != incoming.tag:
        raise RecordError("incoming record belongs to a different address (owner or tag differ)")
    if incoming.version != existing.version:
        return Verdict.UPDATE if incoming.version > existing.version else Verdict.STALE
    if incoming == existing:
        return Verdict.SAME
    return Verdict.CONFLICT_WON if incoming.digest > existing.digest else Verdict.CONFLICT_LOST


def decide(existing: Record | None, incoming: Record) -> bool:
    """True if a replica holding ``existing`` should replace it with ``incoming``."""
    return judge(existing, incoming) in ACCEPTED


def _check_owner_tag(owner: Any, tag: Any) -> None:
    if not isinstance(owner, bytes) or len(owner) != PUBLIC_KEY_SIZE:
        raise RecordError(f"owner must be a {PUBLIC_KEY_SIZE}-byte Ed25519 public key")
    if not isinstance(tag, bytes) or len(tag) > MAX_TAG:
        raise RecordError(f"tag must be 0..{MAX_TAG} bytes")


def _unpack(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise RecordError("record data must be bytes")
    if len(data) > MAX_ENCODED:
        raise RecordError(f"encoded record is {len(data)} bytes, the cap is {MAX_ENCODED}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            max_bin_len=MAX_PAYLOAD,
            max_str_len=0,
            max_array_len=6,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise RecordError(f"not a msgpack record: {type(exc).__name__}") from exc
