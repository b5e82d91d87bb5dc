"""Node protocol messages: msgpack bodies inside transport messages.

Every message is a msgpack array ``[kind, request_id, body]`` where ``body`` is a
map with fixed, typed fields per kind.  Requests carry a fresh ``request_id``; the
response echoes it.  Contacts travel as ``[public_key, host, port]``: the receiver
derives the name (BLAKE3 of the key) itself, so nobody can claim a position.

Invariant: :func:`decode` returns a fully validated :class:`Message` or raises
:class:`MessageError`; no other exception escapes for any input bytes.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple

import msgpack

from node.storage.chunkstore import MAX_CHUNK_SIZE

MAX_NAMES = 256
MAX_CONTACTS = 32
MAX_TEXT = 256
MAX_MESSAGE_BYTES = MAX_CHUNK_SIZE + 4096
NAME_LEN = 32


class MessageError(ValueError):
    """A message is malformed, oversized or of an unknown kind."""


class Kind(IntEnum):
    HELLO = 1
    FIND_NODE = 2
    NODES = 3
    PING = 4
    PONG = 5
    PUT = 6
    PUT_OK = 7
    GET = 8
    GET_OK = 9
    HAS = 10
    HAS_OK = 11
    ERROR = 12
    RECORD_PUT = 13
    RECORD_OK = 14
    RECORD_GET = 15
    RECORD_DATA = 16
    INBOX_ADD = 17
    INBOX_LIST = 18
    INBOX_DELETE = 19
    INBOX_OK = 20
    INBOX_DATA = 21
    LEDGER = 22
    LEDGER_OK = 23


REQUESTS = {
    Kind.FIND_NODE,
    Kind.PING,
    Kind.PUT,
    Kind.GET,
    Kind.HAS,
    Kind.RECORD_PUT,
    Kind.RECORD_GET,
    Kind.LEDGER,
}
RESPONSES = {
    Kind.NODES,
    Kind.PONG,
    Kind.PUT_OK,
    Kind.GET_OK,
    Kind.HAS_OK,
    Kind.ERROR,
    Kind.RECORD_OK,
    Kind.RECORD_DATA,
    Kind.INBOX_OK,
    Kind.INBOX_DATA,
    Kind.LEDGER_OK,
}
MAX_RECORD_BYTES = 64 * 1024 + 1024
MAX_ENVELOPE_BYTES = 64 * 1024 + 1024
MAX_ENVELOPES = 200
MAX_LEDGER_BYTES = 1 << 20
MAX_PAYMENT_BYTES = 4096
LEDGER_OPS = (
    "wallet.get",
    "wallet.open",
    "wallet.create",
    "wallet.transfer",
    "wallet.vote",
    "wallet.commit",
    "wallet.credit",
    "wallet.mint",
    "wallet.push",
    "mint.request",
    "mint.vote",
    "mint.commit",
    "mint.get",
    "mint.prepare",
    "mint.confirm",
    "mint.push",
    "cost",
)


class Message(NamedTuple):
    kind: Kind
    rid: int
    body: dict[str, Any]


def _name(v: Any) -> bytes:
    if not isinstance(v, bytes) or len(v) != NAME_LEN:
        raise MessageError("a name must be 32 bytes")
    return v


def _text(v: Any) -> str:
    if not isinstance(v, str) or len(v) > MAX_TEXT:
        raise MessageError(f"text fields are strings of at most {MAX_TEXT} characters")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise MessageError("expected a boolean")
    return v


def _data(v: Any) -> bytes:
    if not isinstance(v, bytes) or len(v) > MAX_CHUNK_SIZE:
        raise MessageError(f"chunk data must be bytes of at most {MAX_CHUNK_SIZE}")
    return v


def _names(v: Any) -> list[bytes]:
    if not isinstance(v, list) or len(v) > MAX_NAMES:
        raise MessageError(f"names must be a list of at most {MAX_NAMES}")
    return [_name(n) for n in v]


def _contacts(v: Any) -> list[tuple[bytes, str, int]]:
    if not isinstance(v, list) or len(v) > MAX_CONTACTS:
        raise MessageError(f"contacts must be a list of at most {MAX_CONTACTS}")
    out = []
    for item in v:
        if not (isinstance(item, list) and len(item) == 3):
            raise MessageError("a contact is [public_key, host, port]")
        pk, host, port = item
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise MessageError("contact port out of range")
        out.append((_name(pk), _text(host), port))
    return out


def _blob(v: Any, limit: int) -> bytes:
    if not isinstance(v, bytes) or len(v) > limit:
        raise MessageError(f"expected bytes of at most {limit}")
    return v


def _app(v: Any) -> bytes:
    if not isinstance(v, bytes) or len(v) not in (0, NAME_LEN):
        raise MessageError("app must be empty or a 32-byte wallet key")
    return v


def _ledger_op(v: Any) -> str:
    if v not in LEDGER_OPS:
        raise MessageError(f"unknown ledger op {str(v)[:40]!r}")
    return str(v)


def _envelopes(v: Any) -> list[bytes]:
    if not isinstance(v, list) or len(v) > MAX_ENVELOPES:
        raise MessageError(f"envelopes must be a list of at most {MAX_ENVELOPES}")
    return [_blob(e, MAX_ENVELOPE_BYTES) for e in v]


_FIELDS: dict[Kind, dict[str, Any]] = {
    Kind.HELLO: {
        "role": _text,
        "region": _text,
        "version": _text,
        "host": _text,
        "port": lambda v: _int(v, 0, 65535),
    },
    Kind.FIND_NODE: {"target": _name},
    Kind.NODES: {"contacts": _contacts},
    Kind.PING: {},
    Kind.PONG: {},
    Kind.PUT: {
        "name": _name,
        "data": _data,
        "replica": _bool,
        "payment": lambda v: _blob(v, MAX_PAYMENT_BYTES),
    },
    Kind.PUT_OK: {"stored": _bool, "holders": lambda v: _int(v, 0, 64)},
    Kind.GET: {"name": _name, "app": _app},
    Kind.GET_OK: {"data": _data},
    Kind.HAS: {"names": _names},
    Kind.HAS_OK: {"held": _names},
    Kind.ERROR: {"code": _text, "message": _text},
    Kind.RECORD_PUT: {"record": lambda v: _blob(v, MAX_RECORD_BYTES), "replica": _bool},
    Kind.RECORD_OK: {"verdict": _text, "holders": lambda v: _int(v, 0, 64)},
    Kind.RECORD_GET: {"address": _name},
    Kind.RECORD_DATA: {"record": lambda v: _blob(v, MAX_RECORD_BYTES)},
    Kind.INBOX_ADD: {"envelope": lambda v: _blob(v, MAX_ENVELOPE_BYTES), "replica": _bool},
    Kind.INBOX_LIST: {"address": _name},
    Kind.INBOX_DELETE: {
        "address": _name,
        "ids": _names,
        "proof": lambda v: _blob(v, 64),
        "replica": _bool,
    },
    Kind.INBOX_OK: {"count": lambda v: _int(v, 0, 1 << 20)},
    Kind.INBOX_DATA: {"envelopes": _envelopes},
    Kind.LEDGER: {"op": _ledger_op, "body": lambda v: _blob(v, MAX_LEDGER_BYTES), "replica": _bool},
    Kind.LEDGER_OK: {"body": lambda v: _blob(v, MAX_LEDGER_BYTES)},
}


def _int(v: Any, low: int, high: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        raise MessageError(f"expected an integer in [{low}, {high}]")
    return v


def encode(kind: Kind, rid: int, **body: Any) -> bytes:
    """Encode a message; fields are validated exactly as on decode."""
    msg = _validate(kind, rid, body)
    return msgpack.packb([int(msg.kind), msg.rid, msg.body], use_bin_type=True)


def decode(data: bytes) -> Message:
    """Parse and validate one message."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageError("message too large")
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise MessageError(f"not a msgpack message: {type(exc).__name__}") from exc
    if not (isinstance(raw, list) and len(raw) == 3 and isinstance(raw[2], dict)):
        raise MessageError("a message is [kind, request_id, body]")
    kind_raw, rid, body = raw
    if not isinstance(kind_raw, int) or isinstance(kind_raw, bool):
        raise MessageError("message kind must be an integer")
    try:
        kind = Kind(kind_raw)
    except ValueError as exc:
        raise MessageError(f"unknown message kind {kind_raw}") from exc
    return _validate(kind, rid, body)


def _validate(kind: Kind, rid: Any, body: dict[str, Any]) -> Message:
    _int(rid, 0, (1 << 63) - 1)
    fields = _FIELDS[kind]
    if set(body) != set(fields):
        raise MessageError(f"{kind.name} needs exactly the fields {sorted(fields)}")
    return Message(kind, rid, {k: fields[k](v) for k, v in body.items()})


def error(rid: int, code: str, message: str) -> bytes:
    return encode(Kind.ERROR, rid, code=code, message=message[:MAX_TEXT])
