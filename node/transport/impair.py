"""Userspace link impairment: latency, jitter, loss, duplication, reordering, rate, partitions.

This kernel has no netem/tbf qdisc, so a node impairs its own links.  The layer sits below
the encrypted session and above the UDP socket: the asyncio adapter pushes every datagram in
(both directions) and pops the ones that are due.  Sans-IO: no clock and no sockets; ``now``
comes in, the earliest due time goes out through ``get_timer()``.

Model (after Linux netem(8) and tbf(8)), applied per datagram in this order, always with the
rule of the REMOTE address (egress: destination, ingress: source), so one rule cuts both ways:

1. ``blackhole`` drops;  2. ``loss`` drops;  3. ``duplicate`` makes a second copy; each copy:
4. token bucket (``rate`` bytes/s, ``burst`` bytes deep, one bucket per (selector, direction,
   remote addr)): the copy departs once the bucket holds its bytes; it is tail-dropped when
   the link's backlog would exceed ``queue_limit`` bytes;
5. due = departure + ``delay`` + U[0, ``jitter``] (+ ``reorder_gap`` with prob. ``reorder``).

Selectors, most specific first: ``addr:HOST:PORT`` > ``group:NAME`` > ``*``.

Invariants:

- ``pop_due`` returns datagrams in non-decreasing due order, FIFO among equal due times (heap
  keyed ``(due, sequence)``), and never one whose due time is later than ``now``.
- Memory is bounded: ``queue_limit`` bytes of backlog per link; MAX_QUEUED_BYTES and
  MAX_QUEUED_DATAGRAMS over the whole queue (excess pushes are dropped and counted as
  ``dropped_queue``); MAX_RULES rules; MAX_ASSIGNMENTS group members; token-bucket state is
  swept of idle links once it passes MAX_LINK_STATES.
- One ``random.Random(seed)`` makes every random decision, drawing only for non-zero
  probabilities, so the same seed, rules and pushes replay the same drops.
- Changing or removing a rule affects only datagrams pushed afterwards: queued datagrams keep
  their due time (so a link may reorder across a rule change), and the selector's token
  buckets restart full.  ``clear()`` heals every rule but keeps group membership.
- With no rule for an address, ``push`` costs a few dict lookups and one heap push (due = now).
"""

from __future__ import annotations

import enum
import heapq
import random
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

Addr = tuple[str, int]

MAX_QUEUED_BYTES = 64 * 1024 * 1024  # all queued datagrams together
MAX_QUEUED_DATAGRAMS = 256 * 1024  # bounds the heap even for tiny datagrams
MAX_RULES = 4096
MAX_ASSIGNMENTS = 65536  # addr -> group entries
MAX_LINK_STATES = 16384  # token buckets kept before idle ones are swept
MAX_DELAY = 600.0  # seconds; cap for delay, jitter and reorder_gap
MAX_RATE = 1e12  # bytes/s
MAX_HOST_LEN = 255
MAX_PORT = 65535

STAR = "*"
ADDR_PREFIX = "addr:"
GROUP_PREFIX = "group:"
_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

DROP_COUNTERS = ("dropped_loss", "dropped_blackhole", "dropped_queue")
COUNTERS = (*DROP_COUNTERS, "duplicated", "reordered", "delayed", "passed")


class ImpairmentError(ValueError):
    """A bad rule value, selector, group name or address."""


class Direction(enum.Enum):
    """Which way a datagram travels, seen from this node."""

    EGRESS = "egress"
    INGRESS = "ingress"


def _number(name: str, value: object, low: float, high: float, *, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImpairmentError(f"LinkRule.{name}: expected a number, got {type(value).__name__}")
    ok = (low < value if open_low else low <= value) and value <= high  # NaN fails both
    if not ok:
        bracket = "(" if open_low else "["
        raise ImpairmentError(f"LinkRule.{name}: {value!r} is not in {bracket}{low}, {high}]")
    return float(value)


def _integer(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ImpairmentError(f"LinkRule.{name}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise ImpairmentError(f"LinkRule.{name}: {value} is not in [{low}, {high}]")
    return value


@dataclass(frozen=True)
class LinkRule:
    """How one link misbehaves.  Defaults describe a perfect link."""

    delay: float = 0.0  # one-way added delay, seconds, in [0, MAX_DELAY]
    jitter: float = 0.0  # extra delay drawn uniformly from [0, jitter] seconds
    loss: float = 0.0  # probability a datagram is dropped, [0, 1]
    duplicate: float = 0.0  # probability a datagram is sent twice, [0, 1]
    reorder: float = 0.0  # probability a datagram is held back `reorder_gap` more, [0, 1]
    reorder_gap: float = 0.002  # seconds a reordered datagram is held back
    rate: float | None = None  # bytes/s through a token bucket (like tbf); None = unlimited
    burst: int = 64 * 1024  # bucket depth, bytes, in [1, MAX_QUEUED_BYTES]
    queue_limit: int = 1024 * 1024  # bytes waiting behind `rate` before tail drop
    blackhole: bool = False  # drop everything (a partition)

    def __post_init__(self) -> None:
        for name in ("delay", "jitter", "reorder_gap"):
            object.__setattr__(self, name, _number(name, getattr(self, name), 0.0, MAX_DELAY))
        for name in ("loss", "duplicate", "reorder"):
            object.__setattr__(self, name, _number(name, getattr(self, name), 0.0, 1.0))
        if self.rate is not None:
            rate = _number("rate", self.rate, 0.0, MAX_RATE, open_low=True)
            object.__setattr__(self, "rate", rate)
        _integer("burst", self.burst, 1, MAX_QUEUED_BYTES)
        _integer("queue_limit", self.queue_limit, 0, MAX_QUEUED_BYTES)
        if not isinstance(self.blackhole, bool):
            raise ImpairmentError(f"LinkRule.blackhole: expected a bool, got {self.blackhole!r}")

    def to_dict(self) -> dict[str, object]:
        """Plain field -> value mapping (msgpack/JSON/YAML friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> LinkRule:
        """Inverse of ``to_dict``; missing keys take defaults, unknown keys raise."""
        if not isinstance(d, Mapping):
            raise ImpairmentError(f"LinkRule: expected a mapping, got {type(d).__name__}")
        unknown = [key for key in d if key not in _FIELD_NAMES]
        if unknown:
            raise ImpairmentError(f"LinkRule: unknown keys {sorted(map(repr, unknown))}")
        kwargs: dict[str, Any] = dict(d)
        return cls(**kwargs)


_FIELD_NAMES = frozenset(f.name for f in fields(LinkRule))


def _check_host(host: object) -> str:
    if not isinstance(host, str) or not 0 < len(host) <= MAX_HOST_LEN:
        raise ImpairmentError(f"address host must be 1..{MAX_HOST_LEN} characters: {host!r}")
    if not host.isprintable() or any(c.isspace() or c in "[]" for c in host):
        raise ImpairmentError(f"address host has a bad character: {host!r}")
    return host


def check_addr(addr: object) -> Addr:
    """``addr`` as a validated ``(host, port)`` pair."""
    if not isinstance(addr, tuple) or len(addr) != 2:
        raise ImpairmentError(f"an address is a (host, port) pair, got {addr!r}")
    host, port = addr
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= MAX_PORT:
        raise ImpairmentError(f"address port must be 0..{MAX_PORT}: {port!r}")
    return (_check_host(host), port)


def check_group(name: object) -> str:
    """``name`` if it is a valid group name (1-64 of [A-Za-z0-9._-], alphanumeric first)."""
    if not isinstance(name, str) or _GROUP_NAME.fullmatch(name) is None:
        raise ImpairmentError(f"bad group name {name!r}: 1-64 of [A-Za-z0-9._-]")
    return name


def addr_selector(addr: Addr) -> str:
    """The canonical ``addr:`` selector for ``addr`` (IPv6 hosts in brackets)."""
    host, port = check_addr(addr)
    return f"{ADDR_PREFIX}[{host}]:{port}" if ":" in host else f"{ADDR_PREFIX}{host}:{port}"


def group_selector(name: str) -> str:
    """The ``group:`` selector for group ``name``."""
    return GROUP_PREFIX + check_group(name)


def _parse_addr(body: str) -> Addr:
    host, sep, port = body.rpartition(":")
    if not sep or not port.isdecimal() or len(port) > 5:
        raise ImpairmentError(f"selector needs addr:HOST:PORT, got {ADDR_PREFIX}{body}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return check_addr((host, int(port)))


def parse_selector(selector: object) -> Addr | str | None:
    """None for ``*``, an Addr for ``addr:HOST:PORT``, a group name for ``group:NAME``."""
    if not isinstance(selector, str):
        raise ImpairmentError(f"a selector is a string, got {type(selector).__name__}")
    if selector == STAR:
        return None
    if selector.startswith(ADDR_PREFIX):
        return _parse_addr(selector[len(ADDR_PREFIX) :])
    if selector.startswith(GROUP_PREFIX):
        return check_group(selector[len(GROUP_PREFIX) :])
    raise ImpairmentError(f"selector must be '*', 'addr:HOST:PORT' or 'group:NAME': {selector!r}")


class _Bucket:
    """Token bucket that may go into debt; the debt is the link's backlog in bytes (tbf(8))."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp

    def refill(self, burst: int, rate: float, now: float) -> float:
        """Add the tokens earned since the last call (capped at ``burst``); return the level."""
        if now > self.stamp:
            self.tokens = min(float(burst), self.tokens + (now - self.stamp) * rate)
            self.stamp = now
        return self.tokens

    def take(self, rule: LinkRule, rate: float, size: int, now: float) -> float | None:
        """Departure time for ``size`` bytes, or None to tail-drop them (backlog too long)."""
        after = self.refill(rule.burst, rate, now) - size
        if after < 0 and -after > rule.queue_limit:
            return None
        self.tokens = after
        return now if after >= 0 else now - after / rate


_Entry = tuple[str, LinkRule]  # (canonical selector, rule)
_Link = tuple["Direction", Addr]
_Queued = tuple[float, int, Direction, bytes, Addr]  # (due, sequence, ...)


class Impairment:
    """Sans-IO impairment queue for one node's datagrams (see module docstring)."""

    def __init__(self, *, seed: int = 0, max_queued_bytes: int = MAX_QUEUED_BYTES) -> None:
        if isinstance(max_queued_bytes, bool) or not isinstance(max_queued_bytes, int):
            raise ImpairmentError(
                f"max_queued_bytes: expected an integer, got {max_queued_bytes!r}"
            )
        self._rng = random.Random(seed)
        self._max_bytes = max_queued_bytes
        self._table: dict[Addr | str | None, _Entry] = {}  # parse_selector(selector) -> entry
        self._group_of: dict[Addr, str] = {}
        self._buckets: dict[str, dict[_Link, _Bucket]] = {}
        self._link_states = 0
        self._sweep_at = MAX_LINK_STATES
        self._heap: list[_Queued] = []
        self._seq = 0
        self._queued_bytes = 0
        self._counts = dict.fromkeys(COUNTERS, 0)

    # -- rules and groups ---------------------------------------------------------------

    @property
    def active(self) -> bool:
        """False when no rule is set and nothing is queued: the adapter may bypass the layer."""
        return bool(self._table) or bool(self._heap)

    def set_rule(self, selector: str, rule: LinkRule | None) -> None:
        """Set (or with None remove) the rule for ``selector``; affects new datagrams only."""
        key = parse_selector(selector)
        if rule is not None and not isinstance(rule, LinkRule):
            raise ImpairmentError(f"a rule is a LinkRule or None, got {type(rule).__name__}")
        if rule is not None and key not in self._table and len(self._table) >= MAX_RULES:
            raise ImpairmentError(f"too many rules (max {MAX_RULES})")
        canonical = _canonical(key)
        self._link_states -= len(self._buckets.pop(canonical, {}))
        if rule is None:
            self._table.pop(key, None)
        else:
            self._table[key] = (canonical, rule)

    def assign_group(self, addr: Addr, group: str | None) -> None:
        """Put ``addr`` in ``group`` (replacing any earlier group); None unassigns."""
        addr = check_addr(addr)
        if group is None:
            self._group_of.pop(addr, None)
            return
        group = check_group(group)
        if addr not in self._group_of and len(self._group_of) >= MAX_ASSIGNMENTS:
            raise ImpairmentError(f"too many group assignments (max {MAX_ASSIGNMENTS})")
        self._group_of[addr] = group

    def update(
        self,
        assign: Mapping[str, list[Addr]] | None = None,
        rules: Mapping[str, LinkRule | None] | None = None,
    ) -> None:
        """Many ``assign_group`` and ``set_rule`` calls at once: all of them, or (on any bad
        group, address, selector or rule, or a limit passed) none of them."""
        assign, rules = assign or {}, rules or {}
        members = [(check_addr(a), check_group(g)) for g, addrs in assign.items() for a in addrs]
        added = set()
        for selector, rule in rules.items():
            key = parse_selector(selector)
            if rule is not None and not isinstance(rule, LinkRule):
                raise ImpairmentError(f"a rule is a LinkRule or None, got {type(rule).__name__}")
            if rule is not None and key not in self._table:
                added.add(key)
        joining = {addr for addr, _ in members if addr not in self._group_of}
        if len(self._group_of) + len(joining) > MAX_ASSIGNMENTS:
            raise ImpairmentError(f"too many group assignments (max {MAX_ASSIGNMENTS})")
        if len(self._table) + len(added) > MAX_RULES:
            raise ImpairmentError(f"too many rules (max {MAX_RULES})")
        self._group_of.update(members)
        for selector, rule in rules.items():
            self.set_rule(selector, rule)

    def group_of(self, addr: Addr) -> str | None:
        """The group ``addr`` is assigned to, if any."""
        return self._group_of.get(addr)

    def groups(self) -> dict[str, list[Addr]]:
        """Snapshot: group name -> sorted member addresses."""
        out: dict[str, list[Addr]] = {}
        for addr, group in self._group_of.items():
            out.setdefault(group, []).append(addr)
        return {group: sorted(members) for group, members in sorted(out.items())}

    def rule_for(self, addr: Addr) -> LinkRule | None:
        """The rule that applies to datagrams to/from ``addr`` (addr > group > ``*``)."""
        entry = self._lookup(addr)
        return None if entry is None else entry[1]

    def rules(self) -> dict[str, dict[str, object]]:
        """Snapshot for the admin API: canonical selector -> ``LinkRule.to_dict()``."""
        return {selector: rule.to_dict() for selector, rule in sorted(self._table.values())}

    def clear(self) -> None:
        """Heal every link: remove all rules (queued datagrams and groups stay)."""
        self._table.clear()
        self._buckets.clear()
        self._link_states = 0

    def _lookup(self, addr: Addr) -> _Entry | None:
        table = self._table
        entry = table.get(addr)
        if entry is None:
            group = self._group_of.get(addr)
            if group is not None:
                entry = table.get(group)
            if entry is None:
                entry = table.get(None)
        return entry

    # -- datagrams ------------------------------------------------------------------------

    def push(self, direction: Direction, data: bytes, addr: Addr, *, now: float) -> None:
        """Take one datagram to/from ``addr``; it comes out of ``pop_due`` when due (or never)."""
        entry = self._lookup(addr)
        if entry is None:
            if self._fits(len(data)):
                self._enqueue(now, (direction, addr), data)
            else:
                self._counts["dropped_queue"] += 1
            return
        rule, counts, rng = entry[1], self._counts, self._rng
        if rule.blackhole:
            counts["dropped_blackhole"] += 1
            return
        if rule.loss and rng.random() < rule.loss:
            counts["dropped_loss"] += 1
            return
        copies = 1
        if rule.duplicate and rng.random() < rule.duplicate:
            counts["duplicated"] += 1
            copies = 2
        for _ in range(copies):
            self._send_copy(entry, (direction, addr), data, now)

    def pop_due(self, *, now: float) -> list[tuple[Direction, bytes, Addr]]:
        """Remove and return every datagram due at or before ``now``, in due order."""
        return [(direction, data, addr) for _, direction, data, addr in self.pop_due_timed(now=now)]

    def pop_due_timed(self, *, now: float) -> list[tuple[float, Direction, bytes, Addr]]:
        """Like ``pop_due`` but each item starts with its due time (for lateness metrics)."""
        heap, out = self._heap, []
        while heap and heap[0][0] <= now:
            due, _, direction, data, addr = heapq.heappop(heap)
            self._queued_bytes -= len(data)
            out.append((due, direction, data, addr))
        self._counts["passed"] += len(out)
        return out

    def get_timer(self) -> float | None:
        """Earliest due time in the queue, or None when it is empty."""
        return self._heap[0][0] if self._heap else None

    def stats(self) -> dict[str, int]:
        """Counters since creation, plus the current ``queued_bytes`` and ``queued_datagrams``.

        ``passed`` counts datagrams handed out by ``pop_due``; ``delayed`` counts copies that
        were queued with a due time later than their push time.
        """
        snapshot = dict(self._counts)
        snapshot["queued_bytes"] = self._queued_bytes
        snapshot["queued_datagrams"] = len(self._heap)
        return snapshot

    def _send_copy(self, entry: _Entry, link: _Link, data: bytes, now: float) -> None:
        rule = entry[1]
        if not self._fits(len(data)):
            self._counts["dropped_queue"] += 1
            return
        due = now
        if rule.rate is not None:
            departure = self._bucket(entry, link, now).take(rule, rule.rate, len(data), now)
            if departure is None:
                self._counts["dropped_queue"] += 1
                return
            due = departure
        due += rule.delay
        if rule.jitter:
            due += self._rng.uniform(0.0, rule.jitter)
        if rule.reorder and self._rng.random() < rule.reorder:
            due += rule.reorder_gap
            self._counts["reordered"] += 1
        if due > now:
            self._counts["delayed"] += 1
        self._enqueue(due, link, data)

    def _fits(self, size: int) -> bool:
        total = self._queued_bytes + size
        return total <= self._max_bytes and len(self._heap) < MAX_QUEUED_DATAGRAMS

    def _enqueue(self, due: float, link: _Link, data: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, link[0], data, link[1]))
        self._queued_bytes += len(data)

    def _bucket(self, entry: _Entry, link: _Link, now: float) -> _Bucket:
        links = self._buckets.setdefault(entry[0], {})
        bucket = links.get(link)
        if bucket is None:
            if self._link_states >= self._sweep_at:
                self._sweep(now)
            bucket = links[link] = _Bucket(float(entry[1].burst), now)
            self._link_states += 1
        return bucket

    def _sweep(self, now: float) -> None:
        """Forget buckets with no backlog (a forgotten bucket restarts full: a small leak)."""
        rules = dict(self._table.values())
        for selector, links in self._buckets.items():
            rule = rules[selector]
            for link, bucket in list(links.items()):
                if rule.rate is None or bucket.refill(rule.burst, rule.rate, now) >= 0:
                    del links[link]
        self._link_states = sum(len(links) for links in self._buckets.values())
        self._sweep_at = max(MAX_LINK_STATES, 2 * self._link_states)


def _canonical(key: Addr | str | None) -> str:
    if key is None:
        return STAR
    if isinstance(key, tuple):
        return addr_selector(key)
    return GROUP_PREFIX + key
