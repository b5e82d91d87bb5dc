"""One operator API over a running testnet, on any backend: the terminal console and the
notebooks both drive the network through :class:`Operator` (an adapter).

Every method has an async twin named ``a<method>`` (``asnapshot``, ``akill``, ...).  The
blocking form runs the twin with ``asyncio.run``; called where an event loop is already
running (a notebook cell), it runs the twin on a worker thread instead and blocks the
caller meanwhile, so it never fails for that reason, but ``await op.a<method>(...)`` is the
better call there.  Blocking backend calls (signals, Docker) run on worker threads too.

Faults (kill, restart, pause, resume, churn, partition, impair) never raise for bad input:
they return a :class:`FaultResult` whose ``message`` says what happened and what to do,
and each is written to the fault log (console/faults.py); :meth:`Operator.heal_all` reverts
every fault still in force and then checks each one is gone.  The debugging views raise
:class:`OperatorError` (a TestnetError and a ValueError) with a one-line message for an
unknown node, a node that is down or paused, or a node that does not answer.

Pause is SIGSTOP/SIGCONT of the node's process on the local backend, and Docker's
pause/unpause (the cgroup freezer) of its container on the container backend.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from console.debug import (
    ChunkLocation,
    ConnRow,
    CopyRow,
    Integrity,
    LogLine,
    LookupTrace,
    NodeDetail,
    NodeRow,
    RegionRow,
    RouteEntry,
    RoutingAnalysis,
    Snapshot,
    TraceHop,
    analyse_routing,
    build_connections,
    build_detail,
    build_location,
    build_snapshot,
    build_trace,
    check_level,
    filter_logs,
    log_lines,
    parse_log_text,
)
from console.faults import (
    FAULT_LOG,
    Fault,
    FaultLog,
    FaultResult,
    HealItem,
    HealReport,
    NodeOutcome,
    OperatorError,
    Outstanding,
    RuleUndo,
    entry,
    impair_extra,
    impair_pairs,
    link_plan,
    outstanding,
    partition_pairs,
    restore_plan,
    same_rule,
)
from node.admin import AdminCallError, AdminClient
from node.client.aio import Client, ClientError
from node.storage.chunkstore import chunk_name
from testnet import oracle, procs
from testnet.api import PutReport, Testnet
from testnet.converge import ConvergenceReport
from testnet.errors import TestnetError
from testnet.farming import FarmingReport, afarming
from testnet.fleet import Failed, ask_all, post_all
from testnet.local import LocalTestnet, NodeProc, Report
from testnet.soak import LiveSoak, latest_run, live_status
from testnet.spec import DEFAULT_NAME, TestnetSpec, load_spec, spec_from_dict
from testnet.state import MANIFEST, NodeInfo

__all__ = [
    "ChunkLocation",
    "ConnRow",
    "CopyRow",
    "FarmingReport",
    "FaultResult",
    "GetResult",
    "HealItem",
    "HealReport",
    "Integrity",
    "LogLine",
    "LookupTrace",
    "NodeDetail",
    "NodeOutcome",
    "NodeRow",
    "Operator",
    "OperatorError",
    "PutReport",
    "RegionRow",
    "RouteEntry",
    "RoutingAnalysis",
    "Snapshot",
    "TraceHop",
    "run_blocking",
]

ASK_TIMEOUT = 3.0  # seconds a node has to answer one dashboard question
TRACE_TIMEOUT = 30.0  # a traced lookup may wait on timeouts of dead peers
GET_TIMEOUT = 15.0
RESTARTS_AT_ONCE = 4
SIGNAL_WAIT = 3.0  # seconds for a SIGSTOP/SIGCONT to show in /proc
CONVERGE_TIMEOUT = 30.0
T = TypeVar("T")


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from blocking code, even under a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="troon-operator") as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass(frozen=True)
class GetResult:
    """One chunk fetched through a client and verified against its name."""

    name: str
    ok: bool
    detail: str
    seconds: float = 0.0
    data: bytes | None = None


@dataclass(frozen=True)
class _View:
    """The backend's processes and the fault log, read once for one operation."""

    procs: list[NodeProc]
    faults: list[Fault]
    force: Outstanding
    known: dict[bytes, int]  # every node name ever seen -> index

    @property
    def running(self) -> dict[int, NodeInfo]:
        return {p.index: p.info for p in self.procs if p.alive and p.info is not None}

    @property
    def answering(self) -> dict[int, NodeInfo]:
        return {i: info for i, info in self.running.items() if i not in self.force.paused}

    def proc(self, index: int) -> NodeProc | None:
        return next((p for p in self.procs if p.index == index), None)


def make_spec(
    spec_or_nodes: TestnetSpec | int | Mapping[str, Any] | str | Path,
    *,
    name: str | None = None,
    seed: int | None = None,
) -> TestnetSpec:
    """A spec from a spec, a node count, a spec dict or a YAML path; ``name``/``seed`` win."""
    raw: dict[str, Any]
    if isinstance(spec_or_nodes, TestnetSpec):
        raw = spec_or_nodes.to_dict()
    elif isinstance(spec_or_nodes, bool):
        raise OperatorError("give a node count, a spec, a spec dict or a spec file path")
    elif isinstance(spec_or_nodes, int):
        raw = {"name": DEFAULT_NAME, "nodes": spec_or_nodes}
    elif isinstance(spec_or_nodes, Mapping):
        raw = dict(spec_or_nodes)
    elif isinstance(spec_or_nodes, str | Path):
        raw = load_spec(Path(spec_or_nodes)).to_dict()
    else:
        raise OperatorError(
            f"cannot start a testnet from {type(spec_or_nodes).__name__}; give a node count, "
            "a TestnetSpec, a spec dict or a spec file path"
        )
    if name is not None:
        raw["name"] = name
    if seed is not None:
        raw["seed"] = seed
    return spec_from_dict(raw)


class Operator:
    """A running testnet seen and steered by an operator (see the module docstring)."""

    def __init__(self, net: Testnet) -> None:
        self.net = net
        self.name = net.name
        self.log = FaultLog(net.state.root / FAULT_LOG)
        self.timeout = ASK_TIMEOUT
        self.started: Report | None = None  # the start report, for an Operator.start()
        self._known: dict[bytes, int] = {}

    def __repr__(self) -> str:
        return f"Operator({self.name!r}, backend={self.backend!r})"

    # -- finding or starting a testnet --------------------------------------------------------

    @classmethod
    def attach(cls, name: str = DEFAULT_NAME, *, home: Path | None = None) -> Operator:
        """The running (or stopped) testnet ``name``, on whichever backend runs it."""
        return cls(Testnet.open(name, home=home))

    @classmethod
    async def aattach(cls, name: str = DEFAULT_NAME, *, home: Path | None = None) -> Operator:
        return await asyncio.to_thread(cls.attach, name, home=home)

    @classmethod
    def start(
        cls,
        spec_or_nodes: TestnetSpec | int | Mapping[str, Any] | str | Path,
        *,
        home: Path | None = None,
        name: str | None = None,
        seed: int | None = None,
        converge: bool = True,
        console: Console | None = None,
    ) -> Operator:
        """Start a testnet (a node count, spec, spec dict or YAML path), wait until its
        routing has converged (unless ``converge=False``), and attach to it."""
        return run_blocking(
            cls.astart(
                spec_or_nodes, home=home, name=name, seed=seed, converge=converge, console=console
            )
        )

    @classmethod
    async def astart(
        cls,
        spec_or_nodes: TestnetSpec | int | Mapping[str, Any] | str | Path,
        *,
        home: Path | None = None,
        name: str | None = None,
        seed: int | None = None,
        converge: bool = True,
        console: Console | None = None,
    ) -> Operator:
        spec = make_spec(spec_or_nodes, name=name, seed=seed)
        net, report = await asyncio.to_thread(Testnet.up, spec, home=home, console=console)
        if not any(r.ok for r in report.results):
            first = report.failed[0].detail if report.failed else "no node in the spec"
            await asyncio.to_thread(net.down, grace=1.0)
            raise OperatorError(f"no node of {spec.name} started ({first}); nothing is left up")
        op = cls(net)
        op.started = report
        if converge:
            await net.aconverge(timeout=CONVERGE_TIMEOUT)
        return op

    def down(self) -> Report:
        """Stop every node and remove the testnet's state folder (and its fault log)."""
        return run_blocking(self.adown())

    async def adown(self) -> Report:
        return await asyncio.to_thread(self.net.down, grace=3.0)

    # -- what runs ------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return "local" if isinstance(self.net.backend, LocalTestnet) else "docker"

    @property
    def rf(self) -> int:
        return int(dict(self.net.spec.node).get("replication_factor", oracle.REPLICATION_FACTOR))

    def _check_exists(self) -> None:
        root = self.net.state.root
        if not (root / MANIFEST).is_file():
            raise OperatorError(
                f"testnet {self.name} is gone: its state folder {root} was removed "
                "(`troon testnet down`?); `troon testnet up` starts a new one"
            )

    def _view(self) -> _View:
        self._check_exists()
        nodes = self.net.backend.nodes()
        faults = self.log.read()
        for p in nodes:
            info = p.info
            if info is None and p.index not in self._known.values():
                info = self.net.state.read_node_info(p.index)
            if info is not None:
                self._known[info.name] = p.index
        return _View(nodes, faults, outstanding(faults), dict(self._known))

    async def _aview(self) -> _View:
        return await asyncio.to_thread(self._view)

    def faults(self) -> list[Fault]:
        """The whole fault log, oldest first."""
        return self.log.read()

    async def afaults(self) -> list[Fault]:
        return await asyncio.to_thread(self.log.read)

    def in_force(self) -> Outstanding:
        """What the logged faults left in force (what heal_all would revert)."""
        return outstanding(self.log.read())

    async def ain_force(self) -> Outstanding:
        return outstanding(await self.afaults())

    async def asnapshot(self) -> Snapshot:
        """Everything the dashboard shows: one question of each kind to every node at once."""
        started = time.monotonic()
        view = await self._aview()
        token = self.net.state.token
        asked = {i: info.admin for i, info in view.answering.items()}
        paths = ("/routing", "/chunks", "/connections", "/farming")
        replies = await asyncio.gather(
            *(ask_all(asked, token, p, timeout=self.timeout) for p in paths)
        )
        ledger = await asyncio.to_thread(lambda: [e.name for e in self.net.state.ledger()])
        return build_snapshot(
            self.name,
            self.backend,
            view.procs,
            dict(zip(paths, replies, strict=True)),
            ledger=ledger,
            faults=view.faults,
            in_force=view.force,
            now=time.time(),
            rf=self.rf,
            seconds=time.monotonic() - started,
        )

    def snapshot(self) -> Snapshot:
        return run_blocking(self.asnapshot())

    async def anodes(self) -> list[NodeRow]:
        return list((await self.asnapshot()).nodes)

    def nodes(self) -> list[NodeRow]:
        """index, region, status, name, addr, chunks, peers, median RTT, coins per node."""
        return run_blocking(self.anodes())

    async def aregions(self) -> dict[str, RegionRow]:
        view = await self._aview()
        out: dict[str, RegionRow] = {}
        for p in view.procs:
            row = out.get(p.region, RegionRow(p.region, 0, 0))
            paused = p.alive and p.index in view.force.paused
            up = p.alive and not paused and p.info is not None
            out[p.region] = RegionRow(p.region, row.up + up, row.total + 1, row.paused + paused)
        return out

    def regions(self) -> dict[str, RegionRow]:
        """Nodes up (running, not paused) out of the total, per region."""
        return run_blocking(self.aregions())

    async def aconverge(self, *, timeout: float = CONVERGE_TIMEOUT) -> ConvergenceReport:
        return await self.net.aconverge(timeout=timeout)

    def converge(self, *, timeout: float = CONVERGE_TIMEOUT) -> ConvergenceReport:
        """Wait until every running node knows its nearest peers (or ``timeout`` passes)."""
        return run_blocking(self.aconverge(timeout=timeout))

    # -- validation -----------------------------------------------------------------------------

    def _bad_index(self, indices: Sequence[object]) -> str | None:
        try:
            self._check_exists()
        except OperatorError as exc:
            return str(exc)
        known = self.net.backend.indices()
        if not known:
            return (
                f"testnet {self.name} has no nodes (it may have been taken down); "
                "`troon testnet up` starts one"
            )
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, int) or i not in known:
                return (
                    f"no node {i!r} in testnet {self.name} (nodes {min(known)}..{max(known)}); "
                    "op.nodes() lists them"
                )
        return None

    def _check_index(self, index: object) -> int:
        problem = self._bad_index([index])
        if problem:
            raise OperatorError(problem)
        assert isinstance(index, int)
        return index

    def _answering(self, index: object, view: _View) -> NodeInfo:
        """The info of node ``index`` if it runs and is not paused, else OperatorError."""
        i = self._check_index(index)
        proc = view.proc(i)
        if proc is None or not proc.alive:
            raise OperatorError(f"n{i:03d} is down; op.restart({i}) starts it again")
        if i in view.force.paused:
            raise OperatorError(f"n{i:03d} is paused; op.resume({i}) wakes it")
        if proc.info is None:
            raise OperatorError(f"n{i:03d} is still starting; try again in a moment")
        return proc.info

    @staticmethod
    def _name(name_hex: object) -> bytes:
        try:
            name = bytes.fromhex(str(name_hex))
        except ValueError:
            name = b""
        if not isinstance(name_hex, str) or len(name) != 32:
            raise OperatorError(
                f"{name_hex!r} is not a chunk or node name: give 64 hex characters "
                "(op.snapshot() or the ledger lists chunk names)"
            )
        return name

    async def _ask(self, info: NodeInfo, index: int, path: str, **query: str) -> Any:
        timeout = TRACE_TIMEOUT if path in ("/trace", "/lookup") else self.timeout
        try:
            client = AdminClient(*info.admin, self.net.state.token, timeout=timeout)
            return await client.get(path, **query)
        except AdminCallError as exc:
            raise OperatorError(
                f"n{index:03d} did not answer {path}: {exc.message}; it may be overloaded or "
                "gone (op.nodes() shows its status)"
            ) from None

    # -- node faults ----------------------------------------------------------------------------

    async def _process_fault(
        self,
        action: str,
        indices: Sequence[int],
        one: Callable[[int, _View], NodeOutcome],
        *,
        via: str = "",
    ) -> FaultResult:
        if not indices:
            return FaultResult(action, False, f"give node indices, e.g. op.{action}(3)")
        problem = self._bad_index(indices)
        if problem:
            return FaultResult(action, False, f"{action}: {problem}; nothing was done")
        started = time.monotonic()
        view = await self._aview()
        outcomes = await _threads([partial(one, i, view) for i in sorted(set(indices))])
        return self._record(action, outcomes, started, via=via)

    def _record(
        self, action: str, outcomes: Sequence[NodeOutcome], started: float, *, via: str = ""
    ) -> FaultResult:
        stamped = self.log.append(
            [entry(action, [o.index], o.ok, o.detail, via=via) for o in outcomes]
        )
        return FaultResult(
            action,
            all(o.ok for o in outcomes),
            _summary(action, outcomes),
            tuple(outcomes),
            tuple(f.id for f in stamped),
            time.monotonic() - started,
        )

    def _kill_one(self, index: int, view: _View) -> NodeOutcome:
        try:
            if index in view.force.paused and self.backend == "docker":
                self._docker_freeze(index, freeze=False)  # Docker kills no paused container
            r = self.net.kill(index)
        except TestnetError as exc:
            return NodeOutcome(index, False, str(exc))
        return NodeOutcome(index, r.ok, r.detail)

    def _restart_one(self, index: int, view: _View) -> NodeOutcome:
        proc = view.proc(index)
        try:
            if proc is not None and proc.alive and index in view.force.paused:
                ok, detail = self._freeze(index, freeze=False)
                return NodeOutcome(index, ok, f"was paused: {detail}")
            r = self.net.restart(index)
        except TestnetError as exc:
            return NodeOutcome(index, False, str(exc))
        return NodeOutcome(index, r.ok, r.detail)

    def _pause_one(self, index: int, view: _View) -> NodeOutcome:
        proc = view.proc(index)
        if proc is None or not proc.alive:
            return NodeOutcome(index, False, f"is down; op.restart({index}) first")
        if index in view.force.paused:
            return NodeOutcome(index, False, f"is already paused; op.resume({index}) wakes it")
        ok, detail = self._freeze(index, freeze=True)
        return NodeOutcome(index, ok, detail)

    def _resume_one(self, index: int, view: _View) -> NodeOutcome:
        proc = view.proc(index)
        if proc is None or not proc.alive:
            return NodeOutcome(index, False, f"is down, not paused; op.restart({index}) starts it")
        if index not in view.force.paused and self._frozen(index) is not True:
            return NodeOutcome(index, False, "was not paused")
        ok, detail = self._freeze(index, freeze=False)
        return NodeOutcome(index, ok, detail)

    def _freeze(self, index: int, *, freeze: bool) -> tuple[bool, str]:
        """Pause (SIGSTOP / docker pause) or resume a node, then check it took effect."""
        try:
            if self.backend == "docker":
                self._docker_freeze(index, freeze=freeze)
            else:
                backend = self.net.backend
                assert isinstance(backend, LocalTestnet)
                pid = backend.pid(index)
                if pid is None or not procs.send(pid, signal.SIGSTOP if freeze else signal.SIGCONT):
                    return False, "its process is gone"
        except TestnetError as exc:
            return False, str(exc)
        deadline = time.monotonic() + SIGNAL_WAIT
        while self._frozen(index) is not freeze:
            if time.monotonic() > deadline:
                return False, f"{'pause' if freeze else 'resume'} did not take effect"
            time.sleep(0.05)
        return True, "paused" if freeze else "resumed"

    def _frozen(self, index: int) -> bool | None:
        """Is the node stopped (SIGSTOP) or its container paused?  None: cannot tell."""
        if self.backend == "docker":
            try:
                api, box = self._docker_api(index)
                return bool(api.inspect_container(box)["State"]["Paused"])
            except Exception:
                return None
        backend = self.net.backend
        assert isinstance(backend, LocalTestnet)
        pid = backend.pid(index)
        return None if pid is None else _stopped(pid)

    def _docker_api(self, index: int) -> tuple[Any, str]:
        backend = self.net.docker
        placement = backend.plan.placement(index)
        host = backend.hosts.get(placement.host)
        if host is None:
            why = backend.unreachable.get(placement.host, "not connected")
            raise OperatorError(f"host {placement.host} of n{index:03d} is unavailable: {why}")
        return host.client.api, backend.container(index)

    def _docker_freeze(self, index: int, *, freeze: bool) -> None:
        api, box = self._docker_api(index)
        try:
            (api.pause if freeze else api.unpause)(box)
        except Exception as exc:
            what = "pause" if freeze else "unpause"
            raise OperatorError(f"docker {what} of {box} failed: {exc}") from None

    async def akill(self, *indices: int) -> FaultResult:
        return await self._process_fault("kill", indices, self._kill_one)

    def kill(self, *indices: int) -> FaultResult:
        """Crash nodes (SIGKILL / docker kill)."""
        return run_blocking(self.akill(*indices))

    async def arestart(self, *indices: int) -> FaultResult:
        return await self._process_fault("restart", indices, self._restart_one)

    def restart(self, *indices: int) -> FaultResult:
        """Start stopped nodes again (same identity and chunks); a paused one is resumed."""
        return run_blocking(self.arestart(*indices))

    async def apause(self, *indices: int) -> FaultResult:
        return await self._process_fault("pause", indices, self._pause_one)

    def pause(self, *indices: int) -> FaultResult:
        """Freeze nodes (SIGSTOP / docker pause): alive but silent, like a hung machine."""
        return run_blocking(self.apause(*indices))

    async def aresume(self, *indices: int) -> FaultResult:
        return await self._process_fault("resume", indices, self._resume_one)

    def resume(self, *indices: int) -> FaultResult:
        return run_blocking(self.aresume(*indices))

    async def achurn(self, count: int = 1, *, seed: int | None = None) -> FaultResult:
        """Kill ``count`` random answering nodes and restart up to ``count`` of the nodes
        earlier faults left down (seeded); at least ``min(rf, N - 1)`` nodes stay up."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            return FaultResult("churn", False, f"count must be an integer >= 1, got {count!r}")
        started = time.monotonic()
        view = await self._aview()
        answering = sorted(view.answering)
        down = sorted(i for i in view.force.down if i not in view.running)
        keep = min(self.rf, max(1, len(view.procs) - 1))
        if seed is None:
            seed = self.net.spec.seed * 1_000_003 + len(view.faults)
        rng = random.Random(seed)
        back = sorted(rng.sample(down, min(count, len(down))))
        victims = sorted(rng.sample(answering, max(0, min(count, len(answering) - keep))))
        if not victims and not back:
            return FaultResult(
                "churn",
                False,
                f"churn keeps at least {keep} nodes up and only {len(answering)} answer; "
                "op.heal_all() brings the others back",
            )
        outcomes = await _threads([partial(self._restart_one, i, view) for i in back])
        stamped = self.log.append(
            [entry("restart", [o.index], o.ok, o.detail, via="churn") for o in outcomes]
        )
        killed = await _threads([partial(self._kill_one, i, view) for i in victims])
        stamped += self.log.append(
            [entry("kill", [o.index], o.ok, o.detail, via="churn") for o in killed]
        )
        every = [*outcomes, *killed]
        parts = []
        if killed:
            parts.append("killed " + ", ".join(f"n{o.index:03d}" for o in killed if o.ok))
        if outcomes:
            parts.append("restarted " + ", ".join(f"n{o.index:03d}" for o in outcomes if o.ok))
        failed = [o for o in every if not o.ok]
        message = f"churn (seed {seed}): " + "; ".join(parts)
        if failed:
            message += f"; {len(failed)} failed, e.g. n{failed[0].index:03d}: {failed[0].detail}"
        return FaultResult(
            "churn",
            not failed,
            message,
            tuple(every),
            tuple(f.id for f in stamped),
            time.monotonic() - started,
        )

    def churn(self, count: int = 1, *, seed: int | None = None) -> FaultResult:
        return run_blocking(self.achurn(count, seed=seed))

    # -- link faults ----------------------------------------------------------------------------

    def _bad_region(self, region: object) -> str | None:
        names = [r.name for r in self.net.spec.regions]
        if region not in names:
            return f"no region {region!r} in testnet {self.name} (regions: {', '.join(names)})"
        return None

    async def apartition(self, region: str) -> FaultResult:
        problem = self._bad_region(region)
        spec = self.net.spec
        if problem is None and len(spec.regions) < 2:
            problem = f"testnet {self.name} has one region: there is no other side to cut it from"
        if problem:
            return FaultResult("partition", False, f"partition: {problem}; nothing was done")
        view = await self._aview()
        live = view.answering
        inside = [i for i in live if spec.region_of(i) == region]
        outside = [i for i in live if i not in inside]
        if not inside or not outside:
            side = f"in region {region}" if not inside else f"outside region {region}"
            return FaultResult("partition", False, f"partition: no answering node {side}")
        return await self._link_fault(
            "partition",
            partition_pairs(inside, outside),
            {"blackhole": True},
            live,
            targets=inside,
            region=region,
            what=f"region {region} ({len(inside)} nodes) cut off from {len(outside)} others",
        )

    def partition(self, region: str) -> FaultResult:
        """Blackhole every link between ``region`` and the rest, on both ends."""
        return run_blocking(self.apartition(region))

    async def aimpair(
        self,
        latency_ms: float | None = None,
        loss: float | None = None,
        *,
        region: str | None = None,
        index: int | None = None,
    ) -> FaultResult:
        try:
            extra = impair_extra(latency_ms, loss)
        except OperatorError as exc:
            return FaultResult("impair", False, f"impair: {exc}")
        problem = None
        if region is not None and index is not None:
            problem = "give region= or index=, not both"
        elif region is not None:
            problem = self._bad_region(region)
        elif index is not None:
            problem = self._bad_index([index])
        if problem:
            return FaultResult("impair", False, f"impair: {problem}; nothing was done")
        view = await self._aview()
        live = view.answering
        spec = self.net.spec
        if region is not None:
            targets = [i for i in live if spec.region_of(i) == region]
            scope = f"region {region}"
        elif index is not None:
            targets = [index] if index in live else []
            scope = f"n{index:03d}"
        else:
            targets, scope = list(live), "every link"
        if not targets or len(live) < 2:
            return FaultResult("impair", False, f"impair: no answering node to impair ({scope})")
        what = ", ".join(
            part
            for part in (
                f"+{latency_ms:g} ms RTT" if latency_ms else "",
                f"{loss * 100:g}% loss" if loss else "",
            )
            if part
        )
        return await self._link_fault(
            "impair",
            impair_pairs(targets, live),
            extra,
            live,
            targets=targets,
            region=region,
            what=f"{scope}: {what}",
        )

    def impair(
        self,
        latency_ms: float | None = None,
        loss: float | None = None,
        *,
        region: str | None = None,
        index: int | None = None,
    ) -> FaultResult:
        """Add ``latency_ms`` of round-trip time and/or ``loss`` (fraction per direction) to
        every link of a region, of one node, or (neither given) of every node."""
        return run_blocking(self.aimpair(latency_ms, loss, region=region, index=index))

    async def _link_fault(
        self,
        kind: str,
        pairs: set[tuple[int, int]],
        extra: Mapping[str, Any],
        live: Mapping[int, NodeInfo],
        *,
        targets: Iterable[int],
        region: str | None,
        what: str,
    ) -> FaultResult:
        started = time.monotonic()
        token = self.net.state.token
        nodes = sorted({a for a, _ in pairs})
        read = await ask_all(
            {i: live[i].admin for i in nodes}, token, "/impairment", timeout=self.timeout
        )
        current = {
            i: a["rules"]
            for i, a in read.items()
            if isinstance(a, dict) and isinstance(a.get("rules"), dict)
        }
        failed = {i: _reason(a) for i, a in read.items() if i not in current}
        spec = self.net.spec
        plan, undo = link_plan(pairs, live, {i: spec.region_of(i) for i in live}, current, extra)
        calls = [(i, live[i].admin, "/impairment/bulk", {"rules": r}) for i, r in plan.items()]
        posted = await post_all(calls, token, timeout=self.timeout)
        failed.update({i: a.reason for i, a in posted if isinstance(a, Failed)})
        applied = [u for u in undo if u.node not in failed]
        outcomes = [
            NodeOutcome(i, i not in failed, failed.get(i) or f"{len(plan.get(i, {}))} links")
            for i in nodes
        ]
        message = f"{kind} {what}: {len(applied)} link rules on {len(nodes) - len(failed)} nodes"
        if failed:
            first = min(failed)
            message += f"; {len(failed)} nodes failed, e.g. n{first:03d}: {failed[first]}"
        stamped = self.log.append(
            [entry(kind, sorted(targets), bool(applied), message, region=region, undo=applied)]
        )
        return FaultResult(
            kind,
            bool(applied) and not failed,
            message,
            tuple(outcomes),
            tuple(f.id for f in stamped),
            time.monotonic() - started,
        )

    # -- heal all -------------------------------------------------------------------------------

    async def aheal_all(self) -> HealReport:
        """Revert every logged fault still in force (resume, restart, restore each replaced
        rule), then verify: processes run and answer, no node is paused, every rule is back
        to what it was before the fault."""
        started = time.monotonic()
        view = await self._aview()
        force = view.force
        kinds = {f.id: f.kind for f in view.faults}
        paused = sorted(i for i in force.paused if (p := view.proc(i)) and p.alive)
        down = sorted(force.down)
        resumed = await _threads([partial(self._resume_or_wake, i) for i in paused])
        restarted = await _threads([partial(self._bring_back, i, view) for i in down])
        after = await self._aview()
        items, log = await self._verify_processes(after, resumed, restarted, force)
        rule_items, healed = await self._restore_rules(after, force, kinds)
        items += rule_items
        reverts = sorted({i.fault for i in items if i.ok} - {i.fault for i in items if not i.ok})
        if healed or reverts:
            text = f"faults {', '.join(f'#{i}' for i in reverts)} reverted and verified gone"
            if healed:
                text += f"; {len(healed)} link rules restored"
            nodes = sorted({u.node for u in healed})
            log.append(entry("heal", nodes, True, text, undo=healed, reverts=reverts))
        self.log.append(log)
        notes = tuple(
            f"n{p.index:03d} is down but no logged fault did it; op.restart({p.index}) starts it"
            for p in after.procs
            if not p.alive and p.index not in force.down
        )
        return HealReport(self.name, tuple(items), notes, time.monotonic() - started)

    def heal_all(self) -> HealReport:
        return run_blocking(self.aheal_all())

    def _bring_back(self, index: int, view: _View) -> NodeOutcome:
        proc = view.proc(index)
        if proc is not None and proc.alive:
            return NodeOutcome(index, True, "already running again")
        return self._restart_one(index, view)

    def _resume_or_wake(self, index: int) -> NodeOutcome:
        ok, detail = self._freeze(index, freeze=False)
        return NodeOutcome(index, ok, detail)

    async def _verify_processes(
        self,
        after: _View,
        resumed: Sequence[NodeOutcome],
        restarted: Sequence[NodeOutcome],
        force: Outstanding,
    ) -> tuple[list[HealItem], list[Fault]]:
        token = self.net.state.token
        running = after.running
        asked = {
            o.index: running[o.index].admin for o in [*resumed, *restarted] if o.index in running
        }
        infos = await ask_all(asked, token, "/info", timeout=self.timeout)
        items: list[HealItem] = []
        log: list[Fault] = []
        for kind, outcomes, ids in (
            ("pause", resumed, force.paused),
            ("kill", restarted, force.down),
        ):
            for o in outcomes:
                detail = o.detail
                ok = o.ok
                if ok and not isinstance(infos.get(o.index), dict):
                    ok, detail = (
                        False,
                        f"{detail}, but it does not answer ({_reason(infos.get(o.index))})",
                    )
                if ok and await asyncio.to_thread(self._frozen, o.index) is True:
                    ok, detail = False, f"{detail}, but it is still stopped"
                action = "resume" if kind == "pause" else "restart"
                items.append(HealItem(ids[o.index], kind, f"n{o.index:03d}", ok, detail))
                log.append(entry(action, [o.index], o.ok, detail, via="heal"))
        return items, log

    async def _restore_rules(
        self, after: _View, force: Outstanding, kinds: Mapping[int, str]
    ) -> tuple[list[HealItem], list[RuleUndo]]:
        token = self.net.state.token
        plan = restore_plan(force.rules)
        running = {i: n for i, n in after.running.items() if i not in after.force.down}
        calls = [
            (i, running[i].admin, "/impairment/bulk", {"rules": rules})
            for i, rules in plan.items()
            if i in running
        ]
        posted = dict(await post_all(calls, token, timeout=self.timeout))
        check = await ask_all(
            {i: running[i].admin for i in plan if i in running},
            token,
            "/impairment",
            timeout=self.timeout,
        )
        by_fault: dict[int, list[str]] = {}
        healed: list[RuleUndo] = []
        for (node, selector), (fid, previous) in sorted(force.rules.items()):
            problems = by_fault.setdefault(fid, [])
            if node not in running:
                proc = after.proc(node)
                if proc is not None and not proc.alive:
                    healed.append(RuleUndo(node, selector, previous))  # gone with its process
                    continue
                problems.append(f"n{node:03d} is paused or not answering")
                continue
            answer = check.get(node)
            if isinstance(posted.get(node), Failed) or not isinstance(answer, dict):
                problems.append(f"n{node:03d}: {_reason(posted.get(node) or answer)}")
                continue
            now = answer.get("rules", {}).get(selector)
            if same_rule(now, previous):
                healed.append(RuleUndo(node, selector, previous))
            else:
                problems.append(f"n{node:03d} {selector} is still {now}")
        items = []
        for fid, problems in sorted(by_fault.items()):
            rules = sum(1 for (_, _), (f, _) in force.rules.items() if f == fid)
            detail = f"{rules} link rules restored and checked"
            if problems:
                detail = f"{len(problems)} of {rules} rules not restored: {problems[0]}"
            items.append(HealItem(fid, kinds.get(fid, "impair"), "links", not problems, detail))
        return items, healed

    # -- data -----------------------------------------------------------------------------------

    async def aput(
        self, count: int = 20, size: int = 4096, *, seed: int | None = None
    ) -> PutReport:
        return await self.net.aput(count, size, seed=seed)

    def put(self, count: int = 20, size: int = 4096, *, seed: int | None = None) -> PutReport:
        """Store ``count`` random chunks of ``size`` bytes (each recorded in the ledger)."""
        return run_blocking(self.aput(count, size, seed=seed))

    async def aget(self, name_hex: str) -> GetResult:
        name = self._name(name_hex)
        view = await self._aview()
        contacts = [info.contact for info in view.answering.values()]
        if not contacts:
            return GetResult(name.hex(), False, f"no node of {self.name} answers; heal_all()")
        random.shuffle(contacts)
        started = time.monotonic()
        client = Client()
        await client.start(oracle.client_host(contacts))
        try:
            reason = "no node to connect to"
            for contact in contacts[:3]:
                try:
                    await client.connect(contact)
                    break
                except ClientError as exc:
                    reason = str(exc)
            else:
                return GetResult(name.hex(), False, f"cannot connect: {reason}")
            async with asyncio.timeout(GET_TIMEOUT):
                data = await client.get_chunk(name)
        except (ClientError, TimeoutError) as exc:
            took = time.monotonic() - started
            return GetResult(
                name.hex(), False, str(exc) or f"timed out after {GET_TIMEOUT:g} s", took
            )
        finally:
            await client.close()
        took = time.monotonic() - started
        if chunk_name(data) != name:
            return GetResult(name.hex(), False, "data does not match the chunk name", took)
        return GetResult(name.hex(), True, f"{len(data)} bytes verified", took, data)

    def get(self, name_hex: str) -> GetResult:
        """Fetch chunk ``name_hex`` through a client and verify it."""
        return run_blocking(self.aget(name_hex))

    async def acheck(self, *, sample: int = 8, seed: int | None = None) -> oracle.OracleReport:
        return await self.net.acheck(sample=sample, seed=seed)

    def check(self, *, sample: int = 8, seed: int | None = None) -> oracle.OracleReport:
        """The integrity oracle over every ledger chunk, plus ``sample`` end-to-end reads."""
        return run_blocking(self.acheck(sample=sample, seed=seed))

    async def afarming(self, *, wait: float = 20.0) -> FarmingReport:
        return await afarming(self.net, wait=wait)

    def farming(self, *, wait: float = 20.0) -> FarmingReport:
        """Farming per node and region, and the supply audit (testnet/farming.py)."""
        return run_blocking(self.afarming(wait=wait))

    def soak(self) -> LiveSoak | None:
        """The newest soak run on this testnet (``troon testnet soak``), judged by the
        checker so far: while it runs, acknowledged files unreadable right now, records
        gone backwards, double spends; after it, the final reads too.  None if no run."""
        folder = latest_run(self.name, home=self.net.state.root.parent.parent)
        return None if folder is None else live_status(folder)

    # -- debugging ------------------------------------------------------------------------------

    async def arouting(self, index: int) -> RoutingAnalysis:
        view = await self._aview()
        info = self._answering(index, view)
        answer = await self._ask(info, index, "/routing")
        live = {n.name: i for i, n in view.answering.items()}
        paused = [view.running[i].name for i in view.force.paused if i in view.running]
        try:
            return analyse_routing(index, info.name, answer, live, view.known, paused=paused)
        except ValueError as exc:
            raise OperatorError(f"n{index:03d}: {exc}") from None

    def routing(self, index: int) -> RoutingAnalysis:
        """Node ``index``'s routing table against the ground truth of every live node."""
        return run_blocking(self.arouting(index))

    async def atrace(self, index: int, name_hex: str) -> LookupTrace:
        name = self._name(name_hex)
        view = await self._aview()
        info = self._answering(index, view)
        try:
            answer = await self._ask(info, index, "/trace", name=name.hex())
        except OperatorError as exc:
            if "(404)" not in str(exc) and "no such path" not in str(exc):
                raise
            answer = await self._ask(info, index, "/lookup", name=name.hex())  # older node
        live = {n.name: i for i, n in view.answering.items()}
        try:
            return build_trace(index, answer, live, view.known, self.rf, own=info.name)
        except ValueError as exc:
            raise OperatorError(f"n{index:03d}: {exc}") from None

    def trace(self, index: int, name_hex: str) -> LookupTrace:
        """A lookup for ``name_hex`` from node ``index``, hop by hop."""
        return run_blocking(self.atrace(index, name_hex))

    async def alocate(self, name_hex: str) -> ChunkLocation:
        name = self._name(name_hex)
        view = await self._aview()
        token = self.net.state.token
        asked = {i: info.admin for i, info in view.answering.items()}
        answers: dict[int, Any] = await ask_all(
            asked, token, "/has", timeout=self.timeout, name=name.hex()
        )
        answers.update({i: Failed("paused") for i in view.running if i not in asked})
        ledger = await asyncio.to_thread(lambda: {e.name for e in self.net.state.ledger()})
        spec = self.net.spec
        regions = {i: spec.region_of(i) for i in view.running}
        return build_location(
            name, answers, view.running, regions, in_ledger=name in ledger, rf=self.rf
        )

    def locate(self, name_hex: str) -> ChunkLocation:
        """Who should hold chunk ``name_hex``, who does, and each copy's state."""
        return run_blocking(self.alocate(name_hex))

    async def aconnections(self, index: int) -> list[ConnRow]:
        view = await self._aview()
        info = self._answering(index, view)
        conns, impairment = await asyncio.gather(
            self._ask(info, index, "/connections"), self._ask(info, index, "/impairment")
        )
        spec = self.net.spec
        by_key = {n.public_key: i for i, n in view.running.items()}
        regions = {i: spec.region_of(i) for i in view.running}
        names = {i: n.name for i, n in view.running.items()}
        try:
            return build_connections(conns, impairment, by_key, regions, names)
        except ValueError as exc:
            raise OperatorError(f"n{index:03d}: {exc}") from None

    def connections(self, index: int) -> list[ConnRow]:
        """Node ``index``'s sessions: RTT, loss, retransmits, cwnd, impairment in force."""
        return run_blocking(self.aconnections(index))

    async def anode_detail(self, index: int) -> NodeDetail:
        view = await self._aview()
        info = self._answering(index, view)
        answers = await asyncio.gather(
            self._ask(info, index, "/info"),
            self._ask(info, index, "/counters"),
            self._ask(info, index, "/farming"),
            self._ask(info, index, "/logs", limit="0"),
            return_exceptions=True,
        )
        for answer in answers[:2]:
            if isinstance(answer, BaseException):
                raise answer
        got = [None if isinstance(a, BaseException) else a for a in answers]
        region = self.net.spec.region_of(index)
        try:
            return build_detail(index, region, got[0], got[1], farming=got[2], logs=got[3])
        except ValueError as exc:
            raise OperatorError(f"n{index:03d}: {exc}") from None

    def node_detail(self, index: int) -> NodeDetail:
        """Node ``index``'s replication queue, storage use, farming and transport counters."""
        return run_blocking(self.anode_detail(index))

    async def alogs(
        self,
        index: int,
        *,
        since: int = 0,
        level: str | None = None,
        grep: str | None = None,
        limit: int = 500,
    ) -> list[LogLine]:
        try:
            level = check_level(level)
        except ValueError as exc:
            raise OperatorError(str(exc)) from None
        i = self._check_index(index)
        view = await self._aview()
        info = view.answering.get(i)
        if info is not None:
            query = {"since": str(since), "limit": str(limit)}
            if level:
                query["level"] = level
            if grep:
                query["grep"] = grep
            try:
                return log_lines(await self._ask(info, i, "/logs", **query))
            except (OperatorError, ValueError) as exc:
                if "(404)" not in str(exc) and "no such path" not in str(exc):
                    raise OperatorError(str(exc)) from None
        try:
            text = await asyncio.to_thread(self.net.logs, i, tail=20_000)
        except TestnetError as exc:
            raise OperatorError(f"no logs for n{i:03d}: {exc}") from None
        lines = filter_logs(parse_log_text(text), since=since, level=level, grep=grep)
        return lines[-limit:] if limit > 0 else []

    def logs(
        self,
        index: int,
        *,
        since: int = 0,
        level: str | None = None,
        grep: str | None = None,
        limit: int = 500,
    ) -> list[LogLine]:
        """Node ``index``'s recent log records after ``since`` (its in-memory ring while it
        runs, else its log file), at least ``level``, containing ``grep``."""
        return run_blocking(self.alogs(index, since=since, level=level, grep=grep, limit=limit))

    async def aset_log_level(self, index: int, level: str) -> str:
        try:
            name = check_level(level)
        except ValueError as exc:
            raise OperatorError(str(exc)) from None
        view = await self._aview()
        info = self._answering(index, view)
        try:
            client = AdminClient(*info.admin, self.net.state.token, timeout=self.timeout)
            answer = await client.post("/log-level", {"level": name})
        except AdminCallError as exc:
            raise OperatorError(f"n{index:03d} did not take the log level: {exc.message}") from None
        return str(answer.get("level", name)) if isinstance(answer, dict) else str(name)

    def set_log_level(self, index: int, level: str) -> str:
        """Change node ``index``'s log level at run time; returns the level now in force."""
        return run_blocking(self.aset_log_level(index, level))


# -- helpers -----------------------------------------------------------------------------------


async def _threads(calls: Sequence[Callable[[], NodeOutcome]]) -> list[NodeOutcome]:
    """Run blocking per-node calls on worker threads, a few at a time, in input order."""
    gate = asyncio.Semaphore(RESTARTS_AT_ONCE)

    async def one(call: Callable[[], NodeOutcome]) -> NodeOutcome:
        async with gate:
            return await asyncio.to_thread(call)

    return list(await asyncio.gather(*(one(c) for c in calls)))


def _summary(action: str, outcomes: Sequence[NodeOutcome]) -> str:
    done = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    past = {"kill": "killed", "pause": "paused", "stop": "stopped"}.get(action, f"{action}ed")
    text = f"{past} " + ", ".join(f"n{o.index:03d}" for o in done) if done else ""
    if failed:
        fails = "; ".join(f"n{o.index:03d} {o.detail}" for o in failed[:3])
        more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
        text = f"{text}; " if text else ""
        text += f"{action} failed: {fails}{more}"
    return text


def _reason(answer: object) -> str:
    if isinstance(answer, Failed):
        return answer.reason
    return "no answer" if answer is None else "malformed answer"


def _stopped(pid: int) -> bool | None:
    """Is process ``pid`` stopped by a signal (state T)?  None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return bool(fields) and fields[0] in ("T", "t")
