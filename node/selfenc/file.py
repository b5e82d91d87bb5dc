"""Thin file adapters over :mod:`.stream` (blocking file I/O; no clock, no sockets).

``decrypt_file`` writes to a temporary file beside ``path`` and renames it into place only
after every chunk decrypted and verified, so a failed decryption leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .datamap import DataMap
from .errors import SelfEncryptionError
from .layout import chunk_size, chunk_start
from .level import GetChunk, PutChunk
from .stream import decrypt_stream, encrypt_pieces, read_exactly, read_pieces

__all__ = ["decrypt_file", "encrypt_file"]

StrPath = str | os.PathLike[str]


def encrypt_file(path: StrPath, put_chunk: PutChunk, *, workers: int | None = None) -> DataMap:
    """Self-encrypt the file at ``path`` in one streaming pass.

    Chunks 0 and 1 are read again at the end rather than held (they are keyed by the last two
    chunks), so memory stays at the chunks in flight.
    """
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size

        def reload(index: int) -> bytes:
            source.seek(chunk_start(size, index))
            return read_exactly(source.read, chunk_size(size, index), 0, size)

        pieces = read_pieces(source.read, size)
        data_map = encrypt_pieces(pieces, size, put_chunk, workers=workers, reload=reload)
        source.seek(size)
        if source.read(1):
            raise SelfEncryptionError(f"{path} grew while it was being encrypted")
    return data_map


def decrypt_file(
    data_map: DataMap, get_chunk: GetChunk, path: StrPath, *, workers: int | None = None
) -> None:
    """Decrypt to ``path`` atomically: a temporary file is renamed only on success."""
    target = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as sink:
            decrypt_stream(data_map, get_chunk, sink.write, workers=workers)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
