"""Fault schedules: a YAML list of faults compiled, with a seed, into timed actions (pure).

A schedule (``faults:`` in a soak file, or a Python list) holds entries of these kinds::

    - {kind: churn, mode: fixed, interval_s: 2, kills: 1, restart_after_s: 5, until_s: 600}
    - {kind: churn, mode: random, interval_s: 10, kills: 2}   # Poisson (MaidSafe's 2 modes)
    - {kind: crash, at_s: 30, count: 3, restart_after_s: 10}  # a burst: 3 at once
    - {kind: crash, at_s: 40, holders_of_one_chunk: 3}        # 3 of a chunk's 4 holders
    - {kind: pause, at_s: 50, count: 2, for_s: 5}             # SIGSTOP / docker pause
    - {kind: wipe, at_s: 60, count: 1}                        # restart with the disk wiped
    - {kind: partition, at_s: 70, region: us, for_s: 30}      # a region cut off, then healed
    - {kind: latency, at_s: 110, ms: 400, for_s: 20}          # a spike, all links
    - {kind: loss, at_s: 140, rate: 0.1, for_s: 20, region: eu}

:func:`compile_schedule` turns it into a sorted list of :class:`FaultAction` (each fault and
the action that reverts it) for a testnet of ``nodes`` nodes in ``regions``: the same
schedule and seed always give the same actions, and a run writes both next to its report so
it can be replayed.  Victims are drawn from the nodes up at that moment, never leaving fewer
than ``min_alive``; ``holders_of_one_chunk`` is resolved at run time (it needs the network's
state) and is marked so.  Every error names its field path (``faults[3].for_s: ...``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from testnet.errors import SpecError

KINDS = ("churn", "crash", "pause", "wipe", "partition", "latency", "loss")
REVERTS = {"crash": "restart", "pause": "resume", "partition": "heal", "latency": "clear",
           "loss": "clear"}  # fmt: skip
_FIELDS: dict[str, dict[str, tuple[str, float, float]]] = {
    # field -> (type, low, high); "num" floats, "int" integers, "str" names
    "churn": {
        "mode": ("str", 0, 0),
        "interval_s": ("num", 0.05, 1e6),
        "kills": ("int", 1, 4096),
        "restart_after_s": ("num", 0, 1e6),
        "from_s": ("num", 0, 1e6),
        "until_s": ("num", 0, 1e6),
    },
    "crash": {
        "at_s": ("num", 0, 1e6),
        "count": ("int", 1, 4096),
        "holders_of_one_chunk": ("int", 1, 16),
        "restart_after_s": ("num", 0, 1e6),
    },
    "pause": {"at_s": ("num", 0, 1e6), "count": ("int", 1, 4096), "for_s": ("num", 0.1, 1e6)},
    "wipe": {"at_s": ("num", 0, 1e6), "count": ("int", 1, 4096)},
    "partition": {"at_s": ("num", 0, 1e6), "region": ("str", 0, 0), "for_s": ("num", 0.1, 1e6)},
    "latency": {
        "at_s": ("num", 0, 1e6),
        "ms": ("num", 0, 60_000),
        "for_s": ("num", 0.1, 1e6),
        "region": ("str", 0, 0),
    },
    "loss": {
        "at_s": ("num", 0, 1e6),
        "rate": ("num", 0, 1),
        "for_s": ("num", 0.1, 1e6),
        "region": ("str", 0, 0),
    },
}
_REQUIRED = {
    "churn": ("interval_s",),
    "crash": ("at_s",),
    "pause": ("at_s", "for_s"),
    "wipe": ("at_s",),
    "partition": ("at_s", "region", "for_s"),
    "latency": ("at_s", "ms", "for_s"),
    "loss": ("at_s", "rate", "for_s"),
}


@dataclass(frozen=True)
class Fault:
    """One validated schedule entry."""

    kind: str
    params: tuple[tuple[str, Any], ...]

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)


@dataclass(frozen=True)
class FaultAction:
    """Do ``action`` at ``at`` seconds to ``nodes`` (indices) or ``region`` (a name).

    ``action`` is a fault kind (crash, pause, wipe, partition, latency, loss) or its
    revert (restart, resume, heal, clear).  ``fault`` numbers the schedule entry it came
    from; ``resolve`` marks targets chosen at run time (``holders_of_one_chunk``)."""

    at: float
    action: str
    fault: int
    nodes: tuple[int, ...] = ()
    region: str | None = None
    value: float | None = None
    resolve: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": round(self.at, 3), "action": self.action, "fault": self.fault}
        if self.nodes:
            out["nodes"] = list(self.nodes)
        for key in ("region", "value", "resolve"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass
class _State:
    rng: random.Random
    nodes: int
    min_alive: int
    down_until: dict[int, float] = field(default_factory=dict)

    def up(self, at: float) -> list[int]:
        return [i for i in range(self.nodes) if self.down_until.get(i, -1.0) < at]

    def pick(self, at: float, count: int) -> list[int]:
        up = self.up(at)
        count = min(count, len(up) - self.min_alive)
        return sorted(self.rng.sample(up, count)) if count > 0 else []


def parse_faults(raw: object, regions: Sequence[str], *, path: str = "faults") -> list[Fault]:
    """Validate a YAML fault list; :class:`SpecError` names the bad field's path."""
    if not isinstance(raw, list):
        raise SpecError(f"{path}: must be a list of faults")
    out: list[Fault] = []
    for i, entry in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(entry, dict):
            raise SpecError(f"{where}: must be a mapping with a kind")
        kind = entry.get("kind")
        if kind not in KINDS:
            raise SpecError(f"{where}.kind: must be one of {', '.join(KINDS)}, got {kind!r}")
        allowed = _FIELDS[kind]
        params: dict[str, Any] = {}
        for key, value in entry.items():
            if key == "kind":
                continue
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise SpecError(f"{where}.{key}: unknown field for {kind} (known: {known})")
            params[key] = _value(f"{where}.{key}", value, allowed[key], regions, key)
        for key in _REQUIRED[kind]:
            if key not in params:
                raise SpecError(f"{where}.{key}: required for {kind}")
        if kind == "churn" and params.get("mode", "fixed") not in ("fixed", "random"):
            raise SpecError(f"{where}.mode: must be fixed or random")
        if kind == "crash" and "count" in params and "holders_of_one_chunk" in params:
            raise SpecError(f"{where}: give count or holders_of_one_chunk, not both")
        out.append(Fault(kind, tuple(sorted(params.items()))))
    return out


def _value(
    where: str, value: Any, rule: tuple[str, float, float], regions: Sequence[str], key: str
) -> Any:
    kind, low, high = rule
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise SpecError(f"{where}: must be a name")
        if key == "region" and value not in regions:
            raise SpecError(f"{where}: unknown region {value!r} (regions: {', '.join(regions)})")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{where}: must be a number, got {type(value).__name__}")
    if kind == "int" and not isinstance(value, int):
        raise SpecError(f"{where}: must be an integer")
    if not math.isfinite(value) or not low <= value <= high:
        raise SpecError(f"{where}: must be in {low:g}..{high:g}, got {value}")
    return value


def compile_schedule(
    faults: Sequence[Fault],
    *,
    nodes: int,
    duration_s: float,
    seed: int,
    min_alive: int = 4,
    region_of: Mapping[int, str] | None = None,
) -> list[FaultAction]:
    """Pure: every fault and revert as timed actions (see the module docstring)."""
    state = _State(random.Random(seed), nodes, min(min_alive, nodes))
    actions: list[FaultAction] = []
    # fixed-time faults first, in time order, so churn draws around them deterministically
    timed = sorted(
        (f for f in faults if f.kind != "churn"), key=lambda f: float(f.get("at_s", 0.0))
    )
    numbered = {id(f): n for n, f in enumerate(faults)}
    for fault in timed:
        actions += _one(fault, numbered[id(fault)], state, duration_s)
    for fault in faults:
        if fault.kind == "churn":
            actions += _churn(fault, numbered[id(fault)], state, duration_s)
    order = {"restart": 0, "resume": 0, "crash": 1, "wipe": 1, "pause": 1}
    return sorted(actions, key=lambda a: (a.at, order.get(a.action, 2), a.fault, a.nodes))


def _one(fault: Fault, n: int, state: _State, duration: float) -> list[FaultAction]:
    at = float(fault.get("at_s", 0.0))
    if at > duration:
        return []
    kind = fault.kind
    if kind == "crash":
        holders = fault.get("holders_of_one_chunk")
        restart = fault.get("restart_after_s")
        if holders is not None:
            out = [FaultAction(at, "crash", n, resolve=f"holders_of_one_chunk:{holders}")]
            if restart is not None:
                out.append(FaultAction(at + restart, "restart", n, resolve="crashed_by_fault"))
            return out
        victims = state.pick(at, int(fault.get("count", 1)))
        until = math.inf if restart is None else at + float(restart)
        for v in victims:
            state.down_until[v] = until
        out = [FaultAction(at, "crash", n, tuple(victims))] if victims else []
        if victims and restart is not None:
            out.append(FaultAction(until, "restart", n, tuple(victims)))
        return out
    if kind == "pause":
        victims = state.pick(at, int(fault.get("count", 1)))
        end = at + float(fault.get("for_s"))
        for v in victims:
            state.down_until[v] = end
        if not victims:
            return []
        return [FaultAction(at, "pause", n, tuple(victims)), FaultAction(end, "resume", n,
                tuple(victims))]  # fmt: skip
    if kind == "wipe":
        victims = state.pick(at, int(fault.get("count", 1)))
        return [FaultAction(at, "wipe", n, tuple(victims))] if victims else []
    end = at + float(fault.get("for_s"))
    region = fault.get("region")
    value = None if kind == "partition" else float(fault.get("ms" if kind == "latency" else "rate"))
    revert = REVERTS[kind]
    return [
        FaultAction(at, kind, n, region=region, value=value),
        FaultAction(end, revert, n, region=region),
    ]


def _churn(fault: Fault, n: int, state: _State, duration: float) -> list[FaultAction]:
    interval = float(fault.get("interval_s"))
    mode = fault.get("mode", "fixed")
    kills = int(fault.get("kills", 1))
    restart = fault.get("restart_after_s", 5.0)
    now = float(fault.get("from_s", 0.0))
    until = min(duration, float(fault.get("until_s", duration)))
    out: list[FaultAction] = []
    while True:
        now += interval if mode == "fixed" else state.rng.expovariate(1.0 / interval)
        if now > until:
            return out
        victims = state.pick(now, kills)
        if not victims:
            continue
        back = now + float(restart)
        for v in victims:
            state.down_until[v] = back
        out.append(FaultAction(now, "crash", n, tuple(victims)))
        out.append(FaultAction(back, "restart", n, tuple(victims)))
