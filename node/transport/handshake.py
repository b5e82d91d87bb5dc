"""One-round-trip mutually authenticated handshake: Noise IK plus WireGuard cookies.

Pattern (Noise Protocol Framework rev 34, s7.5), ``Noise_IK_25519_ChaChaPoly_BLAKE2s``::

    <- s
    ...
    -> e, es, s, ss     (msg1, initiator -> responder)
    <- e, ee, se        (msg2, responder -> initiator)

Identities are Ed25519 keys; the DH uses their birational X25519 images
(libsodium's ``ed25519_pk_to_curve25519``).  Because that map forgets the sign
of the Edwards point, each side also signs the handshake hash with its Ed25519
key inside its encrypted payload, so the Ed25519 key (and thus the XorName) is
proven exactly, not just its X25519 image.

DoS protection follows WireGuard (s5.4.4-5.4.7): msg1 carries ``mac1`` (keyed by
the responder's public key, so only someone who knows whom they dial can make
the responder do any DH work) and ``mac2`` (keyed by a cookie bound to the
sender's address).  Under load the responder answers a msg1 without a valid
``mac2`` with a 64-byte cookie reply and keeps no state.  Sizes: msg1 200 bytes,
msg2 128, cookie reply 64, so the responder never sends more than it received.

Invariant: every parse failure raises :class:`HandshakeError`.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from node.identity import Identity, IdentityError, verify, x25519_public_of
from node.transport.protection import PacketKeys, hkdf
from node.transport.wire import CID_LEN

PROTOCOL_NAME = b"Noise_IK_25519_ChaChaPoly_BLAKE2s"
PROLOGUE = b"troon/transport/1"
MAC_LEN = 16
KEY_LEN = 32
SIG_LEN = 64
AEAD_TAG = 16
MSG1_LEN = CID_LEN + KEY_LEN + (KEY_LEN + AEAD_TAG) + (SIG_LEN + AEAD_TAG) + 2 * MAC_LEN
MSG2_LEN = 2 * CID_LEN + KEY_LEN + (SIG_LEN + AEAD_TAG)
COOKIE_NONCE_LEN = 24
COOKIE_REPLY_LEN = CID_LEN + COOKIE_NONCE_LEN + MAC_LEN + AEAD_TAG
COOKIE_ROTATION = 120.0
"""Seconds between cookie-secret rotations (WireGuard uses 2 minutes)."""
_NONCE = struct.Struct("<4xQ")
_ZERO_MAC = bytes(MAC_LEN)


class HandshakeError(ValueError):
    """A handshake message is malformed, forged or not for us."""


def _blake2s(data: bytes, key: bytes = b"", size: int = 32) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=size).digest()


def _dh(secret: bytes, public: bytes) -> bytes:
    try:
        return nacl.bindings.crypto_scalarmult(secret, public)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError, ValueError) as exc:
        raise HandshakeError("invalid Diffie-Hellman public key") from exc


def _x25519(public_key: bytes) -> bytes:
    try:
        return x25519_public_of(public_key)
    except IdentityError as exc:
        raise HandshakeError(str(exc)) from exc


def mac1_key(responder_public_key: bytes) -> bytes:
    return _blake2s(b"mac1----" + responder_public_key)


def cookie_key(responder_public_key: bytes) -> bytes:
    return _blake2s(b"cookie--" + responder_public_key)


class SymmetricState:
    """Noise SymmetricState + CipherState (Noise s5.1-5.2) with BLAKE2s and ChaChaPoly."""

    def __init__(self) -> None:
        self.h = _blake2s(PROTOCOL_NAME)
        self.ck = self.h
        self._key: bytes | None = None
        self._n = 0
        self.mix_hash(PROLOGUE)

    def mix_hash(self, data: bytes) -> None:
        self.h = _blake2s(self.h + data)

    def mix_key(self, ikm: bytes) -> None:
        self.ck, self._key = hkdf(self.ck, ikm, 2)
        self._n = 0

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        assert self._key is not None
        ct = ChaCha20Poly1305(self._key).encrypt(_NONCE.pack(self._n), plaintext, self.h)
        self._n += 1
        self.mix_hash(ct)
        return ct

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        assert self._key is not None
        try:
            pt = ChaCha20Poly1305(self._key).decrypt(_NONCE.pack(self._n), ciphertext, self.h)
        except InvalidTag as exc:
            raise HandshakeError("handshake message failed authentication") from exc
        self._n += 1
        self.mix_hash(ciphertext)
        return pt

    def split(self) -> tuple[bytes, bytes]:
        first, second = hkdf(self.ck, b"", 2)
        return first, second


@dataclass(frozen=True)
class SessionKeys:
    """What a completed handshake yields for the session."""

    peer_public_key: bytes
    send: PacketKeys
    recv: PacketKeys
    local_cid: bytes
    remote_cid: bytes


class InitiatorHandshake:
    """The initiator's side: builds msg1, accepts a cookie reply or msg2."""

    def __init__(self, identity: Identity, peer_public_key: bytes, local_cid: bytes) -> None:
        self.identity = identity
        self.peer_public_key = peer_public_key
        self.local_cid = local_cid
        self._peer_x = _x25519(peer_public_key)
        self._e_pub, self._e_sec = nacl.bindings.crypto_box_keypair()
        self._cookie: bytes | None = None
        self._state = SymmetricState()
        self._state.mix_hash(self._peer_x)
        self._body = self._build_body()
        self._mac1 = _blake2s(self._body, mac1_key(peer_public_key), MAC_LEN)

    def _build_body(self) -> bytes:
        st = self._state
        st.mix_hash(self.local_cid)
        st.mix_hash(self._e_pub)
        st.mix_key(_dh(self._e_sec, self._peer_x))
        enc_s = st.encrypt_and_hash(self.identity.public_key)
        st.mix_key(_dh(self.identity.x25519_secret(), self._peer_x))
        enc_payload = st.encrypt_and_hash(self.identity.sign(st.h))
        return self.local_cid + self._e_pub + enc_s + enc_payload

    def message(self) -> bytes:
        """msg1, with mac2 filled in once a cookie is known."""
        head = self._body + self._mac1
        mac2 = _blake2s(head, self._cookie, MAC_LEN) if self._cookie else _ZERO_MAC
        return head + mac2

    def on_cookie_reply(self, data: bytes) -> None:
        """Store the cookie from a cookie reply; the next :meth:`message` carries mac2."""
        if len(data) != COOKIE_REPLY_LEN:
            raise HandshakeError("cookie reply has the wrong length")
        nonce = data[CID_LEN : CID_LEN + COOKIE_NONCE_LEN]
        try:
            self._cookie = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                data[CID_LEN + COOKIE_NONCE_LEN :],
                self._mac1,
                nonce,
                cookie_key(self.peer_public_key),
            )
        except nacl.exceptions.CryptoError as exc:
            raise HandshakeError("cookie reply failed authentication") from exc

    def on_response(self, data: bytes) -> SessionKeys:
        """Consume msg2; returns the session keys or raises HandshakeError."""
        if len(data) != MSG2_LEN:
            raise HandshakeError("handshake response has the wrong length")
        st = _copy_state(self._state)
        remote_cid = data[CID_LEN : 2 * CID_LEN]
        re = data[2 * CID_LEN : 2 * CID_LEN + KEY_LEN]
        st.mix_hash(remote_cid)
        st.mix_hash(re)
        st.mix_key(_dh(self._e_sec, re))
        st.mix_key(_dh(self.identity.x25519_secret(), re))
        transcript = st.h
        signature = st.decrypt_and_hash(data[2 * CID_LEN + KEY_LEN :])
        try:
            verify(self.peer_public_key, transcript, signature)
        except IdentityError as exc:
            raise HandshakeError("responder is not who we dialled") from exc
        k_send, k_recv = st.split()
        return SessionKeys(
            peer_public_key=self.peer_public_key,
            send=PacketKeys(k_send),
            recv=PacketKeys(k_recv),
            local_cid=self.local_cid,
            remote_cid=remote_cid,
        )


def _copy_state(src: SymmetricState) -> SymmetricState:
    dst = SymmetricState.__new__(SymmetricState)
    dst.__dict__.update(src.__dict__)
    return dst


class Responder:
    """Stateless responder logic: mac checks, cookie replies, msg2."""

    def __init__(self, identity: Identity, *, now: float) -> None:
        self.identity = identity
        self._x_secret = identity.x25519_secret()
        self._x_public = identity.x25519_public()
        self._mac1_key = mac1_key(identity.public_key)
        self._cookie_key = cookie_key(identity.public_key)
        self._secrets = [os.urandom(32), os.urandom(32)]
        self._rotated_at = now

    def _rotate(self, now: float) -> None:
        elapsed = now - self._rotated_at
        if elapsed >= 2 * COOKIE_ROTATION:
            self._secrets = [os.urandom(32), os.urandom(32)]
            self._rotated_at = now
        elif elapsed >= COOKIE_ROTATION:
            self._secrets = [os.urandom(32), self._secrets[0]]
            self._rotated_at = now

    def _cookie(self, secret: bytes, addr: tuple[str, int]) -> bytes:
        return _blake2s(f"{addr[0]}|{addr[1]}".encode(), secret, MAC_LEN)

    def looks_like_msg1(self, data: bytes) -> bool:
        """True if ``data`` has msg1's length and a valid mac1 for our key."""
        if len(data) != MSG1_LEN:
            return False
        expected = _blake2s(data[: -2 * MAC_LEN], self._mac1_key, MAC_LEN)
        return bool(expected == data[-2 * MAC_LEN : -MAC_LEN])

    def has_valid_cookie(self, data: bytes, addr: tuple[str, int], *, now: float) -> bool:
        self._rotate(now)
        mac2 = data[-MAC_LEN:]
        for secret in self._secrets:
            cookie = self._cookie(secret, addr)
            if _blake2s(data[:-MAC_LEN], cookie, MAC_LEN) == mac2:
                return True
        return False

    def cookie_reply(self, data: bytes, addr: tuple[str, int], *, now: float) -> bytes:
        self._rotate(now)
        nonce = os.urandom(COOKIE_NONCE_LEN)
        sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            self._cookie(self._secrets[0], addr),
            data[-2 * MAC_LEN : -MAC_LEN],
            nonce,
            self._cookie_key,
        )
        return data[:CID_LEN] + nonce + sealed

    def respond(self, data: bytes, local_cid: bytes) -> tuple[SessionKeys, bytes]:
        """Process a mac-checked msg1; returns session keys and msg2."""
        st = SymmetricState()
        st.mix_hash(self._x_public)
        remote_cid = data[:CID_LEN]
        ie = data[CID_LEN : CID_LEN + KEY_LEN]
        pos = CID_LEN + KEY_LEN
        st.mix_hash(remote_cid)
        st.mix_hash(ie)
        st.mix_key(_dh(self._x_secret, ie))
        peer_pk = st.decrypt_and_hash(data[pos : pos + KEY_LEN + AEAD_TAG])
        pos += KEY_LEN + AEAD_TAG
        peer_x = _x25519(peer_pk)
        st.mix_key(_dh(self._x_secret, peer_x))
        transcript = st.h
        signature = st.decrypt_and_hash(data[pos : pos + SIG_LEN + AEAD_TAG])
        try:
            verify(peer_pk, transcript, signature)
        except IdentityError as exc:
            raise HandshakeError("initiator signature does not verify") from exc
        e_pub, e_sec = nacl.bindings.crypto_box_keypair()
        st.mix_hash(local_cid)
        st.mix_hash(e_pub)
        st.mix_key(_dh(e_sec, ie))
        st.mix_key(_dh(e_sec, peer_x))
        enc_payload = st.encrypt_and_hash(self.identity.sign(st.h))
        k_recv, k_send = st.split()
        keys = SessionKeys(
            peer_public_key=peer_pk,
            send=PacketKeys(k_send),
            recv=PacketKeys(k_recv),
            local_cid=local_cid,
            remote_cid=remote_cid,
        )
        return keys, remote_cid + local_cid + e_pub + enc_payload
