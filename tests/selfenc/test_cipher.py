"""Per-chunk cipher: the checks that guard decryption of forged or tampered chunks."""

from __future__ import annotations

import brotli
import pytest
from conftest import pseudo_random

from node.selfenc import SelfEncryptionError
from node.selfenc.cipher import (
    ChunkKeys,
    chunk_keys,
    content_hash,
    decrypt_chunk,
    encrypt_chunk,
)
from node.selfenc.obfuscation import xor_pad_into


def _xor_pad(data: bytes, pad: bytes) -> bytes:
    buffer = bytearray(data)
    xor_pad_into(buffer, pad)
    return bytes(buffer)


KEYS = chunk_keys(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 5, 0)


def test_key_material_depends_on_every_input() -> None:
    base = (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 5, 0)
    variants = {chunk_keys(*base)}
    for position, other in enumerate([b"\x09" * 32, b"\x09" * 32, b"\x09" * 32, 6, 1]):
        changed = list(base)
        changed[position] = other
        variants.add(chunk_keys(*changed))  # type: ignore[arg-type]
    assert len(variants) == 6
    assert (len(KEYS.pad), len(KEYS.key), len(KEYS.nonce)) == (52, 32, 12)


def _decrypt(content: bytes, plain: bytes, keys: ChunkKeys = KEYS, **kw: object) -> bytes:
    args: dict[str, object] = {"index": 7, "src_hash": content_hash(plain), "src_size": len(plain)}
    args.update(kw)
    return decrypt_chunk(content, keys, **args)  # type: ignore[arg-type]


def test_round_trip() -> None:
    plain = pseudo_random(10_000)
    assert _decrypt(encrypt_chunk(plain, KEYS), plain) == plain


def test_wrong_keys_fail_authentication() -> None:
    other = chunk_keys(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 5, 1)
    content = encrypt_chunk(b"hello", KEYS)
    with pytest.raises(SelfEncryptionError, match="chunk 7: authentication failed"):
        _decrypt(content, b"hello", other)


def test_wrong_src_hash_is_caught() -> None:
    content = encrypt_chunk(b"hello", KEYS)
    with pytest.raises(SelfEncryptionError, match="does not match src_hash"):
        _decrypt(content, b"hello", src_hash=b"\x00" * 32)


def test_decompression_is_bounded_by_src_size() -> None:
    bomb = encrypt_chunk(bytes(4_000_000), KEYS)  # compresses to a few hundred bytes
    assert len(bomb) < 1000
    with pytest.raises(SelfEncryptionError, match="decompressed size does not match src_size 10"):
        _decrypt(bomb, bytes(4_000_000), src_size=10)
    with pytest.raises(SelfEncryptionError, match="does not match src_size 4000001"):
        _decrypt(bomb, bytes(4_000_000), src_size=4_000_001)


def test_undecodable_brotli_is_reported() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    sealed = ChaCha20Poly1305(KEYS.key).encrypt(KEYS.nonce, b"\xff\xff not brotli", None)
    with pytest.raises(SelfEncryptionError, match="brotli decompression failed"):
        _decrypt(_xor_pad(sealed, KEYS.pad), b"x")


def test_compression_is_brotli_quality_6() -> None:
    plain = b"The quick brown fox " * 50
    sealed = _xor_pad(encrypt_chunk(plain, KEYS), KEYS.pad)
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    compressed = ChaCha20Poly1305(KEYS.key).decrypt(KEYS.nonce, sealed, None)
    assert compressed == brotli.compress(plain, quality=6)


def test_content_shorter_than_a_tag_is_rejected() -> None:
    with pytest.raises(SelfEncryptionError, match="chunk 7: 15 bytes is too short"):
        _decrypt(b"\x00" * 15, b"x")
