"""Interop with MaidSafe's reference, self_encryption 0.35.0, both ways (SELFENC.md).

The reference's file API plus its JSON DataMap carry chunks and maps across: it writes one
file per chunk, named by the hex of the chunk's name, and reads chunks through a callback.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from conftest import pseudo_random

from node.selfenc import MAX_CHUNK_SIZE, DataMap, decrypt, decrypt_file, encrypt

se: Any = pytest.importorskip(
    "self_encryption",
    reason="MaidSafe's reference is not installed: pip install self-encryption==0.35.0",
)

LETTERS = bytes(b"abcdefghijklmnopqrstuvwxyz .,;\n-"[b % 32] for b in range(256))
INPUTS = {
    "3-bytes": pseudo_random(3),
    "1KiB": pseudo_random(1024),
    "100000": pseudo_random(100_000, "interop/100000"),
    "text-1MB": pseudo_random(1_000_000, "interop/text").translate(LETTERS),
    "13MB-shrunk": pseudo_random(13_000_000, "interop/13MB"),
}
LAST_CHUNK_OVER_MAX = 3 * MAX_CHUNK_SIZE - 1  # three chunks, the last one MAX_CHUNK_SIZE + 1


def test_reference_version() -> None:
    assert version("self_encryption") == "0.35.0"


def _reference_encrypt(data: bytes, tmp_path: Path) -> tuple[Any, Path]:
    source, out = tmp_path / "input", tmp_path / "chunks"
    source.write_bytes(data)
    out.mkdir()
    data_map, _names = se.encrypt_from_file(str(source), str(out))
    return data_map, out


@pytest.mark.parametrize("name", INPUTS)
def test_ours_decrypts_the_references_output(name: str, tmp_path: Path) -> None:
    data = INPUTS[name]
    their_map, chunk_dir = _reference_encrypt(data, tmp_path)
    data_map = DataMap.from_json(their_map.to_json())
    assert data_map.is_child == (name == "13MB-shrunk")

    def get_chunk(chunk_name: bytes) -> bytes:
        return (chunk_dir / chunk_name.hex()).read_bytes()

    assert decrypt(data_map, get_chunk, workers=2) == data
    decrypt_file(data_map, get_chunk, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


@pytest.mark.parametrize("name", INPUTS)
def test_reference_decrypts_our_output(name: str, tmp_path: Path) -> None:
    data = INPUTS[name]
    data_map, chunks = encrypt(data)
    store = dict(chunks)
    their_map = se.DataMap.from_json(data_map.to_json())
    assert their_map.child() == data_map.child
    out = tmp_path / "out"
    se.decrypt_from_storage(their_map, str(out), lambda hex_name: store[bytes.fromhex(hex_name)])
    assert out.read_bytes() == data


def test_reference_streams_our_shrunk_output(tmp_path: Path) -> None:
    data = INPUTS["13MB-shrunk"]
    data_map, chunks = encrypt(data)
    store = dict(chunks)

    def get_chunks(wanted: list[tuple[int, str]]) -> list[tuple[int, bytes]]:
        return [(index, store[bytes.fromhex(hex_name)]) for index, hex_name in wanted]

    out = tmp_path / "out"
    se.streaming_decrypt_from_storage(
        se.DataMap.from_json(data_map.to_json()), str(out), get_chunks
    )
    assert out.read_bytes() == data


@pytest.mark.parametrize("name", [*INPUTS, "last-chunk-over-max"])
def test_chunks_are_byte_identical_to_the_references(name: str, tmp_path: Path) -> None:
    data = INPUTS.get(name) or pseudo_random(LAST_CHUNK_OVER_MAX, "interop/over-max")
    their_map, chunk_dir = _reference_encrypt(data, tmp_path)
    data_map, chunks = encrypt(data)
    assert data_map.to_json() == their_map.to_json()
    theirs = {path.name: path.read_bytes() for path in chunk_dir.iterdir()}
    assert {name.hex(): content for name, content in chunks} == theirs
