"""The local backend: N node processes on loopback, no containers (an adapter).

``up`` starts node 0 with ``first: true``, waits for its ``node.json``, then starts the
others through a sliding window of at most ``concurrency`` starting nodes, each joining
through up to :data:`MAX_CONTACTS` nodes that are already up.  ``down`` asks every node to
leave (SIGTERM), SIGKILLs whoever is still there after a grace period, and removes the state
folder.  ``kill`` is a crash (SIGKILL); ``restart`` starts a stopped node again from its own
folder, so it keeps its identity and its chunks.  ``create`` makes the state folder with no
node running and ``grow`` starts more of the spec's nodes into a running testnet (a staged
rollout: testnet/rollout.py); ``up`` is ``create`` plus growing every node.

Every multi-node operation returns one :class:`NodeResult` per node and keeps going past a
failed node (DESIGN.md house style 11); only node 0 failing stops ``up`` early, because
the others would have no network to join.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from testnet import procs
from testnet.errors import BackendError, StateError
from testnet.forkserver import ForkServer
from testnet.progress import ProgressCb, no_progress, progress_bar
from testnet.spec import TestnetSpec
from testnet.state import NodeInfo, State, list_testnets

MAX_CONTACTS = 3
DEFAULT_CONCURRENCY = 24
READY_TIMEOUT = 60.0  # seconds from spawn to node.json
LEAVE_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
KILL_WAIT = 5.0  # seconds for a SIGKILLed process to vanish
POLL = 0.05
LOG_TAIL = 200  # characters of a failed node's log quoted in its result


@dataclass(frozen=True)
class NodeResult:
    """What happened to one node in one operation."""

    index: int
    ok: bool
    detail: str
    seconds: float = 0.0
    info: NodeInfo | None = None


@dataclass(frozen=True)
class Report:
    """Per-node results of one operation over the testnet."""

    action: str
    name: str
    results: tuple[NodeResult, ...]
    seconds: float
    notes: tuple[str, ...] = ()  # problems that belong to no single node

    @property
    def failed(self) -> list[NodeResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.notes


@dataclass(frozen=True)
class NodeProc:
    """A node as the backend sees it: its index, process and ``node.json``."""

    index: int
    region: str
    pid: int | None
    alive: bool
    info: NodeInfo | None


@dataclass
class _Starting:
    pid: int
    started: float


class LocalTestnet:
    """A testnet of local processes, bound to its state folder."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._spawner: Callable[[Path, Path], int] = procs.spawn_node

    # -- finding testnets -----------------------------------------------------------------

    @classmethod
    def open(cls, name: str, *, home: Path | None = None) -> LocalTestnet:
        return cls(State.open(name, home=home))

    @staticmethod
    def names(home: Path | None = None) -> list[str]:
        return list_testnets(home)

    @property
    def name(self) -> str:
        return self.state.name

    def indices(self) -> list[int]:
        """Node indices with a folder (works even if the manifest is damaged)."""
        nodes = self.state.root / "nodes"
        if not nodes.is_dir():
            return []
        return sorted(int(p.name[1:]) for p in nodes.iterdir() if p.name[1:].isdecimal())

    # -- processes ------------------------------------------------------------------------

    def pid(self, index: int) -> int | None:
        return self.state.read_pid(index)

    def alive(self, index: int) -> bool:
        pid = self.pid(index)
        return pid is not None and procs.pid_alive(pid, str(self.state.config_path(index)))

    def pids(self) -> dict[int, int]:
        """Pids of the running nodes, by index."""
        out = {}
        for i in self.indices():
            pid = self.pid(i)
            if pid is not None and self.alive(i):
                out[i] = pid
        return out

    def nodes(self) -> list[NodeProc]:
        spec = self.state.spec
        out = []
        for i in self.indices():
            alive = self.alive(i)
            region = spec.region_of(i) if i < spec.nodes else "?"
            info = self.state.read_node_info(i) if alive else None
            out.append(NodeProc(i, region, self.pid(i), alive, info))
        return out

    def live_infos(self) -> dict[int, NodeInfo]:
        """``node.json`` of every running, ready node."""
        return {p.index: p.info for p in self.nodes() if p.alive and p.info is not None}

    # -- up -------------------------------------------------------------------------------

    @classmethod
    def create(cls, spec: TestnetSpec, *, home: Path | None = None) -> LocalTestnet:
        """Create the state folder of ``spec`` with no node running (``grow`` starts them)."""
        if spec.backend != "local":
            raise BackendError(
                f"backend {spec.backend!r} is not available yet; use backend: local "
                "(or leave backend out of the spec)"
            )
        cls._refuse_existing(spec.name, home)
        return cls(State.create(spec, home=home))

    @classmethod
    def up(
        cls,
        spec: TestnetSpec,
        *,
        home: Path | None = None,
        console: Console | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        ready_timeout: float = READY_TIMEOUT,
        indices: Sequence[int] | None = None,
    ) -> tuple[LocalTestnet, Report]:
        """Create the state folder and start the nodes ``indices`` (default: every node; the
        lowest starts the network); see the module docstring."""
        if concurrency < 1:
            raise BackendError("concurrency must be >= 1")
        wanted = list(range(spec.nodes)) if indices is None else sorted(set(indices))
        if any(not 0 <= i < spec.nodes for i in wanted):
            raise BackendError(f"indices: every node index must be in 0..{spec.nodes - 1}")
        net = cls.create(spec, home=home)
        started = time.monotonic()
        results: list[NodeResult] = []
        with progress_bar(console, len(wanted), f"starting {spec.name}") as advance:
            if wanted:
                results = net._start_all(wanted, {}, concurrency, ready_timeout, advance)
        report = Report("up", spec.name, tuple(results), time.monotonic() - started)
        return net, report

    def grow(
        self,
        indices: Iterable[int],
        *,
        console: Console | None = None,
        timeout: float = READY_TIMEOUT,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> Report:
        """Start the nodes ``indices`` of the spec into the running testnet, each joining
        through nodes already up; on an empty testnet the lowest index starts the network.
        A node that is already running is reported ok and left alone."""
        spec = self.state.spec
        wanted = sorted(set(indices))
        bad = [i for i in wanted if not 0 <= i < spec.nodes]
        if bad:
            raise BackendError(
                f"no node {bad[0]} in testnet {self.name} (indices 0..{spec.nodes - 1}); "
                "grow only starts nodes the spec has"
            )
        if concurrency < 1:
            raise BackendError("concurrency must be >= 1")
        started = time.monotonic()
        ready = self.live_infos()
        running = {i for i in wanted if self.alive(i)}
        results = [NodeResult(i, True, "already running", 0.0, ready.get(i)) for i in running]
        todo = [i for i in wanted if i not in running]
        with progress_bar(console, len(todo), f"growing {self.name} by {len(todo)}") as advance:
            if todo:
                results += self._start_all(todo, ready, concurrency, timeout, advance)
        results.sort(key=lambda r: r.index)
        return Report("grow", self.name, tuple(results), time.monotonic() - started)

    @classmethod
    def _refuse_existing(cls, name: str, home: Path | None) -> None:
        try:
            net = cls.open(name, home=home)
        except StateError:
            return
        if net.pids():
            raise StateError(f"testnet {name} is already up; `troon testnet down {name}` first")
        raise StateError(
            f"testnet {name} has a state folder ({net.state.root}) but no running node; "
            f"`troon testnet down {name}` removes it"
        )

    def _start_all(
        self,
        indices: list[int],
        ready: dict[int, NodeInfo],
        concurrency: int,
        timeout: float,
        advance: ProgressCb,
    ) -> list[NodeResult]:
        with ForkServer(procs.node_env()) as server:
            self._spawner = server.spawn
            try:
                return self._start_each(indices, dict(ready), concurrency, timeout, advance)
            finally:
                self._spawner = procs.spawn_node

    def _start_each(
        self,
        indices: list[int],
        ready: dict[int, NodeInfo],
        concurrency: int,
        timeout: float,
        advance: ProgressCb,
    ) -> list[NodeResult]:
        """Start ``indices`` joining ``ready``; with nothing ready the first one starts the
        network alone and, if it fails, the others are not started (nothing to join)."""
        spec = self.state.spec
        results: dict[int, NodeResult] = {}
        queue = list(indices)
        if not ready:
            first = queue.pop(0)
            self._launch(first, spec, [])
            alone = {first: _Starting(self.pid(first) or 0, time.monotonic())}
            results.update(self._await(alone, timeout, advance))
            info = results[first].info
            if info is None:
                for i in queue:
                    detail = f"not started: node {first} failed, nothing to join"
                    results[i] = NodeResult(i, False, detail)
                    advance(i, "skipped")
                return [results[i] for i in sorted(results)]
            ready = {first: info}
        starting: dict[int, _Starting] = {}
        while queue or starting:
            while queue and len(starting) < concurrency:
                i = queue.pop(0)
                contacts = self._contacts(spec, i, list(ready.values()))
                starting[i] = _Starting(self._launch(i, spec, contacts), time.monotonic())
            settled = self._poll(starting, timeout)
            for i, result in settled.items():
                del starting[i]
                results[i] = result
                if result.ok and result.info is not None:
                    ready[i] = result.info
                advance(i, "ready" if result.ok else "failed")
            if not settled:
                time.sleep(POLL)
        return [results[i] for i in sorted(results)]

    @staticmethod
    def _contacts(spec: TestnetSpec, index: int, ready: list[NodeInfo]) -> list[str]:
        rng = random.Random(spec.seed * 1_000_003 + index)
        chosen = rng.sample(ready, min(MAX_CONTACTS, len(ready)))
        return [info.contact for info in chosen]

    def _launch(self, index: int, spec: TestnetSpec, contacts: list[str]) -> int:
        """Write node ``index``'s config and spawn it; returns its pid."""
        config: dict[str, Any] = {
            **spec.node_overrides(),
            "data_dir": str(self.state.node_dir(index).resolve()),
            "admin_token": self.state.token,
            "listen_host": "127.0.0.1",
            "listen_port": 0,
            "admin_host": "127.0.0.1",
            "admin_port": 0,
            "region": spec.region_of(index),
            "testnet": spec.name,
            "first": not contacts,
            "contacts": contacts,
        }
        path = self.state.write_node_config(index, config)
        self.state.info_path(index).unlink(missing_ok=True)
        log = self.state.log_path(index)
        with log.open("a") as f:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            f.write(f"--- troon: starting node {index} at {stamp} ---\n")
        log.chmod(0o600)
        pid = self._spawner(path.resolve(), log.resolve())
        self.state.write_pid(index, pid)
        return pid

    def _poll(self, starting: dict[int, _Starting], timeout: float) -> dict[int, NodeResult]:
        """Settle each starting node that is ready, has exited, or is out of time."""
        out = {}
        now = time.monotonic()
        for i, s in starting.items():
            waited = now - s.started
            info = self.state.read_node_info(i)
            if info is not None and info.pid == s.pid:
                out[i] = NodeResult(i, True, f"ready in {waited:.2f} s", waited, info)
            elif not procs.pid_alive(s.pid, str(self.state.config_path(i))):
                out[i] = NodeResult(i, False, self._exit_detail(i, s.pid), waited)
            elif waited > timeout:
                log = self.state.log_path(i)
                out[i] = NodeResult(i, False, f"not ready after {timeout:g} s; see {log}", waited)
        return out

    def _await(
        self, starting: dict[int, _Starting], timeout: float, advance: ProgressCb
    ) -> dict[int, NodeResult]:
        results: dict[int, NodeResult] = {}
        while starting:
            settled = self._poll(starting, timeout)
            for i, result in settled.items():
                del starting[i]
                results[i] = result
                advance(i, "ready" if result.ok else "failed")
            if starting and not settled:
                time.sleep(POLL)
        return results

    def _exit_detail(self, index: int, pid: int) -> str:
        code = procs.exit_code(pid)
        how = "exited" if code is None else f"exited with code {code}"
        log = self.state.log_path(index)
        tail = last_message(log)
        return f"{how} before it was ready: {tail!r}; see {log}" if tail else f"{how}; see {log}"

    # -- single-node actions ----------------------------------------------------------------

    def kill(self, index: int) -> NodeResult:
        """Crash node ``index`` (SIGKILL) and wait until it is gone."""
        pid = self.pid(index)
        if pid is None or not self.alive(index):
            return NodeResult(index, False, "was not running")
        started = time.monotonic()
        procs.send(pid, signal.SIGKILL)
        gone = self._wait_gone([index], KILL_WAIT)
        took = time.monotonic() - started
        ok = index in gone
        return NodeResult(index, ok, "killed" if ok else "SIGKILL sent but still there", took)

    def stop(self, index: int, *, grace: float = LEAVE_GRACE) -> NodeResult:
        """Ask node ``index`` to leave (SIGTERM); SIGKILL it after ``grace`` seconds."""
        return self._stop_many([index], grace)[0]

    def restart(self, index: int, *, timeout: float = READY_TIMEOUT) -> NodeResult:
        """Start a stopped node again with its identity and chunks (fresh contacts)."""
        if self.alive(index):
            return NodeResult(index, False, "already running; kill or stop it first")
        spec = self.state.spec
        if not 0 <= index < spec.nodes:
            return NodeResult(index, False, f"no node {index} in this testnet")
        others = [info for i, info in self.live_infos().items() if i != index]
        pid = self._launch(index, spec, self._contacts(spec, index, others))
        settled = self._await({index: _Starting(pid, time.monotonic())}, timeout, no_progress)
        return settled[index]

    # -- down -----------------------------------------------------------------------------

    def down(self, *, grace: float = LEAVE_GRACE, console: Console | None = None) -> Report:
        """Stop every node (leave, then kill) and remove the state folder."""
        started = time.monotonic()
        indices = self.indices()
        with progress_bar(console, len(indices), f"stopping {self.name}") as advance:
            results = self._stop_many(indices, grace)
            for r in results:
                advance(r.index, r.detail)
        survivors = [r.index for r in results if not r.ok]
        if survivors:
            raise BackendError(
                f"nodes {survivors} of {self.name} would not die; state kept in "
                f"{self.state.root}; kill them by hand and run `troon testnet down` again"
            )
        self.state.remove()
        return Report("down", self.name, tuple(results), time.monotonic() - started)

    def _stop_many(self, indices: Iterable[int], grace: float) -> list[NodeResult]:
        started = time.monotonic()
        running = {i: pid for i in indices if (pid := self.pid(i)) is not None and self.alive(i)}
        results = {i: NodeResult(i, True, "was not running") for i in indices if i not in running}
        for pid in running.values():
            procs.send(pid, signal.SIGTERM)
        left = self._wait_gone(running, grace)
        for i, at in left.items():
            results[i] = NodeResult(
                i, True, f"left after SIGTERM in {at - started:.1f} s", at - started
            )
        stragglers = [i for i in running if i not in left]
        for i in stragglers:
            procs.send(running[i], signal.SIGKILL)
        killed = self._wait_gone(stragglers, KILL_WAIT)
        for i in stragglers:
            took = killed.get(i, time.monotonic()) - started
            detail = f"killed: still running {grace:g} s after SIGTERM"
            results[i] = NodeResult(i, i in killed, detail if i in killed else "will not die", took)
        return [results[i] for i in sorted(results)]

    def _wait_gone(self, indices: Iterable[int], timeout: float) -> dict[int, float]:
        """Wait until the nodes are gone; index -> monotonic time it was first seen gone."""
        waiting = set(indices)
        gone: dict[int, float] = {}
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            gone.update({i: now for i in waiting if not self.alive(i)})
            waiting -= set(gone)
            if not waiting or now > deadline:
                return gone
            time.sleep(POLL)


def last_message(log: Path) -> str:
    """The last meaningful line of a node log (a traceback's final line, not its frame)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        text = line.strip().lstrip("|+ ").strip()
        if text and not set(text) <= set("-+=^~ ") and not text.startswith("--- troon:"):
            return text[-LOG_TAIL:]
    return ""
