"""The fault log, and the pure plans behind the faults the operator injects and heals.

Every fault the operator API injects (kill, restart, pause, resume, partition, impair; churn
is kills and restarts marked ``via="churn"``) and every heal is one JSON line in the
testnet's state folder, ``faults.jsonl`` (0600, append-only, fsynced, like the ledger).
:func:`outstanding` replays the log into what is still in force: nodes killed and not
restarted, nodes paused and not resumed, and every impairment rule a fault replaced,
with the rule that was there before it (what "heal all" restores).

Link faults use ``addr:HOST:PORT`` selectors, the most specific kind (node/transport/
impair.py), on BOTH ends of each link, so they sit above the regions' ``group:`` rules
without touching them; the rule a fault installs is composed from the one in force before
(delays add, losses combine, a blackhole wins), and that earlier rule is logged so the heal
puts exactly it back.

Invariants: the log is only appended to; a torn last line (a crash mid-append) is ignored,
damage elsewhere is an :class:`OperatorError` naming the line; the first recorded previous
rule of a (node, selector) wins, so faults stacked on one link heal to the original rule.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.transport.impair import ImpairmentError, LinkRule, addr_selector
from testnet.errors import TestnetError
from testnet.regions import link_rule
from testnet.state import NodeInfo

FAULT_LOG = "faults.jsonl"
PROCESS_KINDS = ("kill", "restart", "pause", "resume")
LINK_KINDS = ("partition", "impair")
KINDS = (*PROCESS_KINDS, *LINK_KINDS, "heal")
CHURN_WINDOW = 60.0  # seconds the header's churn rate looks back

Rule = dict[str, Any]  # LinkRule.to_dict()


class OperatorError(TestnetError, ValueError):
    """Bad operator input or an action that cannot be done; the message says what to do."""


@dataclass(frozen=True)
class RuleUndo:
    """A rule a fault replaced: on ``node``, ``selector`` held ``previous`` (None: absent)."""

    node: int
    selector: str
    previous: Rule | None


@dataclass(frozen=True)
class Fault:
    """One line of the fault log."""

    id: int
    at: float
    kind: str
    targets: tuple[int, ...]
    ok: bool
    message: str
    via: str = ""  # "churn", "heal" or "" (asked for directly)
    region: str | None = None
    undo: tuple[RuleUndo, ...] = ()  # link faults: rules replaced; heal: rules restored
    reverts: tuple[int, ...] = ()  # heal: the faults it reverted and verified

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "at": round(self.at, 3),
            "kind": self.kind,
            "targets": list(self.targets),
            "ok": self.ok,
            "message": self.message,
        }
        if self.via:
            out["via"] = self.via
        if self.region is not None:
            out["region"] = self.region
        if self.undo:
            out["undo"] = [[u.node, u.selector, u.previous] for u in self.undo]
        if self.reverts:
            out["reverts"] = list(self.reverts)
        return out


def fault_from_dict(raw: Any) -> Fault:
    """Validate one parsed log line; raises ValueError."""
    if not isinstance(raw, dict) or raw.get("kind") not in KINDS:
        raise ValueError("not a fault record")
    targets = raw.get("targets", [])
    if not isinstance(targets, list) or any(type(t) is not int for t in targets):
        raise ValueError("targets must be node indices")
    undo = []
    for item in raw.get("undo", []):
        node, selector, previous = item
        if type(node) is not int or not isinstance(selector, str):
            raise ValueError("bad undo entry")
        if previous is not None and not isinstance(previous, dict):
            raise ValueError("bad undo rule")
        undo.append(RuleUndo(node, selector, previous))
    reverts = raw.get("reverts", [])
    region = raw.get("region")
    if type(raw.get("id")) is not int or not isinstance(raw.get("at"), int | float):
        raise ValueError("id and at are required")
    return Fault(
        id=raw["id"],
        at=float(raw["at"]),
        kind=raw["kind"],
        targets=tuple(targets),
        ok=bool(raw.get("ok")),
        message=str(raw.get("message", "")),
        via=str(raw.get("via", "")),
        region=region if isinstance(region, str) else None,
        undo=tuple(undo),
        reverts=tuple(int(r) for r in reverts),
    )


class FaultLog:
    """``faults.jsonl`` of one testnet (an adapter: the only file I/O of this module)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[Fault]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise OperatorError(f"cannot read the fault log {self.path}: {exc.strerror}") from None
        lines = text.split("\n")
        out = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                out.append(fault_from_dict(json.loads(line)))
            except (ValueError, TypeError):
                if number == len(lines):  # torn final append
                    break
                raise OperatorError(
                    f"{self.path} line {number} is damaged; move the file away to start a "
                    "fresh fault log (heal all then only knows later faults)"
                ) from None
        return out

    def append(self, entries: Sequence[Fault]) -> list[Fault]:
        """Write ``entries`` with fresh ids (after the log's last) and the current time."""
        if not entries:
            return []
        existing = self.read()
        next_id = max((f.id for f in existing), default=0) + 1
        now = round(time.time(), 3)
        stamped = [
            Fault(
                next_id + n,
                now,
                e.kind,
                e.targets,
                e.ok,
                e.message,
                e.via,
                e.region,
                e.undo,
                e.reverts,
            )
            for n, e in enumerate(entries)
        ]
        data = "".join(json.dumps(f.to_dict(), sort_keys=True) + "\n" for f in stamped).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return stamped


def entry(
    kind: str,
    targets: Iterable[int],
    ok: bool,
    message: str,
    *,
    via: str = "",
    region: str | None = None,
    undo: Iterable[RuleUndo] = (),
    reverts: Iterable[int] = (),
) -> Fault:
    """A fault to append (its id and time are set by :meth:`FaultLog.append`)."""
    return Fault(
        0, 0.0, kind, tuple(targets), ok, message, via, region, tuple(undo), tuple(reverts)
    )


# -- what is still in force (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class Outstanding:
    """What the logged faults left in force."""

    down: dict[int, int] = field(default_factory=dict)  # index -> id of the kill
    paused: dict[int, int] = field(default_factory=dict)  # index -> id of the pause
    rules: dict[tuple[int, str], tuple[int, Rule | None]] = field(default_factory=dict)
    # (node, selector) -> (id of the first fault that replaced it, the rule before it)

    @property
    def empty(self) -> bool:
        return not (self.down or self.paused or self.rules)

    def rule_faults(self) -> list[int]:
        return sorted({fid for fid, _ in self.rules.values()})


def outstanding(faults: Iterable[Fault]) -> Outstanding:
    """Replay the log: nodes still down or paused, rules still replaced."""
    out = Outstanding()
    for f in sorted(faults, key=lambda f: f.id):
        if f.kind == "heal":
            for u in f.undo:
                out.rules.pop((u.node, u.selector), None)
            continue
        if not f.ok:
            continue
        for i in f.targets if f.kind in PROCESS_KINDS else ():
            if f.kind == "kill":
                out.down[i] = f.id
                out.paused.pop(i, None)
            elif f.kind == "restart":
                out.down.pop(i, None)
                out.paused.pop(i, None)
            elif f.kind == "pause":
                out.paused[i] = f.id
            else:
                out.paused.pop(i, None)
        for u in f.undo if f.kind in LINK_KINDS else ():
            out.rules.setdefault((u.node, u.selector), (f.id, u.previous))
    return out


def churn_rate(faults: Iterable[Fault], now: float, window: float = CHURN_WINDOW) -> float:
    """Node kills, restarts, pauses and resumes per minute over the last ``window`` s."""
    count = sum(
        len(f.targets)
        for f in faults
        if f.ok and f.kind in PROCESS_KINDS and now - window <= f.at <= now
    )
    return count * 60.0 / window


# -- link plans (pure) -------------------------------------------------------------------------


def compose(base: Mapping[str, Any] | None, extra: Mapping[str, Any]) -> Rule:
    """``base`` with ``extra`` on top: delays add, losses combine, a blackhole wins; the result
    is a canonical, validated ``LinkRule.to_dict()`` (ValueError if it is not valid)."""
    out = dict(base or {})
    out["delay"] = float(out.get("delay", 0.0)) + float(extra.get("delay", 0.0))
    kept = (1.0 - float(out.get("loss", 0.0))) * (1.0 - float(extra.get("loss", 0.0)))
    out["loss"] = min(1.0, max(0.0, 1.0 - kept))
    out["blackhole"] = bool(out.get("blackhole", False) or extra.get("blackhole", False))
    try:
        return LinkRule.from_dict(out).to_dict()
    except ImpairmentError as exc:
        raise ValueError(str(exc)) from None


def impair_extra(latency_ms: float | None, loss: float | None) -> Rule:
    """The rule each END of an impaired link adds (both ends impair; see testnet/regions.py):
    ``latency_ms`` of round-trip time and ``loss`` per direction."""
    latency, fraction = latency_ms or 0.0, loss or 0.0
    if isinstance(latency, bool) or not isinstance(latency, int | float):
        raise OperatorError(f"latency_ms must be a number of milliseconds, got {latency!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise OperatorError(f"loss must be a fraction in [0, 1), got {fraction!r}")
    if not 0 <= latency <= 600_000:
        raise OperatorError(f"latency_ms must be in 0..600000 ms, got {latency!r}")
    if not 0 <= fraction < 1:
        raise OperatorError(f"loss must be a fraction in [0, 1) (0.05 is 5 %), got {fraction!r}")
    rule = link_rule(float(latency), float(fraction))
    if not rule:
        raise OperatorError("impair needs latency_ms > 0 or loss > 0 (heal_all() removes it)")
    return dict(rule)


def partition_pairs(inside: Iterable[int], outside: Iterable[int]) -> set[tuple[int, int]]:
    """Every directed link between ``inside`` and ``outside`` nodes (both ends get a rule)."""
    ins, outs = sorted(set(inside)), sorted(set(outside))
    return {(a, b) for a in ins for b in outs} | {(b, a) for a in ins for b in outs}


def impair_pairs(targets: Iterable[int], live: Iterable[int]) -> set[tuple[int, int]]:
    """Every directed link that touches a node of ``targets`` (among ``live`` nodes)."""
    nodes, wanted = sorted(set(live)), set(targets)
    return {(a, b) for a in nodes for b in nodes if a != b and (a in wanted or b in wanted)}


def base_rule(rules: Mapping[str, Rule], selector: str, peer_region: str) -> Rule | None:
    """The rule in force for a peer: its ``addr:`` rule, else its region's group, else ``*``."""
    for key in (selector, f"group:{peer_region}", "*"):
        if key in rules:
            return rules[key]
    return None


def link_plan(
    pairs: Iterable[tuple[int, int]],
    infos: Mapping[int, NodeInfo],
    regions: Mapping[int, str],
    current: Mapping[int, Mapping[str, Rule]],
    extra: Mapping[str, Any],
) -> tuple[dict[int, dict[str, Rule]], list[RuleUndo]]:
    """For directed links ``(node, peer)``: node -> {``addr:`` selector of peer: new rule} and
    the rules they replace.  Nodes missing from ``current`` (their rules could not be read)
    get nothing."""
    plan: dict[int, dict[str, Rule]] = {}
    undo: list[RuleUndo] = []
    for a, b in sorted(pairs):
        if a not in current or a not in infos or b not in infos:
            continue
        selector = addr_selector(infos[b].addr)
        previous = current[a].get(selector)
        base = base_rule(current[a], selector, regions.get(b, ""))
        plan.setdefault(a, {})[selector] = compose(base, extra)
        undo.append(RuleUndo(a, selector, previous))
    return plan, undo


def restore_plan(
    rules: Mapping[tuple[int, str], tuple[int, Rule | None]],
) -> dict[int, dict[str, Rule | None]]:
    """node -> {selector: rule to put back (None: remove)} for the outstanding rules."""
    out: dict[int, dict[str, Rule | None]] = {}
    for (node, selector), (_, previous) in sorted(rules.items()):
        out.setdefault(node, {})[selector] = previous
    return out


def same_rule(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Two rules (or absences) are the same once both are made canonical."""
    if a is None or b is None:
        return a is None and b is None
    try:
        return LinkRule.from_dict(a).to_dict() == LinkRule.from_dict(b).to_dict()
    except ImpairmentError:
        return False


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeOutcome:
    """What one fault action did to one node."""

    index: int
    ok: bool
    detail: str


@dataclass(frozen=True)
class FaultResult:
    """The answer of every fault method: never raised for bad input, ``ok`` says it all."""

    action: str
    ok: bool
    message: str
    nodes: tuple[NodeOutcome, ...] = ()
    faults: tuple[int, ...] = ()  # ids written to the fault log
    seconds: float = 0.0

    @property
    def failed(self) -> list[NodeOutcome]:
        return [n for n in self.nodes if not n.ok]

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class HealItem:
    """One outstanding fault reverted (or not) and checked (or not)."""

    fault: int
    kind: str
    target: str  # "n003" or "n003 addr:127.0.0.1:4000"
    ok: bool
    detail: str


@dataclass(frozen=True)
class HealReport:
    """``heal_all``: every outstanding fault, reverted and verified gone."""

    testnet: str
    items: tuple[HealItem, ...]
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.items)

    @property
    def failed(self) -> list[HealItem]:
        return [i for i in self.items if not i.ok]

    @property
    def message(self) -> str:
        if not self.items:
            return f"nothing to heal on {self.testnet}: no logged fault is in force"
        done = len(self.items) - len(self.failed)
        text = f"healed {done} of {len(self.items)} faults on {self.testnet}, verified gone"
        if self.failed:
            first = self.failed[0]
            text += f"; NOT healed: {first.target} ({first.detail}); run heal_all() again"
        return text

    def __str__(self) -> str:
        return self.message
