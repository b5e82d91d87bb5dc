"""What the Docker tests do when something they need is missing."""

from __future__ import annotations

import os

import pytest


def require_docker(reason: str) -> None:
    """Fail under TROON_REQUIRE_DOCKER=1 (CI), else skip, saying why."""
    if os.environ.get("TROON_REQUIRE_DOCKER") == "1":
        pytest.fail(f"TROON_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(f"{reason}; set TROON_REQUIRE_DOCKER=1 to make this fail")
