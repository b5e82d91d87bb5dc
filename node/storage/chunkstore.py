"""Immutable, content-addressed chunk storage: the protocol, its errors and a memory store.

A chunk is a byte string of at most :data:`MAX_CHUNK_SIZE` bytes whose name is
``BLAKE3(content)`` (32 bytes).  Every :class:`ChunkStore` keeps these invariants:

- Nothing enters without its name being checked: ``put`` hashes the content and
  refuses a mismatch (:class:`ChunkNameMismatch`), so a peer cannot poison a name.
- Nothing leaves unchecked: ``get`` re-hashes on every read; a copy that no longer
  matches is dropped, counted and reported as :class:`ChunkCorrupt`.
- A failed call changes nothing (except the ``rejected_puts``/``corrupt_detected``
  counters, which exist to count failures).
- ``used_bytes()`` is the sum of the held chunks' lengths and never exceeds ``capacity``
  through ``put`` (a store reopened with a smaller capacity may start above it).
- Stores are thread-safe: the node service calls them from worker threads.

Every malformed input raises a :class:`StoreError` (a ``ValueError``).  ``DiskChunkStore``
lives in :mod:`node.storage.diskstore`; both pass ``tests/storage/conformance.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Protocol, Self

import blake3

NAME_SIZE = 32
"""Bytes in a chunk name (a BLAKE3-256 digest)."""

MAX_CHUNK_SIZE = 4 * 1024 * 1024 + 64 * 1024
"""Largest chunk accepted: self-encrypted chunks are <= 4 MiB - 4 KiB plain, plus overhead."""

DEFAULT_MEMORY_CAPACITY = 1024 * 1024 * 1024
"""Default space a :class:`MemoryChunkStore` offers (1 GiB; it is a cap, not an allocation)."""

STATS_KEYS = ("chunks", "used", "capacity", "free", "corrupt_detected", "rejected_puts")
"""Keys every ``ChunkStore.stats()`` returns (a store may add more)."""


class StoreError(ValueError):
    """Base of every error a chunk store raises for bad input or state."""


class InvalidChunkName(StoreError):
    """A chunk name is not a 32-byte ``bytes`` value."""


class ChunkNameMismatch(StoreError):
    """The content does not hash to the name it was offered under (a poisoning attempt)."""


class ChunkTooLarge(StoreError):
    """The content is larger than :data:`MAX_CHUNK_SIZE`."""


class ChunkNotFound(StoreError):
    """The store does not hold a chunk of that name."""


class ChunkCorrupt(StoreError):
    """The stored copy no longer hashes to its name (bit rot); the bad copy has been removed."""


class StoreFull(StoreError):
    """Storing the chunk would exceed the capacity the user donated."""


class StoreClosed(StoreError):
    """The store was closed; open a new one."""


class StoreLocked(StoreError):
    """Another store object or process already has this store's directory open."""


class ChunkStore(Protocol):
    """What the node needs from a chunk store (memory for tests, disk for real nodes)."""

    @property
    def capacity(self) -> int:
        """Bytes of chunk content the user donated."""
        ...

    def put(self, name: bytes, data: bytes) -> bool:
        """Store ``data`` under ``name`` after checking the hash; False if already held."""
        ...

    def get(self, name: bytes) -> bytes:
        """The chunk's content, verified against its name on this read."""
        ...

    def has(self, name: bytes) -> bool:
        """Whether the chunk is held (no content check)."""
        ...

    def delete(self, name: bytes) -> bool:
        """Drop the chunk; True if it was held."""
        ...

    def names(self) -> Iterator[bytes]:
        """Names of the held chunks (a snapshot: safe while the store changes)."""
        ...

    def used_bytes(self) -> int:
        """Sum of the held chunks' lengths."""
        ...

    def free_bytes(self) -> int:
        """``capacity - used_bytes()``, never below 0."""
        ...

    def stats(self) -> dict[str, int]:
        """At least the :data:`STATS_KEYS` counters."""
        ...

    def close(self) -> None:
        """Release the store's resources; idempotent.

        Afterwards ``put``/``get``/``has``/``delete``/``names`` raise :class:`StoreClosed`;
        the counters (``used_bytes``, ``free_bytes``, ``stats``) stay readable.
        """
        ...


def chunk_name(data: bytes) -> bytes:
    """The 32-byte content address of ``data``: ``BLAKE3(data)``."""
    digest: bytes = blake3.blake3(data).digest()
    return digest


def check_name(name: object) -> bytes:
    """Return ``name`` if it is a 32-byte ``bytes`` value, else raise :class:`InvalidChunkName`."""
    if not isinstance(name, bytes):
        raise InvalidChunkName(
            f"a chunk name must be bytes, got {type(name).__name__}; pass the 32-byte digest"
        )
    if len(name) != NAME_SIZE:
        raise InvalidChunkName(
            f"a chunk name is {NAME_SIZE} bytes (BLAKE3 of the content), got {len(name)}"
        )
    return name


def check_chunk(name: object, data: object) -> tuple[bytes, bytes]:
    """Validate a chunk offered for storage; return ``(name, data)`` or raise a StoreError."""
    valid_name = check_name(name)
    if not isinstance(data, bytes):
        raise StoreError(f"chunk data must be bytes, got {type(data).__name__}; wrap it in bytes()")
    if len(data) > MAX_CHUNK_SIZE:
        raise ChunkTooLarge(
            f"chunk is {len(data)} bytes, the limit is {MAX_CHUNK_SIZE}; "
            "split the data with self-encryption first"
        )
    if chunk_name(data) != valid_name:
        raise ChunkNameMismatch(
            f"content does not hash to {valid_name.hex()}; a chunk's name must be BLAKE3(content)"
        )
    return valid_name, data


def check_capacity(capacity: object) -> int:
    """Return ``capacity`` if it is a non-negative int, else raise :class:`StoreError`."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
        raise StoreError(f"capacity must be a non-negative number of bytes, got {capacity!r}")
    return capacity


def full_error(needed: int, used: int, capacity: int) -> StoreFull:
    """The :class:`StoreFull` for a chunk of ``needed`` bytes that does not fit."""
    free = max(0, capacity - used)
    return StoreFull(
        f"chunk needs {needed} bytes but only {free} of {capacity} donated bytes are free; "
        "delete chunks or donate more space"
    )


def make_stats(
    *, chunks: int, used: int, capacity: int, corrupt: int, rejected: int
) -> dict[str, int]:
    """The :data:`STATS_KEYS` dictionary from its parts."""
    return {
        "chunks": chunks,
        "used": used,
        "capacity": capacity,
        "free": max(0, capacity - used),
        "corrupt_detected": corrupt,
        "rejected_puts": rejected,
    }


class StoreBase:
    """Accounting every store shares: capacity, used/free bytes, names, open/closed.

    A subclass sets ``_capacity``, ``_used``, ``_closed`` and ``_lock`` and says in
    :meth:`_held` which mapping's keys are the names it holds.
    """

    _capacity: int
    _used: int
    _closed: bool
    _lock: threading.Lock

    _rejected: int

    def _held(self) -> Mapping[bytes, object]:
        raise NotImplementedError

    def _put_locked(self, name: bytes, data: bytes) -> bool:
        raise NotImplementedError

    def put(self, name: bytes, data: bytes) -> bool:
        """Store a verified chunk; False if already held; StoreFull if it would not fit."""
        try:
            name, data = check_chunk(name, data)
            with self._lock:
                return self._put_locked(name, data)
        except StoreClosed:
            raise
        except StoreError:
            with self._lock:
                self._rejected += 1
            raise

    @property
    def capacity(self) -> int:
        """Bytes of chunk content this store may hold."""
        return self._capacity

    def names(self) -> Iterator[bytes]:
        """A snapshot of the held names."""
        with self._lock:
            self._check_open()
            return iter(list(self._held()))

    def used_bytes(self) -> int:
        """Sum of the held chunks' lengths."""
        with self._lock:
            return self._used

    def free_bytes(self) -> int:
        """Capacity left for new chunks."""
        with self._lock:
            return max(0, self._capacity - self._used)

    def close(self) -> None:
        """Refuse further data calls (counters stay readable); idempotent."""
        with self._lock:
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("this chunk store is closed; open a new one")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MemoryChunkStore(StoreBase):
    """A :class:`ChunkStore` in a dict: for unit tests and the FakeNet, not for real nodes."""

    def __init__(self, capacity: int = DEFAULT_MEMORY_CAPACITY) -> None:
        self._capacity = check_capacity(capacity)
        self._chunks: dict[bytes, bytes] = {}
        self._used = 0
        self._corrupt = 0
        self._rejected = 0
        self._closed = False
        self._lock = threading.Lock()

    def _held(self) -> Mapping[bytes, object]:
        return self._chunks

    def _put_locked(self, name: bytes, data: bytes) -> bool:
        self._check_open()
        if name in self._chunks:
            return False
        if self._used + len(data) > self._capacity:
            raise full_error(len(data), self._used, self._capacity)
        self._chunks[name] = data
        self._used += len(data)
        return True

    def get(self, name: bytes) -> bytes:
        """The chunk's content, re-hashed; a bad copy is dropped and ChunkCorrupt raised."""
        check_name(name)
        with self._lock:
            self._check_open()
            data = self._chunks.get(name)
            if data is None:
                raise ChunkNotFound(f"chunk {name.hex()} is not held here")
            if chunk_name(data) != name:
                self._drop_locked(name)
                self._corrupt += 1
                raise ChunkCorrupt(f"chunk {name.hex()} was corrupt in memory and has been dropped")
            return data

    def has(self, name: bytes) -> bool:
        """Whether the chunk is held."""
        check_name(name)
        with self._lock:
            self._check_open()
            return name in self._chunks

    def delete(self, name: bytes) -> bool:
        """Drop the chunk; True if it was held."""
        check_name(name)
        with self._lock:
            self._check_open()
            return self._drop_locked(name)

    def _drop_locked(self, name: bytes) -> bool:
        data = self._chunks.pop(name, None)
        if data is None:
            return False
        self._used -= len(data)
        return True

    def stats(self) -> dict[str, int]:
        """Counters: see :data:`STATS_KEYS`."""
        with self._lock:
            return make_stats(
                chunks=len(self._chunks),
                used=self._used,
                capacity=self._capacity,
                corrupt=self._corrupt,
                rejected=self._rejected,
            )
