"""Per-chunk self-encryption (SELFENC.md, "Per chunk i of n").

``encrypted = XOR(ChaCha20Poly1305(key, nonce).encrypt(brotli_q6(plain)), pad)``, the AEAD
being RFC 8439's with no associated data. Pad, key and nonce come from BLAKE3 in derive-key
mode over the chunk's own source hash, its two neighbours' source hashes, its index and the
DataMap's child level. The chunk's network name is ``BLAKE3(encrypted)``.

Compression uses the Rust ``brotli`` crate (through ``cramjam``), the encoder the reference
uses: Google's C encoder (Python ``brotli``) frames even incompressible multi-MB chunks into
different meta-blocks, so its chunk names differ from the reference's. Decompression uses the
C decoder, whose output can be bounded. Any conforming decoder reads either encoder's output.

Invariants: every function here is pure and thread-safe; decryption checks the name, the AEAD
tag, the decompressed size and the source hash, and raises :class:`SelfEncryptionError`
naming the chunk on any mismatch. Brotli output is bounded by the expected size, so a forged
chunk cannot inflate beyond it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import blake3
import brotli
import cramjam
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import SelfEncryptionError
from .obfuscation import xor_pad_into

__all__ = [
    "ChunkKeys",
    "chunk_keys",
    "content_hash",
    "decrypt_chunk",
    "encrypt_chunk",
]

KDF_CONTEXT = "self_encryption/chunk/v2"
HASH_SIZE = 32
PAD_SIZE = 52
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16  # Poly1305
BROTLI_QUALITY = 6
_KDF_OUTPUT = PAD_SIZE + KEY_SIZE + NONCE_SIZE
_U64X2 = struct.Struct("<QQ")


@dataclass(frozen=True, slots=True)
class ChunkKeys:
    """Obfuscation pad, AEAD key and nonce for one chunk."""

    pad: bytes
    key: bytes
    nonce: bytes


def content_hash(data: bytes | bytearray | memoryview) -> bytes:
    """BLAKE3 of ``data``: a chunk's source hash or network name (XorName)."""
    return blake3.blake3(data).digest()


def chunk_keys(
    src_hash: bytes, n1_hash: bytes, n2_hash: bytes, index: int, child_level: int
) -> ChunkKeys:
    """Derive pad, key and nonce for chunk ``index`` from its and its neighbours' hashes."""
    hasher = blake3.blake3(derive_key_context=KDF_CONTEXT)
    hasher.update(src_hash + n1_hash + n2_hash + _U64X2.pack(index, child_level))
    out = hasher.digest(length=_KDF_OUTPUT)
    return ChunkKeys(pad=out[:PAD_SIZE], key=out[PAD_SIZE:-NONCE_SIZE], nonce=out[-NONCE_SIZE:])


def encrypt_chunk(plain: bytes | memoryview, keys: ChunkKeys) -> bytes:
    """Compress, seal and obfuscate one chunk; returns the stored content.

    Buffers are reused in place so a worker holds about three chunk-sized buffers at most.
    """
    compressed = cramjam.brotli.compress(plain, level=BROTLI_QUALITY)
    sealed = bytearray(len(compressed) + TAG_SIZE)
    with memoryview(compressed) as view:
        ChaCha20Poly1305(keys.key).encrypt_into(keys.nonce, view, None, sealed)
    del compressed
    xor_pad_into(sealed, keys.pad)
    return bytes(sealed)


def decrypt_chunk(
    content: bytes, keys: ChunkKeys, *, index: int, src_hash: bytes, src_size: int
) -> bytes:
    """Reverse :func:`encrypt_chunk` and check the result against the DataMap entry."""
    if len(content) < TAG_SIZE:
        raise SelfEncryptionError(f"chunk {index}: {len(content)} bytes is too short to hold a tag")
    sealed = bytearray(content)
    xor_pad_into(sealed, keys.pad)
    compressed = bytearray(len(sealed) - TAG_SIZE)
    try:
        ChaCha20Poly1305(keys.key).decrypt_into(keys.nonce, sealed, None, compressed)
    except InvalidTag:
        raise SelfEncryptionError(
            f"chunk {index}: authentication failed (wrong keys or tampered content)"
        ) from None
    del sealed
    plain = _decompress(compressed, index=index, src_size=src_size)
    if content_hash(plain) != src_hash:
        raise SelfEncryptionError(f"chunk {index}: decrypted content does not match src_hash")
    return plain


def _decompress(compressed: bytearray, *, index: int, src_size: int) -> bytes:
    decompressor = brotli.Decompressor()
    try:
        plain: bytes = decompressor.process(compressed, output_buffer_limit=src_size + 1)
    except brotli.error as exc:
        raise SelfEncryptionError(f"chunk {index}: brotli decompression failed: {exc}") from None
    if len(plain) != src_size or not decompressor.is_finished():
        raise SelfEncryptionError(
            f"chunk {index}: decompressed size does not match src_size {src_size}"
        )
    return plain
