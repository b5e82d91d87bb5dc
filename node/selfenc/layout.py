"""How a buffer of ``size`` bytes is cut into chunks (SELFENC.md, "Splitting a buffer").

Invariants: the layout depends on ``size`` alone; there are at least
:data:`MIN_CHUNK_COUNT` chunks; every chunk holds between 1 and :data:`MAX_SRC_SIZE`
bytes; chunk ``i`` of ``n`` is keyed by its two neighbours from :func:`neighbours`.
"""

from __future__ import annotations

from .errors import SelfEncryptionError

__all__ = [
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_COUNT",
    "MIN_ENCRYPTABLE_BYTES",
    "MAX_SRC_SIZE",
    "check_size",
    "chunk_count",
    "chunk_size",
    "chunk_start",
    "neighbours",
    "split",
]

MIN_ENCRYPTABLE_BYTES = 3
MAX_CHUNK_SIZE = 4_190_208  # 4 MiB - 4 KiB
MIN_CHUNK_COUNT = 3
# Below three full chunks the last of three takes the remainder: up to 2 bytes more.
MAX_SRC_SIZE = MAX_CHUNK_SIZE + MIN_CHUNK_COUNT - 1


def check_size(size: int) -> None:
    """Raise unless ``size`` bytes can be self-encrypted."""
    if size < MIN_ENCRYPTABLE_BYTES:
        raise SelfEncryptionError(
            f"cannot self-encrypt {size} bytes: at least {MIN_ENCRYPTABLE_BYTES} are needed"
        )


def chunk_count(size: int) -> int:
    """Number of chunks for ``size`` bytes: 3 below 3 full chunks, else ceil(size / max)."""
    check_size(size)
    if size < MIN_CHUNK_COUNT * MAX_CHUNK_SIZE:
        return MIN_CHUNK_COUNT
    return -(-size // MAX_CHUNK_SIZE)


def chunk_size(size: int, index: int) -> int:
    """Size of chunk ``index``: the last chunk takes the remainder."""
    count = chunk_count(size)
    if not 0 <= index < count:
        raise SelfEncryptionError(f"chunk index {index} is out of range for {count} chunks")
    if count == MIN_CHUNK_COUNT:
        third = size // MIN_CHUNK_COUNT
        return third if index < count - 1 else size - 2 * third
    return MAX_CHUNK_SIZE if index < count - 1 else size - (count - 1) * MAX_CHUNK_SIZE


def chunk_start(size: int, index: int) -> int:
    """Offset of chunk ``index`` in the buffer (all chunks but the last have equal size)."""
    return index * chunk_size(size, 0)


def neighbours(index: int, count: int) -> tuple[int, int]:
    """The two chunks whose source hashes key chunk ``index`` (wrapping for chunks 0 and 1)."""
    if index == 0:
        return count - 1, count - 2
    if index == 1:
        return 0, count - 1
    return index - 1, index - 2


def split(data: memoryview) -> list[memoryview]:
    """Cut ``data`` into its chunks (views, no copies)."""
    size = len(data)
    step = chunk_size(size, 0)
    return [data[i * step : i * step + chunk_size(size, i)] for i in range(chunk_count(size))]
