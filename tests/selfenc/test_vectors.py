"""Golden vectors made with MaidSafe's self_encryption 0.35.0 (tests/vectors/selfenc/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import blake3
import pytest

from node.selfenc import DataMap, decrypt, encrypt
from node.selfenc.level import expand
from node.selfenc.pipeline import Workers

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "selfenc" / "vectors.json"
DOC = json.loads(VECTORS.read_text())
LETTERS = bytes(b"abcdefghijklmnopqrstuvwxyz .,;\n-"[b % 32] for b in range(256))


def build(recipe: dict[str, Any]) -> bytes:
    """Rebuild a vector's input from its recipe (README.md, "recipe")."""
    if recipe["kind"] == "repeat":
        return bytes.fromhex(recipe["unit"]) * recipe["count"]
    xof = blake3.blake3(recipe["seed"].encode()).digest(length=recipe["size"])
    return xof.translate(LETTERS) if recipe["kind"] == "letters" else xof


def _ids(vector: dict[str, Any]) -> str:
    return str(vector["recipe"]["name"])


def test_vectors_come_from_the_reference() -> None:
    assert DOC["source"].startswith("self_encryption 0.35.0")
    kinds = {v["recipe"]["kind"] for v in DOC["vectors"]}
    assert kinds == {"repeat", "blake3_xof", "letters"}


@pytest.mark.parametrize("vector", DOC["vectors"], ids=_ids)
def test_reference_map_parses_and_reserializes_identically(vector: dict[str, Any]) -> None:
    data_map = DataMap.from_json(vector["data_map_json"])
    assert data_map.to_json() == vector["data_map_json"]
    assert DataMap.from_bytes(data_map.to_bytes()) == data_map
    assert len(data_map.chunk_identifiers) == 3
    if data_map.child is None:
        assert data_map.file_size == vector["size"] == len(build(vector["recipe"]))


@pytest.mark.parametrize("vector", DOC["vectors"], ids=_ids)
def test_ours_reproduces_the_reference_byte_for_byte(vector: dict[str, Any]) -> None:
    data_map, chunks = encrypt(build(vector["recipe"]))
    assert data_map.to_json() == vector["data_map_json"]
    assert sorted(name.hex() for name, _ in chunks) == sorted(vector["chunk_names"])
    ours = {name.hex(): content.hex() for name, content in chunks}
    for name, content in vector["chunk_contents"].items():
        assert ours[name] == content


@pytest.mark.parametrize("vector", [v for v in DOC["vectors"] if v["chunk_contents"]], ids=_ids)
def test_ours_decrypts_the_reference_chunks(vector: dict[str, Any]) -> None:
    data_map = DataMap.from_json(vector["data_map_json"])
    stored = {bytes.fromhex(k): bytes.fromhex(v) for k, v in vector["chunk_contents"].items()}
    data = build(vector["recipe"])
    if data_map.child is None:
        assert decrypt(data_map, stored.__getitem__) == data
    else:  # only the child level is small enough to store: walk it down to the file's map
        inner = expand(data_map, stored.__getitem__, Workers(1))
        assert inner.child is None and inner.file_size == len(data)
        names = {info.dst_hash.hex() for info in inner.chunk_identifiers}
        assert names < set(vector["chunk_names"])
