"""The replication planner: keep every chunk at ``factor`` copies on its closest live nodes.

SAFE keeps each immutable chunk on the ``factor`` (4) nodes nearest its name in XOR space
and re-creates copies as nodes come and go.  This planner is the sans-IO core of that
duty for one node: the service tells it what happened (a chunk stored or deleted, peers
joined or left, answers to its questions, a timer) and asks it for work with
:meth:`Replicator.plan`, which returns actions the service carries out and reports back:

- :class:`Query` ``(peer, names)``: ask a peer which of these chunks it holds; the answer
  comes back through :meth:`Replicator.on_query_result`.
- :class:`Push` ``(peer, name)``: send our copy to a peer of the ideal group that lacks it;
  the outcome comes back through :meth:`Replicator.on_push_result`.
- :class:`Drop` ``(name)``: delete our copy; we are no longer in the ideal group and every
  member of it has confirmed holding the chunk.

Rules, for each *dirty* chunk we hold (at most ``batch`` evaluated per plan):
``ideal = close_group(name)``; a member without a confirmation fresher than ``confirm_ttl``
is queried (names batched per peer, at most :data:`MAX_QUERY_NAMES` per query); a member
that answered "missing" gets a Push (at most ``max_pushes_in_flight`` outstanding; a failed
push is retried at the next plan).  With ``push_grace > 0`` a holder that knows a confirmed
holder nearer the chunk first leaves the push to it, asks again after ``push_grace`` and
pushes only if the copy is still missing, so one holder, not every holder, sends it.  When
every other member is confirmed the chunk becomes clean, and is dropped if we are not in
``ideal``.  Questions and pushes left unanswered for
``request_timeout`` are asked again.  A chunk waiting for answers is not dirty: an answer,
a membership change, a departed peer or the periodic audit (every ``audit_interval``)
makes it dirty again.

Invariants:
- Never a Drop while we are in the ideal group, nor before every other member of a
  non-empty ideal group holds a fresh confirmation: we never drop the last copy we know of.
- At most ``max_pushes_in_flight`` pushes are outstanding; at most one Query per peer per
  plan (unless it would carry more than :data:`MAX_QUERY_NAMES` names).
- Every name in the planner's state is a chunk we held when it entered; a deleted or no
  longer held chunk is forgotten, so memory is bounded by the held chunks times the peers
  that served as their close group within ``confirm_ttl``.
- Duplicate, late or unsolicited answers change nothing (only questions asked count).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from itertools import islice
from typing import NamedTuple

from node.routing.xorname import distance
from node.storage.chunkstore import NAME_SIZE

MAX_QUERY_NAMES = 256
"""Most chunk names one Query carries (keeps a query message small)."""

COUNTERS = (
    "evaluated",
    "queries_sent",
    "names_queried",
    "confirmations",
    "pushes_sent",
    "pushes_ok",
    "pushes_failed",
    "pushes_deferred",
    "pushes_yielded",
    "drops",
    "audits",
)
"""Monotonic counters in :meth:`Replicator.stats` (gauges are added beside them)."""


class ReplicationError(ValueError):
    """A bad replication config or a malformed name handed to the planner."""


@dataclass(frozen=True, slots=True)
class ReplicationConfig:
    """Replication planner parameters."""

    factor: int = 4
    """Copies of every chunk, kept on the ``factor`` live nodes closest to its name."""
    batch: int = 64
    """Dirty chunks evaluated per :meth:`Replicator.plan` call; the rest wait for the next."""
    max_pushes_in_flight: int = 16
    """Pushes sent and not yet reported by ``on_push_result``."""
    confirm_ttl: float = 60.0
    """Seconds a peer's confirmation that it holds a chunk is trusted, then re-checked."""
    audit_interval: float = 10.0
    """Seconds between audits that re-evaluate every held chunk."""
    request_timeout: float = 30.0
    """Seconds after which an unanswered Query or unreported Push may be sent again."""
    push_grace: float = 0.0
    """Seconds we leave a copy a peer lacks to a confirmed holder nearer the chunk, then ask
    again and push if it still lacks it; 0 means every holder pushes at once."""

    def __post_init__(self) -> None:
        for name in ("factor", "batch", "max_pushes_in_flight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ReplicationError(f"ReplicationConfig.{name} must be an integer >= 1")
        for name in ("confirm_ttl", "audit_interval", "request_timeout"):
            if not getattr(self, name) > 0:
                raise ReplicationError(f"ReplicationConfig.{name} must be > 0")
        if not self.push_grace >= 0:
            raise ReplicationError("ReplicationConfig.push_grace must be >= 0")


class Query(NamedTuple):
    """Action: ask ``peer`` which of ``names`` it holds; report with ``on_query_result``."""

    peer: bytes
    names: tuple[bytes, ...]


class Push(NamedTuple):
    """Action: send our copy of chunk ``name`` to ``peer``; report with ``on_push_result``."""

    peer: bytes
    name: bytes


class Drop(NamedTuple):
    """Action: delete our copy of ``name`` (the ideal group, without us, holds it)."""

    name: bytes


Action = Query | Push | Drop


class _Step(Enum):
    CONFIRMED = "confirmed"
    WAITING = "waiting"  # for an answer: the chunk leaves the dirty set
    DEFERRED = "deferred"  # for a push slot or the grace period: the chunk stays dirty


@dataclass(slots=True)
class _Batch:
    """What one ``plan`` call is building: query names per peer, and the other actions."""

    now: float
    queries: dict[bytes, list[bytes]] = field(default_factory=dict)
    out: list[Action] = field(default_factory=list)


def _check(name: object) -> bytes:
    if not isinstance(name, bytes) or len(name) != NAME_SIZE:
        raise ReplicationError(f"a node or chunk name is {NAME_SIZE} bytes")
    return name


def _pop(table: dict[bytes, dict[bytes, float]], peer: bytes, name: bytes) -> float | None:
    """Remove ``table[peer][name]``, dropping an emptied inner dict; the value or None."""
    inner = table.get(peer)
    if inner is None:
        return None
    value = inner.pop(name, None)
    if not inner:
        del table[peer]
    return value


class Replicator:
    """The replication duty of the node named ``own``."""

    def __init__(self, own: bytes, config: ReplicationConfig | None = None) -> None:
        self.own = _check(own)
        self.config = config or ReplicationConfig()
        self._dirty: dict[bytes, None] = {}  # insertion-ordered set: oldest first
        self._rescan = False  # every held chunk becomes dirty at the next plan
        self._confirmed: dict[bytes, dict[bytes, float]] = {}  # peer -> name -> confirmed at
        self._asked: dict[bytes, dict[bytes, float]] = {}  # peer -> name -> queried at
        self._missing: dict[bytes, dict[bytes, float]] = {}  # peer -> name -> reported at
        self._pushing: dict[bytes, dict[bytes, float]] = {}  # peer -> name -> pushed at
        self._yielded: dict[bytes, dict[bytes, float]] = {}  # peer -> name -> left to a nearer
        self._in_flight = 0
        self._next_audit: float | None = None
        self._counts = dict.fromkeys(COUNTERS, 0)

    # -- events -------------------------------------------------------------------------

    def on_membership_change(self, *, now: float) -> None:
        """A peer joined or left: every held chunk is re-evaluated at the next plans."""
        self._arm(now)
        self._rescan = True

    def on_stored(self, name: bytes, *, now: float) -> None:
        """We now hold chunk ``name`` (a client PUT or a replica pushed to us)."""
        self._arm(now)
        self._dirty[_check(name)] = None

    def on_deleted(self, name: bytes) -> None:
        """We no longer hold chunk ``name``: forget everything about it."""
        self._forget(_check(name))

    def on_peer_gone(self, peer: bytes) -> None:
        """``peer`` left: forget its confirmations and in-flight work; its chunks get dirty."""
        _check(peer)
        self._in_flight -= len(self._pushing.get(peer, ()))
        for table in self._tables():
            self._dirty.update(dict.fromkeys(table.pop(peer, {})))

    def on_query_result(
        self, peer: bytes, held: Iterable[bytes], missing: Iterable[bytes], *, now: float
    ) -> None:
        """``peer`` answered a Query: it holds ``held`` and lacks ``missing``."""
        for name in missing:
            if _pop(self._asked, peer, name) is not None:
                self._missing.setdefault(peer, {})[name] = now
                self._dirty[name] = None
        for name in held:
            if _pop(self._asked, peer, name) is not None:
                self._confirm(peer, name, now)

    def on_push_result(self, peer: bytes, name: bytes, ok: bool, *, now: float) -> None:
        """The Push of ``name`` to ``peer`` was stored (``ok``) or failed (retried next plan)."""
        if _pop(self._pushing, peer, name) is None:
            return  # unknown, duplicate or already timed out
        self._in_flight -= 1
        if ok:
            self._counts["pushes_ok"] += 1
            self._confirm(peer, name, now)
        else:
            self._counts["pushes_failed"] += 1
            self._missing.setdefault(peer, {})[name] = now
            self._dirty[name] = None

    # -- timer --------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should run next (None until a ``now`` was seen)."""
        return self._next_audit

    def handle_timer(self, *, now: float) -> None:
        """Audit when due: re-dirty every held chunk, expire stale confirmations and requests."""
        if self._next_audit is None:
            self._next_audit = now + self.config.audit_interval
            return
        if now < self._next_audit:
            return
        self._next_audit = now + self.config.audit_interval
        self._rescan = True
        self._counts["audits"] += 1
        self._expire(now)

    # -- planning -----------------------------------------------------------------------

    def plan(
        self,
        held: Collection[bytes],
        close_group: Callable[[bytes], Sequence[bytes]],
        *,
        now: float,
    ) -> list[Action]:
        """Evaluate up to ``batch`` dirty chunks and return the actions they need.

        ``held`` is every chunk we hold (a set or dict view: it is tested with ``in``);
        ``close_group(name)`` names the ``factor`` closest live nodes to ``name`` as this
        node sees them, including our own name when we are among them.
        """
        self._arm(now)
        if self._rescan:
            self._rescan_all(held)
        batch = _Batch(now)
        deferred: list[bytes] = []
        for name in self._take_batch():
            if name not in held:
                self._forget(name)
            elif self._evaluate(name, close_group(name), batch):
                deferred.append(name)
        self._dirty.update(dict.fromkeys(deferred))
        return self._query_actions(batch.queries) + batch.out

    def _take_batch(self) -> list[bytes]:
        names = list(islice(self._dirty, self.config.batch))
        for name in names:
            del self._dirty[name]
        return names

    def _evaluate(self, name: bytes, ideal: Sequence[bytes], batch: _Batch) -> bool:
        """Plan one chunk; True if it must stay dirty (a push slot or a grace period)."""
        self._counts["evaluated"] += 1
        others = [m for m in dict.fromkeys(ideal) if m != self.own]
        nearer = self._nearer_holder(name, others, batch.now)
        steps = [self._step(m, name, nearer, batch) for m in others]
        if all(step is _Step.CONFIRMED for step in steps):
            if others and self.own not in ideal:
                batch.out.append(Drop(name))
                self._counts["drops"] += 1
                self._forget(name)
            return False
        return _Step.DEFERRED in steps

    def _step(self, peer: bytes, name: bytes, nearer: bool, batch: _Batch) -> _Step:
        """Advance one member of the ideal group: confirmed, waiting, or deferred."""
        now = batch.now
        if self._fresh(peer, name, now):
            return _Step.CONFIRMED
        if self._pending(self._pushing, peer, name, now):
            return _Step.WAITING
        yielded = self._yielded.get(peer, {}).get(name)
        if name in self._missing.get(peer, {}):
            if nearer and yielded is None:
                return self._yield(peer, name, now)
            return self._push(peer, name, batch)
        if self._pending(self._asked, peer, name, now):
            return _Step.WAITING
        if yielded is not None and now - yielded < self.config.push_grace:
            return _Step.DEFERRED
        batch.queries.setdefault(peer, []).append(name)
        self._asked.setdefault(peer, {})[name] = now
        return _Step.WAITING

    def _nearer_holder(self, name: bytes, others: list[bytes], now: float) -> bool:
        """Whether a member confirmed to hold ``name`` is nearer it than we are (and so pushes)."""
        if self.config.push_grace == 0:
            return False
        ours = distance(self.own, name)
        return any(self._fresh(m, name, now) and distance(m, name) < ours for m in others)

    def _yield(self, peer: bytes, name: bytes, now: float) -> _Step:
        """Leave the push to the nearer holder; ask ``peer`` again after ``push_grace``."""
        _pop(self._missing, peer, name)
        self._yielded.setdefault(peer, {})[name] = now
        self._counts["pushes_yielded"] += 1
        return _Step.DEFERRED

    def _push(self, peer: bytes, name: bytes, batch: _Batch) -> _Step:
        if self._in_flight >= self.config.max_pushes_in_flight:
            self._counts["pushes_deferred"] += 1
            return _Step.DEFERRED
        _pop(self._missing, peer, name)
        self._pushing.setdefault(peer, {})[name] = batch.now
        self._in_flight += 1
        self._counts["pushes_sent"] += 1
        batch.out.append(Push(peer, name))
        return _Step.WAITING

    def _query_actions(self, queries: dict[bytes, list[bytes]]) -> list[Action]:
        actions: list[Action] = []
        for peer, names in queries.items():
            for start in range(0, len(names), MAX_QUERY_NAMES):
                actions.append(Query(peer, tuple(names[start : start + MAX_QUERY_NAMES])))
            self._counts["names_queried"] += len(names)
        self._counts["queries_sent"] += len(actions)
        return actions

    # -- state --------------------------------------------------------------------------

    def _fresh(self, peer: bytes, name: bytes, now: float) -> bool:
        confirmed = self._confirmed.get(peer, {}).get(name)
        return confirmed is not None and now - confirmed < self.config.confirm_ttl

    def _pending(
        self, table: dict[bytes, dict[bytes, float]], peer: bytes, name: bytes, now: float
    ) -> bool:
        """Whether a request is in flight in ``table``; a timed-out one is removed."""
        sent = table.get(peer, {}).get(name)
        if sent is None:
            return False
        if now - sent < self.config.request_timeout:
            return True
        _pop(table, peer, name)
        if table is self._pushing:
            self._in_flight -= 1
        return False

    def _confirm(self, peer: bytes, name: bytes, now: float) -> None:
        _pop(self._missing, peer, name)
        _pop(self._yielded, peer, name)
        self._confirmed.setdefault(peer, {})[name] = now
        self._counts["confirmations"] += 1
        self._dirty[name] = None

    def _forget(self, name: bytes) -> None:
        self._dirty.pop(name, None)
        for table in self._tables():
            for peer in [p for p, names in table.items() if name in names]:
                _pop(table, peer, name)
                if table is self._pushing:
                    self._in_flight -= 1

    def _rescan_all(self, held: Collection[bytes]) -> None:
        """Make every held chunk dirty; forget state about chunks no longer held."""
        self._rescan = False
        self._retain(lambda name, _at: name in held)
        self._dirty.update(dict.fromkeys(held))

    def _expire(self, now: float) -> None:
        """Drop stale confirmations, stale "missing" answers and timed-out requests."""
        ttl, timeout = self.config.confirm_ttl, self.config.request_timeout
        self._retain(lambda _name, at: now - at < timeout, (self._asked, self._pushing))
        self._retain(
            lambda _name, at: now - at < ttl, (self._confirmed, self._missing, self._yielded)
        )

    def _retain(
        self,
        keep: Callable[[bytes, float], bool],
        tables: Iterable[dict[bytes, dict[bytes, float]]] | None = None,
    ) -> None:
        for table in self._tables() if tables is None else tables:
            for peer in list(table):
                kept = {n: at for n, at in table[peer].items() if keep(n, at)}
                if table is self._pushing:
                    self._in_flight -= len(table[peer]) - len(kept)
                if kept:
                    table[peer] = kept
                else:
                    del table[peer]

    def _tables(self) -> tuple[dict[bytes, dict[bytes, float]], ...]:
        return self._confirmed, self._asked, self._missing, self._pushing, self._yielded

    def _arm(self, now: float) -> None:
        if self._next_audit is None:
            self._next_audit = now + self.config.audit_interval

    # -- inspection ---------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters (:data:`COUNTERS`) and gauges.

        Gauges: ``dirty`` chunks waiting for evaluation; ``pending`` chunks dirty or awaiting
        an answer or a push; ``tracked`` chunks the planner keeps any state about (never more
        than the held ones); ``queries_in_flight`` and ``pushes_in_flight``; ``confirmed``
        (peer, chunk) confirmations remembered.
        """
        busy: set[bytes] = set(self._dirty)
        for table in (self._asked, self._missing, self._pushing, self._yielded):
            for names in table.values():
                busy.update(names)
        tracked = set(busy)
        for names in self._confirmed.values():
            tracked.update(names)
        return {
            **self._counts,
            "dirty": len(self._dirty),
            "pending": len(busy),
            "tracked": len(tracked),
            "queries_in_flight": sum(len(v) for v in self._asked.values()),
            "pushes_in_flight": self._in_flight,
            "confirmed": sum(len(v) for v in self._confirmed.values()),
        }
