"""The soak checker: every operation recorded, then judged (pure; in the spirit of Jepsen).

A workload appends :class:`Op` records (what was asked, when it started and ended, whether
the network acknowledged it, what a read returned).  :func:`check` judges the history:

- **files / chunks** (Jepsen's set-full): every acknowledged put must be readable.  For each
  item: the ack time, the first read after it that succeeded (``stable`` then), reads after
  the ack that failed (``flapping``: unreadable for a while, e.g. while all its holders were
  down), and the final read after faults stopped.  An item is ``lost`` if the final read
  fails; ``never read`` items are reported, never counted as fine silently.
- **records** never go backwards: no read returns a version lower than one acknowledged
  before the read started, nor lower than an earlier completed read of the same record.
- **coins**: no (wallet, seq) is acknowledged twice (no double spend) and the ledger audit
  after the run balances (``sum(balances) + unminted == supply``) with nothing in flight.
- **repair bound**: after the last fault is reverted, every chunk is back on 4 copies
  within ``repair_bound_s`` (from the integrity oracle's polls).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

PUT, GET, FINAL = "put", "get", "final"
RECORD_PUT, RECORD_GET = "record_put", "record_get"
TRANSFER = "transfer"


@dataclass(frozen=True)
class Op:
    """One operation of the workload (times in seconds since the run started)."""

    kind: str
    key: str
    start: float
    end: float
    ok: bool
    version: int | None = None  # records: written or read version; transfers: the seq
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "key": self.key, "start": round(self.start, 3)}
        out |= {"end": round(self.end, 3), "ok": self.ok}
        if self.version is not None:
            out["version"] = self.version
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class ItemVerdict:
    key: str
    acked_at: float
    stable_at: float | None
    failed_reads: int
    final_ok: bool | None  # None: never read at the end

    @property
    def lost(self) -> bool:
        return self.final_ok is False


@dataclass(frozen=True)
class CheckReport:
    items: tuple[ItemVerdict, ...]
    attempted_puts: int
    record_violations: tuple[str, ...]
    double_spends: tuple[str, ...]
    ledger_balanced: bool | None
    repair_seconds: float | None
    repair_bound_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def acked(self) -> int:
        return len(self.items)

    @property
    def lost(self) -> list[ItemVerdict]:
        return [i for i in self.items if i.lost]

    @property
    def never_read(self) -> list[ItemVerdict]:
        return [i for i in self.items if i.final_ok is None]

    @property
    def flapping(self) -> list[ItemVerdict]:
        return [i for i in self.items if i.failed_reads and not i.lost]

    @property
    def repaired_in_bound(self) -> bool:
        return self.repair_seconds is not None and self.repair_seconds <= self.repair_bound_s

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and not self.never_read
            and not self.record_violations
            and not self.double_spends
            and self.ledger_balanced is not False
            and self.repaired_in_bound
        )

    def summary(self) -> dict[str, Any]:
        stable = sorted(i.stable_at - i.acked_at for i in self.items if i.stable_at is not None)
        return {
            "ok": self.ok,
            "puts_attempted": self.attempted_puts,
            "acknowledged": self.acked,
            "lost": len(self.lost),
            "never_read": len(self.never_read),
            "unreadable_for_a_while": len(self.flapping),
            "median_seconds_to_stable": stable[len(stable) // 2] if stable else None,
            "record_violations": list(self.record_violations),
            "double_spends": list(self.double_spends),
            "ledger_balanced": self.ledger_balanced,
            "repair_seconds": self.repair_seconds,
            "repair_bound_s": self.repair_bound_s,
            "notes": list(self.notes),
        }


def check(
    ops: Iterable[Op],
    *,
    ledger_balanced: bool | None = None,
    repair_seconds: float | None = None,
    repair_bound_s: float = 60.0,
) -> CheckReport:
    history = sorted(ops, key=lambda o: (o.start, o.end))
    items = _items(history)
    attempted = sum(1 for o in history if o.kind == PUT)
    return CheckReport(
        items=tuple(items),
        attempted_puts=attempted,
        record_violations=tuple(_records(history)),
        double_spends=tuple(_double_spends(history)),
        ledger_balanced=ledger_balanced,
        repair_seconds=repair_seconds,
        repair_bound_s=repair_bound_s,
    )


def _items(history: Sequence[Op]) -> list[ItemVerdict]:
    acked: dict[str, float] = {}
    for op in history:
        if op.kind == PUT and op.ok:
            acked.setdefault(op.key, op.end)
    out = []
    for key, at in acked.items():
        reads = [o for o in history if o.key == key and o.kind == GET and o.start >= at]
        stable = next((o.end for o in reads if o.ok), None)
        failed = sum(1 for o in reads if not o.ok)
        finals = [o for o in history if o.key == key and o.kind == FINAL]
        final_ok = None if not finals else all(o.ok for o in finals)
        if final_ok and stable is None:
            stable = finals[0].end
        out.append(ItemVerdict(key, at, stable, failed, final_ok))
    return out


def _records(history: Sequence[Op]) -> list[str]:
    problems: list[str] = []
    by_key: dict[str, list[Op]] = {}
    for op in history:
        if op.kind in (RECORD_PUT, RECORD_GET):
            by_key.setdefault(op.key, []).append(op)
    for key, ops in by_key.items():
        writes = [o for o in ops if o.kind == RECORD_PUT and o.ok and o.version is not None]
        reads = sorted(
            (o for o in ops if o.kind == RECORD_GET and o.ok and o.version is not None),
            key=lambda o: o.end,
        )
        writes.sort(key=lambda o: o.end)
        ends = [w.end for w in writes]
        highest = list(accumulate((w.version or 0 for w in writes), max))  # by end time
        seen_floor = -1
        for read in reads:
            assert read.version is not None
            done = bisect_right(ends, read.start)  # writes acknowledged before the read
            floor = highest[done - 1] if done else -1
            if read.version < floor:
                problems.append(
                    f"{key}: read v{read.version} at {read.start:.1f}s after v{floor} was "
                    "acknowledged"
                )
            if read.version < seen_floor:
                problems.append(
                    f"{key}: read v{read.version} after an earlier read saw v{seen_floor}"
                )
            seen_floor = max(seen_floor, read.version)
    return problems


def _double_spends(history: Sequence[Op]) -> list[str]:
    seen: dict[tuple[str, int], str] = {}
    problems = []
    for op in history:
        if op.kind != TRANSFER or not op.ok or op.version is None:
            continue
        slot = (op.key, op.version)
        if slot in seen and seen[slot] != op.detail:
            problems.append(f"wallet {op.key[:12]} seq {op.version}: two transfers acknowledged")
        seen.setdefault(slot, op.detail)
    return problems


# -- live: the same judgement on a run still in progress -----------------------------------


@dataclass(frozen=True)
class LiveView:
    """What a soak's history says so far (:func:`live`): safe to show while it runs.

    "Lost" needs the final reads, so during a run an acknowledged item whose newest read
    failed is ``unreadable_now`` (it may come back); record and coin violations are final
    the moment they appear."""

    seconds: float  # end of the newest operation
    attempted_puts: int
    acked: int
    unreadable_now: tuple[str, ...]
    failed_reads: int
    record_violations: tuple[str, ...]
    double_spends: tuple[str, ...]
    transfers_ok: int
    transfers_failed: int
    lost: int | None = None  # from the final reads, once there are any

    @property
    def violations(self) -> int:
        return len(self.record_violations) + len(self.double_spends) + (self.lost or 0)


def live(ops: Iterable[Op]) -> LiveView:
    """Judge a partial history in one pass per key (a 10-minute soak has ~20,000 ops and the
    console redraws every 2 s, so this must not be quadratic)."""
    history = sorted(ops, key=lambda o: (o.start, o.end))
    acked: dict[str, float] = {}
    newest_read: dict[str, Op] = {}
    finals: dict[str, bool] = {}
    failed_reads = attempted = transfers_ok = transfers_failed = 0
    for op in history:
        if op.kind == PUT:
            attempted += 1
            if op.ok:
                acked.setdefault(op.key, op.end)
        elif op.kind == GET and op.key in acked and op.start >= acked[op.key]:
            failed_reads += not op.ok
            if op.key not in newest_read or op.end >= newest_read[op.key].end:
                newest_read[op.key] = op
        elif op.kind == FINAL:
            finals[op.key] = finals.get(op.key, True) and op.ok
        elif op.kind == TRANSFER:
            transfers_ok += op.ok
            transfers_failed += not op.ok
    unreadable = tuple(sorted(k for k, o in newest_read.items() if not o.ok and k not in finals))
    return LiveView(
        seconds=max((o.end for o in history), default=0.0),
        attempted_puts=attempted,
        acked=len(acked),
        unreadable_now=unreadable,
        failed_reads=failed_reads,
        record_violations=tuple(_records(history)),
        double_spends=tuple(_double_spends(history)),
        transfers_ok=transfers_ok,
        transfers_failed=transfers_failed,
        lost=sum(1 for k in acked if finals.get(k) is False) if finals else None,
    )


def op_from_dict(raw: Any) -> Op:
    """One ``ops.jsonl`` line back into an :class:`Op`; ValueError if it is not one."""
    if not isinstance(raw, dict):
        raise ValueError("an op is a JSON object")
    try:
        op = Op(
            kind=str(raw["kind"]),
            key=str(raw["key"]),
            start=float(raw["start"]),
            end=float(raw["end"]),
            ok=bool(raw["ok"]),
            version=None if raw.get("version") is None else int(raw["version"]),
            detail=str(raw.get("detail", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an op: {exc}") from exc
    return op
