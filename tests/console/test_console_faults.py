"""The fault log and the pure plans behind faults and heals (console/faults.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console.faults import (
    FaultLog,
    OperatorError,
    RuleUndo,
    churn_rate,
    compose,
    entry,
    impair_extra,
    impair_pairs,
    link_plan,
    outstanding,
    partition_pairs,
    restore_plan,
    same_rule,
)
from node.transport.impair import LinkRule
from testnet.state import NodeInfo

PERFECT = LinkRule().to_dict()


def info(i: int) -> NodeInfo:
    return NodeInfo(bytes([i]) * 32, bytes([100 + i]) * 32, ("127.0.0.1", 4000 + i),
                    ("127.0.0.1", 5000 + i), 10 + i, "r", "t")  # fmt: skip


def test_log_round_trip_ids_and_torn_last_line(tmp_path: Path) -> None:
    log = FaultLog(tmp_path / "faults.jsonl")
    assert log.read() == []
    undo = RuleUndo(1, "addr:127.0.0.1:4002", None)
    first = log.append([entry("kill", [3], True, "killed"), entry("pause", [4], True, "paused")])
    second = log.append([entry("impair", [1], True, "x", region="eu", undo=[undo])])
    assert [f.id for f in first + second] == [1, 2, 3]
    assert log.read() == first + second
    assert oct((tmp_path / "faults.jsonl").stat().st_mode & 0o777) == "0o600"
    with (tmp_path / "faults.jsonl").open("a") as f:
        f.write('{"id": 4, "kind": "ki')  # a crash mid-append
    assert [f.id for f in log.read()] == [1, 2, 3]


def test_damaged_line_in_the_middle_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "faults.jsonl"
    good = json.dumps(entry("kill", [1], True, "killed").to_dict() | {"id": 1, "at": 1.0})
    path.write_text(f"{good}\nnot json\n{good}\n")
    with pytest.raises(OperatorError, match="line 2 is damaged"):
        FaultLog(path).read()


def test_outstanding_replays_process_faults_and_heals(tmp_path: Path) -> None:
    log = FaultLog(tmp_path / "f.jsonl")
    old = {"delay": 0.01}
    log.append(
        [
            entry("kill", [1], True, "killed"),
            entry("kill", [2], False, "was not running"),  # failed: nothing in force
            entry("pause", [3], True, "paused"),
            entry("pause", [4], True, "paused"),
            entry("kill", [4], True, "killed"),  # a paused node killed is down, not paused
            entry("impair", [5], True, "a", undo=[RuleUndo(5, "addr:x:1", None)]),
            entry("impair", [5], True, "b", undo=[RuleUndo(5, "addr:x:1", {"delay": 0.2})]),
            entry("partition", [6], True, "c", undo=[RuleUndo(6, "addr:y:2", old)]),
            entry("restart", [1], True, "ready"),
        ]
    )
    force = outstanding(log.read())
    assert force.down == {4: 5}
    assert force.paused == {3: 3}
    # stacked faults on one link heal to the rule before the first of them
    assert force.rules == {(5, "addr:x:1"): (6, None), (6, "addr:y:2"): (8, old)}
    assert restore_plan(force.rules) == {5: {"addr:x:1": None}, 6: {"addr:y:2": old}}
    log.append([entry("heal", [6], True, "h", undo=[RuleUndo(6, "addr:y:2", old)])])
    log.append([entry("resume", [3], True, "resumed"), entry("restart", [4], True, "ok")])
    force = outstanding(log.read())
    assert (force.down, force.paused) == ({}, {})
    assert force.rules == {(5, "addr:x:1"): (6, None)}
    assert not force.empty


def test_churn_rate_counts_node_faults_in_the_last_minute(tmp_path: Path) -> None:
    log = FaultLog(tmp_path / "f.jsonl")
    faults = log.append([entry("kill", [1], True, ""), entry("restart", [1], True, "")])
    now = faults[0].at
    assert churn_rate(faults, now + 1) == 2.0
    assert churn_rate(faults, now + 61) == 0.0


def test_compose_adds_delays_combines_losses_and_keeps_blackhole() -> None:
    rule = compose({"delay": 0.01, "loss": 0.1}, {"delay": 0.005, "loss": 0.1})
    assert rule["delay"] == pytest.approx(0.015)
    assert rule["loss"] == pytest.approx(0.19)
    assert compose(None, {"blackhole": True})["blackhole"] is True
    assert compose({"blackhole": True}, {"delay": 1.0})["blackhole"] is True
    assert same_rule(compose(None, {}), PERFECT)
    assert not same_rule(None, PERFECT) and same_rule(None, None)


def test_impair_extra_validates_and_splits_the_round_trip() -> None:
    assert impair_extra(40, None) == {"delay": 0.01}  # 40 ms RTT = 4 delays of 10 ms
    assert impair_extra(None, 0.19)["loss"] == pytest.approx(0.1)  # 1 - sqrt(0.81)
    for bad, match in (
        ((None, None), "needs latency_ms"),
        ((-1, None), "latency_ms"),
        ((None, 1.0), "loss"),
        (("10", None), "number"),
        ((True, None), "number"),
    ):
        with pytest.raises(OperatorError, match=match):
            impair_extra(*bad)  # type: ignore[arg-type]


def test_link_plans_cover_both_ends_and_record_what_they_replace() -> None:
    assert partition_pairs([0], [1, 2]) == {(0, 1), (0, 2), (1, 0), (2, 0)}
    assert impair_pairs([1], [0, 1, 2]) == {(1, 0), (1, 2), (0, 1), (2, 1)}
    infos = {i: info(i) for i in range(3)}
    regions = {0: "a", 1: "b", 2: "b"}
    group_rule = compose(None, {"delay": 0.02})
    current = {0: {"group:b": group_rule}, 1: {}}  # node 2's rules could not be read
    plan, undo = link_plan({(0, 1), (1, 0), (2, 0)}, infos, regions, current, {"delay": 0.01})
    assert set(plan) == {0, 1}
    assert plan[0]["addr:127.0.0.1:4001"]["delay"] == pytest.approx(0.03)  # on top of group
    assert plan[1]["addr:127.0.0.1:4000"]["delay"] == pytest.approx(0.01)
    assert sorted(undo, key=lambda u: u.node) == [
        RuleUndo(0, "addr:127.0.0.1:4001", None),
        RuleUndo(1, "addr:127.0.0.1:4000", None),
    ]
