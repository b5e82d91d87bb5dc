"""A short run of the fuzzer in bench/fuzz.py over every parser that takes outside input
(the full run is 1M inputs per target; see docs/RELIABILITY.md)."""

from __future__ import annotations

import pytest

from bench.fuzz import TARGETS, run_target

SHORT = {"spec": 400, "handshake": 2000}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_raises_only_its_own_error(name: str) -> None:
    target = TARGETS[name]()
    result = run_target(target, SHORT.get(name, 5000), seed=7)
    assert result.findings == []
    assert result.inputs == SHORT.get(name, 5000)
    if target.allowed:
        assert result.rejected > 0  # the mutations do reach the validation paths
