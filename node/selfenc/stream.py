"""Self-encryption's public entry points: whole buffers and bounded-memory streams.

``encrypt`` and ``decrypt`` work on bytes in memory; ``encrypt_stream`` and ``decrypt_stream``
move data through callables so a file larger than memory passes with only a few chunks held
(chunks 0 and 1 plus one per worker in flight). Both always produce or accept the shrunk
map (at most three entries; SELFENC.md, "Shrinking").

Chunk callables: ``put_chunk(name, content)`` and ``get_chunk(name) -> content`` are called
from the calling thread only. ``put_chunk`` sees the first-level chunks in the order
2..n-1, 0, 1 (chunks 0 and 1 are keyed by the last two), then the child-level chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .datamap import DataMap
from .errors import SelfEncryptionError
from .layout import check_size, chunk_count, chunk_size, split
from .level import Buffer, GetChunk, PutChunk, Reload, decrypt_level, encrypt_level, expand, shrink
from .pipeline import Workers

__all__ = [
    "EncryptedChunk",
    "decrypt",
    "decrypt_stream",
    "encrypt",
    "encrypt_pieces",
    "encrypt_stream",
    "read_exactly",
    "read_pieces",
]

EncryptedChunk = tuple[bytes, bytes]  # (name = BLAKE3 of content, content)
Read = Callable[[int], bytes]
Write = Callable[[bytes], object]


def encrypt(
    data: bytes | bytearray | memoryview, *, workers: int | None = None
) -> tuple[DataMap, list[EncryptedChunk]]:
    """Self-encrypt ``data``; returns the shrunk DataMap and every chunk, child levels too."""
    view = memoryview(data).cast("B")
    check_size(len(view))
    chunks: list[EncryptedChunk] = []

    def put_chunk(name: bytes, content: bytes) -> None:
        chunks.append((name, content))

    with Workers(workers) as pool:
        first = encrypt_level(split(view), len(view), 0, put_chunk, pool)
        data_map = shrink(first, put_chunk, pool)
    return data_map, chunks


def decrypt(data_map: DataMap, get_chunk: GetChunk, *, workers: int | None = None) -> bytes:
    """Rebuild the bytes behind ``data_map``; every fetched chunk is checked against its name."""
    parts: list[bytes] = []
    decrypt_stream(data_map, get_chunk, parts.append, workers=workers)
    return b"".join(parts)


def encrypt_stream(
    read: Read, size: int, put_chunk: PutChunk, *, workers: int | None = None
) -> DataMap:
    """Self-encrypt exactly ``size`` bytes taken from ``read(n)`` in one pass."""
    return encrypt_pieces(read_pieces(read, size), size, put_chunk, workers=workers)


def encrypt_pieces(
    pieces: Iterable[Buffer],
    size: int,
    put_chunk: PutChunk,
    *,
    workers: int | None = None,
    reload: Reload | None = None,
) -> DataMap:
    """Encrypt a ``size``-byte input given as its chunk plaintexts, then shrink the map."""
    check_size(size)
    with Workers(workers) as pool:
        first = encrypt_level(pieces, size, 0, put_chunk, pool, reload=reload)
        return shrink(first, put_chunk, pool)


def decrypt_stream(
    data_map: DataMap, get_chunk: GetChunk, write: Write, *, workers: int | None = None
) -> None:
    """Decrypt chunk by chunk, handing each plaintext chunk to ``write`` in order."""
    if not isinstance(data_map, DataMap):
        raise SelfEncryptionError(f"data_map must be a DataMap, got {type(data_map).__name__}")
    with Workers(workers) as pool:
        first = expand(data_map, get_chunk, pool)
        for plain in decrypt_level(first, get_chunk, pool):
            write(plain)
            del plain  # do not hold a chunk while the next one is fetched


def read_pieces(read: Read, size: int) -> Iterator[Buffer]:
    """Chunk plaintexts read from ``read``; a short stream raises SelfEncryptionError."""
    done = 0
    for index in range(chunk_count(size)):
        want = chunk_size(size, index)
        piece = read_exactly(read, want, done, size)
        done += want
        yield piece


def read_exactly(read: Read, want: int, done: int, size: int) -> bytes:
    """Exactly ``want`` bytes from ``read`` (``done`` of ``size`` read so far, for errors)."""
    parts: list[bytes] = []
    got = 0
    while got < want:
        more = read(want - got)
        if not more:
            raise SelfEncryptionError(f"input ended after {done + got} of {size} bytes")
        if len(more) > want - got:
            raise SelfEncryptionError(f"read({want - got}) returned {len(more)} bytes")
        parts.append(more)
        got += len(more)
    return b"".join(parts)
