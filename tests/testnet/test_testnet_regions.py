"""Region matrices become one impairment rule per node pair, on the lower index."""

from __future__ import annotations

from node.transport.impair import LinkRule
from testnet.regions import region_rules
from testnet.spec import spec_from_dict
from testnet.state import NodeInfo


def _infos(count: int) -> dict[int, NodeInfo]:
    return {
        i: NodeInfo(
            bytes([i]) * 32, bytes(32), ("127.0.0.1", 5000 + i), ("127.0.0.1", 6000), 1, "", ""
        )
        for i in range(count)
    }


SPEC = spec_from_dict(
    {
        "regions": [
            {"name": "eu", "nodes": 2, "latency_ms": {"us": 80}, "loss": {"us": 0.02}},
            {"name": "us", "nodes": 1},
        ]
    }
)


def test_no_matrix_no_rules() -> None:
    assert region_rules(spec_from_dict({"nodes": 4}), _infos(4)) == []


def test_each_pair_once_with_half_the_round_trip_each_way() -> None:
    rules = region_rules(SPEC, _infos(3))
    assert rules == [
        (0, 2, "addr:127.0.0.1:5002", {"delay": 0.04, "loss": 0.02}),
        (1, 2, "addr:127.0.0.1:5002", {"delay": 0.04, "loss": 0.02}),
    ]
    for _, _, _, rule in rules:
        LinkRule.from_dict(rule)  # what the admin API will accept


def test_only_ready_nodes_get_rules() -> None:
    infos = _infos(3)
    del infos[2]
    assert region_rules(SPEC, infos) == []
