"""Churn schedules are pure and seeded; the runner applies them in order and keeps going."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testnet.churn import KILL, RESTART, ChurnAction, run_churn, schedule
from testnet.spec import ChurnSpec


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    spec = ChurnSpec(mode="random", interval_s=3.0, kills_per_event=2, events=20)
    a = schedule(spec, 30, seed=11)
    assert a == schedule(spec, 30, seed=11)
    assert a != schedule(spec, 30, seed=12)
    assert len([x for x in a if x.action == KILL]) == 40


def test_fixed_mode_kills_on_the_interval_and_restarts_after() -> None:
    spec = ChurnSpec(
        mode="fixed", interval_s=10.0, kills_per_event=1, restart_after_s=4.0, events=3
    )
    plan = schedule(spec, 8, seed=1)
    kills = [a for a in plan if a.action == KILL]
    restarts = [a for a in plan if a.action == RESTART]
    assert [a.at for a in kills] == [10.0, 20.0, 30.0]
    assert [(a.at, a.index) for a in restarts] == [(k.at + 4.0, k.index) for k in kills]
    assert plan == sorted(plan, key=lambda a: a.at)


def test_duration_bounds_kills_but_pending_restarts_still_come() -> None:
    spec = ChurnSpec(interval_s=5.0, restart_after_s=100.0, duration_s=12.0)
    plan = schedule(spec, 6, seed=3)
    assert [a.at for a in plan if a.action == KILL] == [5.0, 10.0]
    assert [a.at for a in plan if a.action == RESTART] == [105.0, 110.0]


def test_no_restart_means_nodes_stay_down_and_min_alive_holds() -> None:
    spec = ChurnSpec(interval_s=1.0, kills_per_event=2, restart_after_s=None, events=50)
    plan = schedule(spec, 9, seed=5, min_alive=4)
    assert all(a.action == KILL for a in plan)
    assert len(plan) == 5  # 9 nodes, never fewer than 4 up
    assert len({a.index for a in plan}) == 5


def test_schedule_needs_an_end() -> None:
    with pytest.raises(ValueError, match="events or duration_s"):
        schedule(ChurnSpec(), 5, seed=0)


@settings(max_examples=60, deadline=None)
@given(
    nodes=st.integers(1, 12),
    kills=st.integers(1, 4),
    restart=st.none() | st.floats(0.0, 30.0),
    mode=st.sampled_from(["fixed", "random"]),
    min_alive=st.integers(0, 5),
    seed=st.integers(0, 2**32),
)
def test_replaying_a_schedule_never_breaks_its_invariants(
    nodes: int, kills: int, restart: float | None, mode: str, min_alive: int, seed: int
) -> None:
    spec = ChurnSpec(mode, 2.0, kills, restart, None, 15, None)
    down: set[int] = set()
    for action in schedule(spec, nodes, seed=seed, min_alive=min_alive):
        assert 0 <= action.index < nodes
        if action.action == KILL:
            assert action.index not in down, "a node is killed while it is down"
            down.add(action.index)
            assert nodes - len(down) >= min(min_alive, nodes)
        else:
            assert action.index in down, "a node is restarted while it is up"
            down.discard(action.index)
    if restart is not None:
        assert not down, "a finished schedule with restarts leaves everyone up"


@dataclass(frozen=True)
class Result:
    ok: bool
    detail: str


class FakeBackend:
    """Records calls; node 3 refuses to restart and node 4's kill raises."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, str, int]] = []

    def kill(self, index: int) -> Result:
        self.calls.append((self.clock.now, KILL, index))
        if index == 4:
            raise OSError("no such process")
        return Result(True, "killed")

    def restart(self, index: int) -> Result:
        self.calls.append((self.clock.now, RESTART, index))
        self.clock.now += 2.5  # a restart takes time: later actions run late
        return Result(index != 3, "ready" if index != 3 else "not ready")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_runner_applies_actions_in_time_order_and_keeps_going() -> None:
    clock = FakeClock()
    backend = FakeBackend(clock)
    plan = [
        ChurnAction(2.0, RESTART, 3),
        ChurnAction(1.0, KILL, 3),
        ChurnAction(2.0, KILL, 4),
        ChurnAction(3.0, KILL, 5),
    ]
    seen: list[str] = []
    outcomes = run_churn(
        backend, plan, clock=clock, sleep=clock.sleep, on_outcome=lambda o: seen.append(o.detail)
    )
    # at t=2 the kill goes before the restart (a restart may be due at its kill's instant)
    assert [(c[1], c[2]) for c in backend.calls] == [
        (KILL, 3),
        (KILL, 4),
        (RESTART, 3),
        (KILL, 5),
    ]
    assert backend.calls[0][0] == 101.0
    assert [o.ok for o in outcomes] == [True, False, False, True]
    assert outcomes[1].detail == "OSError: no such process"  # raised, reported, run went on
    assert outcomes[2].detail == "not ready"
    assert outcomes[2].late_s == 0.0
    assert outcomes[3].late_s == pytest.approx(1.5)  # the restart before it took 2.5 s
    assert clock.sleeps == [1.0, 1.0]
    assert seen == [o.detail for o in outcomes]
