"""Node and client identities.

An identity is an Ed25519 keypair (PyNaCl).  Its name in XOR space is
``XorName = BLAKE3(public key)``: 32 bytes that nobody can choose freely,
because the key must be proven in the transport handshake.

Invariants: ``Identity.name == xor_name(Identity.public_key)`` always; the
secret seed never leaves this object except through :meth:`Identity.seed`
(used to persist a node's key to its own config file).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import blake3
import nacl.bindings
import nacl.exceptions
import nacl.signing

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64
NAME_SIZE = 32


class IdentityError(ValueError):
    """A key, seed or signature is malformed or does not verify."""


def xor_name(public_key: bytes) -> bytes:
    """Return the 32-byte XorName of an Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise IdentityError(f"public key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    return blake3.blake3(public_key).digest()


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise :class:`IdentityError` unless ``signature`` is ``public_key``'s over ``message``."""
    if len(signature) != SIGNATURE_SIZE:
        raise IdentityError("signature must be 64 bytes")
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError) as exc:
        raise IdentityError("bad signature") from exc


@dataclass(frozen=True)
class Identity:
    """An Ed25519 keypair and the XorName derived from it."""

    signing_key: nacl.signing.SigningKey = field(repr=False)
    public_key: bytes
    name: bytes

    @classmethod
    def generate(cls) -> Identity:
        """A fresh random identity."""
        return cls.from_seed(nacl.signing.SigningKey.generate().encode())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Rebuild an identity from its 32-byte secret seed."""
        if len(seed) != SEED_SIZE:
            raise IdentityError(f"seed must be {SEED_SIZE} bytes, got {len(seed)}")
        key = nacl.signing.SigningKey(seed)
        public = bytes(key.verify_key)
        return cls(signing_key=key, public_key=public, name=xor_name(public))

    def seed(self) -> bytes:
        """The 32-byte secret seed (persist it with care)."""
        return bytes(self.signing_key)

    def sign(self, message: bytes) -> bytes:
        """A detached 64-byte Ed25519 signature over ``message``."""
        return self.signing_key.sign(message).signature

    def x25519_secret(self) -> bytes:
        """The X25519 secret scalar that corresponds to this Ed25519 key (RFC 7748 form)."""
        sk64 = self.signing_key.encode() + self.public_key
        return nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(sk64)

    def x25519_public(self) -> bytes:
        """The X25519 public key birationally equivalent to this Ed25519 key."""
        return x25519_public_of(self.public_key)


def x25519_public_of(public_key: bytes) -> bytes:
    """Map an Ed25519 public key to X25519; rejects small-order or malformed points."""
    try:
        return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(public_key)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError, ValueError) as exc:
        raise IdentityError("public key is not a valid Ed25519 point") from exc
