"""encrypt/decrypt and their streaming forms: round trips, shrinking, ordering, bad inputs."""

from __future__ import annotations

import io

import pytest
from conftest import Store, pseudo_random
from hypothesis import given, settings
from hypothesis import strategies as st

from node.selfenc import (
    MAX_CHUNK_SIZE,
    DataMap,
    SelfEncryptionError,
    decrypt,
    decrypt_stream,
    encrypt,
    encrypt_stream,
    layout,
)
from node.selfenc.cipher import content_hash
from node.selfenc.level import encrypt_level, expand
from node.selfenc.pipeline import Workers
from node.selfenc.stream import encrypt_pieces

BIG = 3 * MAX_CHUNK_SIZE + 123_456  # four first-level chunks: the map is shrunk once


@pytest.fixture(scope="module")
def big() -> tuple[bytes, DataMap, dict[bytes, bytes]]:
    data = pseudo_random(BIG)
    data_map, chunks = encrypt(data, workers=2)
    return data, data_map, dict(chunks)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=3, max_size=3000), st.sampled_from([1, 2]))
def test_round_trip(data: bytes, workers: int) -> None:
    data_map, chunks = encrypt(data, workers=workers)
    assert data_map.file_size == len(data) and len(data_map.chunk_identifiers) == 3
    assert all(content_hash(content) == name for name, content in chunks)
    assert decrypt(data_map, dict(chunks).__getitem__, workers=workers) == data


def test_encryption_is_convergent_and_independent_of_workers() -> None:
    data = pseudo_random(100_000)
    assert encrypt(data, workers=1) == encrypt(data, workers=3) == encrypt(bytearray(data))


def test_big_input_is_shrunk_to_a_child_map(big: tuple[bytes, DataMap, dict[bytes, bytes]]) -> None:
    data, data_map, chunks = big
    assert data_map.child == 1 and data_map.is_child and len(data_map.chunk_identifiers) == 3
    assert len(chunks) == 4 + 3
    inner = expand(data_map, chunks.__getitem__, Workers(1))
    assert inner.child is None and inner.file_size == len(data)
    assert data_map.file_size == len(inner.to_bytes())
    assert decrypt(data_map, chunks.__getitem__, workers=1) == data


def test_decrypt_stream_writes_chunks_in_order(
    big: tuple[bytes, DataMap, dict[bytes, bytes]],
) -> None:
    data, data_map, chunks = big
    writes: list[bytes] = []
    decrypt_stream(data_map, chunks.__getitem__, writes.append, workers=2)
    assert [len(w) for w in writes] == [MAX_CHUNK_SIZE] * 3 + [123_456]
    assert b"".join(writes) == data


def test_encrypt_stream_with_short_reads_matches_encrypt(
    big: tuple[bytes, DataMap, dict[bytes, bytes]], store: Store
) -> None:
    data, data_map, chunks = big
    position = 0

    def read(n: int) -> bytes:
        nonlocal position
        piece = data[position : position + min(n, 1_000_000)]
        position += len(piece)
        return piece

    assert encrypt_stream(read, len(data), store.put, workers=2) == data_map
    assert dict(store) == chunks
    first = [info.dst_hash for info in expand(data_map, store.get, Workers(1)).chunk_identifiers]
    assert store.puts[:4] == [first[2], first[3], first[0], first[1]]  # 0 and 1 wait for the end


def test_multi_level_shrink(monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    monkeypatch.setattr(layout, "MAX_CHUNK_SIZE", 400)  # 25 chunks -> 6 -> 3
    data = pseudo_random(10_000)
    data_map = encrypt_stream(io.BytesIO(data).read, len(data), store.put, workers=1)
    assert data_map.child == 2 and len(store) == 25 + 6 + 3
    assert decrypt(data_map, store.get) == data


def test_a_child_map_must_sit_one_level_above_its_inner_map(store: Store) -> None:
    data_map, chunks = encrypt(b"some data to hide")
    raw = memoryview(data_map.to_bytes())
    with Workers(1) as workers:
        forged = encrypt_level(layout.split(raw), len(raw), 2, store.put, workers)
    store.update(chunks)
    with pytest.raises(SelfEncryptionError, match="holds a map of level 0, expected 1"):
        decrypt(forged, store.get)


def test_a_child_level_holding_garbage_is_rejected(store: Store) -> None:
    raw = memoryview(b"not a datamap at all")
    with Workers(1) as workers:
        forged = encrypt_level(layout.split(raw), len(raw), 1, store.put, workers)
    with pytest.raises(SelfEncryptionError, match="child level 1 does not hold a valid DataMap"):
        decrypt(forged, store.get)


@pytest.mark.parametrize("size", [0, 1, 2])
def test_inputs_under_three_bytes_are_rejected(size: int, store: Store) -> None:
    with pytest.raises(SelfEncryptionError, match="at least 3"):
        encrypt(b"x" * size)
    with pytest.raises(SelfEncryptionError, match="at least 3"):
        encrypt_stream(lambda n: b"x" * n, size, store.put)
    assert store.puts == []


def test_tampered_chunk_is_named(store: Store) -> None:
    data_map, chunks = encrypt(pseudo_random(5000))
    store.update(chunks)
    victim = data_map.chunk_identifiers[1].dst_hash
    store[victim] = bytes([store[victim][0] ^ 1]) + store[victim][1:]
    with pytest.raises(SelfEncryptionError, match=f"chunk 1 \\({victim.hex()}\\) is corrupt"):
        decrypt(data_map, store.get)


def test_missing_chunk_is_named(store: Store) -> None:
    data_map, chunks = encrypt(pseudo_random(5000))
    store.update(chunks)
    victim = data_map.chunk_identifiers[2].dst_hash
    del store[victim]
    with pytest.raises(SelfEncryptionError, match=f"chunk 2 \\({victim.hex()}\\) could not be"):
        decrypt(data_map, store.get)


def test_get_chunk_must_return_bytes() -> None:
    data_map, _ = encrypt(b"abcdef")
    with pytest.raises(SelfEncryptionError, match="returned str, expected bytes"):
        decrypt(data_map, lambda name: "text")  # type: ignore[arg-type,return-value]


def test_forged_src_hash_fails_authentication(store: Store) -> None:
    data_map, chunks = encrypt(b"abcdefghi")
    store.update(chunks)
    infos = list(data_map.chunk_identifiers)
    infos[0] = type(infos[0])(0, infos[0].dst_hash, b"\x00" * 32, infos[0].src_size)
    with pytest.raises(SelfEncryptionError, match="chunk 0: authentication failed"):
        decrypt(DataMap(tuple(infos)), store.get)


def test_nothing_is_written_before_a_bad_chunk_is_found(store: Store) -> None:
    data_map, chunks = encrypt(pseudo_random(3000))
    store.update(chunks)
    del store[data_map.chunk_identifiers[2].dst_hash]
    writes: list[bytes] = []
    with pytest.raises(SelfEncryptionError):
        decrypt_stream(data_map, store.get, writes.append)
    assert len(writes) <= 2  # chunks are written in order, never past the missing one


def test_stream_that_ends_early(store: Store) -> None:
    data = pseudo_random(1000)
    with pytest.raises(SelfEncryptionError, match="input ended after 1000 of 1001 bytes"):
        encrypt_stream(io.BytesIO(data).read, 1001, store.put)


def test_read_returning_too_much_is_rejected(store: Store) -> None:
    with pytest.raises(SelfEncryptionError, match=r"read\(3\) returned 9 bytes"):
        encrypt_stream(lambda n: b"x" * 9, 9, store.put)


@pytest.mark.parametrize("workers", [0, -1, 1.5])
def test_workers_must_be_positive(workers: object) -> None:
    with pytest.raises(SelfEncryptionError, match="workers must be a positive integer"):
        encrypt(b"abc", workers=workers)  # type: ignore[arg-type]


def test_decrypt_rejects_a_non_map() -> None:
    with pytest.raises(SelfEncryptionError, match="must be a DataMap"):
        decrypt({"child": None}, bytes)  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_streaming_holds_a_bounded_number_of_chunks(
    monkeypatch: pytest.MonkeyPatch, store: Store, workers: int
) -> None:
    monkeypatch.setattr(layout, "MAX_CHUNK_SIZE", 1000)
    data = pseudo_random(60_000)
    reads = 0
    ahead: list[int] = []

    def read(n: int) -> bytes:
        nonlocal reads
        reads += 1
        ahead.append(reads - len(store.puts))
        return data[(reads - 1) * 1000 : reads * 1000]

    encrypt_stream(read, len(data), store.put, workers=workers)
    assert max(ahead) <= 2 + workers + 2  # chunks 0 and 1, the pipeline, the one being read


def test_a_reloaded_chunk_must_hash_as_before(store: Store) -> None:
    data = pseudo_random(9000)
    pieces = layout.split(memoryview(data))
    with pytest.raises(SelfEncryptionError, match="chunk 0 changed while the input was being"):
        encrypt_pieces(pieces, len(data), store.put, reload=lambda index: b"\x00" * 3000)


def test_reloading_gives_the_same_map_as_holding(store: Store) -> None:
    data = pseudo_random(9000)
    pieces = layout.split(memoryview(data))
    reloaded = encrypt_pieces(pieces, len(data), store.put, reload=lambda i: bytes(pieces[i]))
    assert reloaded == encrypt(data)[0]


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=2))
def test_any_chunk_content_decrypts_or_raises_the_one_error(content: bytes, slot: int) -> None:
    """Even a forged map that names the forged content can only fail cleanly."""
    data_map, chunks = encrypt(b"three chunks of plaintext")
    store = dict(chunks)
    infos = list(data_map.chunk_identifiers)
    old = infos[slot]
    infos[slot] = type(old)(old.index, content_hash(content), old.src_hash, old.src_size)
    store[content_hash(content)] = content
    with pytest.raises(SelfEncryptionError):
        decrypt(DataMap(tuple(infos)), store.__getitem__)
