"""The obfuscation step: XOR a buffer in place with a 52-byte pad repeated (SELFENC.md).

Two implementations of one function, checked against each other and the definition in the
tests. NumPy's (``numpy`` installed) runs at memory speed and releases the GIL, so it scales
across worker threads; the pure-Python fallback works on big-int blocks (about 0.5 GB/s on one
core, holding the GIL). Decryption throughput depends on this step more than on any other.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["xor_pad_into", "xor_pad_into_numpy", "xor_pad_into_python"]

np: ModuleType | None
try:
    import numpy as np
except ImportError:  # pragma: no cover - exercised where numpy is absent
    np = None

# Whole numbers of pads per block: small enough to stay in cache, large enough to amortize.
_PYTHON_PADS_PER_BLOCK = 315
_NUMPY_PADS_PER_ROW = 64


def xor_pad_into_python(buffer: bytearray, pad: bytes) -> None:
    """XOR ``pad``, repeated, into ``buffer`` using Python big ints, one block at a time."""
    block_size = len(pad) * _PYTHON_PADS_PER_BLOCK
    block_pad = int.from_bytes(pad * _PYTHON_PADS_PER_BLOCK, "little")
    size = len(buffer)
    full = size - size % block_size
    with memoryview(buffer) as view:
        for start in range(0, full, block_size):
            block = int.from_bytes(view[start : start + block_size], "little") ^ block_pad
            view[start : start + block_size] = block.to_bytes(block_size, "little")
        tail = size - full
        if tail:
            block = int.from_bytes(view[full:], "little") ^ (block_pad & ((1 << (8 * tail)) - 1))
            view[full:] = block.to_bytes(tail, "little")


def xor_pad_into_numpy(buffer: bytearray, pad: bytes) -> None:
    """XOR ``pad``, repeated, into ``buffer`` with one broadcast NumPy operation."""
    if np is None:
        raise RuntimeError("numpy is not installed")
    row = np.frombuffer(pad * _NUMPY_PADS_PER_ROW, dtype=np.uint8)
    data = np.frombuffer(buffer, dtype=np.uint8)
    full = len(data) - len(data) % len(row)
    body = data[:full].reshape(-1, len(row))
    np.bitwise_xor(body, row, out=body)
    tail = data[full:]
    np.bitwise_xor(tail, row[: len(tail)], out=tail)


xor_pad_into = xor_pad_into_python if np is None else xor_pad_into_numpy
