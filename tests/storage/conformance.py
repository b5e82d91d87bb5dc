"""The one conformance suite every ChunkStore passes (DESIGN.md section 3, rule 6).

Use: subclass :class:`ChunkStoreConformance` in a ``test_*.py`` module (its name must
start with ``Test``) and implement :meth:`~ChunkStoreConformance.open_store`.  Set
``persistent = True`` if reopening a store on the same root must bring its chunks back;
the model-based test then also restarts the store between steps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from node.storage.chunkstore import (
    MAX_CHUNK_SIZE,
    STATS_KEYS,
    ChunkNameMismatch,
    ChunkNotFound,
    ChunkStore,
    ChunkTooLarge,
    InvalidChunkName,
    StoreClosed,
    StoreError,
    StoreFull,
    chunk_name,
)

CAPACITY = 1 << 20
BAD_NAMES: list[object] = [b"", b"\x00" * 31, b"\x00" * 33, "a" * 32, bytearray(32), None, 7]
# Small payloads of distinct sizes (0..77 bytes) so the model test collides and fills up.
POOL = [bytes([i]) * (7 * i) for i in range(12)]
POOL_CAPACITY = 200


def chunk(data: bytes) -> tuple[bytes, bytes]:
    """``(name, data)`` for a payload."""
    return chunk_name(data), data


class ChunkStoreConformance:
    """Behaviour shared by every ChunkStore.  Subclasses provide :meth:`open_store`."""

    persistent: ClassVar[bool] = False

    def open_store(self, root: Path, capacity: int) -> ChunkStore:
        """A fresh store of ``capacity`` bytes; disk stores live under ``root``."""
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[ChunkStore]:
        s = self.open_store(tmp_path / "store", CAPACITY)
        yield s
        s.close()

    @pytest.fixture
    def small(self, tmp_path: Path) -> Iterator[ChunkStore]:
        s = self.open_store(tmp_path / "small", 100)
        yield s
        s.close()

    # -- basics -----------------------------------------------------------------------------

    def test_round_trip(self, store: ChunkStore) -> None:
        name, data = chunk(b"hello chunk")
        assert store.put(name, data) is True
        assert store.get(name) == data
        assert store.has(name)

    def test_put_is_idempotent(self, store: ChunkStore) -> None:
        name, data = chunk(b"twice")
        assert store.put(name, data) is True
        assert store.put(name, data) is False
        assert store.used_bytes() == len(data)
        assert list(store.names()) == [name]

    def test_empty_and_max_size_chunks(self, tmp_path: Path) -> None:
        s = self.open_store(tmp_path / "big", 2 * MAX_CHUNK_SIZE)
        try:
            for data in (b"", b"\xab" * MAX_CHUNK_SIZE):
                assert s.put(chunk_name(data), data)
                assert s.get(chunk_name(data)) == data
            assert s.used_bytes() == MAX_CHUNK_SIZE
        finally:
            s.close()

    def test_name_mismatch_rejected_and_nothing_stored(self, store: ChunkStore) -> None:
        with pytest.raises(ChunkNameMismatch, match="BLAKE3"):
            store.put(chunk_name(b"claimed"), b"actual")
        assert not store.has(chunk_name(b"claimed"))
        assert not store.has(chunk_name(b"actual"))
        assert list(store.names()) == []
        assert store.used_bytes() == 0
        assert store.stats()["rejected_puts"] == 1

    def test_too_large_rejected(self, store: ChunkStore) -> None:
        data = bytes(MAX_CHUNK_SIZE + 1)
        with pytest.raises(ChunkTooLarge, match="self-encryption"):
            store.put(chunk_name(data), data)
        assert store.used_bytes() == 0
        assert store.stats()["rejected_puts"] == 1

    def test_non_bytes_data_rejected(self, store: ChunkStore) -> None:
        data = bytearray(b"mutable")
        with pytest.raises(StoreError, match="bytes"):
            store.put(chunk_name(bytes(data)), data)  # type: ignore[arg-type]
        assert store.used_bytes() == 0

    @pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
    def test_invalid_names_rejected_everywhere(self, store: ChunkStore, bad: object) -> None:
        for call in (store.get, store.has, store.delete):
            with pytest.raises(InvalidChunkName):
                call(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidChunkName):
            store.put(bad, b"x")  # type: ignore[arg-type]
        assert store.stats()["rejected_puts"] == 1

    def test_not_found(self, store: ChunkStore) -> None:
        name = chunk_name(b"never stored")
        with pytest.raises(ChunkNotFound, match=name.hex()) as info:
            store.get(name)
        assert isinstance(info.value, StoreError)
        assert isinstance(info.value, ValueError)
        assert not store.has(name)

    def test_delete(self, store: ChunkStore) -> None:
        name, data = chunk(b"short-lived")
        store.put(name, data)
        assert store.delete(name) is True
        assert store.delete(name) is False
        assert not store.has(name)
        assert store.used_bytes() == 0
        with pytest.raises(ChunkNotFound):
            store.get(name)
        assert store.put(name, data) is True  # can be stored again

    def test_names(self, store: ChunkStore) -> None:
        chunks = dict(chunk(bytes([i]) * i) for i in range(1, 20))
        for name, data in chunks.items():
            store.put(name, data)
        names = store.names()
        store.delete(next(iter(chunks)))  # a names() result is a snapshot
        assert sorted(names) == sorted(chunks)

    def test_accounting(self, store: ChunkStore) -> None:
        sizes = [0, 1, 100, 4096]
        for size in sizes:
            store.put(*chunk(b"z" * size))
        assert store.used_bytes() == sum(sizes)
        assert store.free_bytes() == CAPACITY - sum(sizes)
        assert store.capacity == CAPACITY
        stats = store.stats()
        assert set(STATS_KEYS) <= set(stats)
        assert {k: stats[k] for k in STATS_KEYS} == {
            "chunks": 4,
            "used": sum(sizes),
            "capacity": CAPACITY,
            "free": CAPACITY - sum(sizes),
            "corrupt_detected": 0,
            "rejected_puts": 0,
        }

    # -- capacity ---------------------------------------------------------------------------

    def test_exact_fit_allowed(self, small: ChunkStore) -> None:
        assert small.put(*chunk(b"a" * 60))
        assert small.put(*chunk(b"b" * 40))
        assert small.free_bytes() == 0

    def test_store_full_leaves_state_intact(self, small: ChunkStore) -> None:
        kept = dict([chunk(b"a" * 60), chunk(b"b" * 30)])
        for name, data in kept.items():
            small.put(name, data)
        big_name, big = chunk(b"c" * 11)
        with pytest.raises(StoreFull, match="only 10 of 100 donated bytes are free"):
            small.put(big_name, big)
        assert not small.has(big_name)
        assert sorted(small.names()) == sorted(kept)
        assert small.used_bytes() == 90
        assert small.free_bytes() == 10
        assert all(small.get(name) == data for name, data in kept.items())
        assert small.stats()["rejected_puts"] == 1
        assert small.put(*chunk(b"d" * 10))  # what is free is still usable

    def test_full_store_still_accepts_held_chunk(self, small: ChunkStore) -> None:
        name, data = chunk(b"f" * 100)
        small.put(name, data)
        assert small.put(name, data) is False
        assert small.stats()["rejected_puts"] == 0

    def test_zero_capacity(self, tmp_path: Path) -> None:
        s = self.open_store(tmp_path / "zero", 0)
        try:
            with pytest.raises(StoreFull):
                s.put(*chunk(b"x"))
            assert s.put(*chunk(b"")) is True
        finally:
            s.close()

    @pytest.mark.parametrize("bad", [-1, 1.5, "100", True, None])
    def test_bad_capacity(self, tmp_path: Path, bad: object) -> None:
        with pytest.raises(StoreError, match="capacity"):
            self.open_store(tmp_path / "bad", bad)  # type: ignore[arg-type]

    # -- lifecycle ----------------------------------------------------------------------------

    def test_closed_store_refuses_calls(self, store: ChunkStore) -> None:
        name, data = chunk(b"before close")
        store.put(name, data)
        store.close()
        store.close()  # idempotent
        with pytest.raises(StoreClosed):
            store.put(*chunk(b"after"))
        for call in (store.get, store.has, store.delete):
            with pytest.raises(StoreClosed):
                call(name)
        with pytest.raises(StoreClosed):
            store.names()
        assert store.used_bytes() == len(data)
        assert store.stats()["rejected_puts"] == 0

    # -- concurrency --------------------------------------------------------------------------

    def test_threads_racing_on_one_chunk(self, store: ChunkStore) -> None:
        name, data = chunk(b"contended")
        results: list[bool] = []
        barrier = threading.Barrier(8)

        def worker(_: int) -> None:
            barrier.wait()
            results.append(store.put(name, data))

        self._run_threads(worker, 8)
        assert sorted(results) == [False] * 7 + [True]
        assert store.used_bytes() == len(data)

    def test_threads_with_own_chunks(self, store: ChunkStore) -> None:
        def worker(i: int) -> None:
            for j in range(30):
                name, data = chunk(f"t{i}-{j}".encode() * 5)
                assert store.put(name, data)
                assert store.get(name) == data
                if j % 3 == 0:
                    assert store.delete(name)

        self._run_threads(worker, 6)
        expected = {chunk(f"t{i}-{j}".encode() * 5) for i in range(6) for j in range(30) if j % 3}
        assert set(store.names()) == {name for name, _ in expected}
        assert store.used_bytes() == sum(len(data) for _, data in expected)

    @staticmethod
    def _run_threads(target: Callable[[int], None], count: int) -> None:
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                target(i)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []

    # -- properties ---------------------------------------------------------------------------

    # Hypothesis runs inside the test (not as a decorated method) so that each subclass
    # gets its own test function and the store fixture is built once per test.

    def test_random_round_trips(self, store: ChunkStore) -> None:
        @settings(deadline=None)
        @given(data=st.binary(max_size=2048))
        def check(data: bytes) -> None:
            # One store across all examples on purpose: it fills up and sees repeats.
            name = chunk_name(data)
            held_before = store.has(name)
            used_before = store.used_bytes()
            assert store.put(name, data) is not held_before
            assert store.get(name) == data
            assert store.used_bytes() == used_before + (0 if held_before else len(data))

        check()

    def test_random_mismatches_rejected(self, store: ChunkStore) -> None:
        @settings(deadline=None)
        @given(data=st.binary(min_size=1, max_size=512), flip=st.integers(min_value=0))
        def check(data: bytes, flip: int) -> None:
            other = bytearray(data)
            other[flip % len(data)] ^= 0x01
            with pytest.raises(ChunkNameMismatch):
                store.put(chunk_name(data), bytes(other))
            assert not store.has(chunk_name(data))

        check()
        assert store.used_bytes() == 0

    def test_model(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        run_state_machine_as_test(
            make_model_machine(self, tmp_path_factory),
            settings=settings(max_examples=40, stateful_step_count=30, deadline=None),
        )


def make_model_machine(
    suite: ChunkStoreConformance, paths: pytest.TempPathFactory
) -> type[RuleBasedStateMachine]:
    """A state machine checking a store against a dict model (restarts it if persistent)."""

    class StoreModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.root = paths.mktemp("model")
            self.store = suite.open_store(self.root, POOL_CAPACITY)
            self.model: dict[bytes, bytes] = {}

        def teardown(self) -> None:
            self.store.close()

        @rule(data=st.sampled_from(POOL))
        def put(self, data: bytes) -> None:
            name = chunk_name(data)
            used = sum(map(len, self.model.values()))
            if name in self.model:
                assert self.store.put(name, data) is False
            elif used + len(data) > POOL_CAPACITY:
                with pytest.raises(StoreFull):
                    self.store.put(name, data)
            else:
                assert self.store.put(name, data) is True
                self.model[name] = data

        @rule(claimed=st.sampled_from(POOL), actual=st.sampled_from(POOL))
        def put_wrong_name(self, claimed: bytes, actual: bytes) -> None:
            if claimed != actual:
                with pytest.raises(ChunkNameMismatch):
                    self.store.put(chunk_name(claimed), actual)

        @rule(data=st.sampled_from(POOL))
        def get(self, data: bytes) -> None:
            name = chunk_name(data)
            if name in self.model:
                assert self.store.get(name) == data
            else:
                with pytest.raises(ChunkNotFound):
                    self.store.get(name)

        @rule(data=st.sampled_from(POOL))
        def delete(self, data: bytes) -> None:
            name = chunk_name(data)
            assert self.store.delete(name) is (self.model.pop(name, None) is not None)

        @precondition(lambda self: suite.persistent)
        @rule()
        def restart(self) -> None:
            self.store.close()
            self.store = suite.open_store(self.root, POOL_CAPACITY)

        @invariant()
        def matches_model(self) -> None:
            used = sum(map(len, self.model.values()))
            assert set(self.store.names()) == set(self.model)
            assert all(self.store.has(name) for name in self.model)
            assert self.store.used_bytes() == used
            assert self.store.free_bytes() == POOL_CAPACITY - used

    return StoreModel
