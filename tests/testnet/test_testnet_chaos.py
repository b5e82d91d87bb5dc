"""Fault schedules (testnet/chaos.py) and the soak checker (testnet/checker.py): pure."""

from __future__ import annotations

import asyncio

import pytest

from testnet.chaos import compile_schedule, parse_faults
from testnet.checker import (
    FINAL,
    GET,
    PUT,
    RECORD_GET,
    RECORD_PUT,
    TRANSFER,
    Op,
    check,
    live,
    op_from_dict,
)
from testnet.errors import SpecError

REGIONS = ["eu", "us"]
SCHEDULE = [
    {"kind": "churn", "mode": "fixed", "interval_s": 2, "kills": 1, "restart_after_s": 5},
    {"kind": "churn", "mode": "random", "interval_s": 10, "kills": 2, "from_s": 100},
    {"kind": "crash", "at_s": 30, "count": 3, "restart_after_s": 10},
    {"kind": "crash", "at_s": 40, "holders_of_one_chunk": 3},
    {"kind": "pause", "at_s": 50, "count": 2, "for_s": 5},
    {"kind": "wipe", "at_s": 60},
    {"kind": "partition", "at_s": 70, "region": "us", "for_s": 30},
    {"kind": "latency", "at_s": 110, "ms": 400, "for_s": 20},
    {"kind": "loss", "at_s": 140, "rate": 0.1, "for_s": 20, "region": "eu"},
]


def test_the_same_schedule_and_seed_replay_the_same_faults() -> None:
    faults = parse_faults(SCHEDULE, REGIONS)
    one = compile_schedule(faults, nodes=60, duration_s=180, seed=9)
    two = compile_schedule(faults, nodes=60, duration_s=180, seed=9)
    other = compile_schedule(faults, nodes=60, duration_s=180, seed=10)
    assert [a.to_dict() for a in one] == [a.to_dict() for a in two]
    assert [a.to_dict() for a in one] != [a.to_dict() for a in other]
    assert [a.at for a in one] == sorted(a.at for a in one)
    actions = {a.action for a in one}
    assert actions >= {"crash", "restart", "pause", "resume", "wipe", "partition", "heal"}
    assert actions >= {"latency", "loss", "clear"}
    assert any(a.resolve == "holders_of_one_chunk:3" for a in one)
    fixed = [a for a in one if a.fault == 0 and a.action == "crash"]
    assert len(fixed) == 90 and all(len(a.nodes) == 1 for a in fixed)  # every 2 s for 180 s


def test_victims_are_drawn_from_live_nodes_and_min_alive_holds() -> None:
    faults = parse_faults(
        [{"kind": "churn", "interval_s": 0.5, "kills": 3, "restart_after_s": 20}], REGIONS
    )
    actions = compile_schedule(faults, nodes=10, duration_s=60, seed=1, min_alive=4)
    down: dict[int, float] = {}
    for a in actions:
        if a.action == "crash":
            for n in a.nodes:
                assert down.get(n, -1) <= a.at, "a node was killed while down"
                down[n] = a.at + 20
            assert sum(1 for t in down.values() if t > a.at) <= 6
        elif a.action == "restart":
            assert all(down[n] == a.at for n in a.nodes)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"kind": "meteor"}, r"faults\[0\].kind: must be one of"),
        ({"kind": "crash"}, r"faults\[0\].at_s: required"),
        ({"kind": "pause", "at_s": 1, "for_s": -1}, r"faults\[0\].for_s: must be in"),
        ({"kind": "partition", "at_s": 1, "for_s": 2, "region": "mars"}, "unknown region"),
        ({"kind": "loss", "at_s": 1, "for_s": 2, "rate": 1.5}, r"faults\[0\].rate"),
        ({"kind": "crash", "at_s": 1, "colour": "red"}, r"faults\[0\].colour: unknown field"),
        ({"kind": "churn", "interval_s": 1, "mode": "chaotic"}, r"faults\[0\].mode"),
        ({"kind": "crash", "at_s": True}, "must be a number"),
        ("crash", r"faults\[0\]: must be a mapping"),
    ],
)
def test_bad_schedules_name_the_field(raw: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_faults([raw], REGIONS)
    with pytest.raises(SpecError, match="must be a list"):
        parse_faults({"kind": "crash"}, REGIONS)


def test_checker_finds_lost_flapping_and_never_read_items() -> None:
    ops = [
        Op(PUT, "a", 0, 1, True),
        Op(GET, "a", 2, 3, True),
        Op(FINAL, "a", 50, 51, True),
        Op(PUT, "b", 0, 1, True),
        Op(GET, "b", 5, 6, False),  # unreadable for a while
        Op(GET, "b", 9, 10, True),
        Op(FINAL, "b", 50, 51, True),
        Op(PUT, "c", 0, 2, True),
        Op(FINAL, "c", 50, 51, False),  # lost
        Op(PUT, "d", 0, 2, True),  # never read at the end
        Op(PUT, "e", 0, 2, False),  # not acknowledged: no promise
    ]
    report = check(ops, ledger_balanced=True, repair_seconds=12.0, repair_bound_s=60)
    assert report.acked == 4 and report.attempted_puts == 5
    assert [i.key for i in report.lost] == ["c"]
    assert [i.key for i in report.flapping] == ["b"]
    assert [i.key for i in report.never_read] == ["d"]
    assert not report.ok
    good = check(ops[:7], ledger_balanced=True, repair_seconds=12.0)
    assert good.ok and good.summary()["lost"] == 0
    assert not check(ops[:7], ledger_balanced=True, repair_seconds=90.0).ok  # too slow


def test_checker_finds_records_going_backwards_and_double_spends() -> None:
    ops = [
        Op(RECORD_PUT, "r", 0, 1, True, version=1),
        Op(RECORD_PUT, "r", 2, 3, True, version=2),
        Op(RECORD_GET, "r", 4, 5, True, version=2),
        Op(RECORD_GET, "r", 6, 7, True, version=1),  # backwards
        Op(TRANSFER, "w1", 0, 1, True, version=0, detail="t-a"),
        Op(TRANSFER, "w1", 0, 1, True, version=0, detail="t-b"),  # same seq, other transfer
        Op(TRANSFER, "w2", 0, 1, True, version=0, detail="t-c"),
        Op(TRANSFER, "w2", 2, 3, True, version=0, detail="t-c"),  # a retry of the same one
    ]
    report = check(ops, ledger_balanced=True, repair_seconds=1.0)
    assert len(report.record_violations) == 2  # below the acked v2 and below an earlier read
    assert report.double_spends == ("wallet w1 seq 0: two transfers acknowledged",)
    assert not report.ok


def test_the_injector_does_not_let_a_slow_action_hold_up_the_others() -> None:
    """A kill or restart takes seconds; the soak starts each action when it is due and only
    an earlier action on the same node (or lane) holds it back."""
    from testnet.chaos import FaultAction
    from testnet.soak import dispatch

    actions = [
        FaultAction(0.0, "crash", 0, nodes=(1,)),
        FaultAction(0.0, "crash", 1, nodes=(2,)),
        FaultAction(0.0, "restart", 0, nodes=(1,)),
        FaultAction(0.0, "partition", 2, region="us"),
        FaultAction(0.0, "heal", 2, region="us"),
        FaultAction(0.0, "crash", 3, resolve="holders_of_one_chunk:3"),
        FaultAction(0.0, "restart", 3, resolve="crashed_by_fault"),
        FaultAction(99.0, "crash", 4, nodes=(3,)),  # beyond the run: never started
    ]
    events: list[str] = []
    release = asyncio.Event()

    async def run(action: FaultAction, before: set[asyncio.Task[None]]) -> None:
        if before:
            await asyncio.wait(before)
        name = f"{action.action} {list(action.nodes) or action.region or action.resolve}"
        events.append(f"start {name}")
        if (action.action, action.nodes) == ("crash", (1,)):
            await release.wait()  # the slow one
        events.append(f"end {name}")

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(dispatch(actions, run, duration=10.0, now=lambda: 0.0,
                                            stop=stop))  # fmt: skip
        for _ in range(20):
            await asyncio.sleep(0)
        # everything not behind the slow crash of node 1 has run to the end already
        assert "end crash [2]" in events and "end crash [1]" not in events
        assert "start restart [1]" not in events
        assert events.index("start heal us") > events.index("end partition us")
        assert events.index("start restart crashed_by_fault") > events.index(
            "end crash holders_of_one_chunk:3"
        )
        release.set()
        await task
        assert events.index("start restart [1]") > events.index("end crash [1]")
        assert not any("[3]" in e for e in events)

    asyncio.run(main())


def test_the_ledger_audit_counts_a_wallet_only_when_its_holders_all_agree() -> None:
    """Three stale replicas agreeing for a moment once made an audit 8 coins over; a
    wallet's balance now counts only when every ideal holder that has it reports it."""
    from testnet.farming import _agreed

    assert _agreed([50, 50, 50, 50], 4) == 50
    assert _agreed([50, 50, 50], 4) == 50  # the fourth has no replica yet
    assert _agreed([58, 58, 58, 57], 4) is None  # one holder is ahead: not quiet yet
    assert _agreed([50, 50], 4) is None  # too few holders
    assert _agreed([7], 1) == 7  # a one-node testnet


def test_the_live_checker_agrees_with_the_final_one() -> None:
    """The console's live view of a soak (one pass per key) reports what check() reports."""
    ops = [
        Op(PUT, "a", 0, 1, True),
        Op(PUT, "b", 0, 1, True),
        Op(PUT, "c", 0, 1, False),
        Op(GET, "a", 2, 3, False),
        Op(GET, "a", 4, 5, True),  # a readable again
        Op(GET, "b", 2, 3, True),
        Op(GET, "b", 4, 5, False),  # b unreadable now
        Op(TRANSFER, "w", 1, 2, True, version=0, detail="t1"),
        Op(TRANSFER, "w", 3, 4, True, version=0, detail="t2"),  # double spend
        Op(TRANSFER, "w", 5, 6, False),
        Op(RECORD_PUT, "r", 0, 1, True, version=3),
        Op(RECORD_GET, "r", 2, 3, True, version=2),
    ]
    view = live(ops)
    report = check(ops)
    assert (view.acked, view.attempted_puts) == (report.acked, 3) == (2, 3)
    assert view.unreadable_now == ("b",) and view.failed_reads == 2
    assert view.double_spends == report.double_spends and len(view.double_spends) == 1
    assert view.record_violations == report.record_violations != ()
    assert (view.transfers_ok, view.transfers_failed) == (2, 1)
    assert view.lost is None  # no final reads yet
    final = live([*ops, Op(FINAL, "a", 9, 10, True), Op(FINAL, "b", 9, 10, False)])
    assert final.lost == 1 == len(check([*ops, Op(FINAL, "b", 9, 10, False)]).lost)
    assert final.unreadable_now == ()
    assert op_from_dict(ops[-1].to_dict()) == ops[-1]
    with pytest.raises(ValueError):
        op_from_dict({"kind": "put"})
