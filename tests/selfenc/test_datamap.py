"""DataMap binary (bincode) and JSON forms: round trips and every malformed input."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.selfenc import ChunkInfo, DataMap, SelfEncryptionError
from node.selfenc.datamap import MAX_CHILD_LEVEL
from node.selfenc.layout import chunk_count, chunk_size


def make_map(size: int, child: int | None = None, salt: int = 0) -> DataMap:
    infos = tuple(
        ChunkInfo(i, bytes([i % 256, salt % 256]) * 16, bytes([salt % 256, 7]) * 16, s)
        for i in range(chunk_count(size))
        for s in [chunk_size(size, i)]
    )
    return DataMap(infos, child)


maps = st.builds(
    make_map,
    st.integers(min_value=3, max_value=40 * 4_190_208),
    st.one_of(st.none(), st.integers(min_value=1, max_value=MAX_CHILD_LEVEL)),
    st.integers(min_value=0, max_value=255),
)


def test_known_layout() -> None:
    data_map = make_map(1024, child=1)
    raw = data_map.to_bytes()
    assert raw[:9] == b"\x01" + struct.pack("<Q", 3)
    assert raw[9:17] == struct.pack("<Q", 0)
    assert raw[-9:] == b"\x01" + struct.pack("<Q", 1)
    assert len(raw) == 1 + 8 + 3 * 80 + 9
    assert make_map(1024).to_bytes()[-1:] == b"\x00"
    assert data_map.file_size == 1024 and data_map.is_child
    assert not make_map(1024).is_child


def test_json_is_the_reference_form() -> None:
    doc = json.loads(make_map(3).to_json())
    assert list(doc) == ["chunk_identifiers", "child"] and doc["child"] is None
    assert list(doc["chunk_identifiers"][0]) == ["index", "dst_hash", "src_hash", "src_size"]
    assert doc["chunk_identifiers"][0]["dst_hash"] == "0000" * 16
    assert " " not in make_map(3).to_json()


@given(maps)
def test_bytes_round_trip(data_map: DataMap) -> None:
    assert DataMap.from_bytes(data_map.to_bytes()) == data_map


@given(maps)
def test_json_round_trip(data_map: DataMap) -> None:
    assert DataMap.from_json(data_map.to_json()) == data_map


@given(st.binary(max_size=600))
def test_any_bytes_parse_or_raise_the_one_error(raw: bytes) -> None:
    with contextlib.suppress(SelfEncryptionError):
        DataMap.from_bytes(raw)


@given(st.binary(max_size=40), maps)
def test_mutated_maps_parse_or_raise_the_one_error(noise: bytes, data_map: DataMap) -> None:
    raw = bytearray(data_map.to_bytes())
    for offset, byte in enumerate(noise):
        raw[(offset * 37 + byte) % len(raw)] ^= byte
    with contextlib.suppress(SelfEncryptionError):
        DataMap.from_bytes(bytes(raw))


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_the_one_error(text: str) -> None:
    with contextlib.suppress(SelfEncryptionError):
        DataMap.from_json(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner),
    max_leaves=20,
)


@settings(max_examples=50)
@given(json_values)
def test_any_json_document_parses_or_raises_the_one_error(value: object) -> None:
    with contextlib.suppress(SelfEncryptionError):
        DataMap.from_json(json.dumps(value))


def test_every_truncation_raises() -> None:
    raw = make_map(13_000_000, child=2).to_bytes()
    for end in range(len(raw)):
        with pytest.raises(SelfEncryptionError):
            DataMap.from_bytes(raw[:end])


def test_byte_by_byte_views_and_bytearray_parse() -> None:
    data_map = make_map(99)
    raw = data_map.to_bytes()
    assert DataMap.from_bytes(bytearray(raw)) == data_map
    assert DataMap.from_bytes(memoryview(raw)) == data_map


def _edit(raw: bytes, offset: int, value: bytes) -> bytes:
    return raw[:offset] + value + raw[offset + len(value) :]


RAW = make_map(1024).to_bytes()
ENTRY = 9  # first entry's offset


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "truncated"),
        (_edit(RAW, 0, b"\x02"), "version 2"),
        (_edit(RAW, 0, b"\x00"), "version 0"),
        (RAW + b"\x00", "1 trailing"),
        (_edit(RAW, 1, struct.pack("<Q", 4)), "4 entries declared"),
        (_edit(RAW, 1, struct.pack("<Q", 2**64 - 1)), "entries declared"),
        (_edit(RAW, 1, struct.pack("<Q", 2)), "option tag is 2"),
        (_edit(RAW, 1, struct.pack("<Q", 2))[: 9 + 160] + b"\x00", "at least 3"),
        (_edit(RAW, len(RAW) - 1, b"\x02"), "option tag is 2"),
        (RAW[:-1] + b"\x01\x00", "truncated inside the child"),
        (RAW[:-1] + b"\x01" + struct.pack("<Q", 0), "child level 0"),
        (RAW[:-1] + b"\x01" + struct.pack("<Q", 2**64 - 1), "child level"),
        (_edit(RAW, ENTRY, struct.pack("<Q", 1)), "out of order"),
        (_edit(RAW, ENTRY + 80, struct.pack("<Q", 0)), "out of order"),
        (_edit(RAW, ENTRY + 72, struct.pack("<Q", 0)), "src_size 0"),
        (_edit(RAW, ENTRY + 72, struct.pack("<Q", 2**64 - 1)), "outside"),
        (_edit(RAW, ENTRY + 72, struct.pack("<Q", 342)), "does not fit the layout"),
    ],
)
def test_malformed_binary(raw: bytes, message: str) -> None:
    with pytest.raises(SelfEncryptionError, match=message):
        DataMap.from_bytes(raw)


def _infos(*sizes: int) -> tuple[ChunkInfo, ...]:
    return tuple(ChunkInfo(i, b"\x00" * 32, b"\x01" * 32, s) for i, s in enumerate(sizes))


def test_counts_that_do_not_match_the_sizes() -> None:
    with pytest.raises(SelfEncryptionError, match="4 chunks but 4 bytes split into 3"):
        DataMap(_infos(1, 1, 1, 1))
    with pytest.raises(SelfEncryptionError, match="does not fit the layout"):
        DataMap(_infos(4_190_208, 4_190_208, 1))
    with pytest.raises(SelfEncryptionError, match="at least 3"):
        DataMap(_infos(1, 2))
    assert DataMap(_infos(4_190_208, 4_190_208, 4_190_208, 5)).file_size == 3 * 4_190_208 + 5


def test_a_src_size_past_u64_never_parses() -> None:
    raw = _edit(RAW, ENTRY + 72, b"\xff" * 8)
    with pytest.raises(SelfEncryptionError, match=r"outside 1\.\."):
        DataMap.from_bytes(raw)


JSON = make_map(1024).to_json()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not valid JSON"),
        ("[" * 100_000, "not valid JSON"),
        ("[]", "exactly"),
        (JSON.replace('"child":null', '"child":null,"x":1'), "exactly"),
        (JSON.replace('"child":null', '"child":"1"'), "null or an integer"),
        (JSON.replace('"child":null', '"child":true'), "null or an integer"),
        (JSON.replace('"child":null', '"child":0'), "child level 0"),
        (JSON.replace('"index":0', '"index":false'), "index must be an integer"),
        (JSON.replace('"index":1', '"index":-1'), "not a u64"),
        (JSON.replace('"src_size":341', '"src_size":341.0', 1), "src_size must be an integer"),
        (JSON.replace('"dst_hash":"00', '"dst_hash":"zz', 1), "not hex"),
        (JSON.replace('"dst_hash":"0000', '"dst_hash":"00', 1), "64 hex digits"),
        (JSON.replace('"index":0,', "", 1), "exactly"),
        ('{"chunk_identifiers":{},"child":null}', "must be a list"),
        ('{"chunk_identifiers":[1,2,3],"child":null}', "exactly"),
    ],
)
def test_malformed_json(text: str, message: str) -> None:
    with pytest.raises(SelfEncryptionError, match=message):
        DataMap.from_json(text)


def test_constructor_checks_types() -> None:
    with pytest.raises(SelfEncryptionError, match="32 bytes"):
        ChunkInfo(0, b"short", b"\x00" * 32, 1)
    with pytest.raises(SelfEncryptionError, match="tuple of ChunkInfo"):
        DataMap(list(make_map(3).chunk_identifiers))  # type: ignore[arg-type]
