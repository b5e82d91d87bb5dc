"""Measured round-trip times between regions: configured vs measured, per region pair.

After the regions' impairment is applied (testnet/regions.py), this checks that the network
really sees it.  :func:`sample_pairs` (pure, seeded) picks up to ``samples`` node pairs for
every unordered region pair (a region with itself too, when it has two live nodes); each
pair is probed through the source node's admin API, ``GET /probe``, which PINGs the other
node ``count`` times over the node's real transport (after one untimed PING that opens a
session, so no handshake is timed).  :func:`summarize` (pure) reduces the pings of a region
pair to the median and the minimum and compares the median with the spec's figure.

Invariants: a node that fails to answer is reported, never raised (house style 11); a
region pair with no successful ping has no measurement and is not ``ok``; the tolerance is
``max(ABS_TOLERANCE_MS, REL_TOLERANCE * configured)``, because a measured RTT also holds
two event-loop turns on each node and this machine's scheduling noise.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from node.admin import AdminCallError, AdminClient
from testnet.spec import TestnetSpec
from testnet.state import NodeInfo

DEFAULT_SAMPLES = 3  # node pairs per region pair
DEFAULT_COUNT = 5  # PINGs per node pair
DEFAULT_CONCURRENCY = 4  # probes at once (more would measure the machine, not the links)
ABS_TOLERANCE_MS = 15.0
REL_TOLERANCE = 0.15
MAX_DRAWS = 20  # random draws per wanted sample before giving up on distinct pairs


@dataclass(frozen=True)
class Probe:
    """One node pair to measure: ``src`` PINGs ``dst``."""

    a: str
    b: str
    src: int
    dst: int


@dataclass(frozen=True)
class ProbeResult:
    """What one probe measured (round-trip times in ms) and what went wrong."""

    src: int
    dst: int
    rtt_ms: tuple[float, ...]
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegionPairRtt:
    """Configured vs measured round-trip time between regions ``a`` and ``b``."""

    a: str
    b: str
    configured_ms: float
    probes: tuple[ProbeResult, ...]

    @property
    def pings(self) -> list[float]:
        return [rtt for p in self.probes for rtt in p.rtt_ms]

    @property
    def failures(self) -> int:
        return sum(len(p.errors) for p in self.probes)

    @property
    def measured_ms(self) -> float | None:
        """Median over every ping of every probe (None with no successful ping)."""
        pings = self.pings
        return statistics.median(pings) if pings else None

    @property
    def min_ms(self) -> float | None:
        pings = self.pings
        return min(pings) if pings else None

    @property
    def tolerance_ms(self) -> float:
        return max(ABS_TOLERANCE_MS, REL_TOLERANCE * self.configured_ms)

    @property
    def delta_ms(self) -> float | None:
        measured = self.measured_ms
        return None if measured is None else measured - self.configured_ms

    @property
    def ok(self) -> bool:
        delta = self.delta_ms
        return delta is not None and abs(delta) <= self.tolerance_ms


@dataclass(frozen=True)
class RttReport:
    """Every measured region pair of one testnet."""

    testnet: str
    pairs: tuple[RegionPairRtt, ...]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.pairs) and all(p.ok for p in self.pairs)

    def pair(self, a: str, b: str) -> RegionPairRtt:
        lo, hi = sorted((a, b))
        for p in self.pairs:
            if (p.a, p.b) == (lo, hi):
                return p
        raise KeyError(f"no measurement between {a} and {b}")


# -- planning (pure) --------------------------------------------------------------------------


def region_pairs(spec: TestnetSpec) -> list[tuple[str, str]]:
    """Every unordered region pair ``(a, b)`` with ``a <= b``, sorted."""
    names = sorted(r.name for r in spec.regions)
    return [(a, b) for i, a in enumerate(names) for b in names[i:]]


def sample_pairs(
    spec: TestnetSpec, live: Sequence[int], *, samples: int, seed: int = 0
) -> list[Probe]:
    """Up to ``samples`` distinct live node pairs per region pair, drawn with ``seed``."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    rng = random.Random(seed)
    members: dict[str, list[int]] = {}
    for i in sorted(live):
        members.setdefault(spec.region_of(i), []).append(i)
    out: list[Probe] = []
    for a, b in region_pairs(spec):
        srcs, dsts = members.get(a, []), members.get(b, [])
        chosen: list[tuple[int, int]] = []
        for _ in range(samples * MAX_DRAWS):
            if len(chosen) == samples or not srcs or not dsts:
                break
            pair = (rng.choice(srcs), rng.choice(dsts))
            if pair[0] != pair[1] and pair not in chosen and pair[::-1] not in chosen:
                chosen.append(pair)
        out += [Probe(a, b, src, dst) for src, dst in chosen]
    return out


def summarize(
    testnet: str,
    spec: TestnetSpec,
    probes: Sequence[Probe],
    results: Sequence[ProbeResult],
    seconds: float = 0.0,
) -> RttReport:
    """Pure: group probe results by region pair (pairs with no probe are left out)."""
    grouped: dict[tuple[str, str], list[ProbeResult]] = {}
    for probe, result in zip(probes, results, strict=True):
        grouped.setdefault((probe.a, probe.b), []).append(result)
    pairs = tuple(
        RegionPairRtt(a, b, spec.latency_between(a, b), tuple(found))
        for (a, b), found in sorted(grouped.items())
    )
    return RttReport(testnet, pairs, seconds)


# -- measuring (adapter) ----------------------------------------------------------------------


async def measure(
    testnet: str,
    spec: TestnetSpec,
    infos: Mapping[int, NodeInfo],
    token: str,
    *,
    samples: int = DEFAULT_SAMPLES,
    count: int = DEFAULT_COUNT,
    seed: int = 0,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> RttReport:
    """Probe sampled node pairs of every region pair through the admin API."""
    started = time.monotonic()
    probes = sample_pairs(spec, list(infos), samples=samples, seed=seed)
    gate = asyncio.Semaphore(concurrency)
    per_ping = float(dict(spec.node).get("request_timeout", 3.0)) + 1.0
    timeout = 10.0 + (count + 1) * per_ping

    async def one(probe: Probe) -> ProbeResult:
        src, dst = infos[probe.src], infos[probe.dst]
        async with gate:
            try:
                client = AdminClient(*src.admin, token, timeout=timeout)
                body = await client.get("/probe", contact=dst.contact, count=str(count))
                return _probe_result(probe, body)
            except AdminCallError as exc:
                return ProbeResult(probe.src, probe.dst, (), (str(exc),))

    results = await asyncio.gather(*(one(p) for p in probes))
    return summarize(testnet, spec, probes, results, time.monotonic() - started)


def _probe_result(probe: Probe, body: object) -> ProbeResult:
    try:
        if not isinstance(body, dict):
            raise TypeError("not an object")
        rtts = tuple(float(x) for x in body["rtt_ms"])
        errors = tuple(str(e) for e in body["errors"])
    except (KeyError, TypeError, ValueError):
        return ProbeResult(probe.src, probe.dst, (), (f"malformed /probe answer: {body!r:.80}",))
    return ProbeResult(probe.src, probe.dst, rtts, errors)


# -- view (pure) ------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def rtt_view(report: RttReport) -> RenderableType:
    """One row per region pair: configured, measured median and minimum, delta, verdict."""
    good = sum(1 for p in report.pairs if p.ok)
    title = (
        f"RTT of {report.testnet}: {good} of {len(report.pairs)} region pairs within "
        f"tolerance ({report.seconds:.1f} s)"
    )
    table = Table(title=title, title_justify="left")
    for col in ("regions", "configured ms", "measured ms", "min ms", "delta ms", "pings"):
        table.add_column(col, justify="left" if col == "regions" else "right")
    table.add_column("verdict")
    for p in report.pairs:
        delta = p.delta_ms
        verdict = (
            Text("ok", style="green")
            if p.ok
            else Text("no sample" if delta is None else "OFF", style="bold red")
        )
        pings = f"{len(p.pings)}" + (f" ({p.failures} failed)" if p.failures else "")
        table.add_row(
            f"{p.a}-{p.b}",
            f"{p.configured_ms:g}",
            _ms(p.measured_ms),
            _ms(p.min_ms),
            "-" if delta is None else f"{delta:+.1f}",
            pings,
            verdict,
        )
    parts: list[RenderableType] = [table]
    errors = [(p, e) for p in report.pairs for r in p.probes for e in r.errors]
    for p, error in errors[:5]:
        parts.append(Text(f"{p.a}-{p.b}: {error}", style="yellow"))
    if not report.pairs:
        parts.append(Text("no region pair could be sampled: are at least two nodes up?"))
    return Group(*parts)
