"""``Testnet``: the one Python API over a running testnet (the CLI and the console use it).

Each operation has an async form (``a``-prefixed, for notebooks whose loop is running) and a
blocking one.  Reports are plain frozen dataclasses; :mod:`testnet.views` renders them.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from node.client.aio import Client, ClientError
from node.storage.chunkstore import MAX_CHUNK_SIZE
from testnet import churn as churn_mod
from testnet import converge, oracle
from testnet.errors import BackendError
from testnet.fleet import Failed, ask_all
from testnet.local import DEFAULT_CONCURRENCY, LEAVE_GRACE, LocalTestnet, NodeResult, Report
from testnet.progress import progress_bar
from testnet.regions import apply_regions
from testnet.spec import ChurnSpec, TestnetSpec
from testnet.state import LedgerEntry, NodeInfo, State

if TYPE_CHECKING:
    from testnet.docker_backend import DockerOptions, DockerTestnet
    from testnet.hosts import DockerHost

PUT_CONCURRENCY = 4
PUT_TIMEOUT = 60.0


@dataclass(frozen=True)
class NodeStatus:
    """One row of ``troon testnet status``."""

    index: int
    region: str
    name: bytes | None
    addr: tuple[str, int] | None
    pid: int | None
    alive: bool
    routing: int | None
    chunks: int | None
    error: str | None = None


@dataclass(frozen=True)
class PutReport:
    """Chunks stored through a client (every stored one is in the ledger)."""

    testnet: str
    asked: int
    stored: int
    bytes: int
    gateway: str
    seconds: float
    failures: tuple[str, ...] = ()


class Testnet:
    """A running testnet on any backend: local processes or Docker containers."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, backend: LocalTestnet | DockerTestnet) -> None:
        self.backend = backend

    @classmethod
    def up(
        cls,
        spec: TestnetSpec,
        *,
        home: Path | None = None,
        console: Console | None = None,
        concurrency: int | None = None,
        ready_timeout: float = 60.0,
        hosts: list[DockerHost] | None = None,
        options: DockerOptions | None = None,
    ) -> tuple[Testnet, Report]:
        """Start ``spec`` on its backend (``local``, or ``docker``/``ssh`` containers).

        Container backends connect to the spec's hosts (default: the local daemon) unless
        ``hosts`` are given; ``options`` tune how containers are made.
        """
        backend: LocalTestnet | DockerTestnet
        if spec.backend == "local":
            backend, report = LocalTestnet.up(
                spec,
                home=home,
                console=console,
                concurrency=DEFAULT_CONCURRENCY if concurrency is None else concurrency,
                ready_timeout=ready_timeout,
            )
        else:
            backend, report = _docker_up(
                spec,
                home=home,
                console=console,
                concurrency=concurrency,
                ready_timeout=ready_timeout,
                hosts=hosts,
                options=options,
            )
        net = cls(backend)
        if spec.latency_ms or spec.loss:
            failures = asyncio.run(net.aapply_regions())
            if failures:
                report = _with_region_failures(report, failures)
        return net, report

    @classmethod
    def open(cls, name: str, *, home: Path | None = None) -> Testnet:
        from testnet.docker_backend import RECORD, DockerTestnet

        state = State.open(name, home=home)
        if (state.root / RECORD).exists():
            return cls(DockerTestnet.open(name, home=home))
        return cls(LocalTestnet.open(name, home=home))

    @property
    def docker(self) -> DockerTestnet:
        """The container backend, or a BackendError for a local testnet."""
        from testnet.docker_backend import DockerTestnet

        if not isinstance(self.backend, DockerTestnet):
            raise BackendError(
                f"testnet {self.name} runs local processes; this needs a container testnet "
                "(`troon testnet up --backend docker`)"
            )
        return self.backend

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def state(self) -> State:
        return self.backend.state

    @property
    def spec(self) -> TestnetSpec:
        return self.state.spec

    def live(self) -> dict[int, NodeInfo]:
        return self.backend.live_infos()

    # -- node actions ---------------------------------------------------------------------

    def kill(self, index: int) -> NodeResult:
        return self.backend.kill(index)

    def restart(self, index: int) -> NodeResult:
        """Start a stopped node again; its region links are impaired again too."""
        result = self.backend.restart(index)
        if result.ok and (self.spec.latency_ms or self.spec.loss):
            failures = asyncio.run(self.aapply_regions(only=index))
            if failures:
                detail = f"{result.detail}; {len(failures)} region rules failed: {failures[0]}"
                return NodeResult(index, False, detail, result.seconds, result.info)
        return result

    def pids(self) -> dict[int, int]:
        return self.backend.pids()

    def down(self, *, grace: float = LEAVE_GRACE, console: Console | None = None) -> Report:
        return self.backend.down(grace=grace, console=console)

    def grow(
        self, indices: list[int], *, console: Console | None = None, timeout: float = 60.0
    ) -> Report:
        """Start more of the spec's nodes into the running testnet."""
        grow = getattr(self.backend, "grow", None)
        if grow is None:
            raise BackendError(f"the {self.spec.backend} backend cannot grow a testnet yet")
        report: Report = grow(indices, console=console, timeout=timeout)
        if report.ok and (self.spec.latency_ms or self.spec.loss):
            failures = asyncio.run(self.aapply_regions(only=indices))
            if failures:
                report = _with_region_failures(report, failures)
        return report

    def logs(self, index: int, *, tail: int | None = None) -> str:
        """Node ``index``'s log (a container's output, or a local node's log file)."""
        if index not in self.backend.indices():
            raise BackendError(
                f"no node {index} in testnet {self.name}; see `troon testnet status`"
            )
        if not isinstance(self.backend, LocalTestnet):
            return self.backend.logs(index, tail=tail)
        path = self.state.log_path(index)
        try:
            lines = path.read_text(errors="replace").splitlines(keepends=True)
        except FileNotFoundError:
            return ""
        return "".join(lines if tail is None else lines[-tail:] if tail else [])

    def exec(self, index: int, command: list[str]) -> tuple[int, str]:
        """Run ``command`` inside node ``index``'s container: (exit code, output)."""
        return self.docker.exec(index, command)

    def upgrade(
        self, image: str, *, console: Console | None = None, repair_timeout: float = 120.0
    ) -> Report:
        """Rolling upgrade to ``image``: one node at a time, never a chunk below 3 copies."""
        from testnet.upgrade import rolling_upgrade

        report = rolling_upgrade(self.docker, image, console=console, repair_timeout=repair_timeout)
        if self.spec.latency_ms or self.spec.loss:
            failures = asyncio.run(self.aapply_regions())
            if failures:
                report = _with_region_failures(report, failures)
        return report

    # -- regions --------------------------------------------------------------------------

    async def aapply_regions(self, *, only: int | Collection[int] | None = None) -> list[str]:
        """Install the spec's latency/loss matrix: each node's peers assigned to impairment
        groups by region, one rule per region (all nodes, or what ``only`` needs); returns
        the failures."""
        return await apply_regions(self.spec, self.live(), self.state.token, only=only)

    # -- status ---------------------------------------------------------------------------

    async def astatus(self) -> list[NodeStatus]:
        procs = self.backend.nodes()
        admins = {p.index: p.info.admin for p in procs if p.alive and p.info is not None}
        token = self.state.token
        routing, chunks = await asyncio.gather(
            ask_all(admins, token, "/routing"), ask_all(admins, token, "/chunks")
        )
        out = []
        for p in procs:
            r, c = routing.get(p.index), chunks.get(p.index)
            error = next((a.reason for a in (r, c) if isinstance(a, Failed)), None)
            if p.alive and p.info is None:
                error = "starting (no node.json yet)"
            out.append(
                NodeStatus(
                    p.index,
                    p.region,
                    p.info.name if p.info else None,
                    p.info.addr if p.info else None,
                    p.pid if p.alive else None,
                    p.alive,
                    _field(r, "size"),
                    _field(c, "count"),
                    error,
                )
            )
        return out

    def status(self) -> list[NodeStatus]:
        return asyncio.run(self.astatus())

    # -- data -----------------------------------------------------------------------------

    async def aput(
        self,
        chunks: int,
        size: int,
        *,
        on_stored: Callable[[int, str], None] | None = None,
        seed: int | None = None,
    ) -> PutReport:
        """Store ``chunks`` random chunks of ``size`` bytes; record each acked one."""
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise BackendError(f"--size must be 1..{MAX_CHUNK_SIZE} bytes, got {size}")
        if chunks < 0:
            raise BackendError(f"--chunks must be >= 0, got {chunks}")
        contacts = [info.contact for info in self.live().values()]
        if not contacts:
            raise BackendError(
                f"testnet {self.name} has no running node; see `troon testnet status`"
            )
        random.Random(seed).shuffle(contacts)
        started = time.monotonic()
        client = Client()
        await client.start(oracle.client_host(contacts))
        try:
            gateway = await _connect(client, contacts)
            stored, failures = await self._put_many(client, chunks, size, on_stored)
        finally:
            await client.close()
        took = time.monotonic() - started
        return PutReport(self.name, chunks, stored, stored * size, gateway, took, tuple(failures))

    async def _put_many(
        self, client: Client, chunks: int, size: int, on_stored: Callable[[int, str], None] | None
    ) -> tuple[int, list[str]]:
        gate = asyncio.Semaphore(PUT_CONCURRENCY)
        failures: list[str] = []
        stored = 0

        async def one(i: int) -> None:
            nonlocal stored
            async with gate:
                try:
                    async with asyncio.timeout(PUT_TIMEOUT):
                        name = await client.put_chunk(os.urandom(size))
                except (ClientError, TimeoutError) as exc:
                    failures.append(f"chunk {i}: {str(exc) or 'timed out'}")
                    if on_stored is not None:
                        on_stored(i, "failed")
                    return
                self.state.record([LedgerEntry(name, size, time.time())])
                stored += 1
                if on_stored is not None:
                    on_stored(i, name.hex()[:12])

        await asyncio.gather(*(one(i) for i in range(chunks)))
        return stored, failures

    def put(self, chunks: int, size: int, *, console: Console | None = None) -> PutReport:
        with progress_bar(console, chunks, f"storing {chunks} chunks", item="#{}") as advance:
            return asyncio.run(self.aput(chunks, size, on_stored=advance))

    async def acheck(self, *, sample: int = 8, seed: int | None = None) -> oracle.OracleReport:
        """Run the integrity oracle over every chunk in the ledger."""
        names = [e.name for e in self.state.ledger()]
        rf = dict(self.spec.node).get("replication_factor", oracle.REPLICATION_FACTOR)
        infos = self.live()
        return await oracle.check(
            self.name, infos, self.state.token, names, sample=sample, seed=seed, rf=rf
        )

    def check(self, *, sample: int = 8, seed: int | None = None) -> oracle.OracleReport:
        return asyncio.run(self.acheck(sample=sample, seed=seed))

    # -- routing and churn ----------------------------------------------------------------

    async def aconverge(self, *, timeout: float = 30.0) -> converge.ConvergenceReport:
        return await converge.wait_converged(self.live(), self.state.token, timeout=timeout)

    def converge(self, *, timeout: float = 30.0) -> converge.ConvergenceReport:
        return asyncio.run(self.aconverge(timeout=timeout))

    def churn_plan(self, spec: ChurnSpec) -> list[churn_mod.ChurnAction]:
        """The seeded schedule for this testnet (keeps a close group's worth of nodes up)."""
        nodes = self.spec.nodes
        seed = self.spec.seed if spec.seed is None else spec.seed
        rf = dict(self.spec.node).get("replication_factor", oracle.REPLICATION_FACTOR)
        return churn_mod.schedule(spec, nodes, seed=seed, min_alive=min(rf, nodes - 1))

    def churn(
        self, actions: list[churn_mod.ChurnAction], *, console: Console | None = None
    ) -> list[churn_mod.ChurnOutcome]:
        with progress_bar(console, len(actions), "churning") as advance:
            return churn_mod.run_churn(
                self,
                actions,
                on_outcome=lambda o: advance(o.action.index, f"{o.action.action} {o.detail}"),
            )


def _field(answer: object, key: str) -> int | None:
    if isinstance(answer, dict) and type(answer.get(key)) is int:
        return int(answer[key])
    return None


async def _connect(client: Client, contacts: list[str]) -> str:
    reason = "no contacts"
    for contact in contacts[:3]:
        try:
            await client.connect(contact)
            return contact.partition("/")[0]
        except ClientError as exc:
            reason = str(exc)
    raise BackendError(
        f"cannot reach any node as a client ({reason}); check `troon testnet status`"
    )


def _docker_up(
    spec: TestnetSpec,
    *,
    home: Path | None,
    console: Console | None,
    concurrency: int | None,
    ready_timeout: float,
    hosts: list[DockerHost] | None,
    options: DockerOptions | None,
) -> tuple[DockerTestnet, Report]:
    from testnet import docker_backend as db
    from testnet.docker_plan import DEFAULT_IMAGE

    image = spec.image or DEFAULT_IMAGE
    if options is None:
        options = db.DockerOptions(
            image=image,
            concurrency=db.DEFAULT_CONCURRENCY if concurrency is None else concurrency,
            ready_timeout=ready_timeout,
        )
    unreachable: dict[str, str] = {}
    if hosts is None:
        wanted = [(h.url, h.advertise_address()) for h in spec.hosts] or [("local", None)]
        hosts, unreachable = db.connect(wanted, image=options.image, console=console)
    return db.DockerTestnet.up(
        spec, hosts, home=home, console=console, options=options, unreachable=unreachable
    )


def _with_region_failures(report: Report, failures: list[str]) -> Report:
    note = f"{len(failures)} region impairment rules failed, e.g. {failures[0]}"
    return Report(report.action, report.name, report.results, report.seconds, (note,))
