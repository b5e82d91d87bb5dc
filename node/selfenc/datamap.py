"""DataMap and ChunkInfo: the key to a self-encrypted file (SELFENC.md, "DataMap").

Binary form is bincode 1.x little-endian, prefixed by a version byte::

    u8 version (= 1) | u64 count | count x (u64 index | 32 dst | 32 src | u64 src_size)
    | u8 option tag (0 none, 1 some) [| u64 child]

JSON form matches the reference's ``DataMap.to_json()`` byte for byte (compact, hex hashes).

Invariants (checked on construction, so every DataMap in hand is well formed): entries are
indexed 0..n-1 in order, hashes are 32 bytes, and the sizes are exactly the layout the
splitter gives for their sum (:mod:`.layout`). A forged map therefore fails early with
:class:`SelfEncryptionError` and never reaches a chunk fetch.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from .cipher import HASH_SIZE
from .errors import SelfEncryptionError
from .layout import MAX_SRC_SIZE, MIN_CHUNK_COUNT, chunk_count, chunk_size

__all__ = ["MAX_CHILD_LEVEL", "ChunkInfo", "DataMap"]

FORMAT_VERSION = 1
# Each shrink divides the entry count by ~52,000, so level 3 already covers 2**64 bytes.
MAX_CHILD_LEVEL = 16
_U64_MAX = 2**64 - 1
_HEADER = struct.Struct("<BQ")
_ENTRY = struct.Struct(f"<Q{HASH_SIZE}s{HASH_SIZE}sQ")
_U8 = struct.Struct("<B")
_U64 = struct.Struct("<Q")
_JSON_KEYS = frozenset({"chunk_identifiers", "child"})
_JSON_INFO_KEYS = ("index", "dst_hash", "src_hash", "src_size")


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    """One chunk: its position, network name (dst_hash), plaintext hash and plaintext size."""

    index: int
    dst_hash: bytes
    src_hash: bytes
    src_size: int

    def __post_init__(self) -> None:
        if not _is_int(self.index) or not 0 <= self.index <= _U64_MAX:
            raise SelfEncryptionError(f"chunk index {self.index!r} is not a u64")
        for field in ("dst_hash", "src_hash"):
            value = getattr(self, field)
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise SelfEncryptionError(f"chunk {self.index}: {field} must be {HASH_SIZE} bytes")
        if not _is_int(self.src_size) or not 1 <= self.src_size <= MAX_SRC_SIZE:
            raise SelfEncryptionError(
                f"chunk {self.index}: src_size {self.src_size!r} is outside 1..{MAX_SRC_SIZE}"
            )


@dataclass(frozen=True, slots=True)
class DataMap:
    """Ordered chunk entries plus the shrink level (``child``; None for a first-level map)."""

    chunk_identifiers: tuple[ChunkInfo, ...]
    child: int | None = None

    def __post_init__(self) -> None:
        infos = self.chunk_identifiers
        if not isinstance(infos, tuple) or not all(isinstance(i, ChunkInfo) for i in infos):
            raise SelfEncryptionError("chunk_identifiers must be a tuple of ChunkInfo")
        if self.child is not None and (
            not _is_int(self.child) or not 1 <= self.child <= MAX_CHILD_LEVEL
        ):
            raise SelfEncryptionError(f"child level {self.child!r} is outside 1..{MAX_CHILD_LEVEL}")
        if len(infos) < MIN_CHUNK_COUNT:
            raise SelfEncryptionError(
                f"a DataMap needs at least {MIN_CHUNK_COUNT} chunks, this one has {len(infos)}"
            )
        for position, info in enumerate(infos):
            if info.index != position:
                raise SelfEncryptionError(
                    f"chunk indices out of order: entry {position} has index {info.index}"
                )
        _check_layout(infos)

    @property
    def file_size(self) -> int:
        """Total plaintext bytes described by this map (for a child map: the inner map's)."""
        return sum(info.src_size for info in self.chunk_identifiers)

    @property
    def is_child(self) -> bool:
        """True if this map was shrunk: its chunks hold a serialized DataMap."""
        return self.child is not None

    @property
    def level(self) -> int:
        """The child level that enters the key derivation (0 for a first-level map)."""
        return self.child or 0

    def to_bytes(self) -> bytes:
        """Serialize in the reference's bincode layout."""
        parts = [_HEADER.pack(FORMAT_VERSION, len(self.chunk_identifiers))]
        parts.extend(
            _ENTRY.pack(i.index, i.dst_hash, i.src_hash, i.src_size) for i in self.chunk_identifiers
        )
        parts.append(b"\x00" if self.child is None else b"\x01" + _U64.pack(self.child))
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> DataMap:
        """Parse :meth:`to_bytes` output; anything else raises :class:`SelfEncryptionError`."""
        view = memoryview(data).cast("B")
        if len(view) < _HEADER.size:
            raise SelfEncryptionError(f"DataMap truncated: {len(view)} bytes, header needs 9")
        version, count = _HEADER.unpack_from(view)
        if version != FORMAT_VERSION:
            raise SelfEncryptionError(f"unsupported DataMap version {version}, expected 1")
        body = len(view) - _HEADER.size - 1
        if count > body // _ENTRY.size:
            raise SelfEncryptionError(
                f"DataMap truncated: {count} entries declared, {len(view)} bytes given"
            )
        infos = tuple(
            ChunkInfo(*_ENTRY.unpack_from(view, _HEADER.size + n * _ENTRY.size))
            for n in range(count)
        )
        child = _parse_child(view, _HEADER.size + count * _ENTRY.size)
        return cls(infos, child)

    def to_json(self) -> str:
        """The reference's JSON form (compact, lowercase hex hashes)."""
        infos = [
            {
                "index": i.index,
                "dst_hash": i.dst_hash.hex(),
                "src_hash": i.src_hash.hex(),
                "src_size": i.src_size,
            }
            for i in self.chunk_identifiers
        ]
        doc = {"chunk_identifiers": infos, "child": self.child}
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> DataMap:
        """Parse the reference's JSON form; anything else raises :class:`SelfEncryptionError`."""
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError, UnicodeDecodeError) as exc:
            raise SelfEncryptionError(f"DataMap JSON is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or set(doc) != _JSON_KEYS:
            raise SelfEncryptionError("DataMap JSON needs exactly 'chunk_identifiers' and 'child'")
        entries = doc["chunk_identifiers"]
        if not isinstance(entries, list):
            raise SelfEncryptionError("DataMap JSON: 'chunk_identifiers' must be a list")
        child = doc["child"]
        if child is not None and not _is_int(child):
            raise SelfEncryptionError("DataMap JSON: 'child' must be null or an integer")
        return cls(tuple(_info_from_json(entry) for entry in entries), child)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_layout(infos: tuple[ChunkInfo, ...]) -> None:
    """Sizes must be exactly what the splitter produces for their total."""
    total = sum(info.src_size for info in infos)  # exact: each size is at most MAX_SRC_SIZE
    expected = chunk_count(total)
    if len(infos) != expected:
        raise SelfEncryptionError(
            f"DataMap has {len(infos)} chunks but {total} bytes split into {expected}"
        )
    for info in infos:
        if info.src_size != chunk_size(total, info.index):
            raise SelfEncryptionError(
                f"chunk {info.index}: src_size {info.src_size} does not fit the layout"
                f" of a {total}-byte file"
            )


def _parse_child(view: memoryview, offset: int) -> int | None:
    (tag,) = _U8.unpack_from(view, offset)
    rest = len(view) - offset - 1
    if tag == 0:
        expected_rest = 0
    elif tag == 1:
        expected_rest = _U64.size
    else:
        raise SelfEncryptionError(f"DataMap child option tag is {tag}, expected 0 or 1")
    if rest < expected_rest:
        raise SelfEncryptionError("DataMap truncated inside the child field")
    if rest > expected_rest:
        raise SelfEncryptionError(f"DataMap has {rest - expected_rest} trailing bytes")
    return None if tag == 0 else int(_U64.unpack_from(view, offset + 1)[0])


def _info_from_json(entry: Any) -> ChunkInfo:
    if not isinstance(entry, dict) or set(entry) != set(_JSON_INFO_KEYS):
        raise SelfEncryptionError(f"DataMap JSON: each chunk needs exactly {_JSON_INFO_KEYS}")
    hashes = [_hex32(entry[key], key) for key in ("dst_hash", "src_hash")]
    for key in ("index", "src_size"):
        if not _is_int(entry[key]):
            raise SelfEncryptionError(f"DataMap JSON: chunk {key} must be an integer")
    return ChunkInfo(entry["index"], hashes[0], hashes[1], entry["src_size"])


def _hex32(value: Any, key: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * HASH_SIZE:
        raise SelfEncryptionError(f"DataMap JSON: {key} must be {2 * HASH_SIZE} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise SelfEncryptionError(f"DataMap JSON: {key} is not hex: {value!r}") from None
