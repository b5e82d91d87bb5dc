"""Routing convergence, decided by a pure function over names."""

from __future__ import annotations

from typing import Any

from node.routing.xorname import name_from_int
from testnet.converge import assess, routing_health, table_names, want_for
from testnet.fleet import Failed
from testnet.state import NodeInfo


def n(value: int) -> bytes:
    return name_from_int(value)


def test_want_is_eight_or_everyone_else() -> None:
    assert [want_for(x) for x in (0, 1, 2, 9, 60)] == [0, 0, 1, 8, 8]


def test_missing_lists_the_nearest_peers_absent_from_the_table() -> None:
    own = n(0)
    everyone = [own, *(n(v) for v in (1, 2, 3, 4, 100, 200))]
    assert routing_health(own, [n(1), n(2), n(3), n(4)], everyone, 4) == []
    assert routing_health(own, [n(1), n(3), n(200)], everyone, 4) == [n(2), n(4)]
    # far names in the table do not make up for near ones missing; own name never counts
    assert routing_health(own, [n(100), n(200), own], everyone, 2) == [n(1), n(2)]


def test_missing_is_nearest_first_and_capped_by_the_population() -> None:
    own = n(8)
    everyone = [own, n(9), n(12), n(0)]
    assert routing_health(own, [], everyone, 8) == [n(9), n(12), n(0)]


def _info(value: int, port: int) -> NodeInfo:
    return NodeInfo(n(value), bytes(32), ("127.0.0.1", port), ("127.0.0.1", port + 1), 1, "", "")


def _routing(*values: int) -> dict[str, Any]:
    return {"buckets": [{"index": 0, "entries": [{"name": n(v).hex()} for v in values]}]}


def test_assess_reports_every_node() -> None:
    infos = {0: _info(1, 1000), 1: _info(2, 2000), 2: _info(3, 3000)}
    answers = {0: _routing(2, 3), 1: _routing(1), 2: Failed("timed out")}
    report = assess(infos, answers)
    assert report.want == 2
    by = {r.index: r for r in report.nodes}
    assert by[0].ok and by[0].table_size == 2
    assert not by[1].ok and by[1].missing == (n(3),)
    assert by[2].error == "timed out"
    assert not report.converged and [r.index for r in report.lagging] == [1, 2]


def test_table_names_rejects_malformed_answers() -> None:
    assert table_names(_routing(5)) == [n(5)]
    for bad in ({}, {"buckets": [{"entries": [{"name": "zz"}]}]}, [1]):
        try:
            table_names(bad)
        except ValueError as exc:
            assert "malformed /routing" in str(exc)
        else:
            raise AssertionError("no error")
