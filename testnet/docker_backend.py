"""The Docker backend: one container per node, through the Docker SDK (an adapter).

``up`` checks the image on every host, creates the networks of the plan
(:mod:`testnet.docker_plan`), starts node 0 (``first: true``) and waits until it answers,
then starts the others with bounded concurrency (Docker SDK calls from a thread pool), each
joining through up to :data:`MAX_CONTACTS` nodes that are already up.  A node is *ready*
when its admin API answers ``/info`` from the host and (unless it is the first) its routing
table is not empty; its ``/info`` (admin address rewritten to the one the host reaches)
becomes ``nodes/nNNN/node.json`` in the state folder, like a local node's own file.

Each node's config reaches its container in an environment variable (``TROON_NODE_YAML``),
which a one-line ``sh`` entrypoint writes to ``/tmp/node.yaml`` (mode 0600) before it
``exec``-s the node.  That needs no shared filesystem with the daemon (remote hosts over SSH)
and no extra call: ``put_archive`` of a created container makes Docker mount its root
filesystem once more, which measured ~0.18 CPU-s per container here (fuse-overlayfs), 15-20%
of Docker's own cost per container.  ``restart`` does use ``put_archive``, to hand a
stopped container a fresh config (new contacts) in ``/etc/troon/node.yaml``, which the
entrypoint prefers.  ``/data`` is a named volume per node (the key lives there, so a
restarted or upgraded node keeps its identity and chunks); ``down`` removes it.

Docker's own HEALTHCHECK (``python -c ...`` every 5 s in the image) costs ~0.15 CPU-s per
check; at 180 containers that alone would need more than this machine's two cores, so
containers of a testnet check every :data:`HEALTH_INTERVAL` seconds (0: no Docker
healthcheck) and the orchestrator asks ``/info`` itself.

Every multi-node operation returns one :class:`~testnet.local.NodeResult` per node and goes
on past a failed node or host; only node 0 failing stops ``up`` early.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from node.admin import AdminCallError, AdminClient
from testnet import docker_plan as dp
from testnet.docker_record import (
    DEFAULT_CONCURRENCY,
    DOCKER_ERRORS,
    FAILURES,
    LOG_TAIL,
    READY_TIMEOUT,
    RECORD,
    DockerOptions,
    Record,
    check_hosts,
    check_neighbours,
    config_tar,
    connect,
    explain,
    gateway,
    no_host_message,
    read_record,
    reconnect,
    record_from_json,
    refuse_existing,
    save_record,
    status_code,
)
from testnet.errors import BackendError
from testnet.hosts import DockerHost
from testnet.local import NodeProc, NodeResult, Report
from testnet.progress import ProgressCb, progress_bar
from testnet.spec import TestnetSpec
from testnet.state import NodeInfo, State, node_info_from_dict, write_private

__all__ = [
    "DEFAULT_CONCURRENCY",
    "READY_TIMEOUT",
    "RECORD",
    "DockerOptions",
    "DockerTestnet",
    "Record",
    "connect",
    "record_from_json",
]

MAX_CONTACTS = 3
LEAVE_GRACE = 5.0
KILL_WAIT = 10.0
POLL = 0.2
STATE_EVERY = 25  # readiness polls (5 s) between two looks at the container's state
ADMIN_TIMEOUT = 2.0
CONFIG_ENV = "TROON_NODE_YAML"
RUN_CONFIG = "/tmp/node.yaml"
FRESH_CONFIG = "/etc/troon/node.yaml"  # written by `restart` (put_archive); wins over the env
CONFIG_SHIM = (
    f"umask 077; if [ -s {FRESH_CONFIG} ]; then cat {FRESH_CONFIG}; "
    f'else printf "%s" "${CONFIG_ENV}"; fi > {RUN_CONFIG} '
    f"&& exec python -m node run --config {RUN_CONFIG}"
)
REMOVE_RETRIES = 50  # x POLL: ~10 s for Docker to release a removed container's endpoint

Addr = tuple[str, int]


class DockerTestnet:
    """A testnet of node containers on one or more Docker hosts, bound to its state folder."""

    def __init__(
        self,
        state: State,
        record: Record,
        hosts: Sequence[DockerHost],
        unreachable: dict[str, str] | None = None,
    ) -> None:
        self.state = state
        self.record = record
        self.hosts = {h.url: h for h in hosts}
        self.unreachable = dict(unreachable or {})  # host url -> why it cannot be reached
        self.broken: dict[str, str] = {}  # host url -> why no node can start there now

    # -- finding testnets -----------------------------------------------------------------

    @classmethod
    def open(
        cls, name: str, *, home: Path | None = None, hosts: Sequence[DockerHost] | None = None
    ) -> DockerTestnet:
        state = State.open(name, home=home)
        record = read_record(state)
        unreachable: dict[str, str] = {}
        if hosts is None:
            hosts, unreachable = reconnect(record)
        return cls(state, record, hosts, unreachable)

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def plan(self) -> dp.DockerPlan:
        return self.record.plan

    def indices(self) -> list[int]:
        return [p.index for p in self.plan.placements]

    def _host(self, index: int) -> tuple[DockerHost, dp.Placement]:
        placement = self.plan.placement(index)
        host = self.hosts.get(placement.host)
        if host is None:
            why = self.unreachable.get(placement.host, "not connected")
            raise BackendError(f"host {placement.host} of node {index} is unavailable: {why}")
        return host, placement

    def container(self, index: int) -> str:
        return dp.container_name(self.name, index)

    # -- what runs ------------------------------------------------------------------------

    def containers(self) -> dict[int, dict[str, Any]]:
        """Docker's summary of every container of this testnet, by node index (one list
        call per host; an unreachable host's nodes are simply absent)."""
        out: dict[int, dict[str, Any]] = {}
        flt = {"label": dp.label_filter(self.name, self.record.uid)}
        for host in self.hosts.values():
            try:
                found = host.client.api.containers(all=True, filters=flt)
            except DOCKER_ERRORS:
                continue
            for box in found:
                index = box.get("Labels", {}).get(f"{dp.PREFIX}.index", "")
                if index.isdecimal():
                    out[int(index)] = box
        return out

    def nodes(self) -> list[NodeProc]:
        boxes = self.containers()
        out = []
        for p in self.plan.placements:
            alive = boxes.get(p.index, {}).get("State") == "running"
            info = self.state.read_node_info(p.index) if alive else None
            out.append(NodeProc(p.index, p.region, None, alive, info))
        return out

    def live_infos(self) -> dict[int, NodeInfo]:
        """The node info of every running node that has answered since its last start."""
        return {p.index: p.info for p in self.nodes() if p.alive and p.info is not None}

    def ids(self) -> dict[int, str]:
        """Container ids of the running nodes, by index."""
        return {
            i: str(b["Id"]) for i, b in self.containers().items() if b.get("State") == "running"
        }

    def pids(self) -> dict[int, int]:
        """Host pids of the running nodes' main processes (one inspect per node)."""
        out = {}
        for index in self.ids():
            host, _ = self._host(index)
            with suppress(*FAILURES):
                pid = int(host.client.api.inspect_container(self.container(index))["State"]["Pid"])
                if pid > 0:
                    out[index] = pid
        return out

    # -- up -------------------------------------------------------------------------------

    @classmethod
    def up(
        cls,
        spec: TestnetSpec,
        hosts: Sequence[DockerHost],
        *,
        home: Path | None = None,
        console: Console | None = None,
        options: DockerOptions | None = None,
        unreachable: dict[str, str] | None = None,
        indices: Sequence[int] | None = None,
    ) -> tuple[DockerTestnet, Report]:
        """Create the state folder, the networks and the containers of ``indices`` (default:
        every node); the lowest index starts first with ``first: true``."""
        opts = options or DockerOptions(image=spec.image or dp.DEFAULT_IMAGE)
        if opts.concurrency < 1:
            raise BackendError("concurrency must be >= 1")
        if indices is not None and any(not 0 <= i < spec.nodes for i in indices):
            raise BackendError(f"indices: every node index must be in 0..{spec.nodes - 1}")
        failed = dict(unreachable or {})
        slots = [dp.HostSlot(h.url, h.advertise_ip) for h in hosts]
        slots += [dp.HostSlot(url, None) for url in failed if url not in {h.url for h in hosts}]
        plan = dp.plan(spec, slots, shard_size=opts.shard_size, port_base=opts.port_base)
        live = [h for h in hosts if h.url not in failed]
        check_neighbours(plan)
        failed.update(check_hosts(live, spec.name, opts.image))
        if not [h for h in live if h.url not in failed]:
            raise BackendError(no_host_message(failed))
        refuse_existing(spec.name, home)
        uid = secrets.token_hex(6)
        hosts_rec = tuple((h.name, h.url, h.advertise_ip) for h in hosts)
        state = State.create(spec, home=home)
        net = cls(state, Record(uid, opts, hosts_rec, plan), hosts, failed)
        started = time.monotonic()
        if console is not None:
            for note in plan.notes:
                console.print(f"[yellow]note:[/] {note}", highlight=False)
        net._save()  # before any Docker object exists: `down` can always find them
        net._create_networks()
        net._save()
        wanted = sorted(indices) if indices is not None else net.indices()
        with progress_bar(console, len(wanted), f"starting {spec.name} (docker)") as advance:
            results = net._start_first_then_rest(wanted, advance, opts.ready_timeout)
        return net, Report("up", spec.name, tuple(results), time.monotonic() - started)

    def _create_networks(self) -> None:
        """Every network of the plan; a host whose network fails joins ``unreachable``."""
        advertise: dict[str, str] = {}
        for url, name in self.plan.networks:
            host = self.hosts.get(url)
            if host is None or not self._usable(url):
                continue
            marks = dp.labels(self.name, self.record.uid, "network")
            try:
                made = host.client.api.create_network(name, driver="bridge", labels=marks)
                gw = gateway(host.client.api.inspect_network(made["Id"]))
            except DOCKER_ERRORS as exc:
                self.broken[url] = f"cannot create network {name}: {explain(exc)}"
                continue
            if host.advertise_ip is not None:
                advertise[url] = host.advertise_ip
            elif gw and url not in advertise:
                advertise[url] = gw  # a sharded local host: the first bridge's gateway
        self.record = replace(self.record, advertise=tuple(sorted(advertise.items())))

    def _usable(self, url: str) -> bool:
        return url in self.hosts and url not in self.unreachable and url not in self.broken

    def _save(self) -> None:
        save_record(self.state, self.record)

    def _start_first_then_rest(
        self, wanted: list[int], advance: ProgressCb, timeout: float
    ) -> list[NodeResult]:
        if not wanted:
            return []
        usable = [i for i in wanted if self._usable(self.plan.placement(i).host)]
        first = usable[0] if usable else wanted[0]  # on a host that answers, if any does
        rest = [i for i in wanted if i != first]
        results = self._start([first], advance, timeout, first_alone=True)
        if not results[0].ok:
            skipped = [
                NodeResult(i, False, f"not started: node {first} failed, nothing to join")
                for i in rest
            ]
            for r in skipped:
                advance(r.index, "skipped")
            return results + skipped
        return results + self._start(rest, advance, timeout)

    def grow(
        self,
        indices: Iterable[int],
        *,
        console: Console | None = None,
        timeout: float = READY_TIMEOUT,
    ) -> Report:
        """Start the spec's nodes ``indices`` into the running testnet, each joining through
        live nodes (on an empty testnet the lowest index starts the network).  A running node
        is reported ok and left alone; a stopped one is started again (same volume)."""
        started = time.monotonic()
        wanted = sorted(set(indices))
        bad = [i for i in wanted if i not in set(self.indices())]
        if bad:
            raise BackendError(
                f"no node {bad[0]} in testnet {self.name} (indices 0..{len(self.indices()) - 1});"
                " grow only starts nodes the spec has"
            )
        boxes = self.containers()
        running = [i for i in wanted if boxes.get(i, {}).get("State") == "running"]
        stopped = [i for i in wanted if i in boxes and i not in running]
        results = [NodeResult(i, True, "already running", 0.0) for i in running]
        todo = [i for i in wanted if i not in boxes]
        label = f"growing {self.name} by {len(todo) + len(stopped)}"
        with progress_bar(console, len(todo) + len(stopped), label) as advance:
            for index in stopped:
                results.append(self.restart(index, timeout=timeout))
                advance(index, "restarted" if results[-1].ok else "failed")
            if self.live_infos() or not todo:
                results += self._start(todo, advance, timeout)
            else:
                results += self._start_first_then_rest(todo, advance, timeout)
        results.sort(key=lambda r: r.index)
        return Report("grow", self.name, tuple(results), time.monotonic() - started)

    def _start(
        self, indices: list[int], advance: ProgressCb, timeout: float, *, first_alone: bool = False
    ) -> list[NodeResult]:
        """Create, configure, start and await ``indices`` (contacts: nodes ready by then)."""
        ready = {} if first_alone else self.live_infos()
        workers = max(1, min(self.record.options.concurrency, len(indices)))
        with ThreadPoolExecutor(workers, thread_name_prefix="troon-docker") as pool:
            return asyncio.run(self._start_async(indices, ready, advance, timeout, pool))

    async def _start_async(
        self,
        indices: list[int],
        ready: dict[int, NodeInfo],
        advance: ProgressCb,
        timeout: float,
        pool: ThreadPoolExecutor,
    ) -> list[NodeResult]:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(self.record.options.concurrency)

        async def one(index: int) -> NodeResult:
            async with gate:
                started = time.monotonic()  # the ready timeout runs from here, not the queue
                contacts = self._contacts(index, list(ready.values()))
                try:
                    admin = await loop.run_in_executor(pool, self._create, index, contacts)
                except FAILURES as exc:
                    result = NodeResult(index, False, explain(exc), time.monotonic() - started)
                    advance(index, "failed")
                    return result
            result = await self._await_ready(
                index, admin, first=not contacts, timeout=timeout, started=started, pool=pool
            )
            if result.ok and result.info is not None:
                ready[index] = result.info
            advance(index, "ready" if result.ok else "failed")
            return result

        return list(await asyncio.gather(*(one(i) for i in indices)))

    def _contacts(self, index: int, ready: list[NodeInfo]) -> list[str]:
        rng = random.Random(self.state.spec.seed * 1_000_003 + index)
        chosen = rng.sample(ready, min(MAX_CONTACTS, len(ready)))
        return [info.contact for info in chosen]

    def _config(self, index: int, contacts: list[str]) -> dict[str, Any]:
        placement = self.plan.placement(index)
        advertise = dict(self.record.advertise).get(placement.host)
        config = dp.node_config(
            self.state.spec, placement, self.state.token, contacts, advertise=advertise
        )
        self.state.write_node_config(index, config)  # the operator's copy (0600)
        return config

    def _create(self, index: int, contacts: list[str]) -> Addr:
        """Blocking: create node ``index``'s container, hand it its config, start it."""
        host, p = self._host(index)
        if p.host in self.broken:
            raise BackendError(f"not started on {p.host}: {self.broken[p.host]}")
        api = host.client.api
        name = self.container(index)
        self.state.info_path(index).unlink(missing_ok=True)
        config = self._config(index, contacts)
        api.create_container(**self._container_args(host, p, self.record.image_of(index), config))
        api.start(name)
        return self._admin_addr(host, p)

    def _container_args(
        self, host: DockerHost, p: dp.Placement, image: str, config: dict[str, Any]
    ) -> dict[str, Any]:
        from docker.types import LogConfig, Mount

        api = host.client.api
        uid, opts = self.record.uid, self.record.options
        memory, nano_cpus = dp.limits(self.state.spec.resources)
        volume = dp.volume_name(self.name, p.index)
        data_labels = dp.labels(self.name, uid, "data", index=p.index, region=p.region)
        ports: list[Any] = []
        bindings: dict[str, Any] = {}
        if p.published:
            bind = opts.publish_host if host.advertise_ip else self._advertised(p.host)
            ports = [(p.peer_port, "udp"), dp.ADMIN_PORT]
            bindings = {
                f"{p.peer_port}/udp": (bind, p.peer_port),
                f"{dp.ADMIN_PORT}/tcp": (bind, p.admin_port),
            }
        host_config = api.create_host_config(
            mounts=[Mount("/data", volume, type="volume", labels=data_labels)],
            mem_limit=memory,
            nano_cpus=nano_cpus,
            pids_limit=256,
            port_bindings=bindings or None,
            log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "2"}),
        )
        health: dict[str, Any] = {"test": ["NONE"]}
        if opts.health_interval > 0:
            health = {"interval": int(opts.health_interval * 1e9)}
        return {
            "image": image,
            "entrypoint": ["sh", "-c", CONFIG_SHIM],
            "environment": {
                CONFIG_ENV: yaml.safe_dump(config, sort_keys=True),
                "TROON_CONFIG": RUN_CONFIG,  # what the image's HEALTHCHECK reads
            },
            "name": self.container(p.index),
            "hostname": f"n{p.index:03d}",
            "labels": dp.labels(
                self.name, uid, "node", index=p.index, region=p.region, image=image
            ),
            "ports": ports or None,
            "host_config": host_config,
            "networking_config": api.create_networking_config(
                {p.network: api.create_endpoint_config()}
            ),
            "healthcheck": health,
        }

    def _advertised(self, url: str) -> str:
        found = dict(self.record.advertise).get(url)
        if found is None:
            raise BackendError(f"host {url}: no address to publish node ports on")
        return found

    def _admin_addr(self, host: DockerHost, p: dp.Placement) -> Addr:
        if p.published:
            return (self._advertised(p.host), p.admin_port)
        attrs = host.client.api.inspect_container(self.container(p.index))
        ip = attrs["NetworkSettings"]["Networks"].get(p.network, {}).get("IPAddress", "")
        if not ip:
            raise BackendError(f"container {self.container(p.index)} has no address on {p.network}")
        return (str(ip), dp.ADMIN_PORT)

    async def _await_ready(
        self,
        index: int,
        admin: Addr,
        *,
        first: bool,
        timeout: float,
        started: float,
        pool: ThreadPoolExecutor | None = None,
        identity: bytes | None = None,
    ) -> NodeResult:
        """Poll ``/info`` (then ``/routing``) until the node is in, its container exits, or
        ``timeout`` passes; record the node info in the state folder."""
        client = AdminClient(*admin, self.state.token, timeout=ADMIN_TIMEOUT)
        loop = asyncio.get_running_loop()
        polls = 0
        while True:
            waited = time.monotonic() - started
            try:
                info = await client.get("/info")
                if first or int((await client.get("/routing"))["size"]) > 0:
                    node = node_info_from_dict({**info, "admin": list(admin)})
                    if identity is not None and node.public_key != identity:
                        detail = "came back with another identity (was its volume lost?)"
                        return NodeResult(index, False, detail, waited)
                    write_private(
                        self.state.info_path(index), json.dumps({**info, "admin": list(admin)})
                    )
                    return NodeResult(index, True, f"ready in {waited:.2f} s", waited, node)
            except (AdminCallError, ValueError, KeyError, TypeError):
                pass
            polls += 1
            if polls % STATE_EVERY == 0:
                gone = await loop.run_in_executor(pool, self._exit_detail, index)
                if gone:
                    return NodeResult(index, False, gone, waited)
            if waited > timeout:
                hint = f"`troon testnet logs {self.name} {index}`"
                return NodeResult(
                    index, False, f"not ready after {timeout:g} s; see {hint}", waited
                )
            await asyncio.sleep(POLL)

    def _exit_detail(self, index: int) -> str:
        """Why node ``index``'s container is not running (with its last log line), or ''."""
        try:
            host, _ = self._host(index)
            attrs = host.client.api.inspect_container(self.container(index))
        except FAILURES as exc:
            return f"container gone: {explain(exc)}"
        if attrs["State"]["Running"]:
            return ""
        code = attrs["State"].get("ExitCode")
        tail = self._last_log_line(host, index)
        return f"exited with code {code}" + (f": {tail!r}" if tail else "")

    def _last_log_line(self, host: DockerHost, index: int) -> str:
        with suppress(*FAILURES):
            text = bytes(host.client.api.logs(self.container(index), tail=20)).decode(
                errors="replace"
            )
            for line in reversed(text.splitlines()):
                if line.strip():
                    return line.strip()[-LOG_TAIL:]
        return ""

    # -- single-node actions ----------------------------------------------------------------

    def _running(self, index: int) -> bool:
        host, _ = self._host(index)
        try:
            return bool(
                host.client.api.inspect_container(self.container(index))["State"]["Running"]
            )
        except DOCKER_ERRORS as exc:
            if status_code(exc) == 404:
                return False
            raise BackendError(f"cannot inspect {self.container(index)}: {explain(exc)}") from exc

    def kill(self, index: int) -> NodeResult:
        """Crash node ``index`` (SIGKILL to its container) and wait until it has stopped."""
        started = time.monotonic()
        try:
            host, _ = self._host(index)
            if not self._running(index):
                return NodeResult(index, False, "was not running")
            host.client.api.kill(self.container(index))
        except BackendError as exc:
            return NodeResult(index, False, str(exc))
        except DOCKER_ERRORS as exc:
            return NodeResult(index, False, f"kill failed: {explain(exc)}")
        ok = self._wait_stopped(index, KILL_WAIT)
        took = time.monotonic() - started
        return NodeResult(index, ok, "killed" if ok else "SIGKILL sent but still running", took)

    def _wait_stopped(self, index: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not self._running(index):
                    return True
            except BackendError:
                return False
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL)

    def stop(self, index: int, *, grace: float = LEAVE_GRACE) -> NodeResult:
        """Ask node ``index`` to leave (SIGTERM); Docker SIGKILLs it after ``grace`` s."""
        started = time.monotonic()
        try:
            host, _ = self._host(index)
            if not self._running(index):
                return NodeResult(index, True, "was not running")
            host.client.api.stop(self.container(index), timeout=max(1, round(grace)))
        except BackendError as exc:
            return NodeResult(index, False, str(exc))
        except DOCKER_ERRORS as exc:
            return NodeResult(index, False, f"stop failed: {explain(exc)}")
        took = time.monotonic() - started
        return NodeResult(index, True, f"stopped in {took:.1f} s", took)

    def _back(
        self,
        index: int,
        admin: Addr,
        contacts: list[str],
        before: NodeInfo | None,
        *,
        started: float,
        timeout: float,
    ) -> NodeResult:
        """Wait for a restarted or recreated node, which must come back with its identity."""
        identity = before.public_key if before is not None else None
        return asyncio.run(
            self._await_ready(
                index,
                admin,
                first=not contacts,
                timeout=timeout,
                started=started,
                identity=identity,
            )
        )

    def restart(self, index: int, *, timeout: float = READY_TIMEOUT) -> NodeResult:
        """Start node ``index``'s stopped container again: same volume, so the same identity
        and chunks; fresh contacts in its config."""
        started = time.monotonic()
        try:
            host, p = self._host(index)
            if self._running(index):
                return NodeResult(index, False, "already running; kill or stop it first")
            before = self.state.read_node_info(index)
            others = [info for i, info in self.live_infos().items() if i != index]
            contacts = self._contacts(index, others)
            name = self.container(index)
            self.state.info_path(index).unlink(missing_ok=True)
            host.client.api.put_archive(
                name, "/etc/troon", config_tar(self._config(index, contacts))
            )
            host.client.api.start(name)
            admin = self._admin_addr(host, p)
        except BackendError as exc:
            return NodeResult(index, False, str(exc))
        except DOCKER_ERRORS as exc:
            hint = "; it may have been removed: `troon testnet status` shows the nodes"
            return NodeResult(index, False, f"cannot start {name}: {explain(exc)}{hint}")
        return self._back(index, admin, contacts, before, started=started, timeout=timeout)

    def logs(self, index: int, *, tail: int | None = None) -> str:
        """The container's output (stdout and stderr), the last ``tail`` lines if given."""
        host, _ = self._host(index)
        try:
            raw = host.client.api.logs(self.container(index), tail="all" if tail is None else tail)
        except DOCKER_ERRORS as exc:
            raise BackendError(f"no logs for node {index}: {explain(exc)}") from exc
        return bytes(raw).decode(errors="replace")

    def exec(self, index: int, command: Sequence[str]) -> tuple[int, str]:
        """Run ``command`` in node ``index``'s container; returns (exit code, output)."""
        if not command:
            raise BackendError("exec: give a command after the index, e.g. -- ls -l /data")
        host, _ = self._host(index)
        api = host.client.api
        try:
            made = api.exec_create(self.container(index), list(command))
            out = bytes(api.exec_start(made["Id"])).decode(errors="replace")
            code = api.exec_inspect(made["Id"])["ExitCode"]
        except DOCKER_ERRORS as exc:
            raise BackendError(
                f"cannot exec in node {index}: {explain(exc)}; is it running? "
                f"(`troon testnet restart {self.name} {index}`)"
            ) from exc
        return int(code if code is not None else 1), out

    def recreate(self, index: int, image: str, *, grace: float, timeout: float) -> NodeResult:
        """Stop node ``index``, replace its container by one from ``image`` with the same
        name, labels, volume and identity, start it and wait until it is back."""
        started = time.monotonic()
        before = self.state.read_node_info(index)
        stopped = self.stop(index, grace=grace)
        if not stopped.ok:
            return stopped
        try:
            host, _ = self._host(index)
            host.client.api.remove_container(self.container(index), v=False)
            others = [info for i, info in self.live_infos().items() if i != index]
            contacts = self._contacts(index, others)
            self.record = replace(
                self.record,
                images=tuple(sorted({**dict(self.record.images), index: image}.items())),
            )
            self._save()
            admin = self._create(index, contacts)
        except BackendError as exc:
            return NodeResult(index, False, str(exc))
        except DOCKER_ERRORS as exc:
            return NodeResult(index, False, f"cannot recreate node {index}: {explain(exc)}")
        return self._back(index, admin, contacts, before, started=started, timeout=timeout)

    # -- down -----------------------------------------------------------------------------

    def down(self, *, grace: float = LEAVE_GRACE, console: Console | None = None) -> Report:
        """Remove every container, volume and network of this bring-up (found by its labels,
        so nothing else is touched) and then the state folder."""
        started = time.monotonic()
        if self.unreachable:
            url, why = next(iter(self.unreachable.items()))
            raise BackendError(
                f"host {url} is unavailable ({why}); its containers cannot be removed. Fix the "
                f"host and run `troon testnet down {self.name}` again; state kept in "
                f"{self.state.root}"
            )
        boxes = self.containers()
        indices = sorted(set(self.indices()) | set(boxes))
        with progress_bar(console, len(indices), f"removing {self.name}") as advance:
            results = self._remove_containers(indices, boxes, grace, advance)
        problems = [r for r in results if not r.ok]
        problems_left = self._remove_rest()
        if problems or problems_left:
            detail = problems[0].detail if problems else problems_left[0]
            if "active endpoints" in detail and not problems:
                raise BackendError(
                    f"every container of {self.name} is gone but Docker still counts endpoints "
                    f"on its network ({detail}): Docker's bookkeeping lost count "
                    "(moby/moby#42119); the network is empty and harmless, and goes with a "
                    "dockerd restart (then `docker network rm` it and run `troon testnet down "
                    f"{self.name}` again); state kept in {self.state.root}"
                )
            raise BackendError(
                f"could not remove everything of {self.name} ({detail}); state kept in "
                f"{self.state.root}; run `troon testnet down {self.name}` again"
            )
        self.state.remove()
        return Report("down", self.name, tuple(results), time.monotonic() - started)

    def _remove_containers(
        self,
        indices: list[int],
        boxes: dict[int, dict[str, Any]],
        grace: float,
        advance: ProgressCb,
    ) -> list[NodeResult]:
        def one(index: int) -> NodeResult:
            box = boxes.get(index)
            if box is None:
                return NodeResult(index, True, "no container")
            began = time.monotonic()
            host, _ = self._host(index)
            try:
                if box.get("State") == "running" and grace > 0:
                    host.client.api.stop(box["Id"], timeout=max(1, round(grace)))
                host.client.api.remove_container(box["Id"], force=True)
            except DOCKER_ERRORS as exc:
                if status_code(exc) != 404:
                    return NodeResult(index, False, f"cannot remove: {explain(exc)}")
            took = time.monotonic() - began
            return NodeResult(index, True, "removed", took)

        workers = max(1, min(self.record.options.concurrency, len(indices)))
        results = []
        with ThreadPoolExecutor(workers, thread_name_prefix="troon-docker") as pool:
            for result in pool.map(one, indices):
                advance(result.index, result.detail)
                results.append(result)
        return results

    def _remove_rest(self) -> list[str]:
        """Remove this bring-up's volumes, then its networks; returns what failed.  Docker
        releases a removed container's endpoint and volume a moment later, so "in use" is
        retried for a few seconds."""
        flt = {"label": dp.label_filter(self.name, self.record.uid)}
        problems = []
        for host in self.hosts.values():
            api = host.client.api
            try:
                volumes = [v["Name"] for v in api.volumes(filters=flt).get("Volumes") or []]
                networks = [n["Id"] for n in api.networks(filters=flt)]
            except DOCKER_ERRORS as exc:
                problems.append(f"{host.name}: {explain(exc)}")
                continue
            removals = [(api.remove_volume, v) for v in volumes]
            removals += [(api.remove_network, n) for n in networks]
            for remove, ident in removals:
                problem = _retry_removal(remove, ident)
                if problem:
                    problems.append(f"{host.name}: {problem}")
        return problems


def _retry_removal(remove: Callable[[str], object], ident: str) -> str:
    """Call ``remove(ident)`` until it works or is gone (404); '' or the last error."""
    for attempt in range(REMOVE_RETRIES):
        try:
            remove(ident)
            return ""
        except DOCKER_ERRORS as exc:
            if status_code(exc) == 404:
                return ""
            if attempt == REMOVE_RETRIES - 1:
                return explain(exc)
            time.sleep(POLL)
    return ""
