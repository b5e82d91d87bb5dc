"""MemoryChunkStore: the shared conformance suite plus what only a memory store has."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance import ChunkStoreConformance, chunk

from node.storage.chunkstore import (
    DEFAULT_MEMORY_CAPACITY,
    ChunkCorrupt,
    ChunkNotFound,
    ChunkStore,
    MemoryChunkStore,
)


class TestMemoryStoreConformance(ChunkStoreConformance):
    def open_store(self, root: Path, capacity: int) -> ChunkStore:
        return MemoryChunkStore(capacity)


def test_default_capacity() -> None:
    assert MemoryChunkStore().capacity == DEFAULT_MEMORY_CAPACITY == 1 << 30


def test_context_manager_closes() -> None:
    with MemoryChunkStore(100) as store:
        store.put(*chunk(b"x"))
    assert store.stats()["chunks"] == 1


def test_corrupt_copy_detected_and_dropped() -> None:
    # Poke the private dict: the only way bytes can rot inside a memory store.
    store = MemoryChunkStore(100)
    name, data = chunk(b"will rot")
    store.put(name, data)
    store._chunks[name] = b"will r0t"
    with pytest.raises(ChunkCorrupt, match=name.hex()):
        store.get(name)
    assert not store.has(name)
    assert store.used_bytes() == 0
    assert store.stats()["corrupt_detected"] == 1
    with pytest.raises(ChunkNotFound):
        store.get(name)
    assert store.put(name, data) is True  # a good copy repairs it
