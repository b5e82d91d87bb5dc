"""One DataMap level: encrypt chunk plaintexts into a map, or a map back into plaintexts.

Also the shrink/expand walk (SELFENC.md, "Shrinking"): while a map has more than three
entries, its bincode bytes are self-encrypted again at ``child_level + 1``; decryption walks
back down, checking that each inner map sits exactly one level below the outer one.

Invariants: chunk ``i``'s keys need the source hashes of its neighbours, and chunks 0 and 1
need the *last two* chunks' hashes, so encryption holds chunks 0 and 1 until the input ends
(or reads them again, for a seekable file) and encrypts every other chunk as soon as it is
read. ``put_chunk`` and ``get_chunk`` are
called from the calling thread only; every fetched chunk is checked against its name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .cipher import ChunkKeys, chunk_keys, content_hash, decrypt_chunk, encrypt_chunk
from .datamap import ChunkInfo, DataMap
from .errors import SelfEncryptionError
from .layout import MIN_CHUNK_COUNT, chunk_count, neighbours, split
from .pipeline import Workers, ordered_map

__all__ = [
    "Buffer",
    "GetChunk",
    "PutChunk",
    "Reload",
    "decrypt_level",
    "encrypt_level",
    "expand",
    "shrink",
]

Buffer = bytes | memoryview
PutChunk = Callable[[bytes, bytes], None]
GetChunk = Callable[[bytes], bytes]
Reload = Callable[[int], Buffer]
_Job = tuple[int, Buffer, ChunkKeys]
_Fetched = tuple[ChunkInfo, bytes, ChunkKeys]


def encrypt_level(
    pieces: Iterable[Buffer],
    size: int,
    level: int,
    put_chunk: PutChunk,
    workers: Workers,
    *,
    reload: Reload | None = None,
) -> DataMap:
    """Encrypt the chunk plaintexts of a ``size``-byte input; hand each chunk to ``put_chunk``.

    Chunks 0 and 1 are held until the end unless ``reload(index)`` can read them again (a
    seekable file); a reloaded chunk must hash as it did the first time.
    """
    count = chunk_count(size)
    src: list[bytes] = [b""] * count
    dst: list[bytes] = [b""] * count
    sizes: list[int] = [0] * count

    def keys(index: int) -> ChunkKeys:
        n1, n2 = neighbours(index, count)
        return chunk_keys(src[index], src[n1], src[n2], index, level)

    def jobs() -> Iterator[_Job]:
        held: list[Buffer] = []
        for index, plain in enumerate(pieces):
            src[index], sizes[index] = content_hash(plain), len(plain)
            if index >= 2:
                yield index, plain, keys(index)
            elif reload is None:
                held.append(plain)  # keyed by the last two chunks: wait for the end
        for index in range(2):
            yield (
                index,
                held[index] if reload is None else _reloaded(reload, index, src),
                keys(index),
            )

    for index, name, content in ordered_map(workers, _seal, jobs()):
        dst[index] = name
        put_chunk(name, content)
        del content  # do not hold a chunk while the next one is read
    infos = (ChunkInfo(i, dst[i], src[i], sizes[i]) for i in range(count))
    return DataMap(tuple(infos), level or None)


def _reloaded(reload: Reload, index: int, src: list[bytes]) -> Buffer:
    plain = reload(index)
    if content_hash(plain) != src[index]:
        raise SelfEncryptionError(f"chunk {index} changed while the input was being encrypted")
    return plain


def _seal(job: _Job) -> tuple[int, bytes, bytes]:
    index, plain, keys = job
    content = encrypt_chunk(plain, keys)
    return index, content_hash(content), content


def decrypt_level(data_map: DataMap, get_chunk: GetChunk, workers: Workers) -> Iterator[bytes]:
    """Yield the plaintext chunks of one map level, in order."""
    infos = data_map.chunk_identifiers
    count = len(infos)
    src = [info.src_hash for info in infos]

    def jobs() -> Iterator[_Fetched]:
        for info in infos:
            n1, n2 = neighbours(info.index, count)
            keys = chunk_keys(src[info.index], src[n1], src[n2], info.index, data_map.level)
            yield info, _fetch(get_chunk, info), keys

    return ordered_map(workers, _open, jobs())


def _fetch(get_chunk: GetChunk, info: ChunkInfo) -> bytes:
    try:
        content = get_chunk(info.dst_hash)
    except Exception as exc:
        raise SelfEncryptionError(
            f"chunk {info.index} ({info.dst_hash.hex()}) could not be fetched: {exc!r}"
        ) from exc
    if not isinstance(content, bytes | bytearray | memoryview):
        raise SelfEncryptionError(
            f"chunk {info.index} ({info.dst_hash.hex()}): get_chunk returned"
            f" {type(content).__name__}, expected bytes"
        )
    return bytes(content)


def _open(fetched: _Fetched) -> bytes:
    info, content, keys = fetched
    if content_hash(content) != info.dst_hash:
        raise SelfEncryptionError(
            f"chunk {info.index} ({info.dst_hash.hex()}) is corrupt: its BLAKE3 hash"
            " does not match its name"
        )
    return decrypt_chunk(
        content, keys, index=info.index, src_hash=info.src_hash, src_size=info.src_size
    )


def shrink(data_map: DataMap, put_chunk: PutChunk, workers: Workers) -> DataMap:
    """Re-encrypt the map itself until it has at most three entries."""
    while len(data_map.chunk_identifiers) > MIN_CHUNK_COUNT:
        raw = memoryview(data_map.to_bytes())
        data_map = encrypt_level(split(raw), len(raw), data_map.level + 1, put_chunk, workers)
    return data_map


def expand(data_map: DataMap, get_chunk: GetChunk, workers: Workers) -> DataMap:
    """Walk a shrunk map back down to the first-level map that describes the file."""
    while data_map.child is not None:
        raw = b"".join(decrypt_level(data_map, get_chunk, workers))
        try:
            inner = DataMap.from_bytes(raw)
        except SelfEncryptionError as exc:
            raise SelfEncryptionError(
                f"child level {data_map.child} does not hold a valid DataMap: {exc}"
            ) from None
        if inner.level != data_map.level - 1:
            raise SelfEncryptionError(
                f"child level {data_map.child} holds a map of level {inner.level},"
                f" expected {data_map.level - 1}"
            )
        data_map = inner
    return data_map
