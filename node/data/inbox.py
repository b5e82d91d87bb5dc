"""Messaging: sealed, signed letters dropped into a recipient's inbox on the network.

A sender seals a letter to the recipient's X25519 key (the birational image of its Ed25519 key)
with a libsodium sealed box.  Inside the seal are the sender's public key, ``sent_at``, the body
and the sender's Ed25519 signature over ``DOMAIN/letter || recipient || u64 sent_at || body``,
so the recipient learns an authenticated sender and a letter cannot be re-addressed.  Outside
the seal an :class:`Envelope` shows only the recipient key, which names the inbox:
``inbox_address(pk) = BLAKE3(b"troon/inbox/v1" || pk)``.  Sharing a private file is sending
its DataMap bytes as the body.

:class:`InboxState` is what the close group of an inbox address keeps (sans-IO, in memory,
with msgpack persistence).  Invariants: an envelope is stored under the inbox of its own
recipient; envelopes are unique by :attr:`Envelope.id`; an inbox holds at most
:data:`MAX_INBOX` envelopes, the oldest *arrival* being dropped first (a node cannot see
``sent_at``); only the recipient's signature over ``DOMAIN/delete || address || ids`` deletes.
A failed call changes nothing.  Every malformed or oversized input raises :class:`InboxError`.

Trade-offs: anyone may post to any inbox, so a flood can push real letters out (a fee per
letter would fix this); a deleted envelope that someone kept can be posted again (clients
dedupe by id); the signature inside lets the recipient prove to others who wrote to it.
"""

from __future__ import annotations

import builtins
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import blake3
import msgpack
import nacl.bindings
import nacl.exceptions
import nacl.public

from node.identity import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    Identity,
    IdentityError,
    verify,
    x25519_public_of,
)

__all__ = [
    "DOMAIN",
    "MAX_INBOX",
    "MAX_MESSAGE",
    "MAX_SEALED",
    "Envelope",
    "InboxError",
    "InboxState",
    "Letter",
    "delete_message",
    "delete_proof",
    "inbox_address",
    "open_message",
    "seal_message",
]

DOMAIN = b"troon/inbox/v1"
MAX_MESSAGE = 64 * 1024
"""Largest letter body (bytes)."""

MAX_INBOX = 1000
"""Envelopes kept per inbox; past it the oldest arrival is dropped."""

MIN_SEALED = nacl.bindings.crypto_box_SEALBYTES
"""A sealed box is at least its ephemeral key and MAC (libsodium ``crypto_box_SEALBYTES``)."""

MAX_SEALED = MAX_MESSAGE + 256
"""Largest sealed letter: body + sender key, time, signature, framing and the seal."""

MAX_TIME = 2**63 - 1
FORMAT = 1
MAX_STATE_BYTES = 1 << 30
"""Largest persisted :class:`InboxState` accepted by :meth:`InboxState.decode`."""

ID_SIZE = 32
_LETTER_DOMAIN = DOMAIN + b"/letter"
_DELETE_DOMAIN = DOMAIN + b"/delete"
_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")


class InboxError(ValueError):
    """A message, envelope, inbox request or persisted state is malformed, forged or too big."""


def inbox_address(recipient_pk: bytes) -> bytes:
    """``BLAKE3(b"troon/inbox/v1" || pk)``: the inbox's name in XOR space."""
    _check_key("recipient", recipient_pk)
    return blake3.blake3(DOMAIN + recipient_pk).digest()


@dataclass(frozen=True)
class Envelope:
    """A sealed letter as the network sees it: who it is for, and opaque bytes."""

    recipient: bytes
    sealed: bytes

    def __post_init__(self) -> None:
        _check_key("recipient", self.recipient)
        if not isinstance(self.sealed, bytes) or not MIN_SEALED <= len(self.sealed) <= MAX_SEALED:
            raise InboxError(f"sealed letter must be {MIN_SEALED}..{MAX_SEALED} bytes")

    @property
    def id(self) -> bytes:
        """BLAKE3 of the sealed bytes: the envelope's identity inside its inbox."""
        return blake3.blake3(self.sealed).digest()

    @property
    def address(self) -> bytes:
        """The inbox this envelope belongs to."""
        return inbox_address(self.recipient)

    def encode(self) -> bytes:
        """msgpack ``[1, recipient, sealed]``."""
        data: bytes = msgpack.packb([FORMAT, self.recipient, self.sealed], use_bin_type=True)
        return data

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Parse :meth:`encode` output; anything else raises :class:`InboxError`."""
        items = _unpack(data, MAX_SEALED + 64, array_len=3)
        if not isinstance(items, list) or len(items) != 3 or not _is_format(items[0]):
            raise InboxError("not a version-1 envelope: expected [1, recipient, sealed]")
        return cls(items[1], items[2])


@dataclass(frozen=True)
class Letter:
    """An opened letter: authenticated sender, its claimed send time and the body."""

    sender: bytes
    sent_at: int
    body: bytes


def seal_message(sender: Identity, recipient_pk: bytes, body: bytes, *, sent_at: int) -> Envelope:
    """Sign and seal ``body`` from ``sender`` to ``recipient_pk``."""
    _check_key("recipient", recipient_pk)
    _check_letter_fields(sent_at, body)
    try:
        box = nacl.public.SealedBox(nacl.public.PublicKey(x25519_public_of(recipient_pk)))
    except IdentityError as exc:
        raise InboxError("recipient key is not a valid Ed25519 public key") from exc
    signature = sender.sign(_letter_bytes(recipient_pk, sent_at, body))
    inner = msgpack.packb([FORMAT, sender.public_key, sent_at, body, signature], use_bin_type=True)
    return Envelope(recipient_pk, bytes(box.encrypt(inner)))


def open_message(recipient: Identity, envelope: Envelope) -> Letter:
    """Unseal and check the sender's signature; InboxError if not ours, corrupt or forged."""
    if envelope.recipient != recipient.public_key:
        raise InboxError("envelope is addressed to someone else")
    box = nacl.public.SealedBox(nacl.public.PrivateKey(recipient.x25519_secret()))
    try:
        inner = box.decrypt(envelope.sealed)
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, ValueError) as exc:
        raise InboxError("cannot open the envelope: not sealed to this identity") from exc
    items = _unpack(inner, MAX_SEALED, array_len=5)
    if not isinstance(items, list) or len(items) != 5 or not _is_format(items[0]):
        raise InboxError("sealed letter: expected [1, sender, sent_at, body, signature]")
    _, sender, sent_at, body, signature = items
    _check_key("sender", sender)
    _check_letter_fields(sent_at, body)
    if not isinstance(signature, bytes):
        raise InboxError("sealed letter: signature must be bytes")
    try:
        verify(sender, _letter_bytes(recipient.public_key, sent_at, body), signature)
    except IdentityError as exc:
        raise InboxError("sender signature does not verify") from exc
    return Letter(sender, sent_at, body)


def delete_message(address: bytes, ids: Sequence[bytes]) -> bytes:
    """What the recipient signs to delete ``ids`` from the inbox at ``address`` (in this order)."""
    _check_id("inbox address", address)
    if not 1 <= len(ids) <= MAX_INBOX:
        raise InboxError(f"a delete names 1..{MAX_INBOX} envelope ids")
    for envelope_id in ids:
        _check_id("envelope id", envelope_id)
    return b"".join((_DELETE_DOMAIN, address, _U16.pack(len(ids)), *ids))


def delete_proof(recipient: Identity, ids: Sequence[bytes]) -> bytes:
    """The recipient's signature that authorizes :meth:`InboxState.delete` of ``ids``."""
    return recipient.sign(delete_message(inbox_address(recipient.public_key), ids))


class InboxState:
    """The envelopes a node keeps, per inbox address (see the module docstring)."""

    def __init__(self) -> None:
        self._inboxes: dict[bytes, OrderedDict[bytes, Envelope]] = {}

    def add(self, envelope: Envelope) -> bool:
        """Store ``envelope``; False if it is already there.  May drop the oldest arrival."""
        if not isinstance(envelope, Envelope):
            raise InboxError("add() takes an Envelope")
        inbox = self._inboxes.setdefault(envelope.address, OrderedDict())
        envelope_id = envelope.id
        if envelope_id in inbox:
            return False
        inbox[envelope_id] = envelope
        if len(inbox) > MAX_INBOX:
            inbox.popitem(last=False)
        return True

    def list(self, address: bytes) -> builtins.list[Envelope]:
        """The envelopes of one inbox, oldest arrival first (empty if unknown)."""
        _check_id("inbox address", address)
        return builtins.list(self._inboxes.get(address, {}).values())

    def addresses(self) -> builtins.list[bytes]:
        """Addresses of the non-empty inboxes held."""
        return builtins.list(self._inboxes)

    def __len__(self) -> int:
        """Total envelopes held."""
        return sum(len(inbox) for inbox in self._inboxes.values())

    def delete(self, address: bytes, ids: Sequence[bytes], proof: bytes) -> int:
        """Remove ``ids`` if ``proof`` is the recipient's signature; return how many went."""
        message = delete_message(address, ids)
        if not isinstance(proof, bytes) or len(proof) != SIGNATURE_SIZE:
            raise InboxError(f"delete proof must be a {SIGNATURE_SIZE}-byte signature")
        inbox = self._inboxes.get(address)
        if not inbox:
            return 0  # nothing stored, nothing to authorize
        recipient = next(iter(inbox.values())).recipient
        try:
            verify(recipient, message, proof)
        except IdentityError as exc:
            raise InboxError("delete proof is not the recipient's signature") from exc
        removed = sum(inbox.pop(envelope_id, None) is not None for envelope_id in set(ids))
        if not inbox:
            del self._inboxes[address]
        return removed

    def encode(self) -> bytes:
        """msgpack ``[1, [[recipient, [sealed, ...]], ...]]`` in arrival order."""
        inboxes = [
            [next(iter(inbox.values())).recipient, [e.sealed for e in inbox.values()]]
            for inbox in self._inboxes.values()
        ]
        data: bytes = msgpack.packb([FORMAT, inboxes], use_bin_type=True)
        return data

    @classmethod
    def decode(cls, data: bytes) -> InboxState:
        """Parse :meth:`encode` output; anything else raises :class:`InboxError`."""
        items = _unpack(data, MAX_STATE_BYTES, array_len=None)
        if not isinstance(items, list) or len(items) != 2 or not _is_format(items[0]):
            raise InboxError("inbox state: expected [1, inboxes]")
        if not isinstance(items[1], list):
            raise InboxError("inbox state: inboxes must be an array")
        state = cls()
        for entry in items[1]:
            state._load_inbox(entry)
        return state

    def _load_inbox(self, entry: Any) -> None:
        if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[1], list):
            raise InboxError("inbox state: each inbox is [recipient, [sealed, ...]]")
        recipient, sealed_list = entry
        if not 1 <= len(sealed_list) <= MAX_INBOX:
            raise InboxError(f"inbox state: an inbox holds 1..{MAX_INBOX} envelopes")
        if inbox_address(recipient) in self._inboxes:
            raise InboxError("inbox state: an inbox is listed twice")
        for sealed in sealed_list:
            if not self.add(Envelope(recipient, sealed)):
                raise InboxError("inbox state: an envelope is listed twice")


def _letter_bytes(recipient: bytes, sent_at: int, body: bytes) -> bytes:
    return b"".join((_LETTER_DOMAIN, recipient, _U64.pack(sent_at), body))


def _check_letter_fields(sent_at: Any, body: Any) -> None:
    if type(sent_at) is not int or not 0 <= sent_at <= MAX_TIME:
        raise InboxError(f"sent_at must be an integer in 0..{MAX_TIME}")
    if not isinstance(body, bytes):
        raise InboxError("body must be bytes")
    if len(body) > MAX_MESSAGE:
        raise InboxError(f"body is {len(body)} bytes, the cap is {MAX_MESSAGE}")


def _check_key(name: str, value: Any) -> None:
    if not isinstance(value, bytes) or len(value) != PUBLIC_KEY_SIZE:
        raise InboxError(f"{name} must be a {PUBLIC_KEY_SIZE}-byte Ed25519 public key")


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, bytes) or len(value) != ID_SIZE:
        raise InboxError(f"{name} must be {ID_SIZE} bytes")


def _is_format(value: Any) -> bool:
    return type(value) is int and value == FORMAT


def _unpack(data: Any, limit: int, *, array_len: int | None) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InboxError("encoded data must be bytes")
    if len(data) > limit:
        raise InboxError(f"encoded data is {len(data)} bytes, the cap is {limit}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            max_bin_len=MAX_SEALED,
            max_str_len=0,
            max_map_len=0,
            max_ext_len=0,
            max_array_len=-1 if array_len is None else array_len,
        )
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise InboxError(f"not valid msgpack: {type(exc).__name__}") from exc
