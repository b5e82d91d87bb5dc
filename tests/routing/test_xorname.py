"""XOR metric laws (Kademlia paper, section 2.1) as Hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.routing.xorname import (
    NAME_BITS,
    NAME_BYTES,
    XorNameError,
    bucket_index,
    closest,
    common_prefix_len,
    distance,
    name_from_int,
)

names = st.binary(min_size=NAME_BYTES, max_size=NAME_BYTES)
distances = st.integers(min_value=0, max_value=(1 << NAME_BITS) - 1)


@given(names)
def test_identity(a: bytes) -> None:
    assert distance(a, a) == 0
    assert common_prefix_len(a, a) == NAME_BITS


@given(names, names)
def test_positive_for_distinct_names(a: bytes, b: bytes) -> None:
    assert (distance(a, b) > 0) == (a != b)


@given(names, names)
def test_symmetry(a: bytes, b: bytes) -> None:
    assert distance(a, b) == distance(b, a)


@given(names, names, names)
def test_triangle_inequality(a: bytes, b: bytes, c: bytes) -> None:
    assert distance(a, c) <= distance(a, b) + distance(b, c)


@given(names, names, names)
def test_xor_composes(a: bytes, b: bytes, c: bytes) -> None:
    # d(a,b) XOR d(b,c) = d(a,c): the property that makes lookups converge (section 2.1).
    assert distance(a, b) ^ distance(b, c) == distance(a, c)


@given(names, distances)
def test_unidirectional_exactly_one_point_at_each_distance(a: bytes, d: int) -> None:
    b = name_from_int(int.from_bytes(a, "big") ^ d)
    assert distance(a, b) == d


@given(names, names, names)
def test_unidirectional_equal_distance_means_same_point(a: bytes, b: bytes, c: bytes) -> None:
    if distance(a, b) == distance(a, c):
        assert b == c


@given(names, names)
def test_bucket_index_matches_prefix_and_range(a: bytes, b: bytes) -> None:
    if a == b:
        with pytest.raises(XorNameError):
            bucket_index(a, b)
        return
    i = bucket_index(a, b)
    assert i == NAME_BITS - 1 - common_prefix_len(a, b)
    assert 2**i <= distance(a, b) < 2 ** (i + 1)
    assert bucket_index(b, a) == i


@given(names, st.lists(names, unique=True, max_size=30), st.integers(0, 40))
def test_closest_is_sorted_prefix_of_all(target: bytes, pool: list[bytes], count: int) -> None:
    got = closest(target, pool, count)
    everything = sorted(pool, key=lambda n: distance(target, n))
    assert got == everything[:count]


@given(st.binary(max_size=40).filter(lambda b: len(b) != NAME_BYTES), names)
def test_wrong_length_raises_the_one_error(bad: bytes, good: bytes) -> None:
    with pytest.raises(XorNameError):
        distance(bad, good)
    with pytest.raises(XorNameError):
        distance(good, bad)


def test_name_from_int_bounds() -> None:
    assert name_from_int(0) == bytes(NAME_BYTES)
    assert name_from_int((1 << NAME_BITS) - 1) == b"\xff" * NAME_BYTES
    for bad in (-1, 1 << NAME_BITS):
        with pytest.raises(XorNameError):
            name_from_int(bad)
