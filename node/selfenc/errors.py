"""The one error self-encryption raises for every bad input (DESIGN.md house rule 4).

Malformed or forged DataMaps, tampered or missing chunks, inputs too small to encrypt and
streams that end early all raise :class:`SelfEncryptionError`. It subclasses ``ValueError``
so that boundary code which already maps ``ValueError`` to a clean protocol error keeps working.
"""

from __future__ import annotations

__all__ = ["SelfEncryptionError"]


class SelfEncryptionError(ValueError):
    """Self-encryption or decryption failed; the message says which input and why."""
