"""Splitting rules (SELFENC.md, "Splitting a buffer")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.selfenc import MAX_CHUNK_SIZE, SelfEncryptionError
from node.selfenc.layout import (
    MAX_SRC_SIZE,
    chunk_count,
    chunk_size,
    chunk_start,
    neighbours,
    split,
)


@pytest.mark.parametrize(
    ("size", "sizes"),
    [
        (3, [1, 1, 1]),
        (4, [1, 1, 2]),
        (1024, [341, 341, 342]),
        (3 * MAX_CHUNK_SIZE - 1, [MAX_CHUNK_SIZE - 1, MAX_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1]),
        (3 * MAX_CHUNK_SIZE, [MAX_CHUNK_SIZE] * 3),
        (3 * MAX_CHUNK_SIZE + 1, [MAX_CHUNK_SIZE] * 3 + [1]),
        (13_000_000, [MAX_CHUNK_SIZE] * 3 + [13_000_000 - 3 * MAX_CHUNK_SIZE]),
    ],
)
def test_chunk_sizes(size: int, sizes: list[int]) -> None:
    assert [chunk_size(size, i) for i in range(chunk_count(size))] == sizes


@pytest.mark.parametrize("size", [-1, 0, 1, 2])
def test_fewer_than_three_bytes_is_an_error(size: int) -> None:
    with pytest.raises(SelfEncryptionError, match="at least 3"):
        chunk_count(size)


def test_index_out_of_range() -> None:
    with pytest.raises(SelfEncryptionError, match="out of range"):
        chunk_size(10, 3)


def test_neighbours_wrap_for_the_first_two_chunks() -> None:
    assert [neighbours(i, 5) for i in range(5)] == [(4, 3), (0, 4), (1, 0), (2, 1), (3, 2)]
    assert [neighbours(i, 3) for i in range(3)] == [(2, 1), (0, 2), (1, 0)]


@given(st.integers(min_value=3, max_value=40 * MAX_CHUNK_SIZE))
def test_layout_covers_the_input_exactly(size: int) -> None:
    count = chunk_count(size)
    sizes = [chunk_size(size, i) for i in range(count)]
    assert count >= 3 and sum(sizes) == size
    assert all(1 <= s <= MAX_SRC_SIZE for s in sizes)
    assert all(s == sizes[0] for s in sizes[:-1])
    assert all(chunk_start(size, i) == sum(sizes[:i]) for i in range(count))


@given(st.binary(min_size=3, max_size=200))
def test_split_returns_views_in_order(data: bytes) -> None:
    assert b"".join(split(memoryview(data))) == data
