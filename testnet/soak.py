"""``troon testnet soak SPEC --minutes N``: workload + seeded faults, then the checker.

A soak file names a testnet (inline, or ``spec:`` a path) and adds ``minutes``, ``seed``,
``workload`` and ``faults`` (testnet/chaos.py)::

    testnet: {name: soak, nodes: 60, seed: 3}
    minutes: 10
    workload: {files: 1000, file_size: 4096, writers: 4, readers: 2, records: 4, transfers: true}
    faults:
      - {kind: churn, mode: fixed, interval_s: 2, kills: 1, restart_after_s: 6}

The run: bring the testnet up (or use a running one with ``--attach``), start the workload
(files stored and read back, signed records updated and read, coins sent between wallets;
every operation recorded with its times), apply the compiled fault schedule, stop the
faults and revert everything at the end, wait for repair (every chunk on its 4 ideal
holders), read every acknowledged file once more, audit the ledger, and judge it all with
testnet/checker.py.  The run folder ``$TROON_HOME/soaks/NAME-UTCSTAMP/`` receives
``schedule.json`` (faults, seed, the compiled actions: replayable), ``ops.jsonl``,
``faults.jsonl`` (what was done when, and how it went), ``report.json``, ``summary.md`` and
``timeline.png`` (operations and faults over time).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from node.client.aio import Client, ClientError, get_file, put_file
from node.data.records import sign_record
from node.identity import Identity
from testnet import chaos, checker, oracle
from testnet.api import Testnet
from testnet.errors import SpecError, StateError
from testnet.fleet import Failed, post_all
from testnet.regions import BULK_PATH
from testnet.spec import TestnetSpec, load_spec, spec_from_dict
from testnet.state import LedgerEntry, troon_home

CHAOS_GROUP = "chaos"
OP_TIMEOUT = 30.0
MINT_WAIT_S = 90.0
REPAIR_POLL = 1.0


@dataclass(frozen=True)
class Workload:
    files: int = 200
    file_size: int = 4096
    writers: int = 4
    readers: int = 2
    records: int = 2
    transfers: bool = False


@dataclass(frozen=True)
class SoakSpec:
    testnet: TestnetSpec
    minutes: float
    seed: int
    workload: Workload
    faults: tuple[chaos.Fault, ...]
    raw_faults: tuple[Any, ...]
    repair_bound_s: float = 60.0


def load_soak(path: Path, *, minutes: float | None = None) -> SoakSpec:
    """Read a soak file; :class:`SpecError` names the bad field."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a soak file is a mapping (testnet, minutes, workload, faults)")
    allowed = {"testnet", "spec", "minutes", "seed", "workload", "faults", "repair_bound_s"}
    for key in raw:
        if key not in allowed:
            raise SpecError(f"{key}: unknown field (known: {', '.join(sorted(allowed))})")
    if "spec" in raw:
        spec = load_spec((path.parent / str(raw["spec"])).resolve())
    elif isinstance(raw.get("testnet"), dict):
        spec = spec_from_dict(raw["testnet"])
    else:
        raise SpecError("testnet: give the testnet inline (a mapping) or spec: PATH")
    mins = minutes if minutes is not None else raw.get("minutes", 5)
    if isinstance(mins, bool) or not isinstance(mins, int | float) or not 0 < mins <= 24 * 60:
        raise SpecError(f"minutes: must be a number in (0, 1440], got {mins!r}")
    seed = raw.get("seed", spec.seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SpecError(f"seed: must be an integer, got {seed!r}")
    workload = _workload(raw.get("workload", {}))
    regions = [r.name for r in spec.regions]
    faults = chaos.parse_faults(raw.get("faults", []), regions)
    bound = raw.get("repair_bound_s", 60.0)
    if isinstance(bound, bool) or not isinstance(bound, int | float) or bound <= 0:
        raise SpecError(f"repair_bound_s: must be a number > 0, got {bound!r}")
    return SoakSpec(
        spec, float(mins), seed, workload, tuple(faults), tuple(raw.get("faults", [])), bound
    )


def _workload(raw: Any) -> Workload:
    if not isinstance(raw, dict):
        raise SpecError("workload: must be a mapping")
    known = {f for f in Workload.__dataclass_fields__}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise SpecError(f"workload.{key}: unknown field (known: {', '.join(sorted(known))})")
        if key == "transfers":
            if not isinstance(value, bool):
                raise SpecError("workload.transfers: must be true or false")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SpecError(f"workload.{key}: must be an integer >= 0, got {value!r}")
        values[key] = value
    workload = Workload(**values)
    if not 3 <= workload.file_size <= 1 << 20:
        raise SpecError("workload.file_size: must be 3..1048576 bytes")
    return workload


# -- faults -------------------------------------------------------------------------------


class Injector:
    """Applies fault actions to a testnet through its backend and the admin API."""

    def __init__(self, net: Testnet) -> None:
        self.net = net
        self.paused: set[int] = set()
        self.crashed: set[int] = set()
        self.impaired: dict[str, list[int]] = {}  # tag -> nodes holding rules under it
        self.last_crashed: list[int] = []

    async def apply(self, action: chaos.FaultAction, resolve: Callable[[str], list[int]]) -> str:
        nodes = list(action.nodes)
        if action.resolve is not None:
            nodes = (
                self.last_crashed
                if action.resolve == "crashed_by_fault"
                else resolve(action.resolve)
            )
        handler = getattr(self, f"_{action.action}")
        detail: str = await handler(nodes, action)
        return detail

    async def _crash(self, nodes: list[int], _: chaos.FaultAction) -> str:
        async def kill(i: int) -> bool:
            if i in self.paused:
                await self._signal(i, signal.SIGCONT)
                self.paused.discard(i)
            return (await asyncio.to_thread(self.net.kill, i)).ok

        # all at once: "3 of a chunk's 4 holders killed at once" means at once
        killed = await asyncio.gather(*map(kill, nodes))
        done = [i for i, ok in zip(nodes, killed, strict=True) if ok]
        self.crashed |= set(done)
        self.last_crashed = done
        return f"killed {done}"

    async def _restart(self, nodes: list[int], _: chaos.FaultAction) -> str:
        results = await asyncio.gather(*(asyncio.to_thread(self.net.restart, i) for i in nodes))
        done = [i for i, r in zip(nodes, results, strict=True) if r.ok]
        self.crashed -= set(done)
        return f"restarted {done}"

    async def _wipe(self, nodes: list[int], action: chaos.FaultAction) -> str:
        for i in nodes:
            await asyncio.to_thread(self.net.kill, i)
            folder = self.net.state.node_dir(i)
            for sub in ("store", "ledger", "records", "inboxes.bin", "key.json", "bootstrap.json"):
                path = folder / sub
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            await asyncio.to_thread(self.net.restart, i)
        return f"wiped and restarted {nodes} (new identities)"

    async def _signal(self, index: int, sig: signal.Signals) -> bool:
        pid = self.net.pids().get(index)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            return True
        return False

    async def _pause(self, nodes: list[int], _: chaos.FaultAction) -> str:
        done = [i for i in nodes if await self._signal(i, signal.SIGSTOP)]
        self.paused |= set(done)
        return f"paused {done}"

    async def _resume(self, nodes: list[int], _: chaos.FaultAction) -> str:
        done = [i for i in nodes if i in self.paused and await self._signal(i, signal.SIGCONT)]
        self.paused -= set(done)
        return f"resumed {done}"

    async def _bulk(self, bodies: dict[int, dict[str, Any]]) -> list[str]:
        infos = self.net.live()
        calls = [(i, infos[i].admin, BULK_PATH, b) for i, b in bodies.items() if i in infos]
        answers = await post_all(calls, self.net.state.token, timeout=10.0)
        return [f"n{i:03d}: {a.reason}" for i, a in answers if isinstance(a, Failed)]

    async def _partition(self, _: list[int], action: chaos.FaultAction) -> str:
        region = action.region or ""
        infos = self.net.live()
        inside = {i for i in infos if self.net.spec.region_of(i) == region}
        bodies: dict[int, dict[str, Any]] = {}
        for i in infos:
            others = [j for j in infos if (j in inside) != (i in inside)]
            group = f"{CHAOS_GROUP}-cut"
            bodies[i] = {
                "assign": {group: [list(infos[j].addr) for j in others]},
                "rules": {f"group:{group}": {"blackhole": True}},
            }
        failures = await self._bulk(bodies)
        self.impaired[f"partition:{region}"] = list(bodies)
        return f"cut {region} ({len(inside)} nodes) from the rest" + _failed(failures)

    async def _heal(self, _: list[int], action: chaos.FaultAction) -> str:
        nodes = self.impaired.pop(f"partition:{action.region}", [])
        bodies = {i: {"rules": {f"group:{CHAOS_GROUP}-cut": None}} for i in nodes}
        return f"healed {action.region}" + _failed(await self._bulk(bodies))

    async def _link(self, action: chaos.FaultAction, rule: dict[str, float]) -> str:
        infos = self.net.live()
        nodes = [i for i in infos if action.region in (None, self.net.spec.region_of(i))]
        bodies = {i: {"rules": {"*": rule}} for i in nodes}
        self.impaired[f"link:{action.fault}"] = nodes
        return _failed(await self._bulk(bodies))

    async def _latency(self, _: list[int], action: chaos.FaultAction) -> str:
        ms = float(action.value or 0.0)
        # each end delays both directions of its links: a quarter of the RTT per end
        detail = await self._link(action, {"delay": ms / 4000.0})
        return f"+{ms:g} ms RTT on {action.region or 'all'} links" + detail

    async def _loss(self, _: list[int], action: chaos.FaultAction) -> str:
        rate = float(action.value or 0.0)
        detail = await self._link(action, {"loss": 1.0 - (1.0 - rate) ** 0.5})
        return f"{rate:.0%} loss on {action.region or 'all'} links" + detail

    async def _clear(self, _: list[int], action: chaos.FaultAction) -> str:
        nodes = self.impaired.pop(f"link:{action.fault}", [])
        return "cleared" + _failed(await self._bulk({i: {"rules": {"*": None}} for i in nodes}))

    async def revert_all(self) -> str:
        notes = []
        for i in sorted(self.paused):
            await self._signal(i, signal.SIGCONT)
        self.paused.clear()
        for tag, nodes in list(self.impaired.items()):
            sel = f"group:{CHAOS_GROUP}-cut" if tag.startswith("partition") else "*"
            notes += await self._bulk({i: {"rules": {sel: None}} for i in nodes})
        self.impaired.clear()
        live = self.net.live()
        down = [i for i in range(self.net.spec.nodes) if i not in live]
        await asyncio.gather(*(asyncio.to_thread(self.net.restart, i) for i in down))
        return f"resumed, cleared and restarted {down}" + _failed(notes)


async def dispatch(
    actions: list[chaos.FaultAction],
    run: Callable[[chaos.FaultAction, set[asyncio.Task[None]]], Coroutine[Any, Any, None]],
    *,
    duration: float,
    now: Callable[[], float],
    stop: asyncio.Event,
) -> None:
    """Start each action when it is due, without waiting for slower ones (a kill or a
    restart takes seconds): ``run(action, before)`` must first wait for ``before``, the
    earlier actions in its lanes (:func:`_lanes`).  Returns when all have finished."""
    tails: dict[object, asyncio.Task[None]] = {}
    running: list[asyncio.Task[None]] = []
    for action in actions:
        if action.at > duration:
            break
        delay = action.at - now()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            break
        lanes = _lanes(action)
        before = {tails[lane] for lane in lanes if lane in tails}
        task = asyncio.create_task(run(action, before))
        running.append(task)
        tails.update(dict.fromkeys(lanes, task))
    if running:
        await asyncio.gather(*running)


def _lanes(action: chaos.FaultAction) -> set[object]:
    """What an action must not overtake: earlier actions on any of its nodes; for targets
    chosen at run time, earlier such actions (a restart of "the nodes that fault crashed"
    follows that crash); for region-wide actions, earlier region-wide ones."""
    if action.resolve is not None:
        return {"resolved"}
    if action.nodes:
        return {("node", i) for i in action.nodes}
    return {"links"}


def _failed(failures: list[str]) -> str:
    return f"; {len(failures)} nodes failed: {failures[0]}" if failures else ""


# -- workload -----------------------------------------------------------------------------


@dataclass
class Recorder:
    """Every operation and fault, kept in memory and appended to ``ops.jsonl`` /
    ``faults.jsonl`` as it ends, so the console can judge the run while it goes
    (:func:`live_status`)."""

    started: float
    folder: Path
    ops: list[checker.Op] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)  # what was done when, and how
    files: dict[str, tuple[Any, bytes]] = field(default_factory=dict)  # key -> (map, sha256)

    def now(self) -> float:
        return time.monotonic() - self.started

    def add(self, kind: str, key: str, start: float, ok: bool, **extra: Any) -> None:
        op = checker.Op(kind, key, start, self.now(), ok, **extra)
        self.ops.append(op)
        self._append("ops.jsonl", op.to_dict())

    def fault(self, entry: dict[str, Any]) -> None:
        self.faults.append(entry)
        self._append("faults.jsonl", entry)

    def _append(self, name: str, entry: dict[str, Any]) -> None:
        with (self.folder / name).open("a") as f:
            f.write(json.dumps(entry) + "\n")


class WorkloadRunner:
    def __init__(self, net: Testnet, spec: SoakSpec, rec: Recorder, tmp: Path) -> None:
        self.net, self.spec, self.rec, self.tmp = net, spec, rec, tmp
        self.rng = random.Random(spec.seed)
        self.stop = asyncio.Event()
        self.clients: list[Client] = []

    async def client(self) -> Client:
        contacts = [info.contact for info in self.net.live().values()]
        client = Client()
        await client.start(oracle.client_host(contacts))
        self.rng.shuffle(contacts)
        for contact in contacts[:5]:
            with contextlib.suppress(ClientError):
                await client.connect(contact)
                self.clients.append(client)
                return client
        await client.close()
        raise ClientError("no node answered as a gateway")

    async def failover(self, client: Client) -> None:
        """After a failed operation: the gateway may be one of the nodes just killed, so
        move to another live node (a real client would do the same) and pause a moment."""
        contacts = [info.contact for info in self.net.live().values()]
        self.rng.shuffle(contacts)
        for contact in contacts[:5]:
            with contextlib.suppress(ClientError, OSError):
                await client.connect(contact)
                break
        await asyncio.sleep(0.2)

    async def run(self) -> None:
        w = self.spec.workload
        tasks = [self._writer(n, w) for n in range(w.writers)]
        tasks += [self._reader(n) for n in range(w.readers)]
        tasks += [self._records(n) for n in range(w.records)]
        if w.transfers:
            tasks.append(self._transfers())
        await asyncio.gather(*tasks)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()

    async def _writer(self, n: int, w: Workload) -> None:
        client = await self.client()
        per = w.files // max(1, w.writers) + (1 if n < w.files % max(1, w.writers) else 0)
        for k in range(per):
            if self.stop.is_set():
                return
            data = os.urandom(w.file_size)
            path = self.tmp / f"w{n}-{k}.bin"
            path.write_bytes(data)
            key = f"file-{n}-{k}"
            start = self.rec.now()
            try:
                async with asyncio.timeout(OP_TIMEOUT):
                    data_map = await put_file(client, path)
            except (ClientError, TimeoutError) as exc:
                self.rec.add(checker.PUT, key, start, False, detail=str(exc)[:120])
                await self.failover(client)
                continue
            finally:
                path.unlink(missing_ok=True)
            self.rec.files[key] = (data_map, hashlib.sha256(data).digest())
            self.net.state.record(
                [LedgerEntry(c.dst_hash, 0, time.time()) for c in data_map.chunk_identifiers]
            )
            self.rec.add(checker.PUT, key, start, True)

    async def read_file(self, client: Client, key: str, kind: str) -> None:
        data_map, digest = self.rec.files[key]
        out = self.tmp / f"read-{key}-{self.rng.randrange(1 << 30)}.bin"
        start = self.rec.now()
        try:
            async with asyncio.timeout(OP_TIMEOUT):
                await get_file(client, data_map, out)
            ok = hashlib.sha256(out.read_bytes()).digest() == digest
            self.rec.add(kind, key, start, ok, detail="" if ok else "content differs")
        except (ClientError, TimeoutError, OSError) as exc:
            self.rec.add(kind, key, start, False, detail=str(exc)[:120])
            await self.failover(client)
        finally:
            out.unlink(missing_ok=True)

    async def _reader(self, n: int) -> None:
        client = await self.client()
        while not self.stop.is_set():
            if not self.rec.files:
                await asyncio.sleep(0.2)
                continue
            await self.read_file(client, self.rng.choice(sorted(self.rec.files)), checker.GET)

    async def _records(self, n: int) -> None:
        client = await self.client()
        owner = Identity.from_seed(hashlib.sha256(b"soak-record-%d" % n).digest())
        version = 0
        key = f"record-{n}"
        while not self.stop.is_set():
            version += 1
            record = sign_record(owner, b"soak", version, b"v%d" % version)
            start = self.rec.now()
            try:
                async with asyncio.timeout(OP_TIMEOUT):
                    await client.put_record(record)
                self.rec.add(checker.RECORD_PUT, key, start, True, version=version)
            except (ClientError, TimeoutError) as exc:
                self.rec.add(checker.RECORD_PUT, key, start, False, version=version,
                             detail=str(exc)[:120])  # fmt: skip
                await self.failover(client)
            start = self.rec.now()
            try:
                async with asyncio.timeout(OP_TIMEOUT):
                    got = await client.get_record(record.address)
                read = None if got is None else got.version
                self.rec.add(checker.RECORD_GET, key, start, got is not None, version=read)
            except (ClientError, TimeoutError) as exc:
                self.rec.add(checker.RECORD_GET, key, start, False, detail=str(exc)[:120])
                await self.failover(client)
            await asyncio.sleep(0.5)

    async def _transfers(self) -> None:
        client = await self.client()
        wallets = [Identity.from_seed(bytes([7, i]) * 16) for i in range(3)]
        for wallet in wallets:
            for _ in range(5):  # the allowance is what the transfers spend: make sure of it
                with contextlib.suppress(ClientError, TimeoutError):
                    async with asyncio.timeout(OP_TIMEOUT):
                        await client.create_wallet(wallet)
                        if (await client.wallet(wallet.public_key)).balance > 0:
                            break
                await self.failover(client)
        turn = 0
        while not self.stop.is_set():
            sender, recipient = wallets[turn % 3], wallets[(turn + 1) % 3]
            turn += 1
            start = self.rec.now()
            key = sender.public_key.hex()
            try:
                async with asyncio.timeout(OP_TIMEOUT):
                    proof = await client.send(sender, recipient.public_key, 1)
                self.rec.add(checker.TRANSFER, key, start, True, version=proof.transfer.seq,
                             detail=proof.transfer.id.hex())  # fmt: skip
            except (ClientError, TimeoutError) as exc:
                self.rec.add(checker.TRANSFER, key, start, False, detail=str(exc)[:120])
                await self.failover(client)
            await asyncio.sleep(1.0)


# -- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakResult:
    folder: Path
    report: checker.CheckReport
    seconds: float
    faults_applied: int


async def asoak(
    net: Testnet, spec: SoakSpec, *, console: Console | None = None, folder: Path | None = None
) -> SoakResult:
    """Run workload and faults on a running testnet, then check; see the module docstring."""
    console = console or Console()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = folder or troon_home() / "soaks" / f"{net.name}-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    duration = spec.minutes * 60.0
    actions = chaos.compile_schedule(
        spec.faults,
        nodes=spec.testnet.nodes,
        duration_s=duration,
        seed=spec.seed,
        min_alive=4,
    )
    schedule = {
        "seed": spec.seed,
        "minutes": spec.minutes,
        "faults": list(spec.raw_faults),
        "actions": [a.to_dict() for a in actions],
    }
    (folder / "schedule.json").write_text(json.dumps(schedule, indent=1) + "\n")
    rec = Recorder(time.monotonic(), folder=folder)
    _mark(folder, net.name, running=True)
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)
    injector = Injector(net)
    workload = WorkloadRunner(net, spec, rec, tmp)

    chosen: list[bytes] = []  # holders of the chunk a holders_of_one_chunk fault targets

    def resolve(what: str) -> list[int]:
        count = int(what.rsplit(":", 1)[1])
        by_name = {info.name: i for i, info in net.live().items()}
        return [by_name[n] for n in chosen if n in by_name][:count]

    async def one(action: chaos.FaultAction, before: set[asyncio.Task[None]]) -> None:
        if before:
            await asyncio.wait(before)
        if workload.stop.is_set():
            return  # revert_all restarts, resumes and clears whatever is left
        if action.resolve and action.resolve.startswith("holders_of_one_chunk"):
            names = [c.dst_hash for m, _ in rec.files.values() for c in m.chunk_identifiers]
            chosen.clear()
            if names:
                target = random.Random(spec.seed + action.fault).choice(names)
                report = await oracle.check(
                    net.name, net.live(), net.state.token, [target], sample=0
                )
                chosen.extend(report.verdicts[0].holders)
        started = rec.now()
        try:
            detail = await injector.apply(action, resolve)
            ok = True
        except Exception as exc:  # a failed fault is logged; the run goes on
            detail, ok = f"{type(exc).__name__}: {exc}", False
        rec.fault({**action.to_dict(), "done_at": round(started, 2), "ok": ok,
                          "late_s": round(max(0.0, started - action.at), 2),
                          "took_s": round(rec.now() - started, 2), "detail": detail})  # fmt: skip

    async def faults() -> None:
        await dispatch(actions, one, duration=duration, now=rec.now, stop=workload.stop)

    async def clock() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(workload.stop.wait(), duration)
        workload.stop.set()

    if spec.workload.transfers:
        await _wait_for_mint(net, console)
    console.print(f"soak: {len(actions)} fault actions over {spec.minutes:g} min; {folder}")
    try:
        await asyncio.gather(workload.run(), faults(), clock())
        fault_end = rec.now()
        rec.fault({"at": round(fault_end, 2), "action": "revert-all",
                          "detail": await injector.revert_all()})  # fmt: skip
        repair_seconds = await _wait_repaired(net, spec.repair_bound_s * 2)
        client = await workload.client()
        for key in sorted(rec.files):
            await workload.read_file(client, key, checker.FINAL)
        balanced: bool | None = None
        if spec.workload.transfers:
            from testnet.farming import afarming

            ledger = await afarming(net, wait=60)
            balanced = ledger.balanced
            rec.fault(
                {
                    "at": round(rec.now(), 2),
                    "action": "ledger-audit",
                    "detail": f"balanced={ledger.balanced} settled={ledger.settled} "
                    f"balances={ledger.balances} unminted={ledger.unminted} "
                    f"in_flight={ledger.in_flight} disagree={len(ledger.disagree)}",
                },
            )
    finally:
        await workload.close()
        shutil.rmtree(tmp, ignore_errors=True)
        _mark(folder, net.name, running=False)
    report = checker.check(
        rec.ops,
        ledger_balanced=balanced,
        repair_seconds=repair_seconds,
        repair_bound_s=spec.repair_bound_s,
    )
    _write(folder, rec, report, spec)
    return SoakResult(folder, report, rec.now(), sum(1 for f in rec.faults if f.get("ok")))


RUN_FILE = "run.json"


def _mark(folder: Path, testnet: str, *, running: bool) -> None:
    """``run.json``: which testnet a run folder is for and whether it is still going."""
    body = {"testnet": testnet, "running": running, "updated": time.time()}
    (folder / RUN_FILE).write_text(json.dumps(body) + "\n")


def latest_run(testnet: str, *, home: Path | None = None) -> Path | None:
    """The newest soak run folder of ``testnet`` (running or finished), if any."""
    root = (home or troon_home()) / "soaks"
    if not root.is_dir():
        return None
    for folder in sorted(root.glob(f"{testnet}-*"), key=lambda p: p.name, reverse=True):
        with contextlib.suppress(OSError, ValueError):
            if json.loads((folder / RUN_FILE).read_text()).get("testnet") == testnet:
                return folder
    return None


@dataclass(frozen=True)
class LiveSoak:
    folder: Path
    running: bool
    view: checker.LiveView


def live_status(folder: Path) -> LiveSoak:
    """The checker's view of a soak run so far, from its folder (while it runs, too).  A
    torn last line (the run is writing it) is skipped; damage elsewhere is an error."""
    try:
        running = bool(json.loads((folder / RUN_FILE).read_text()).get("running"))
        lines = (
            (folder / "ops.jsonl").read_text().splitlines()
            if (folder / "ops.jsonl").exists()
            else []
        )
    except (OSError, ValueError) as exc:
        raise StateError(f"{folder}: not a readable soak run ({exc})") from exc
    ops = []
    for n, line in enumerate(lines, 1):
        try:
            ops.append(checker.op_from_dict(json.loads(line)))
        except ValueError as exc:
            if n == len(lines):
                break  # being written
            raise StateError(f"{folder / 'ops.jsonl'} line {n}: {exc}") from exc
    return LiveSoak(folder, running, checker.live(ops))


async def _wait_for_mint(net: Testnet, console: Console, limit: float = MINT_WAIT_S) -> None:
    """Wait until the mint has formed (a majority of its members agree), so the workload's
    wallets get their allowance before the faults start; say so if it never does."""
    from testnet.farming import afarming

    started = time.monotonic()
    with console.status("waiting for the mint to form before the wallets are created"):
        while time.monotonic() - started < limit:
            if (await afarming(net, wait=0)).unminted is not None:
                return
            await asyncio.sleep(1.0)
    console.print(
        f"[yellow]the mint did not form within {limit:.0f} s: transfers will fail until it"
        " does (check the nodes' logs for 'mint genesis')[/]"
    )


async def _wait_repaired(net: Testnet, limit: float) -> float | None:
    """Seconds until every recorded chunk is on its 4 ideal holders (None: not in ``limit``)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        report = await net.acheck(sample=0)
        if report.clean:
            return time.monotonic() - started
        await asyncio.sleep(REPAIR_POLL)
    return None


def _write(folder: Path, rec: Recorder, report: checker.CheckReport, spec: SoakSpec) -> None:
    """The report and summary (``ops.jsonl`` and ``faults.jsonl`` the recorder wrote as it
    went)."""
    summary = report.summary()
    counts = Counter(f"{op.kind}_{'ok' if op.ok else 'failed'}" for op in rec.ops)
    late = sorted(float(f["late_s"]) for f in rec.faults if "late_s" in f)
    applied = Counter(str(f["action"]) for f in rec.faults if f.get("ok"))
    injection = {"applied": dict(applied), "late_max_s": late[-1] if late else 0.0,
                 "late_median_s": late[len(late) // 2] if late else 0.0}  # fmt: skip
    body = {"summary": summary, "operations": counts, "faults": len(rec.faults),
            "injection": injection,
            "nodes": spec.testnet.nodes, "minutes": spec.minutes, "seed": spec.seed}  # fmt: skip
    (folder / "report.json").write_text(json.dumps(body, indent=1) + "\n")
    plot = _plot(folder / "timeline.png", rec)
    lines = [
        f"# Soak: {spec.testnet.name}, {spec.testnet.nodes} nodes, {spec.minutes:g} min, "
        f"seed {spec.seed}",
        "",
        f"Verdict: **{'PASS' if report.ok else 'FAIL'}**",
        "",
        f"- files: {summary['puts_attempted']} puts attempted, {summary['acknowledged']} "
        f"acknowledged, {summary['lost']} lost, {summary['never_read']} never read at the end, "
        f"{summary['unreadable_for_a_while']} unreadable for a while during faults",
        f"- records going backwards: {len(report.record_violations)}; double spends: "
        f"{len(report.double_spends)}; ledger balanced: {report.ledger_balanced}",
        f"- repair after faults stopped: {report.repair_seconds} s (bound "
        f"{report.repair_bound_s} s)",
        "- faults applied: "
        + ", ".join(f"{k} {v}" for k, v in sorted(applied.items()))
        + f" (started at most {injection['late_max_s']:g} s after due, median "
        f"{injection['late_median_s']:g} s); operations: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        "",
        f"Replay: `troon testnet soak SOAKFILE --seed {spec.seed}` (schedule.json has the "
        "compiled actions).",
    ]
    if plot:
        lines += ["", "![timeline](timeline.png)"]
    (folder / "summary.md").write_text("\n".join(lines) + "\n")


def _plot(path: Path, rec: Recorder) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for kind, colour in ((checker.PUT, "tab:blue"), (checker.GET, "tab:green")):
        ok = [o.end for o in rec.ops if o.kind == kind and o.ok]
        bad = [o.end for o in rec.ops if o.kind == kind and not o.ok]
        if ok:
            ax.hist(ok, bins=60, alpha=0.5, color=colour, label=f"{kind} ok")
        if bad:
            ax.hist(bad, bins=60, alpha=0.9, color="tab:red", label=f"{kind} failed")
    for entry in rec.faults:
        if entry.get("action") in ("crash", "wipe", "partition", "pause"):
            ax.axvline(float(entry.get("done_at", entry["at"])), color="grey", lw=0.4)
    ax.set_xlabel("seconds")
    ax.set_ylabel("operations")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
