"""The repeating-pad XOR: both implementations agree with the definition."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.selfenc import obfuscation

IMPLEMENTATIONS = [obfuscation.xor_pad_into_python]
if obfuscation.np is not None:
    IMPLEMENTATIONS.append(obfuscation.xor_pad_into_numpy)


@pytest.mark.parametrize("xor", IMPLEMENTATIONS, ids=lambda f: f.__name__)
@given(data=st.binary(max_size=40_000), pad=st.binary(min_size=52, max_size=52))
def test_matches_the_definition(
    xor: Callable[[bytearray, bytes], None], data: bytes, pad: bytes
) -> None:
    buffer = bytearray(data)
    xor(buffer, pad)
    assert bytes(buffer) == bytes(b ^ pad[i % 52] for i, b in enumerate(data))


@pytest.mark.parametrize("size", [0, 1, 51, 52, 53, 16_379, 16_380, 16_381, 4_190_224])
def test_implementations_agree_around_block_edges(size: int) -> None:
    pad = bytes(range(7, 59))
    data = bytes(i * 31 % 251 for i in range(size))
    results = []
    for xor in IMPLEMENTATIONS:
        buffer = bytearray(data)
        xor(buffer, pad)
        results.append(bytes(buffer))
    assert len(set(results)) == 1
    assert results[0][:104] == bytes(b ^ pad[i % 52] for i, b in enumerate(data[:104]))


def test_the_fast_path_is_chosen_when_numpy_is_installed() -> None:
    numpy_missing = obfuscation.np is None
    fast = obfuscation.xor_pad_into_python if numpy_missing else obfuscation.xor_pad_into_numpy
    assert obfuscation.xor_pad_into is fast
