"""Pure planning for container testnets: where each node runs, what it is called, what it is
told (no Docker calls; :mod:`testnet.docker_backend` carries the plan out).

Naming: every object of testnet ``NAME`` is called ``troon-NAME...`` and carries the labels
``troon.testnet=NAME`` and ``troon.id=<id of this bring-up>`` (so ``down`` removes exactly
what this testnet created, never a namesake's objects), plus ``troon.role`` (``node``,
``data`` or ``network``); nodes and their volumes also carry ``troon.index`` and
``troon.region``.

Networks: one user-defined bridge per host, ``troon-NAME``.  A Linux bridge takes at most
1,024 ports (``BR_MAX_PORTS`` in net/bridge/br_private.h), so a host with more than
:data:`BRIDGE_LIMIT` nodes is sharded into several bridges of at most that many.  Docker
isolates bridges from each other, so nodes on a sharded host (and every node on a remote host)
run *published*: each node's UDP port and admin port are published on the host with the same
number inside and out, and the node advertises ``host address:port``.  Otherwise nodes talk
over the bridge directly and advertise their container IP (``advertise_host: auto``).

Ports: inside a container on a bridge the ports are fixed (:data:`NODE_PORT`,
:data:`ADMIN_PORT`); a published node on a host gets ``port_base + 2*slot`` (UDP, peers) and
``port_base + 2*slot + 1`` (TCP, admin), ``slot`` counting published nodes across the whole
testnet (so stand-in hosts sharing one daemon never collide).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from testnet.errors import SpecError
from testnet.spec import ResourceSpec, TestnetSpec

NODE_PORT = 7001  # UDP, peers; inside the container's own network namespace
ADMIN_PORT = 7000  # TCP, admin API
BRIDGE_LIMIT = 1000  # containers per bridge: Linux's BR_MAX_PORTS is 1024, keep headroom
PORT_BASE = 40000  # first host port of published nodes
MAX_PORT = 65535
DEFAULT_MEMORY_MB = 256  # a node idles at ~50 MB; the cap stops one runaway node
DEFAULT_CPUS = 1.0  # at most one core each (nano_cpus); cpu_shares stay equal
DEFAULT_IMAGE = "troon-node:latest"
MIN_COPIES = 3  # a rolling upgrade never lets a chunk fall below this many live copies
ARP_PEERS = 128  # peers a node may have neighbour entries for (see arp_entries_needed)
PREFIX = "troon"


@dataclass(frozen=True)
class HostSlot:
    """A Docker host as the planner sees it: its key and whether nodes there are published."""

    url: str
    advertise_ip: str | None = None


@dataclass(frozen=True)
class Placement:
    """Where node ``index`` runs and how it is reached.

    Attributes:
        host: url of the host it runs on.
        network: the bridge it is attached to.
        published: ports published on the host (remote host or sharded host).
        peer_port: UDP port inside the container (the same number on the host if published).
        admin_port: the admin API's port on the host if published, else inside.
    """

    index: int
    region: str
    host: str
    network: str
    published: bool
    peer_port: int
    admin_port: int


@dataclass(frozen=True)
class DockerPlan:
    """Placements of every node, the networks each host needs, and early warnings."""

    testnet: str
    placements: tuple[Placement, ...]
    networks: tuple[tuple[str, str], ...]  # (host url, network name), in creation order
    notes: tuple[str, ...] = ()

    def placement(self, index: int) -> Placement:
        for p in self.placements:
            if p.index == index:
                return p
        raise KeyError(f"no node {index} in the plan of {self.testnet}")

    def on_host(self, url: str) -> list[Placement]:
        return [p for p in self.placements if p.host == url]


def container_name(testnet: str, index: int) -> str:
    return f"{PREFIX}-{testnet}-n{index:03d}"


def volume_name(testnet: str, index: int) -> str:
    return f"{PREFIX}-{testnet}-n{index:03d}-data"


def network_name(testnet: str, *, host_pos: int = 0, hosts: int = 1, shard: int = 0) -> str:
    """``troon-NAME``; ``-h<k>`` when several hosts share one namespace, ``-s<k>`` per shard."""
    name = f"{PREFIX}-{testnet}"
    if hosts > 1:
        name += f"-h{host_pos}"
    if shard:
        name += f"-s{shard}"
    return name


def labels(testnet: str, uid: str, role: str, **extra: object) -> dict[str, str]:
    """The labels of one object (see the module docstring)."""
    out = {f"{PREFIX}.testnet": testnet, f"{PREFIX}.id": uid, f"{PREFIX}.role": role}
    out.update({f"{PREFIX}.{k}": str(v) for k, v in extra.items()})
    return out


def label_filter(testnet: str, uid: str | None = None) -> list[str]:
    """A Docker ``label`` filter for the objects of one testnet (of one bring-up if ``uid``)."""
    out = [f"{PREFIX}.testnet={testnet}"]
    if uid is not None:
        out.append(f"{PREFIX}.id={uid}")
    return out


def assign_hosts(spec: TestnetSpec, urls: Sequence[str]) -> list[str]:
    """The host url of every node: the spec's placement when every spec host is among
    ``urls``, else round-robin over ``urls`` by node index."""
    if not urls:
        raise SpecError("hosts: no Docker host to run on")
    wanted = {h.url for h in spec.hosts}
    if spec.hosts and wanted <= set(urls):
        return [spec.host_of(i).url for i in range(spec.nodes)]
    return [urls[i % len(urls)] for i in range(spec.nodes)]


def plan(
    spec: TestnetSpec,
    hosts: Sequence[HostSlot],
    *,
    shard_size: int = BRIDGE_LIMIT,
    port_base: int = PORT_BASE,
) -> DockerPlan:
    """Place every node of ``spec`` on ``hosts`` (see the module docstring)."""
    if shard_size < 1:
        raise SpecError(f"shard size must be >= 1, got {shard_size}")
    urls = [h.url for h in hosts]
    if len(set(urls)) != len(urls):
        raise SpecError(f"hosts: duplicate host in {urls}")
    owner = assign_hosts(spec, urls)
    placements: list[Placement] = []
    networks: list[tuple[str, str]] = []
    notes: list[str] = []
    slot_base = 0
    for pos, host in enumerate(hosts):
        mine = [i for i in range(spec.nodes) if owner[i] == host.url]
        shards = max(1, -(-len(mine) // shard_size))
        published = host.advertise_ip is not None or shards > 1
        if published and port_base + 2 * (slot_base + len(mine)) > MAX_PORT:
            raise SpecError(
                f"hosts: {len(mine)} published nodes on {host.url} need ports up to "
                f"{port_base + 2 * (slot_base + len(mine)) - 1}, past {MAX_PORT}; use fewer "
                "nodes per testnet or a lower port base"
            )
        nets = [
            network_name(spec.name, host_pos=pos, hosts=len(hosts), shard=s) for s in range(shards)
        ]
        networks += [(host.url, n) for n in nets]
        if shards > 1:
            notes.append(
                f"host {host.url} runs {len(mine)} nodes, more than one bridge takes "
                f"(~{BRIDGE_LIMIT}; Linux bridges have at most 1,024 ports): sharded into "
                f"{shards} networks; nodes reach other shards through ports published on the host"
            )
        for slot, index in enumerate(mine):
            peer, admin = NODE_PORT, ADMIN_PORT
            if published:
                peer, admin = (
                    port_base + 2 * (slot_base + slot),
                    port_base + 2 * (slot_base + slot) + 1,
                )
            net = nets[slot // shard_size]
            region = spec.region_of(index)
            placements.append(Placement(index, region, host.url, net, published, peer, admin))
        slot_base += len(mine) if published else 0
    placements.sort(key=lambda p: p.index)
    return DockerPlan(spec.name, tuple(placements), tuple(networks), tuple(notes))


def node_config(
    spec: TestnetSpec,
    placement: Placement,
    token: str,
    contacts: Sequence[str],
    *,
    advertise: str | None,
) -> dict[str, Any]:
    """The config file handed to node ``placement.index`` (``/etc/troon/node.yaml``).

    ``advertise`` is the host address of a published node; ``None`` (on a bridge) lets the
    node advertise its container IP (``auto``: its address on the route to its contacts).
    """
    return {
        **spec.node_overrides(),
        "data_dir": "/data",
        "admin_token": token,
        "listen_host": "0.0.0.0",
        "listen_port": placement.peer_port,
        "advertise_host": advertise if placement.published and advertise else "auto",
        "admin_host": "0.0.0.0",
        "admin_port": ADMIN_PORT,
        "region": placement.region,
        "testnet": spec.name,
        "first": not contacts,
        "contacts": list(contacts),
    }


def arp_entries_needed(nodes: int) -> int:
    """Pure: neighbour (ARP) entries ``nodes`` containers on one host's bridges may hold.

    Every container keeps its own neighbour entries, but Linux counts them all against one
    table (``net.ipv4.neigh.default.gc_thresh3``, 1,024 by default) and drops packets to new
    neighbours once it is full.  Nodes talk to most of a small network (measured: 35-60 entries
    each at 60 nodes), so this counts up to :data:`ARP_PEERS` peers per node, plus the host.
    """
    return nodes * (min(nodes - 1, ARP_PEERS) + 1)


def arp_advice(nodes: int, thresh3: int) -> str | None:
    """Pure: what to do when the neighbour table is too small for ``nodes``, else None."""
    need = arp_entries_needed(nodes)
    if need <= thresh3:
        return None
    size = 1 << (2 * need - 1).bit_length()  # a power of two, at least twice the need
    return (
        f"{nodes} containers on this host may need ~{need} neighbour (ARP) entries, but the "
        f"kernel's table holds {thresh3} (net.ipv4.neigh.default.gc_thresh3); past that, "
        f"packets between containers are dropped. Raise it first: sysctl -w "
        f"net.ipv4.neigh.default.gc_thresh1={size // 8} "
        f"net.ipv4.neigh.default.gc_thresh2={size // 2} net.ipv4.neigh.default.gc_thresh3={size}"
    )


def limits(resources: ResourceSpec | None) -> tuple[int, int]:
    """``(memory bytes, nano_cpus)`` for each node container."""
    memory = resources.memory_mb if resources and resources.memory_mb else DEFAULT_MEMORY_MB
    cpus = resources.cpus if resources and resources.cpus else DEFAULT_CPUS
    return memory * 1024 * 1024, int(cpus * 1e9)


def upgrade_blockers(
    holdings: Mapping[bytes, Iterable[bytes]], victim: bytes, *, min_copies: int = MIN_COPIES
) -> list[tuple[bytes, int]]:
    """Pure: chunks that would have fewer than ``min_copies`` live copies with node ``victim``
    down, as ``(chunk name, copies left)``; ``holdings`` maps live node names to chunk names."""
    mine = set(holdings.get(victim, ()))
    copies: dict[bytes, int] = dict.fromkeys(mine, 0)
    for node, names in holdings.items():
        if node == victim:
            continue
        for name in names:
            if name in copies:
                copies[name] += 1
    return sorted((name, n) for name, n in copies.items() if n < min_copies)
