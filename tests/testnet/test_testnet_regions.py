"""Region matrices become impairment keyed by the peer's region: groups plus one rule per
region on every node, whose per-direction figures add up to the configured round trip."""

from __future__ import annotations

import math
from typing import Any

import pytest

from node.transport.impair import MAX_RULES, Direction, Impairment, ImpairmentError, LinkRule
from testnet.regions import link_rule, region_plan, region_rules, rules_for_region
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


def test_no_matrix_no_calls() -> None:
    assert region_plan(spec_from_dict({"nodes": 4}), _infos(4)) == {}
    assert region_rules(spec_from_dict({"nodes": 4}), _infos(4)) == []


def test_each_end_gets_a_quarter_of_the_round_trip_and_the_square_root_of_delivery() -> None:
    rule = link_rule(80.0, 0.02)
    assert rule["delay"] == pytest.approx(0.02)
    assert (1 - rule["loss"]) ** 2 == pytest.approx(1 - 0.02)
    assert link_rule(0.0, 0.0) == {}
    assert link_rule(0.0, 1.0) == {"loss": 1.0}
    LinkRule.from_dict(link_rule(600_000.0, 1.0))  # the spec's extremes are valid rules


def test_plan_is_one_call_per_node_with_groups_and_rules() -> None:
    plan = region_plan(SPEC, _infos(3))
    us_rule = {"group:us": link_rule(80.0, 0.02)}
    assert plan == {
        0: {"assign": {"us": [["127.0.0.1", 5002]]}, "rules": us_rule},
        1: {"assign": {"us": [["127.0.0.1", 5002]]}, "rules": us_rule},
        2: {
            "assign": {"eu": [["127.0.0.1", 5000], ["127.0.0.1", 5001]]},
            "rules": {"group:eu": link_rule(80.0, 0.02)},
        },
    }
    assert rules_for_region(SPEC, "eu") == us_rule  # eu-eu has no figure: no eu group on eu


def test_a_new_node_gets_its_plan_and_the_others_only_its_address() -> None:
    plan = region_plan(SPEC, _infos(3), only=[2])
    assert plan[2]["rules"] == {"group:eu": link_rule(80.0, 0.02)}
    assert plan[0] == plan[1] == {"assign": {"us": [["127.0.0.1", 5002]]}}
    plan = region_plan(SPEC, _infos(3), only=[1])
    assert plan[1]["assign"] == {"us": [["127.0.0.1", 5002]]}
    assert 0 not in plan  # eu-eu has no figure, so node 0 needs nothing about node 1
    assert plan[2] == {"assign": {"eu": [["127.0.0.1", 5001]]}}


def test_plan_scales_with_nodes_not_pairs() -> None:
    names = ("sgp", "sfo", "ams", "nyc")
    spec = spec_from_dict(
        {
            "regions": [
                {"name": r, "nodes": 45, "latency_ms": dict.fromkeys(names, 9)} for r in names
            ]
        }
    )
    plan = region_plan(spec, _infos(180))
    assert len(plan) == 180  # admin calls, one per node
    assert len(region_rules(spec, _infos(180))) == 16_110  # the old plan: one per node pair
    assert all(len(body["rules"]) == 4 for body in plan.values())
    assert all(sum(len(a) for a in body["assign"].values()) == 179 for body in plan.values())


def _install(spec: Any, infos: dict[int, NodeInfo]) -> dict[int, Impairment]:
    """Each node's impairment layer, configured exactly as the admin route would."""
    layers = {}
    for i, body in region_plan(spec, infos).items():
        imp = Impairment(seed=i)
        assign = {g: [tuple(a) for a in addrs] for g, addrs in body["assign"].items()}
        rules = {s: LinkRule.from_dict(r) for s, r in body["rules"].items()}
        imp.update(assign, rules)
        layers[i] = imp
    return layers


def test_both_ends_together_see_the_configured_round_trip_and_loss() -> None:
    spec = spec_from_dict(
        {
            "regions": [
                {"name": "a", "nodes": 1, "latency_ms": {"b": 120}, "loss": {"b": 0.3}},
                {"name": "b", "nodes": 1},
            ]
        }
    )
    infos = _infos(2)
    layers = _install(spec, infos)
    a, b = infos[0].addr, infos[1].addr

    def one_way(src: int, dst: int, now: float) -> float | None:
        """Push through src's egress then dst's ingress; the arrival time or None (lost)."""
        layers[src].push(Direction.EGRESS, b"x", infos[dst].addr, now=now)
        out = layers[src].pop_due_timed(now=now + 10)
        if not out:
            return None
        layers[dst].push(Direction.INGRESS, b"x", infos[src].addr, now=out[0][0])
        back = layers[dst].pop_due_timed(now=now + 10)
        return back[0][0] if back else None

    delivered, trips = 0, 4000
    rtts = []
    for k in range(trips):
        go = one_way(0, 1, float(k))
        if go is None:
            continue
        delivered += 1
        back = one_way(1, 0, go)
        if back is not None:
            rtts.append(back - k)
    assert delivered / trips == pytest.approx(1 - 0.3, abs=0.03)  # per direction
    assert len(rtts) / trips == pytest.approx(0.7**2, abs=0.03)  # a ping needs both ways
    assert all(math.isclose(r, 0.120) for r in rtts)
    assert layers[0].group_of(b) == "b" and layers[1].group_of(a) == "a"


def test_bulk_update_is_all_or_nothing() -> None:
    imp = Impairment()
    rule = LinkRule(delay=0.01)
    with pytest.raises(ImpairmentError):
        imp.update({"eu": [("127.0.0.1", 1), ("127.0.0.1", 70000)]}, {"group:eu": rule})
    with pytest.raises(ImpairmentError):
        imp.update({"eu": [("127.0.0.1", 1)]}, {"group:eu": rule, "nope": rule})
    with pytest.raises(ImpairmentError):
        imp.update({"bad name!": [("127.0.0.1", 1)]})
    assert imp.groups() == {} and imp.rules() == {}
    many = {f"group:g{i}": rule for i in range(MAX_RULES + 1)}
    with pytest.raises(ImpairmentError, match="too many rules"):
        imp.update(rules=many)
    assert imp.rules() == {}
    imp.update({"eu": [("127.0.0.1", 1)]}, {"group:eu": rule})
    imp.update({"us": [("127.0.0.1", 1)]}, {"group:eu": None})  # reassign, remove a rule
    assert imp.groups() == {"us": [("127.0.0.1", 1)]} and imp.rules() == {}


def test_legacy_pair_plan_still_halves_the_round_trip() -> None:
    rules = region_rules(SPEC, _infos(3))
    assert rules == [
        (0, 2, "addr:127.0.0.1:5002", {"delay": 0.04, "loss": 0.02}),
        (1, 2, "addr:127.0.0.1:5002", {"delay": 0.04, "loss": 0.02}),
    ]
