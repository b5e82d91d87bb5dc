"""Churn: a seeded schedule of crashes and restarts, and a runner that applies it.

:func:`schedule` is pure: the same :class:`ChurnSpec`, node count and seed give the same
list of :class:`ChurnAction`.  Events come every ``interval_s`` (``fixed``) or after
exponential gaps of mean ``interval_s`` (``random``: a Poisson process).  Each event SIGKILLs
``kills_per_event`` nodes drawn from those up at that moment, never leaving fewer than
``min_alive`` up; each victim restarts ``restart_after_s`` later (with its identity and
chunks) unless that is ``None``.  Restarts due after the end are still scheduled, so a
finished schedule leaves the network whole again.

:func:`run_churn` applies a schedule to a :class:`ChurnTarget` (the local backend, or any
later backend) in time order.  It reports one :class:`ChurnOutcome` per action, keeps going
past a failed one, and takes its clock and sleep as arguments so tests need no real time.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from testnet.spec import ChurnSpec

KILL = "kill"
RESTART = "restart"
_ORDER = {KILL: 0, RESTART: 1}  # at one instant a kill goes first (restart_after_s may be 0)


@dataclass(frozen=True)
class ChurnAction:
    """Do ``action`` to node ``index`` at ``at`` seconds after the start."""

    at: float
    action: str
    index: int


def _sort_key(a: ChurnAction) -> tuple[float, int, int]:
    return (a.at, _ORDER[a.action], a.index)


def schedule(spec: ChurnSpec, nodes: int, *, seed: int, min_alive: int = 1) -> list[ChurnAction]:
    """Pure: the churn actions for a testnet of ``nodes`` nodes (see the module docstring)."""
    if nodes < 1 or min_alive < 0:
        raise ValueError("nodes must be >= 1 and min_alive >= 0")
    if spec.events is None and spec.duration_s is None:
        raise ValueError("a churn schedule needs events or duration_s to end")
    rng = random.Random(seed)
    back_at: dict[int, float] = {}  # index -> when it is up again (inf: never)
    actions: list[ChurnAction] = []
    now, events = 0.0, 0
    while spec.events is None or events < spec.events:
        gap = spec.interval_s if spec.mode == "fixed" else rng.expovariate(1.0 / spec.interval_s)
        now += gap
        if spec.duration_s is not None and now > spec.duration_s:
            break
        events += 1
        up = [i for i in range(nodes) if back_at.get(i, 0.0) < now]
        count = min(spec.kills_per_event, len(up) - min_alive)
        if count <= 0:
            if not any(now <= t < math.inf for t in back_at.values()):
                break  # nobody down will come back: no later event can kill anyone
            continue
        for index in sorted(rng.sample(up, count)):
            actions.append(ChurnAction(now, KILL, index))
            if spec.restart_after_s is None:
                back_at[index] = math.inf
            else:
                back_at[index] = now + spec.restart_after_s
                actions.append(ChurnAction(now + spec.restart_after_s, RESTART, index))
    return sorted(actions, key=_sort_key)


class Outcome(Protocol):
    """What a backend returns for one node action (e.g. :class:`testnet.local.NodeResult`)."""

    @property
    def ok(self) -> bool: ...

    @property
    def detail(self) -> str: ...


class ChurnTarget(Protocol):
    """The backend operations churn needs."""

    def kill(self, index: int) -> Outcome: ...

    def restart(self, index: int) -> Outcome: ...


@dataclass(frozen=True)
class ChurnOutcome:
    """One applied action: did it work, and how late against the schedule was it started."""

    action: ChurnAction
    ok: bool
    detail: str
    late_s: float


def run_churn(
    target: ChurnTarget,
    actions: list[ChurnAction],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_outcome: Callable[[ChurnOutcome], None] | None = None,
) -> list[ChurnOutcome]:
    """Apply ``actions`` in time order; a failed action is reported and the run goes on."""
    start = clock()
    outcomes = []
    for action in sorted(actions, key=_sort_key):
        wait = start + action.at - clock()
        if wait > 0:
            sleep(wait)
        late = max(0.0, clock() - start - action.at)
        do = target.kill if action.action == KILL else target.restart
        try:
            result = do(action.index)
            outcome = ChurnOutcome(action, result.ok, result.detail, late)
        except Exception as exc:  # one node's failure must not end the run (house style 11)
            outcome = ChurnOutcome(action, False, f"{type(exc).__name__}: {exc}", late)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes
