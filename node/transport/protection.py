"""Per-packet protection: ChaCha20-Poly1305 AEAD plus header protection.

Layout and nonce follow QUIC (RFC 9001 s5.3-5.4): the nonce is the 12-byte IV
XOR the 64-bit packet number, the AAD is the unprotected header (DCID + packet
number), and the packet number is then masked with AES-128-ECB over a 16-byte
sample of the ciphertext (RFC 9001 s5.4.3), so nothing on the wire but the
random connection ID is stable across packets.

Invariant: ``open`` either returns the plaintext and full packet number of an
authentic packet or raises :class:`ProtectionError`.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from node.transport.wire import CID_LEN, HEADER_LEN, MIN_PACKET, PN_LEN, TAG_LEN, decode_pn

_NONCE_PAD = struct.Struct("!4xQ")
_PN32 = struct.Struct("!I")
SAMPLE_LEN = 16


class ProtectionError(ValueError):
    """A packet failed authentication or is too short to be one."""


def hkdf(chaining_key: bytes, ikm: bytes, count: int) -> list[bytes]:
    """HKDF with HMAC-BLAKE2s as the Noise specification defines it (Noise s4.3)."""
    temp = hmac.new(chaining_key, ikm, hashlib.blake2s).digest()
    outputs: list[bytes] = []
    prev = b""
    for i in range(1, count + 1):
        prev = hmac.new(temp, prev + bytes([i]), hashlib.blake2s).digest()
        outputs.append(prev)
    return outputs


class PacketKeys:
    """One direction's AEAD key, IV and header-protection key, derived from a Noise split key."""

    __slots__ = ("_aead", "_hp", "_iv_int")

    def __init__(self, secret: bytes) -> None:
        key, rest = hkdf(secret, b"troon packet keys", 2)
        self._aead = ChaCha20Poly1305(key)
        self._iv_int = int.from_bytes(rest[:12], "big")
        self._hp = Cipher(algorithms.AES(rest[12:28]), modes.ECB()).encryptor()

    def _nonce(self, pn: int) -> bytes:
        return (self._iv_int ^ pn).to_bytes(12, "big")

    def seal(self, dcid: bytes, pn: int, payload: bytes) -> bytes:
        """Encrypt ``payload`` as packet ``pn`` to connection ``dcid``."""
        pn_bytes = _PN32.pack(pn & 0xFFFFFFFF)
        header = dcid + pn_bytes
        ct = self._aead.encrypt(self._nonce(pn), payload, header)
        mask = self._hp.update(ct[:SAMPLE_LEN])
        masked = (int.from_bytes(pn_bytes, "big") ^ int.from_bytes(mask[:PN_LEN], "big")).to_bytes(
            PN_LEN, "big"
        )
        return dcid + masked + ct

    def unmask_pn(self, packet: bytes, expected: int) -> int:
        """Remove header protection and return the full packet number (not yet authenticated)."""
        if len(packet) < MIN_PACKET:
            raise ProtectionError("packet too short")
        mask = self._hp.update(packet[HEADER_LEN : HEADER_LEN + SAMPLE_LEN])
        masked = int.from_bytes(packet[CID_LEN:HEADER_LEN], "big")
        truncated = masked ^ int.from_bytes(mask[:PN_LEN], "big")
        return decode_pn(truncated, expected)

    def open(self, packet: bytes, pn: int) -> bytes:
        """Authenticate and decrypt packet ``pn`` (from :meth:`unmask_pn`)."""
        header = packet[:CID_LEN] + _PN32.pack(pn & 0xFFFFFFFF)
        try:
            return self._aead.decrypt(self._nonce(pn), packet[HEADER_LEN:], header)
        except InvalidTag as exc:
            raise ProtectionError("packet failed authentication") from exc


OVERHEAD = HEADER_LEN + TAG_LEN
