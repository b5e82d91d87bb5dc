"""The XOR metric of Kademlia (Maymounkov & Mazieres 2002, section 2.1).

Names are 32-byte strings (BLAKE3 digests).  ``distance(a, b) = a XOR b`` read as a
big-endian 256-bit integer.  It is a metric: d(a, a) = 0, d(a, b) > 0 for a != b,
d(a, b) = d(b, a), d(a, c) <= d(a, b) + d(b, c); and it is unidirectional: for any a
and distance D there is exactly one b with d(a, b) = D.
"""

from __future__ import annotations

NAME_BITS = 256
NAME_BYTES = NAME_BITS // 8


class XorNameError(ValueError):
    """A value that should be a 32-byte name is not."""


def _check(name: bytes) -> int:
    if len(name) != NAME_BYTES:
        raise XorNameError(f"a name is {NAME_BYTES} bytes, got {len(name)}")
    return int.from_bytes(name, "big")


def distance(a: bytes, b: bytes) -> int:
    """XOR distance between two names, as a non-negative integer."""
    return _check(a) ^ _check(b)


def common_prefix_len(a: bytes, b: bytes) -> int:
    """Number of leading bits ``a`` and ``b`` share (256 when equal)."""
    return NAME_BITS - distance(a, b).bit_length()


def bucket_index(own: bytes, other: bytes) -> int:
    """The k-bucket that ``other`` belongs in, seen from ``own``.

    Bucket ``i`` holds names at distance in ``[2**i, 2**(i+1))``, so the index is
    ``bit_length(distance) - 1``: 255 for the far half of the space, 0 for the
    single nearest neighbour position.  Raises for ``own == other``.
    """
    d = distance(own, other)
    if d == 0:
        raise XorNameError("a name has no bucket for itself")
    return d.bit_length() - 1


def closest(target: bytes, names: list[bytes], count: int) -> list[bytes]:
    """The ``count`` names nearest ``target``, nearest first (ties impossible: names differ)."""
    t = _check(target)
    return sorted(names, key=lambda n: _check(n) ^ t)[:count]


def name_from_int(value: int) -> bytes:
    """The 32-byte name whose big-endian integer is ``value``."""
    if not 0 <= value < 1 << NAME_BITS:
        raise XorNameError("value out of the 256-bit name space")
    return value.to_bytes(NAME_BYTES, "big")
