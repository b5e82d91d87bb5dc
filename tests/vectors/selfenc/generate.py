"""Regenerate vectors.json with MaidSafe's reference (needs ``self_encryption==0.35.0``).

    python tests/vectors/selfenc/generate.py

Each input is a small recipe, not stored data (see README.md). The reference encrypts it with
its file API (``encrypt_from_file``); we keep its DataMap JSON, every chunk name it wrote
(first level, then child levels) and the contents of chunks no larger than 4 KiB.
"""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import blake3
import self_encryption

HERE = Path(__file__).resolve().parent
MAX_STORED_CONTENT = 4096
# "letters": each XOF byte b becomes ALPHABET[b % 32]: compressible text of ~4.8 bits/byte.
ALPHABET = b"abcdefghijklmnopqrstuvwxyz .,;\n-"
LETTERS = bytes(ALPHABET[b % 32] for b in range(256))

RECIPES: list[dict[str, Any]] = [
    {"name": "abc", "kind": "repeat", "unit": b"abc".hex(), "count": 1},
    {"name": "pattern-1KiB", "kind": "repeat", "unit": bytes(range(256)).hex(), "count": 4},
    {"name": "zeros-9MB", "kind": "repeat", "unit": "00", "count": 9_000_000},
    {"name": "fox-5MB", "kind": "repeat",
     "unit": b"The quick brown fox jumps over the lazy dog. ".hex(), "count": 120_000},
    {"name": "xof-1KiB", "kind": "blake3_xof", "seed": "troon/selfenc/xof-1KiB", "size": 1024},
    {"name": "xof-100000", "kind": "blake3_xof", "seed": "troon/selfenc/xof-100000",
     "size": 100_000},
    {"name": "letters-6MB", "kind": "letters", "seed": "troon/selfenc/letters-6MB",
     "size": 6_000_000},
    {"name": "xof-13MB-shrunk", "kind": "blake3_xof", "seed": "troon/selfenc/xof-13MB",
     "size": 13_000_000},
]  # fmt: skip


def build(recipe: dict[str, Any]) -> bytes:
    """The input bytes a recipe describes."""
    if recipe["kind"] == "repeat":
        return bytes.fromhex(recipe["unit"]) * recipe["count"]
    if recipe["kind"] == "blake3_xof":
        return blake3.blake3(recipe["seed"].encode()).digest(length=recipe["size"])
    if recipe["kind"] == "letters":
        xof = blake3.blake3(recipe["seed"].encode()).digest(length=recipe["size"])
        return xof.translate(LETTERS)
    raise ValueError(f"unknown recipe kind {recipe['kind']!r}")


def vector(recipe: dict[str, Any], work: Path) -> dict[str, Any]:
    source = work / "input"
    source.write_bytes(build(recipe))
    out = work / recipe["name"]
    out.mkdir()
    data_map, names = self_encryption.encrypt_from_file(str(source), str(out))
    contents = {
        name: (out / name).read_bytes().hex()
        for name in names
        if (out / name).stat().st_size <= MAX_STORED_CONTENT
    }
    return {
        "recipe": recipe,
        "size": source.stat().st_size,
        "data_map_json": data_map.to_json(),
        "chunk_names": list(names),
        "chunk_contents": contents,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        vectors = [vector(recipe, Path(tmp)) for recipe in RECIPES]
    doc = {
        "source": f"self_encryption {version('self_encryption')} (PyPI), encrypt_from_file",
        "vectors": vectors,
    }
    (HERE / "vectors.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
