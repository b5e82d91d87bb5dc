"""Staged rollout: bring a spec's network up stage by stage, each stage gated on health.

``troon testnet rollout SPEC`` walks :meth:`TestnetSpec.rollout_stages` (e.g. two regions to
60 nodes, the minimum viable network, then all four to 180).  Each stage:

1. grows every region to its target (``backend.grow``: the new nodes join through live
   ones; on an empty testnet the lowest index starts the network);
2. impairs the new nodes' links and tells the others which region they are in
   (testnet/regions.py);
3. gates on health: routing converged (testnet/converge.py), a little data stored through a
   client, and the integrity oracle (testnet/oracle.py) passing over ALL the data stored so
   far: no chunk lost or under-replicated, every node answering, every sampled chunk fetched
   and verified (waited on up to ``integrity_timeout``, because new nodes take a moment to
   receive their replicas).

A failed gate stops the rollout: the report says which stage and why, and what to do next;
the testnet is left as it is for inspection.  :func:`plan_rollout` and the ``*_failure``
gate functions are pure; :func:`rollout` is the adapter.  ``resume`` walks the stages again
on an existing testnet of the same spec, starting only the nodes that are not running.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from testnet.api import PutReport, Testnet
from testnet.converge import ConvergenceReport
from testnet.errors import BackendError, SpecError
from testnet.local import READY_TIMEOUT, LocalTestnet, Report
from testnet.oracle import OracleReport
from testnet.regions import apply_regions
from testnet.spec import TestnetSpec

if TYPE_CHECKING:
    from testnet.docker_backend import DockerTestnet

INTEGRITY_POLL = 1.0  # seconds between integrity checks while replicas settle
SHOWN = 3  # examples quoted in a failure message


@dataclass(frozen=True)
class StagePlan:
    """One stage: its targets, the nodes it starts and how many run after it."""

    name: str
    targets: tuple[tuple[str, int], ...]
    new: tuple[int, ...]
    total: int


@dataclass(frozen=True)
class Gates:
    """What a stage must pass, and how long each step may take.

    Attributes:
        ready_timeout: seconds for each new node to become ready.
        converge_timeout: seconds for routing to converge after the stage's nodes are up.
        chunks / chunk_size: data stored through a client at each stage (0: none).
        sample: chunks fetched end to end by each integrity check.
        integrity_timeout: seconds the integrity check may take to pass (replicas settle).
    """

    ready_timeout: float = READY_TIMEOUT
    converge_timeout: float = 60.0
    chunks: int = 8
    chunk_size: int = 4096
    sample: int = 4
    integrity_timeout: float = 60.0


@dataclass(frozen=True)
class StageOutcome:
    """What happened at one stage; ``failure`` says why the gate failed (None: passed)."""

    plan: StagePlan
    grow: Report | None = None
    region_failures: tuple[str, ...] = ()
    convergence: ConvergenceReport | None = None
    put: PutReport | None = None
    integrity: OracleReport | None = None
    failure: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class RolloutReport:
    """Every stage walked, up to and including the first that failed."""

    testnet: str
    planned: tuple[StagePlan, ...]
    stages: tuple[StageOutcome, ...] = field(default=())
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return len(self.stages) == len(self.planned) and all(s.ok for s in self.stages)

    @property
    def failure(self) -> str | None:
        return next((s.failure for s in self.stages if s.failure is not None), None)


# -- planning and gates (pure) ----------------------------------------------------------------


def plan_rollout(spec: TestnetSpec) -> list[StagePlan]:
    """The stages a rollout of ``spec`` walks, each with the node indices it starts."""
    out: list[StagePlan] = []
    running: set[int] = set()
    for stage in spec.rollout_stages():
        wanted = spec.stage_indices(stage)
        new = tuple(i for i in wanted if i not in running)
        running.update(wanted)
        out.append(StagePlan(stage.name, stage.targets, new, len(wanted)))
    return out


def _examples(items: Sequence[str]) -> str:
    shown = "; ".join(items[:SHOWN])
    return shown + (f"; and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def grow_failure(stage: StagePlan, report: Report, testnet: str) -> str | None:
    failed = report.failed
    if not failed and not report.notes:
        return None
    what = [f"n{r.index:03d}: {r.detail}" for r in failed] + list(report.notes)
    return (
        f"stage {stage.name}: {len(failed)} of {len(report.results)} new nodes did not start "
        f"({_examples(what)}). The testnet is left up: look at `troon testnet status "
        f"{testnet}` and the node logs, then `troon testnet down {testnet}`, fix the cause "
        "and roll out again"
    )


def regions_failure(stage: StagePlan, failures: Sequence[str], testnet: str) -> str | None:
    if not failures:
        return None
    return (
        f"stage {stage.name}: the regions' latency/loss could not be applied on "
        f"{len(failures)} nodes ({_examples(failures)}); check those nodes with "
        f"`troon testnet status {testnet}`"
    )


def convergence_failure(
    stage: StagePlan, report: ConvergenceReport, timeout: float, testnet: str
) -> str | None:
    if report.converged:
        return None
    lag = report.lagging
    what = [
        f"n{n.index:03d} {n.error}" if n.error else f"n{n.index:03d} misses {len(n.missing)}"
        for n in lag
    ]
    return (
        f"stage {stage.name}: routing did not converge within {timeout:g} s: {len(lag)} of "
        f"{len(report.nodes)} nodes lack some of their {report.want} nearest peers "
        f"({_examples(what)}). Give it longer (--converge-timeout), or watch `troon testnet "
        f"converge {testnet}` and roll out again with --resume"
    )


def put_failure(stage: StagePlan, report: PutReport, testnet: str) -> str | None:
    if not report.failures:
        return None
    return (
        f"stage {stage.name}: only {report.stored} of {report.asked} chunks could be stored "
        f"({_examples(list(report.failures))}); the network does not take writes: check "
        f"`troon testnet status {testnet}`"
    )


def integrity_passes(report: OracleReport) -> bool:
    """The gate: nothing lost or under-replicated, every node asked, every fetch verified
    (a chunk merely not yet on its newest ideal holder, ``misplaced``, passes)."""
    bad = report.count("lost") + report.count("under")
    return report.complete and not report.failed_fetches and bad == 0


def integrity_failure(
    stage: StagePlan, report: OracleReport, timeout: float, testnet: str
) -> str | None:
    if integrity_passes(report):
        return None
    counts = report.counts
    what = [f"{counts['lost']} lost", f"{counts['under']} under-replicated"]
    what += [f"fetch {f.name.hex()[:12]}: {f.detail}" for f in report.failed_fetches]
    what += [f"n{i:03d} did not answer ({why})" for i, why in report.unreachable]
    return (
        f"stage {stage.name}: the integrity check still fails after {timeout:g} s "
        f"({_examples(what)}); see `troon testnet check {testnet}` and `troon testnet "
        f"status {testnet}`"
    )


# -- running (adapter) ------------------------------------------------------------------------


def rollout(
    spec: TestnetSpec,
    *,
    home: Path | None = None,
    console: Console | None = None,
    gates: Gates | None = None,
    resume: bool = False,
) -> tuple[Testnet, RolloutReport]:
    """Walk every stage of ``spec`` (see the module docstring); stops at the first failed
    gate.  Creates the testnet, or with ``resume`` continues an existing one."""
    gates = gates or Gates()
    planned = plan_rollout(spec)
    net = _resume(spec, home) if resume else _create(spec, home, console)
    started = time.monotonic()
    outcomes: list[StageOutcome] = []
    for number, stage in enumerate(planned, start=1):
        if console is not None:
            targets = ", ".join(f"{r} {n}" for r, n in stage.targets)
            console.rule(f"stage {number}/{len(planned)} {stage.name}: {targets}")
        outcome = _run_stage(net, stage, gates, console)
        outcomes.append(outcome)
        if console is not None:
            _say(console, outcome)
        if not outcome.ok:
            break
    report = RolloutReport(spec.name, tuple(planned), tuple(outcomes), time.monotonic() - started)
    return net, report


def _create(spec: TestnetSpec, home: Path | None, console: Console | None) -> Testnet:
    """An empty testnet of ``spec`` (state, and networks for containers; no node yet)."""
    if spec.backend == "local":
        return Testnet(LocalTestnet.create(spec, home=home))
    return Testnet(_create_docker(spec, home, console))


def _create_docker(spec: TestnetSpec, home: Path | None, console: Console | None) -> DockerTestnet:
    from testnet import docker_backend as db
    from testnet.docker_plan import DEFAULT_IMAGE

    options = db.DockerOptions(image=spec.image or DEFAULT_IMAGE)
    wanted = [(h.url, h.advertise_address()) for h in spec.hosts] or [("local", None)]
    hosts, unreachable = db.connect(wanted, image=options.image, console=console)
    backend, report = db.DockerTestnet.up(
        spec, hosts, home=home, options=options, unreachable=unreachable, indices=[]
    )
    if console is not None:
        for note in report.notes:  # e.g. a sharded bridge, an unreachable host
            console.print(f"[yellow]note:[/] {note}", highlight=False)
    return backend


def _resume(spec: TestnetSpec, home: Path | None) -> Testnet:
    net = Testnet.open(spec.name, home=home)
    if net.spec != spec:
        raise SpecError(
            f"testnet {spec.name} was made from a different spec; roll out the same spec "
            f"with --resume, or `troon testnet down {spec.name}` and start over"
        )
    return net


def _run_stage(
    net: Testnet, stage: StagePlan, gates: Gates, console: Console | None
) -> StageOutcome:
    started = time.monotonic()
    steps: dict[str, Any] = {}

    def done(failure: str | None) -> StageOutcome:
        return StageOutcome(stage, failure=failure, seconds=time.monotonic() - started, **steps)

    live = net.live()
    new = [i for i in stage.new if i not in live]
    if new:
        steps["grow"] = grow = net.backend.grow(new, console=console, timeout=gates.ready_timeout)
        failure = grow_failure(stage, grow, net.name)
        if failure:
            return done(failure)
    spec, token = net.spec, net.state.token
    if new and (spec.latency_ms or spec.loss):
        failures = asyncio.run(apply_regions(spec, net.live(), token, only=new))
        steps["region_failures"] = tuple(failures)
        if failures:
            return done(regions_failure(stage, failures, net.name))
    with _status(console, f"waiting for routing to converge ({stage.total} nodes)"):
        steps["convergence"] = conv = net.converge(timeout=gates.converge_timeout)
    if failure := convergence_failure(stage, conv, gates.converge_timeout, net.name):
        return done(failure)
    if gates.chunks:
        steps["put"] = put = net.put(gates.chunks, gates.chunk_size, console=console)
        if failure := put_failure(stage, put, net.name):
            return done(failure)
    with _status(console, "checking every chunk stored so far"):
        steps["integrity"] = report = _await_integrity(net, gates)
    return done(integrity_failure(stage, report, gates.integrity_timeout, net.name))


def _await_integrity(net: Testnet, gates: Gates) -> OracleReport:
    deadline = time.monotonic() + gates.integrity_timeout
    while True:
        report = net.check(sample=gates.sample)
        if integrity_passes(report) or time.monotonic() >= deadline:
            return report
        time.sleep(INTEGRITY_POLL)


class _status:
    """A Rich spinner on ``console`` while a gate waits (nothing without a console)."""

    def __init__(self, console: Console | None, text: str) -> None:
        self._status = None if console is None else console.status(text)

    def __enter__(self) -> None:
        if self._status is not None:
            self._status.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)


def _say(console: Console, outcome: StageOutcome) -> None:
    for line in stage_lines(outcome):
        console.print(line, highlight=False)


# -- views (pure) -----------------------------------------------------------------------------


def stage_lines(outcome: StageOutcome) -> list[Text]:
    """One line per gate passed at a stage, then the failure if there is one."""
    lines = []
    if outcome.grow is not None:
        lines.append(f"started {len(outcome.grow.results)} nodes in {outcome.grow.seconds:.1f} s")
    if outcome.convergence is not None and outcome.convergence.converged:
        conv = outcome.convergence
        lines.append(f"routing converged over {len(conv.nodes)} nodes in {conv.seconds:.1f} s")
    if outcome.put is not None and not outcome.put.failures:
        lines.append(f"stored {outcome.put.stored} chunks in {outcome.put.seconds:.1f} s")
    if outcome.integrity is not None and integrity_passes(outcome.integrity):
        report = outcome.integrity
        lines.append(
            f"integrity: {len(report.verdicts)} chunks checked, {report.count('ok')} on their "
            f"ideal holders, {len(report.fetches)} fetched and verified"
        )
    out = [Text(f"  {line}", style="green") for line in lines]
    if outcome.failure is not None:
        out.append(Text(f"FAILED: {outcome.failure}", style="bold red"))
    return out


def rollout_view(report: RolloutReport) -> RenderableType:
    """One row per planned stage: nodes, time, each gate's verdict."""
    done = sum(1 for s in report.stages if s.ok)
    title = (
        f"rollout {report.testnet}: {done} of {len(report.planned)} stages passed "
        f"in {report.seconds:.1f} s"
    )
    table = Table(title=title, title_justify="left")
    for col in ("stage", "nodes", "started", "converged", "stored", "integrity", "seconds"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    walked = {s.plan.name: s for s in report.stages}
    for plan in report.planned:
        s = walked.get(plan.name)
        if s is None:
            table.add_row(plan.name, str(plan.total), "-", "-", "-", "-", "not run")
            continue
        table.add_row(
            plan.name,
            str(plan.total),
            _cell(s.grow.ok if s.grow else None, f"+{len(s.grow.results)}" if s.grow else "-"),
            _cell(s.convergence.converged if s.convergence else None, _secs(s.convergence)),
            _cell(not s.put.failures if s.put else None, str(s.put.stored) if s.put else "-"),
            _integrity_cell(s.integrity),
            f"{s.seconds:.1f}",
        )
    parts: list[RenderableType] = [table]
    if report.failure is not None:
        parts.append(Text(f"stopped: {report.failure}", style="bold red"))
    return Group(*parts)


def _cell(ok: bool | None, text: str) -> Text:
    if ok is None:
        return Text(text)
    return Text(text, style="green" if ok else "bold red")


def _secs(conv: ConvergenceReport | None) -> str:
    return "-" if conv is None else f"{conv.seconds:.1f} s"


def _integrity_cell(report: OracleReport | None) -> Text:
    if report is None:
        return Text("-")
    if integrity_passes(report):
        return Text(f"{len(report.verdicts)} ok", style="green")
    counts = report.counts
    return Text(f"{counts['lost']} lost, {counts['under']} under", style="bold red")


# -- CLI --------------------------------------------------------------------------------------


Command = Callable[[argparse.Namespace], int]


def register_rollout(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rollout`` and ``rtt`` to the ``troon testnet`` command group."""
    from testnet import cli

    p = sub.add_parser("rollout", help="bring a spec up stage by stage, each gated on health")
    p.add_argument("spec", type=Path, help="testnet spec YAML (its stages: section)")
    p.add_argument("--resume", action="store_true", help="continue an existing testnet")
    p.add_argument("--timeout", type=cli._positive_float, default=READY_TIMEOUT, help="s/node")
    p.add_argument("--converge-timeout", type=cli._positive_float, default=Gates.converge_timeout)
    p.add_argument("--chunks", type=cli._natural, default=Gates.chunks, help="stored per stage")
    p.add_argument("--size", type=cli._positive_int, default=Gates.chunk_size, help="bytes each")
    p.add_argument("--sample", type=cli._natural, default=Gates.sample, help="fetched per check")
    p.add_argument("--integrity-timeout", type=cli._positive_float, default=Gates.integrity_timeout)
    p.set_defaults(func=cli._guard(cmd_rollout))

    r = sub.add_parser("rtt", help="measured vs configured RTT between the regions")
    cli._name_arg(r)
    r.add_argument("--samples", type=cli._positive_int, default=3, help="node pairs per pair")
    r.add_argument("--count", type=cli._positive_int, default=5, help="PINGs per node pair")
    r.add_argument("--seed", type=cli._natural, default=0, help="seed of the sample")
    r.set_defaults(func=cli._guard(cmd_rtt))


def cmd_rollout(args: argparse.Namespace) -> int:
    from testnet.cli import console
    from testnet.spec import load_spec

    spec = load_spec(args.spec)
    gates = Gates(
        ready_timeout=args.timeout,
        converge_timeout=args.converge_timeout,
        chunks=args.chunks,
        chunk_size=args.size,
        sample=args.sample,
        integrity_timeout=args.integrity_timeout,
    )
    net, report = rollout(spec, console=console, gates=gates, resume=args.resume)
    console.print(rollout_view(report))
    if not report.ok:
        return 1
    rtt = f", `troon testnet rtt {net.name}`" if spec.latency_ms else ""
    console.print(f"next: `troon testnet status {net.name}`{rtt}, `troon testnet down {net.name}`")
    return 0


def cmd_rtt(args: argparse.Namespace) -> int:
    from node.nodeapi import MAX_PROBES
    from testnet import rtt
    from testnet.cli import console

    if args.count > MAX_PROBES:
        raise BackendError(f"--count: at most {MAX_PROBES} PINGs per node pair")
    net = Testnet.open(args.name)
    report = asyncio.run(
        rtt.measure(
            net.name,
            net.spec,
            net.live(),
            net.state.token,
            samples=args.samples,
            count=args.count,
            seed=args.seed,
        )
    )
    console.print(rtt.rtt_view(report))
    return 0 if report.ok else 1
