"""Self-encryption compatible with MaidSafe ``self_encryption`` 0.35.0 (SELFENC.md).

A file is split into at least three chunks; each is compressed (Brotli q6), sealed with
ChaCha20-Poly1305 under keys derived from its neighbours' plaintext hashes, obfuscated with
a pad and named by the BLAKE3 of the result. The DataMap (the only key to the file) lists
the chunks and is itself shrunk to at most three entries. Chunk names are byte-identical to
the reference's (same Brotli encoder, via ``cramjam``). Pure and sans-IO apart from the thin
file adapters in :mod:`.file`: chunks come and go through callables, and worker threads
(``workers=``, default min(CPUs, 2): each holds ~25 MB of chunk buffers) encrypt chunks in
parallel.
"""

from __future__ import annotations

from .datamap import ChunkInfo, DataMap
from .errors import SelfEncryptionError
from .file import decrypt_file, encrypt_file
from .layout import MAX_CHUNK_SIZE, MIN_ENCRYPTABLE_BYTES
from .stream import EncryptedChunk, decrypt, decrypt_stream, encrypt, encrypt_stream

__all__ = [
    "MAX_CHUNK_SIZE",
    "MIN_ENCRYPTABLE_BYTES",
    "ChunkInfo",
    "DataMap",
    "EncryptedChunk",
    "SelfEncryptionError",
    "decrypt",
    "decrypt_file",
    "decrypt_stream",
    "encrypt",
    "encrypt_file",
    "encrypt_stream",
]
