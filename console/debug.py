"""Pure analyses for the operator console: admin answers in, frozen reports out.

Nothing here asks a node, reads a file or looks at a clock: console/operator.py gathers the
answers (``GET /routing``, ``/chunks``, ``/connections``, ``/trace``, ...) and these
functions turn them into what the dashboard and the notebooks show.  An answer that is a
:class:`testnet.fleet.Failed` (or malformed) becomes an error on that row, never an
exception: one node that stops answering must not take a view down.

Ground truth is the set of names of the nodes that run and answer; a node's routing table is
judged against the ``want = min(8, N - 1)`` peers nearest it by XOR distance (Kademlia,
Maymounkov & Mazieres 2002, section 2.3), as testnet/converge.py does.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from console.faults import CHURN_WINDOW, Fault, Outstanding, churn_rate
from node.routing.xorname import closest, distance
from testnet import farming as farming_mod
from testnet import oracle
from testnet.converge import routing_health, want_for
from testnet.fleet import Failed
from testnet.local import NodeProc
from testnet.state import NodeInfo

EVENT_TAIL = 12  # fault log entries a snapshot carries
UP, PAUSED, DOWN, STARTING, UNREACHABLE = "up", "paused", "down", "starting", "unreachable"
_ADMIN_PREFIX = re.compile(r"^admin call failed \((no response|\d+)\): ")


def _err(answer: Any) -> str | None:
    if isinstance(answer, Failed):
        return _ADMIN_PREFIX.sub("", answer.reason)
    return None if isinstance(answer, dict) else "malformed answer"


def _hexname(raw: object) -> bytes | None:
    try:
        name = bytes.fromhex(str(raw))
    except ValueError:
        return None
    return name if len(name) == 32 else None


def bits(a: bytes, b: bytes) -> int:
    """log2 of the XOR distance, rounded up: 0 for the same name, 256 for the farthest."""
    return distance(a, b).bit_length()


# -- the dashboard snapshot ----------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRow:
    """One node as the dashboard shows it."""

    index: int
    region: str
    alive: bool  # its process or container runs (a paused one too)
    status: str  # up | paused | down | starting | unreachable
    name: str | None  # hex XorName
    addr: str | None  # HOST:PORT of its transport
    chunks: int | None
    peers: int | None  # routing table size
    rtt_ms: float | None  # median smoothed RTT over its open sessions
    coins: int | None  # balance of its reward wallet, as the wallet's group agrees
    error: str | None = None


@dataclass(frozen=True)
class RegionRow:
    """Nodes up (running, answering) out of the region's total."""

    name: str
    up: int
    total: int
    paused: int = 0

    @property
    def down(self) -> int:
        return self.total - self.up - self.paused


@dataclass(frozen=True)
class Integrity:
    """Ledger chunks by live copy count (``rf`` means rf or more), from ``/chunks``."""

    chunks: int
    copies: dict[int, int]  # copy count 0..rf -> chunks
    statuses: dict[str, int]  # oracle verdicts: lost / under / misplaced / ok
    retrievable: int  # chunks with at least one live copy
    complete: bool  # every running node answered (else counts are lower bounds)
    rf: int = oracle.REPLICATION_FACTOR


@dataclass(frozen=True)
class Snapshot:
    """Everything the dashboard shows, from one fan-out."""

    testnet: str
    backend: str
    at: float
    nodes: tuple[NodeRow, ...]
    regions: dict[str, RegionRow]
    integrity: Integrity
    churn_per_min: float
    events: tuple[Fault, ...]  # the newest fault log entries, oldest first
    in_force: tuple[int, int, int]  # logged faults still in force: down, paused, rules
    seconds: float = 0.0

    @property
    def up(self) -> int:
        return sum(1 for n in self.nodes if n.status == UP)

    @property
    def total(self) -> int:
        return len(self.nodes)

    def node(self, index: int) -> NodeRow | None:
        return next((n for n in self.nodes if n.index == index), None)


def node_status(proc: NodeProc, paused: bool, answered: bool) -> str:
    if not proc.alive:
        return DOWN
    if paused:
        return PAUSED
    if proc.info is None:
        return STARTING
    return UP if answered else UNREACHABLE


def median_rtt(connections: Any) -> float | None:
    """Median smoothed RTT (ms) over the sessions of a ``/connections`` answer that have a
    measured sample."""
    if not isinstance(connections, dict):
        return None
    rtts = [
        float(s["srtt_ms"])
        for s in connections.values()
        if isinstance(s, dict)
        and isinstance(s.get("srtt_ms"), int | float)
        and isinstance(s.get("min_rtt_ms"), int | float)
        and s["min_rtt_ms"] >= 0
    ]
    return round(statistics.median(rtts), 2) if rtts else None


def _count(answer: Any, key: str) -> int | None:
    if isinstance(answer, dict) and type(answer.get(key)) is int:
        return int(answer[key])
    return None


def integrity_of(
    ledger: Sequence[bytes],
    infos: Mapping[int, NodeInfo],
    chunk_answers: Mapping[int, Any],
    rf: int = oracle.REPLICATION_FACTOR,
) -> Integrity:
    """Copy counts and oracle verdicts of ``ledger`` over the running nodes ``infos``."""
    holdings, unreachable = oracle.holdings_from(infos, chunk_answers)
    live = [info.name for info in infos.values()]
    verdicts = oracle.classify_all(ledger, holdings, live, rf)
    copies = dict.fromkeys(range(rf, -1, -1), 0)
    for v in verdicts:
        copies[min(rf, len(v.holders))] += 1
    statuses = {s: sum(1 for v in verdicts if v.status == s) for s in oracle.STATUSES}
    retrievable = sum(1 for v in verdicts if v.holders)
    return Integrity(len(ledger), copies, statuses, retrievable, not unreachable, rf)


def build_snapshot(
    testnet: str,
    backend: str,
    procs: Sequence[NodeProc],
    answers: Mapping[str, Mapping[int, Any]],
    *,
    ledger: Sequence[bytes],
    faults: Sequence[Fault],
    in_force: Outstanding,
    now: float,
    rf: int = oracle.REPLICATION_FACTOR,
    seconds: float = 0.0,
) -> Snapshot:
    """The snapshot from the processes and the answers to ``/routing``, ``/chunks``,
    ``/connections`` and ``/farming`` (path -> index -> answer; a node not asked is absent)."""
    routing, chunks = answers.get("/routing", {}), answers.get("/chunks", {})
    conns, farm = answers.get("/connections", {}), answers.get("/farming", {})
    running = {p.index: p.info for p in procs if p.alive and p.info is not None}
    regions_of = {p.index: p.region for p in procs}
    coins: dict[int, int | None] = {}
    if farm:
        report = farming_mod.audit(testnet, farm, running, regions_of)
        coins = {n.index: n.balance for n in report.nodes}
    rows = []
    for p in procs:
        paused = p.index in in_force.paused
        r = routing.get(p.index, Failed("not asked"))
        error = None if not p.alive or paused else _err(r)
        status = node_status(p, paused, p.alive and not paused and error is None)
        rows.append(
            NodeRow(
                p.index,
                p.region,
                p.alive,
                status,
                p.info.name.hex() if p.info else None,
                f"{p.info.addr[0]}:{p.info.addr[1]}" if p.info else None,
                _count(chunks.get(p.index), "count"),
                _count(r, "size"),
                median_rtt(conns.get(p.index)),
                coins.get(p.index),
                error if status == UNREACHABLE else None,
            )
        )
    regions: dict[str, RegionRow] = {}
    for row in rows:
        old = regions.get(row.region, RegionRow(row.region, 0, 0))
        regions[row.region] = RegionRow(
            row.region,
            old.up + (row.status == UP),
            old.total + 1,
            old.paused + (row.status == PAUSED),
        )
    return Snapshot(
        testnet,
        backend,
        now,
        tuple(rows),
        regions,
        integrity_of(ledger, running, chunks, rf),
        churn_rate(faults, now, CHURN_WINDOW),
        tuple(faults[-EVENT_TAIL:]),
        (len(in_force.down), len(in_force.paused), len(in_force.rules)),
        seconds,
    )


def snapshot_events(before: Snapshot | None, after: Snapshot) -> list[str]:
    """What changed between two snapshots: nodes going down, up, paused, unreachable, and
    chunks repaired or losing copies."""
    if before is None:
        return []
    out = []
    old = {n.index: n for n in before.nodes}
    for n in after.nodes:
        was = old.get(n.index)
        if was is None or was.status == n.status:
            continue
        if n.status == UNREACHABLE:
            out.append(f"n{n.index:03d} stopped answering: {n.error}")
        else:
            out.append(f"n{n.index:03d} {was.status} -> {n.status}")
    rf = after.integrity.rf
    full_before, full_after = before.integrity.copies.get(rf, 0), after.integrity.copies.get(rf, 0)
    if after.integrity.chunks == before.integrity.chunks and full_after != full_before:
        if full_after > full_before:
            out.append(f"repaired: {full_after - full_before} chunks back to {rf} copies")
        else:
            out.append(f"{full_before - full_after} chunks fell below {rf} copies")
    lost = after.integrity.copies.get(0, 0) - before.integrity.copies.get(0, 0)
    if lost > 0 and after.integrity.complete:
        out.append(f"{lost} chunks have no live copy")
    return out


# -- routing table vs ground truth ---------------------------------------------------------------


@dataclass(frozen=True)
class RouteEntry:
    """One routing table entry, judged against the live nodes."""

    name: str
    index: int | None  # the testnet node it is, if known
    address: str
    bucket: int
    distance_bits: int  # log2 of the XOR distance to the table's owner
    state: str  # ok | stale (that node is down) | paused | foreign (not a node we know)
    ideal: bool  # among the owner's ``want`` nearest live peers


@dataclass(frozen=True)
class RoutingAnalysis:
    """A node's routing table against the ground truth of every live node."""

    index: int
    name: str
    want: int
    live: int
    entries: tuple[RouteEntry, ...]  # nearest first
    missing: tuple[tuple[str, int | None], ...]  # ideal peers the table lacks: (name, index)

    @property
    def size(self) -> int:
        return len(self.entries)

    @property
    def stale(self) -> list[RouteEntry]:
        return [e for e in self.entries if e.state != "ok"]

    @property
    def health(self) -> float:
        """coverage x freshness in 0..1: the share of the ``want`` nearest live peers the
        table holds, times the share of its entries that are live nodes."""
        coverage = 1.0 if self.want == 0 else (self.want - len(self.missing)) / self.want
        freshness = 1.0 if not self.entries else 1 - len(self.stale) / len(self.entries)
        return round(max(0.0, coverage) * freshness, 4)

    @property
    def converged(self) -> bool:
        return not self.missing


def analyse_routing(
    index: int,
    own: bytes,
    answer: Any,
    live: Mapping[bytes, int],
    known: Mapping[bytes, int],
    *,
    paused: Iterable[bytes] = (),
) -> RoutingAnalysis:
    """``answer`` is the node's ``GET /routing``; ``live`` the names of the nodes that run and
    answer (name -> index), ``known`` every node name ever seen, ``paused`` paused ones."""
    try:
        buckets = answer["buckets"]
        raw = [(b["index"], e) for b in buckets for e in b["entries"]]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed /routing answer ({exc!r})") from None
    others = [n for n in live if n != own]
    want = want_for(len(others) + 1)
    ideal = set(closest(own, others, want))
    paused_set = set(paused)
    entries = []
    for bucket, e in raw:
        name = _hexname(e.get("name"))
        if name is None:
            continue
        addr = e.get("address") or ["?", 0]
        state = (
            "ok"
            if name in live
            else "paused"
            if name in paused_set
            else "stale"
            if name in known
            else "foreign"
        )
        entries.append(
            RouteEntry(
                name.hex(),
                known.get(name, live.get(name)),
                f"{addr[0]}:{addr[1]}",
                int(bucket),
                bits(own, name),
                state,
                name in ideal,
            )
        )
    entries.sort(key=lambda e: distance(own, bytes.fromhex(e.name)))
    table = [bytes.fromhex(e.name) for e in entries]
    missing = routing_health(own, table, others, want)
    return RoutingAnalysis(
        index,
        own.hex(),
        want,
        len(live),
        tuple(entries),
        tuple((m.hex(), live.get(m)) for m in missing),
    )


# -- lookup trace ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceHop:
    """One FIND_NODE request of a traced lookup."""

    peer: str
    index: int | None
    address: str
    hop: int | None  # 0: from the node's own table; n: learned from a hop n-1 answer
    ms: float
    returned: int | None  # contacts in the answer
    error: str | None  # timeout, unreachable, ...
    distance_bits: int  # log2 XOR distance of the peer to the target


@dataclass(frozen=True)
class LookupTrace:
    """A lookup from node ``index`` for ``target``, hop by hop: a traceroute for XOR space."""

    index: int
    target: str
    hops: tuple[TraceHop, ...]
    closest: tuple[tuple[str, int | None], ...]  # what the lookup found, nearest first
    ideal: tuple[tuple[str, int | None], ...]  # the true nearest live nodes (close group)
    rounds: int
    requests: int
    failures: int
    ms: float

    @property
    def found_group(self) -> bool:
        """The lookup's nearest ``len(ideal)`` are exactly the true close group."""
        got = {n for n, _ in self.closest[: len(self.ideal)]}
        return got == {n for n, _ in self.ideal}

    @property
    def timeouts(self) -> list[TraceHop]:
        return [h for h in self.hops if h.error]


def build_trace(
    index: int,
    answer: Any,
    live: Mapping[bytes, int],
    known: Mapping[bytes, int],
    rf: int = oracle.REPLICATION_FACTOR,
    *,
    own: bytes | None = None,
) -> LookupTrace:
    """The trace from a ``GET /trace`` (or ``/lookup``) answer of the node named ``own``
    (a lookup never returns its own node, which may belong to the close group itself)."""
    try:
        target = bytes.fromhex(answer["target"])
        steps = list(answer["trace"])
        found = [bytes.fromhex(n) for n in answer["closest"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed trace answer ({exc!r})") from None
    hops = []
    for s in steps:
        peer = _hexname(s.get("peer")) if isinstance(s, dict) else None
        if peer is None:
            continue
        hop = s.get("hop")
        returned = s.get("returned")
        hops.append(
            TraceHop(
                peer.hex(),
                known.get(peer, live.get(peer)),
                str(s.get("address", "?")),
                hop if type(hop) is int else None,
                float(s.get("ms", 0.0)),
                returned if type(returned) is int else None,
                str(s["error"]) if s.get("error") else None,
                bits(peer, target),
            )
        )
    hops.sort(key=lambda h: (h.hop if h.hop is not None else 1 << 30, h.distance_bits))
    if own is not None and own not in found:
        found = sorted([*found, own], key=lambda n: distance(n, target))
    ideal = closest(target, list(live), rf)

    def named(names: Iterable[bytes]) -> tuple[tuple[str, int | None], ...]:
        return tuple((n.hex(), known.get(n, live.get(n))) for n in names)

    return LookupTrace(
        index,
        target.hex(),
        tuple(hops),
        named(found),
        named(ideal),
        int(answer.get("rounds", 0)),
        int(answer.get("requests", 0)),
        int(answer.get("failures", 0)),
        float(answer.get("ms", sum(h.ms for h in hops))),
    )


# -- chunk locator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyRow:
    """One node's part in holding a chunk."""

    index: int
    name: str
    region: str
    ideal: bool
    state: str  # ok (ideal, holds) | missing (ideal, lacks) | surplus (holds, not ideal)
    #             | unreachable (ideal or unknown: it did not answer)


@dataclass(frozen=True)
class ChunkLocation:
    """Who should hold a chunk (its close group), who does, and each copy's state."""

    name: str
    status: str  # the oracle's verdict: ok / misplaced / under / lost
    copies: tuple[CopyRow, ...]
    in_ledger: bool
    rf: int = oracle.REPLICATION_FACTOR

    @property
    def ideal(self) -> list[int]:
        return [c.index for c in self.copies if c.ideal]

    @property
    def holders(self) -> list[int]:
        return [c.index for c in self.copies if c.state in ("ok", "surplus")]


def build_location(
    name: bytes,
    answers: Mapping[int, Any],
    infos: Mapping[int, NodeInfo],
    regions: Mapping[int, str],
    *,
    in_ledger: bool,
    rf: int = oracle.REPLICATION_FACTOR,
) -> ChunkLocation:
    """From every running node's ``GET /has?name=`` answer (Failed for one that did not)."""
    by_name = {info.name: i for i, info in infos.items()}
    ideal = {by_name[n] for n in closest(name, list(by_name), rf)}
    held = {i for i, a in answers.items() if isinstance(a, dict) and a.get("held") is True}
    silent = {i for i in infos if not isinstance(answers.get(i), dict)}
    rows = []
    for i in sorted(infos):
        if i in silent:
            state = "unreachable"
        elif i in held:
            state = "ok" if i in ideal else "surplus"
        elif i in ideal:
            state = "missing"
        else:
            continue
        rows.append(CopyRow(i, infos[i].name.hex(), regions.get(i, "?"), i in ideal, state))
    rows.sort(key=lambda r: distance(name, bytes.fromhex(r.name)))
    verdict = oracle.classify(name, [infos[i].name for i in held], list(by_name), rf)
    return ChunkLocation(name.hex(), verdict.status, tuple(rows), in_ledger, rf)


# -- connections, node detail, logs ------------------------------------------------------------


@dataclass(frozen=True)
class ConnRow:
    """One transport session of a node, with the impairment in force for that peer."""

    peer: str  # the peer's XorName, hex
    index: int | None
    region: str | None
    address: str
    state: str
    srtt_ms: float
    min_rtt_ms: float | None
    rttvar_ms: float
    loss: float  # packets declared lost / packets sent
    retransmits: int
    cwnd: int
    bytes_in_flight: int
    impairment: str | None  # "addr:...: delay 25 ms, loss 1.0%" or None


def describe_rule(rule: Mapping[str, Any]) -> str:
    """A rule in a few words: ``blackhole`` or ``delay 25 ms, loss 2.0%``."""
    if rule.get("blackhole"):
        return "blackhole"
    parts = []
    if rule.get("delay"):
        parts.append(f"delay {float(rule['delay']) * 1000:g} ms")
    if rule.get("jitter"):
        parts.append(f"jitter {float(rule['jitter']) * 1000:g} ms")
    if rule.get("loss"):
        parts.append(f"loss {float(rule['loss']) * 100:.1f}%")
    if rule.get("rate"):
        parts.append(f"rate {float(rule['rate']) / 1000:g} kB/s")
    for key in ("duplicate", "reorder"):
        if rule.get(key):
            parts.append(f"{key} {float(rule[key]) * 100:.1f}%")
    return ", ".join(parts) or "no effect"


def rule_for(rules: Mapping[str, Any], address: str, region: str | None) -> str | None:
    """The rule in force for a peer at ``address`` (addr > its region's group > ``*``)."""
    host, _, port = address.rpartition(":")
    selector = f"addr:[{host}]:{port}" if ":" in host else f"addr:{host}:{port}"
    for key in (selector, f"group:{region}" if region else None, "*"):
        if key is not None and isinstance(rules.get(key), dict):
            return f"{key}: {describe_rule(rules[key])}"
    return None


def build_connections(
    answer: Any,
    impairment: Any,
    by_key: Mapping[bytes, int],
    regions: Mapping[int, str],
    names: Mapping[int, bytes],
) -> list[ConnRow]:
    """Rows from ``GET /connections`` (public key hex -> session stats) and ``/impairment``."""
    if not isinstance(answer, dict):
        raise ValueError("malformed /connections answer")
    rules = impairment.get("rules", {}) if isinstance(impairment, dict) else {}
    rows = []
    for key_hex, s in answer.items():
        key = _hexname(key_hex)
        if key is None or not isinstance(s, dict):
            continue
        index = by_key.get(key)
        region = regions.get(index) if index is not None else None
        name = names.get(index) if index is not None else None
        sent = int(s.get("packets_sent", 0))
        min_rtt = float(s.get("min_rtt_ms", -1.0))
        address = str(s.get("addr", "?"))
        rows.append(
            ConnRow(
                (name or _xor(key)).hex(),
                index,
                region,
                address,
                str(s.get("state", "?")),
                float(s.get("srtt_ms", 0.0)),
                min_rtt if min_rtt >= 0 else None,
                float(s.get("rttvar_ms", 0.0)),
                int(s.get("packets_lost", 0)) / sent if sent else 0.0,
                int(s.get("retransmits", 0)),
                int(s.get("cwnd", 0)),
                int(s.get("bytes_in_flight", 0)),
                rule_for(rules, address, region),
            )
        )
    rows.sort(key=lambda r: (r.index is None, r.index or 0, r.peer))
    return rows


def _xor(public_key: bytes) -> bytes:
    from node.identity import xor_name

    return xor_name(public_key)


@dataclass(frozen=True)
class NodeDetail:
    """One node's replication queue, storage use, farming and transport counters."""

    index: int
    region: str
    name: str
    addr: str
    version: str
    uptime_s: float
    log_level: str
    peers: int
    replication: dict[str, int]  # pending, dirty, queries/pushes in flight, pushes, ...
    storage: dict[str, int]  # chunks, used, capacity, ...
    farming: dict[str, Any]  # rate, attempts, wins, coins_earned, reward_wallet, ...
    transport: dict[str, int]


def build_detail(
    index: int, region: str, info: Any, counters: Any, *, farming: Any, logs: Any
) -> NodeDetail:
    if not isinstance(info, dict) or not isinstance(counters, dict):
        raise ValueError("malformed /info or /counters answer")
    farm = {
        k: v
        for k, v in (farming if isinstance(farming, dict) else {}).items()
        if k in ("rate", "attempts", "wins", "claims_paid", "claims_refused", "coins_earned")
        or k == "reward_wallet"
    }
    addr = info.get("addr") or ["?", 0]
    return NodeDetail(
        index,
        region,
        str(info.get("name", "?")),
        f"{addr[0]}:{addr[1]}",
        str(info.get("version", "?")),
        float(info.get("uptime_s", 0.0)),
        str(logs.get("level", "?")) if isinstance(logs, dict) else "?",
        int(counters.get("routing", {}).get("contacts", 0)),
        dict(counters.get("replication", {})),
        dict(counters.get("storage", {})),
        farm,
        dict(counters.get("transport", {})),
    )


@dataclass(frozen=True)
class LogLine:
    """One log record of a node."""

    seq: int
    at: float
    level: str
    logger: str
    message: str


LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_LINE = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) (?P<logger>[^:\s]+): "
    r"(?P<message>.*)"
)


def check_level(level: str | None) -> str | None:
    """``level`` upper-cased if it is a known level name; OperatorError-worthy ValueError."""
    if level is None:
        return None
    if not isinstance(level, str) or level.upper() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    return level.upper()


def log_lines(answer: Any) -> list[LogLine]:
    """Lines from a ``GET /logs`` answer."""
    if not isinstance(answer, dict) or not isinstance(answer.get("records"), list):
        raise ValueError("malformed /logs answer")
    return [
        LogLine(
            int(r.get("seq", 0)),
            float(r.get("at", 0.0)),
            str(r.get("level", "?")),
            str(r.get("logger", "?")),
            str(r.get("message", "")),
        )
        for r in answer["records"]
        if isinstance(r, dict)
    ]


def parse_log_text(text: str) -> list[LogLine]:
    """Lines of a node's log file (``asctime LEVEL logger: message``; other lines, such as a
    traceback's, belong to the record before them).  ``seq`` is the record's number."""
    out: list[LogLine] = []
    for raw in text.splitlines():
        match = _LINE.fullmatch(raw)
        if match is None:
            if out and raw.strip():
                last = out[-1]
                out[-1] = LogLine(
                    last.seq, last.at, last.level, last.logger, last.message + "\n" + raw
                )
            elif raw.strip():
                out.append(LogLine(len(out) + 1, 0.0, "INFO", "output", raw))
            continue
        try:
            at = datetime.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            at = 0.0
        out.append(LogLine(len(out) + 1, at, match["level"], match["logger"], match["message"]))
    return out


def filter_logs(
    lines: Iterable[LogLine], *, since: int = 0, level: str | None = None, grep: str | None = None
) -> list[LogLine]:
    floor = LEVELS.get(level or "", 0)
    needle = grep.lower() if grep else None
    return [
        line
        for line in lines
        if line.seq > since
        and LEVELS.get(line.level, 0) >= floor
        and (needle is None or needle in line.message.lower() or needle in line.logger.lower())
    ]
