"""What a container testnet remembers, and how it reaches its Docker hosts (an adapter).

``docker.json`` in the state folder (0600) records one bring-up: its id (the ``troon.id``
label on every object it made), the options, the hosts, the plan, the address published
nodes advertise on each host and the image of every node that differs from the options'
(after a rolling upgrade).  It is written before any Docker object exists, so ``down`` can
always find what a crashed ``up`` left.  Every Docker failure an operator can meet becomes a
one-line :class:`~testnet.errors.BackendError` or :class:`~testnet.errors.StateError`.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker.errors
import yaml
from rich.console import Console

from testnet import docker_plan as dp
from testnet import hosts as hosts_mod
from testnet.errors import BackendError, StateError
from testnet.hosts import DockerHost
from testnet.state import State, write_private

DEFAULT_CONCURRENCY = 8  # Docker calls in flight per testnet (tuned on 2 cores, see BENCHMARKS)
READY_TIMEOUT = 60.0
HEALTH_INTERVAL = 120.0
RECORD = "docker.json"
RECORD_VERSION = 1
NODE_UID = 10001  # the image's troon user
LOG_TAIL = 200


@dataclass(frozen=True)
class DockerOptions:
    """How containers are made (the spec says what network; these say how).

    Attributes:
        image: node image on every host.
        concurrency: Docker create/start calls in flight at once.
        ready_timeout: seconds from start until a node must answer.
        health_interval: seconds between Docker HEALTHCHECK runs (0: none).
        shard_size: nodes per bridge network before a host is sharded.
        port_base: first host port of published nodes.
        publish_host: host address published ports bind on, for hosts with an advertise
            address (a sharded local host binds on its first bridge's gateway).
    """

    image: str = dp.DEFAULT_IMAGE
    concurrency: int = DEFAULT_CONCURRENCY
    ready_timeout: float = READY_TIMEOUT
    health_interval: float = HEALTH_INTERVAL
    shard_size: int = dp.BRIDGE_LIMIT
    port_base: int = dp.PORT_BASE
    publish_host: str = "0.0.0.0"


@dataclass(frozen=True)
class Record:
    """What ``docker.json`` in the state folder remembers about one bring-up."""

    uid: str
    options: DockerOptions
    hosts: tuple[tuple[str, str, str | None], ...]  # (name, url, advertise_ip)
    plan: dp.DockerPlan
    advertise: tuple[tuple[str, str], ...] = ()  # host url -> address published nodes advertise
    images: tuple[tuple[int, str], ...] = ()  # node index -> image, once it differs

    def image_of(self, index: int) -> str:
        return dict(self.images).get(index, self.options.image)

    def to_json(self) -> str:
        raw = {
            "version": RECORD_VERSION,
            "uid": self.uid,
            "options": asdict(self.options),
            "hosts": [list(h) for h in self.hosts],
            "networks": [list(n) for n in self.plan.networks],
            "placements": [asdict(p) for p in self.plan.placements],
            "notes": list(self.plan.notes),
            "advertise": dict(self.advertise),
            "images": {str(i): image for i, image in self.images},
        }
        return json.dumps(raw, indent=1) + "\n"


def record_from_json(text: str, testnet: str) -> Record:
    """Parse ``docker.json``; raises ValueError (or KeyError/TypeError) when damaged."""
    raw = json.loads(text)
    if raw.get("version") != RECORD_VERSION:
        raise ValueError(f"not a version {RECORD_VERSION} record")
    plan = dp.DockerPlan(
        testnet,
        tuple(dp.Placement(**p) for p in raw["placements"]),
        tuple((str(h), str(n)) for h, n in raw["networks"]),
        tuple(str(n) for n in raw["notes"]),
    )
    return Record(
        str(raw["uid"]),
        DockerOptions(**raw["options"]),
        tuple((str(n), str(u), None if a is None else str(a)) for n, u, a in raw["hosts"]),
        plan,
        tuple(sorted((str(k), str(v)) for k, v in raw["advertise"].items())),
        tuple(sorted((int(k), str(v)) for k, v in raw["images"].items())),
    )


DOCKER_ERRORS = (docker.errors.DockerException, OSError)  # OSError: requests' errors too
FAILURES = (BackendError, *DOCKER_ERRORS)


def status_code(exc: Exception) -> int:
    return int(getattr(exc, "status_code", 0) or 0)


def explain(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0][:LOG_TAIL] if str(text).strip() else type(exc).__name__


def config_tar(config: dict[str, Any]) -> bytes:
    """A tar holding ``node.yaml`` (mode 0600, owned by the image's troon user)."""
    data = yaml.safe_dump(config, sort_keys=True).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("node.yaml")
        info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
        info.uid = info.gid = NODE_UID
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gateway(network: dict[str, Any]) -> str | None:
    for config in network.get("IPAM", {}).get("Config") or []:
        if config.get("Gateway"):
            return str(config["Gateway"]).split("/")[0]
    return None


def check_hosts(hosts: Iterable[DockerHost], testnet: str, image: str) -> dict[str, str]:
    """Per host: the image must be there and no object of a namesake testnet may exist.
    Raises for the problems an operator must fix first; returns hosts that failed."""
    failed: dict[str, str] = {}
    for host in hosts:
        try:
            host.client.api.inspect_image(image)
            flt = {"label": dp.label_filter(testnet)}
            leftovers = host.client.api.containers(all=True, filters=flt)
            networks = [n["Name"] for n in host.client.api.networks(filters=flt)]
        except docker.errors.ImageNotFound:
            tag = "" if image == dp.DEFAULT_IMAGE else f" --tag {image}"
            raise BackendError(
                f"image {image} is not on host {host.name}; build it with `troon image build"
                f"{tag}` (or name a local image with --image / `image:` in the spec)"
            ) from None
        except DOCKER_ERRORS as exc:
            failed[host.url] = f"Docker does not answer: {explain(exc)}"
            continue
        if leftovers:
            raise StateError(
                f"{len(leftovers)} containers of a testnet named {testnet} already exist on "
                f"host {host.name}; `troon testnet down {testnet}` removes them, or by hand: "
                f"docker rm -f $(docker ps -aq --filter label={dp.PREFIX}.testnet={testnet})"
            )
        if networks:
            raise StateError(
                f"network {networks[0]} of a testnet named {testnet} is left on host "
                f"{host.name}; remove it (docker network rm {networks[0]}) or pick another "
                "--name (if Docker says it has active endpoints while no container uses it, "
                "only a dockerd restart clears that: moby/moby#42119)"
            )
    return failed


NEIGH_THRESH = Path("/proc/sys/net/ipv4/neigh/default/gc_thresh3")


def check_neighbours(plan: dp.DockerPlan, *, path: Path = NEIGH_THRESH) -> None:
    """Refuse to start more containers on this machine than its neighbour (ARP) table can
    serve (see :func:`testnet.docker_plan.arp_entries_needed`); remote hosts are not read."""
    mine = len(plan.on_host(hosts_mod.LOCAL))
    try:
        thresh3 = int(path.read_text())
    except (OSError, ValueError):
        return
    advice = dp.arp_advice(mine, thresh3) if mine else None
    if advice is not None:
        raise BackendError(advice)


def no_host_message(failed: dict[str, str]) -> str:
    detail = "; ".join(f"{url}: {why}" for url, why in failed.items()) or "no hosts given"
    return f"no Docker host can run nodes ({detail}); check the hosts and retry"


def refuse_existing(name: str, home: Path | None) -> None:
    try:
        State.open(name, home=home)
    except StateError:
        return
    raise StateError(
        f"testnet {name} already has a state folder; `troon testnet down {name}` first"
    )


def read_record(state: State) -> Record:
    path = state.root / RECORD
    try:
        return record_from_json(path.read_text(), state.name)
    except FileNotFoundError:
        raise StateError(
            f"{path} is missing: testnet {state.name} was never fully created; remove its "
            f"containers with docker rm -f $(docker ps -aq --filter "
            f"label={dp.PREFIX}.testnet={state.name}) and its folder {state.root}"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(
            f"{path} is damaged ({exc}); see docker ps --filter label="
            f"{dp.PREFIX}.testnet={state.name}"
        ) from None


def connect(
    wanted: Sequence[tuple[str, str | None]], *, image: str, console: Console | None = None
) -> tuple[list[DockerHost], dict[str, str]]:
    """Reach Docker hosts ``(url, advertise address)``: ``local`` directly, ``ssh://`` ones
    through :func:`testnet.hosts.connect_hosts`; returns (hosts, unreachable url -> why)."""
    out: list[DockerHost] = []
    failed: dict[str, str] = {}
    remote = [(url, ip) for url, ip in wanted if url != hosts_mod.LOCAL]
    if any(url == hosts_mod.LOCAL for url, _ in wanted):
        out.append(hosts_mod.local_host())  # no daemon here is an error the operator fixes
    if remote:
        advertise = {url: ip for url, ip in remote if ip is not None}
        ready, bad = hosts_mod.connect_hosts(
            [url for url, _ in remote], image=image, console=console, advertise=advertise
        )
        out += ready
        failed.update(bad)
    return out, failed


def reconnect(record: Record) -> tuple[list[DockerHost], dict[str, str]]:
    """Reach the hosts a testnet was brought up on again; returns (hosts, unreachable)."""
    return connect([(url, ip) for _, url, ip in record.hosts], image=record.options.image)


def save_record(state: State, record: Record) -> None:
    write_private(state.root / RECORD, record.to_json())
