"""Fixtures every Docker test module shares: the daemon's client and the node image."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dockerenv import require_docker


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from testnet.image import ImageError, docker_client

    try:
        client = docker_client()
    except ImageError as exc:
        require_docker(str(exc))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def image(client: Any) -> str:
    """The node image's id (a cache hit when the source has not changed)."""
    from testnet.image import build_image

    return build_image()
