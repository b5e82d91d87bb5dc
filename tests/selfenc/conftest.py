"""Shared helpers for the self-encryption tests: deterministic inputs and a chunk store."""

from __future__ import annotations

import blake3
import pytest


def pseudo_random(size: int, seed: str = "troon/selfenc/test") -> bytes:
    """Deterministic incompressible bytes (BLAKE3 XOF): the same on every run."""
    return blake3.blake3(seed.encode()).digest(length=size)


class Store(dict[bytes, bytes]):
    """In-memory chunk store that records every put and get."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[bytes] = []
        self.gets: list[bytes] = []

    def put(self, name: bytes, content: bytes) -> None:
        self.puts.append(name)
        self[name] = content

    def get(self, name: bytes) -> bytes:
        self.gets.append(name)
        return self[name]


@pytest.fixture
def store() -> Store:
    return Store()
