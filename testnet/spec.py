"""Testnet specs: YAML -> frozen dataclasses, one schema for every backend.

A spec says what network to build, never how: ``name``; ``backend`` (``local`` processes,
``docker`` containers, ``ssh`` hosts running docker); ``image`` (container backends);
``nodes`` or ``regions`` (each with ``nodes`` and per-pair ``latency_ms`` / ``loss``);
``seed``; ``transport`` and ``node`` overrides for every node's config; ``churn``;
``hosts`` (where containers run); ``stages`` (a staged rollout); ``resources`` (limits per
container: ``memory_mb``, ``cpus``; the local backend ignores them).

``hosts`` is a list of ``local`` or ``ssh://[user@]host[:port]``, each optionally a mapping
``{url, advertise, regions}``: ``advertise`` is the address other hosts reach this host's
published ports on (an IP literal or host name; default: the URL's host), ``regions`` the
regions this host runs.  Node placement (:meth:`TestnetSpec.host_of`): a region named by a
host runs there; the other regions' nodes go round-robin (by node index) over the hosts that
name no region.  No ``hosts`` means one ``local`` host.

``stages`` is a list of ``{name, regions: {region: target}}``: cumulative node targets per
region (a region a stage leaves out keeps its previous target, 0 before the first stage).
Node indices are fixed by the full spec; a stage with target ``t`` for a region runs that
region's first ``t`` nodes.  The last stage may stop short of the full spec: a rollout then
ends with an implicit stage ``full`` (:meth:`TestnetSpec.rollout_stages`).

Invariants of a :class:`TestnetSpec` (checked once, in :func:`spec_from_dict`):

- names are DNS-label-like (``[a-z0-9][a-z0-9-]*``, at most 32 characters): they become
  folder, container and impairment-group names;
- there is at least one region (a spec with only ``nodes: N`` gets one region ``local``) and
  at least one node in all, at most :data:`MAX_NODES`;
- the latency and loss matrices are symmetric: each pair may be given once (under either
  region) or twice with the same value; keys name known regions (a region's own name sets
  its intra-region figure); ``latency_ms`` is the round-trip time the pair should see;
- ``transport`` / ``node`` overrides are exactly what a node's config accepts (validated by
  building a real :class:`node.config.NodeConfig`);
- host URLs are unique and well-formed; a region is named by at most one host; every region
  has somewhere to run; the ``local`` backend runs on ``local`` only;
- stage names are unique; each target is an integer in [0, region's nodes]; targets never
  decrease from one stage to the next; each stage adds at least one node.

Every error is a :class:`SpecError` whose message starts with the field path, e.g.
``regions[1].nodes: must be an integer >= 0, got -3``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from node.config import config_from_dict
from node.transport.config import ConfigError, TransportConfig
from testnet.errors import SpecError

MAX_NODES = 4096
MAX_NAME = 32
BACKENDS = ("local", "docker", "ssh")
CHURN_MODES = ("fixed", "random")
DEFAULT_NAME = "local"
DEFAULT_REGION = "local"
NODE_OVERRIDES = (
    "capacity",
    "replication_factor",
    "k",
    "alpha",
    "audit_interval",
    "refresh_interval",
    "request_timeout",
    "require_payment",
)
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_TOP = ("name", "backend", "image", "nodes", "regions", "seed", "transport", "node", "churn")
_TOP_ALL = (*_TOP, "hosts", "stages", "resources")
_REGION = ("name", "nodes", "latency_ms", "loss")
_HOST = ("url", "advertise", "regions")
_STAGE = ("name", "regions")
_RESOURCES = ("memory_mb", "cpus")
LOCAL_HOST = "local"
FULL_STAGE = "full"
MIN_MEMORY_MB = 32
MAX_MEMORY_MB = 1024 * 1024
MAX_CPUS = 1024.0
_SSH_URL = re.compile(
    r"ssh://(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]{0,31})@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(?::(?P<port>[0-9]{1,5}))?"
)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
_CHURN = ("mode", "interval_s", "kills_per_event", "restart_after_s", "duration_s", "events")
_CHURN_ALL = (*_CHURN, "seed")

_MISSING = object()
_TRANSPORT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TransportConfig)}

Pair = tuple[str, str, float]  # (region a, region b, value) with a <= b


@dataclass(frozen=True)
class RegionSpec:
    """A named group of nodes (a label on the local backend, a host group elsewhere)."""

    name: str
    nodes: int


@dataclass(frozen=True)
class ChurnSpec:
    """How to churn a running testnet.

    Attributes:
        mode: ``fixed`` (an event every ``interval_s``) or ``random`` (exponential gaps with
            mean ``interval_s``, a Poisson process).
        interval_s: seconds between events (the mean in ``random`` mode), > 0.
        kills_per_event: nodes SIGKILLed per event, >= 1 and fewer than the testnet's nodes.
        restart_after_s: seconds before a killed node restarts with its old identity and
            chunks; ``None`` means it stays down.
        duration_s / events: when to stop (at least one; the earlier limit wins).
        seed: seed of the schedule; ``None`` takes the testnet's seed.
    """

    mode: str = "fixed"
    interval_s: float = 10.0
    kills_per_event: int = 1
    restart_after_s: float | None = 5.0
    duration_s: float | None = None
    events: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class HostSpec:
    """Where containers run: ``local`` (this machine's daemon) or ``ssh://[user@]host[:port]``.

    Attributes:
        url: ``local`` or the SSH URL, as written in the spec.
        advertise: address other hosts reach this host's published ports on; ``None``: the
            URL's host (see :meth:`advertise_address`).
        regions: regions that run on this host (empty: it takes a share of the others).
    """

    url: str = LOCAL_HOST
    advertise: str | None = None
    regions: tuple[str, ...] = ()

    @property
    def is_local(self) -> bool:
        return self.url == LOCAL_HOST

    def ssh_parts(self) -> tuple[str | None, str, int | None]:
        """``(user, host, port)`` of an SSH URL (host without IPv6 brackets)."""
        match = _SSH_URL.fullmatch(self.url)
        if match is None:
            raise ValueError(f"{self.url!r} is not an ssh:// URL")
        port = match["port"]
        return match["user"], match["host"].strip("[]"), None if port is None else int(port)

    def advertise_address(self) -> str | None:
        """``advertise``, else the SSH URL's host; ``None`` for a plain ``local`` host."""
        if self.advertise is not None or self.is_local:
            return self.advertise
        return self.ssh_parts()[1]

    def to_dict(self) -> str | dict[str, Any]:
        if self.advertise is None and not self.regions:
            return self.url
        out: dict[str, Any] = {"url": self.url}
        if self.advertise is not None:
            out["advertise"] = self.advertise
        if self.regions:
            out["regions"] = list(self.regions)
        return out


@dataclass(frozen=True)
class StageSpec:
    """One rollout stage: the cumulative node target of every region, in spec order."""

    name: str
    targets: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(count for _, count in self.targets)

    def target(self, region: str) -> int:
        """This stage's node target for ``region`` (0 for a region it does not know)."""
        return dict(self.targets).get(region, 0)


@dataclass(frozen=True)
class ResourceSpec:
    """Limits for each node container (``None``: the backend's default)."""

    memory_mb: int | None = None
    cpus: float | None = None


@dataclass(frozen=True)
class TestnetSpec:
    """A validated testnet description (see the module docstring for the invariants)."""

    __test__ = False  # not a pytest test class, despite the name

    name: str = DEFAULT_NAME
    backend: str = "local"
    image: str | None = None
    regions: tuple[RegionSpec, ...] = (RegionSpec(DEFAULT_REGION, 1),)
    latency_ms: tuple[Pair, ...] = ()
    loss: tuple[Pair, ...] = ()
    seed: int = 0
    transport: tuple[tuple[str, Any], ...] = ()
    node: tuple[tuple[str, Any], ...] = ()
    churn: ChurnSpec | None = None
    regions_given: bool = False
    hosts: tuple[HostSpec, ...] = ()
    stages: tuple[StageSpec, ...] = ()
    resources: ResourceSpec | None = None

    @property
    def nodes(self) -> int:
        """Total node count over all regions."""
        return sum(r.nodes for r in self.regions)

    def region_of(self, index: int) -> str:
        """The region of node ``index``: regions take consecutive indices, in spec order."""
        if not 0 <= index < self.nodes:
            raise IndexError(f"node index {index} out of range 0..{self.nodes - 1}")
        for region in self.regions:
            if index < region.nodes:
                return region.name
            index -= region.nodes
        raise AssertionError("unreachable: index checked above")

    def region_indices(self, region: str) -> range:
        """The node indices of ``region`` (consecutive, in spec order)."""
        start = 0
        for r in self.regions:
            if r.name == region:
                return range(start, start + r.nodes)
            start += r.nodes
        raise KeyError(f"no region {region!r} (known: {', '.join(r.name for r in self.regions)})")

    def host_of(self, index: int) -> HostSpec:
        """The host node ``index`` runs on (see the module docstring for the placement)."""
        region = self.region_of(index)
        hosts = self.hosts or (HostSpec(),)
        for host in hosts:
            if region in host.regions:
                return host
        free = [h for h in hosts if not h.regions]
        return free[index % len(free)]  # validation guarantees one when a region is unplaced

    def rollout_stages(self) -> tuple[StageSpec, ...]:
        """The stages a rollout walks: ``stages``, then ``full`` unless the last one is."""
        full = StageSpec(FULL_STAGE, tuple((r.name, r.nodes) for r in self.regions))
        if self.stages and self.stages[-1].total == self.nodes:
            return self.stages
        return (*self.stages, full)

    def stage_indices(self, stage: StageSpec) -> list[int]:
        """The node indices running once ``stage`` is reached, ascending."""
        out: list[int] = []
        for region in self.regions:
            out.extend(self.region_indices(region.name)[: stage.target(region.name)])
        return out

    def latency_between(self, a: str, b: str) -> float:
        """Round-trip milliseconds between regions ``a`` and ``b`` (0 when not given)."""
        return _lookup(self.latency_ms, a, b)

    def loss_between(self, a: str, b: str) -> float:
        """Datagram loss fraction between regions ``a`` and ``b`` (0 when not given)."""
        return _lookup(self.loss, a, b)

    def node_overrides(self) -> dict[str, Any]:
        """Fields to put in every node's config (``node`` and ``transport`` sections)."""
        out = dict(self.node)
        if self.transport:
            out["transport"] = dict(self.transport)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Canonical plain form; ``spec_from_dict(spec.to_dict()) == spec``."""
        out: dict[str, Any] = {"name": self.name, "backend": self.backend, "seed": self.seed}
        if self.image is not None:
            out["image"] = self.image
        if self.regions_given:
            out["regions"] = [self._region_dict(r) for r in self.regions]
        else:
            out["nodes"] = self.nodes
        if self.transport:
            out["transport"] = dict(self.transport)
        if self.node:
            out["node"] = dict(self.node)
        if self.churn is not None:
            out["churn"] = {k: v for k, v in vars(self.churn).items() if v is not None}
            if self.churn.restart_after_s is None:
                out["churn"]["restart_after_s"] = None
        if self.hosts:
            out["hosts"] = [h.to_dict() for h in self.hosts]
        if self.stages:
            out["stages"] = [{"name": s.name, "regions": dict(s.targets)} for s in self.stages]
        if self.resources is not None:
            out["resources"] = {k: v for k, v in vars(self.resources).items() if v is not None}
        return out

    def _region_dict(self, region: RegionSpec) -> dict[str, Any]:
        out: dict[str, Any] = {"name": region.name, "nodes": region.nodes}
        for key, pairs in (("latency_ms", self.latency_ms), ("loss", self.loss)):
            mine = {b: v for a, b, v in pairs if a == region.name}
            if mine:
                out[key] = mine
        return out


def _lookup(pairs: tuple[Pair, ...], a: str, b: str) -> float:
    lo, hi = sorted((a, b))
    for x, y, value in pairs:
        if (x, y) == (lo, hi):
            return value
    return 0.0


# -- loading ------------------------------------------------------------------------------


def load_spec(path: Path) -> TestnetSpec:
    """Read and validate a spec file; every problem is a one-line :class:`SpecError`."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror or exc}") from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, *, source: str = "spec") -> TestnetSpec:
    """Validate YAML text (``yaml.safe_load``) as a spec."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SpecError(f"{source}: not valid YAML{where}; fix the syntax and retry") from None
    return spec_from_dict({} if raw is None else raw)


def spec_from_dict(raw: object) -> TestnetSpec:
    """Validate a parsed spec mapping; raises :class:`SpecError` naming the field path."""
    top = _mapping(raw, "spec", _TOP_ALL)
    name = _name(top.get("name", DEFAULT_NAME), "name")
    backend = top.get("backend", "local")
    if backend not in BACKENDS:
        raise SpecError(f"backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    image = top.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise SpecError("image: must be a non-empty string (a container image reference)")
    regions_given = "regions" in top
    regions = _regions(top)
    total = sum(r.nodes for r in regions)
    if total < 1:
        raise SpecError("nodes: a testnet needs at least 1 node")
    if total > MAX_NODES:
        raise SpecError(f"nodes: at most {MAX_NODES} nodes in one testnet, got {total}")
    known = [r.name for r in regions]
    raw_regions = top.get("regions") or []
    latency = _matrix(raw_regions, known, "latency_ms", _latency_value)
    loss = _matrix(raw_regions, known, "loss", _loss_value)
    seed = _integer(top.get("seed", 0), "seed", low=0)
    transport, node = _overrides(top)
    churn = churn_from_dict(top["churn"], total) if top.get("churn") is not None else None
    hosts = _hosts(top.get("hosts"), backend, regions)
    stages = _stages(top.get("stages"), regions)
    resources = _resources(top["resources"]) if top.get("resources") is not None else None
    return TestnetSpec(
        name=name,
        backend=backend,
        image=image,
        regions=regions,
        latency_ms=latency,
        loss=loss,
        seed=seed,
        transport=transport,
        node=node,
        churn=churn,
        regions_given=regions_given,
        hosts=hosts,
        stages=stages,
        resources=resources,
    )


def _mapping(raw: object, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: must be a mapping, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        where = "" if path == "spec" else f"{path}."
        raise SpecError(
            f"{where}{unknown[0]}: unknown field (known: {', '.join(allowed)})"
            if len(unknown) == 1
            else f"{path}: unknown fields {', '.join(unknown)} (known: {', '.join(allowed)})"
        )
    return raw


def _name(value: object, path: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value) or len(value) > MAX_NAME:
        raise SpecError(
            f"{path}: must be 1-{MAX_NAME} of a-z, 0-9 and '-', starting with a letter or digit,"
            f" got {value!r}"
        )
    return value


def _integer(value: object, path: str, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"{path}: must be an integer >= {low}, got {value!r}")
    return value


def _number(value: object, path: str, *, low: float, high: float | None = None) -> float:
    number = float("nan")
    if not isinstance(value, bool) and isinstance(value, int | float):
        with contextlib.suppress(OverflowError):  # an int too big for a float
            number = float(value)
    if not (low <= number and (high is None or number <= high)):  # NaN fails every comparison
        bounds = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
        raise SpecError(f"{path}: must be a number {bounds}, got {value!r}")
    return number


def _regions(top: dict[str, Any]) -> tuple[RegionSpec, ...]:
    if "regions" not in top:
        if "nodes" not in top:
            raise SpecError("nodes: required when no regions are given (e.g. nodes: 8)")
        return (RegionSpec(DEFAULT_REGION, _integer(top["nodes"], "nodes", low=1)),)
    raw = top["regions"]
    if not isinstance(raw, list) or not raw:
        raise SpecError("regions: must be a non-empty list of {name, nodes, latency_ms, loss}")
    out: list[RegionSpec] = []
    for i, item in enumerate(raw):
        entry = _mapping(item, f"regions[{i}]", _REGION)
        if "name" not in entry:
            raise SpecError(f"regions[{i}].name: required")
        name = _name(entry["name"], f"regions[{i}].name")
        if any(r.name == name for r in out):
            raise SpecError(f"regions[{i}].name: duplicate region {name!r}")
        out.append(RegionSpec(name, _integer(entry.get("nodes"), f"regions[{i}].nodes", low=0)))
    total = sum(r.nodes for r in out)
    if "nodes" in top and _integer(top["nodes"], "nodes", low=1) != total:
        raise SpecError(f"nodes: {top['nodes']} disagrees with the regions' sum {total}")
    return tuple(out)


def _latency_value(value: object, path: str) -> float:
    return _number(value, path, low=0.0, high=600_000.0)


def _loss_value(value: object, path: str) -> float:
    return _number(value, path, low=0.0, high=1.0)


def _matrix(raw_regions: list[Any], known: list[str], key: str, check: Any) -> tuple[Pair, ...]:
    seen: dict[tuple[str, str], tuple[float, str]] = {}
    for i, item in enumerate(raw_regions):
        given = item.get(key)
        if given is None:
            continue
        if not isinstance(given, dict):
            raise SpecError(f"regions[{i}].{key}: must be a mapping of region name -> value")
        for other, value in given.items():
            path = f"regions[{i}].{key}.{other}"
            if other not in known:
                raise SpecError(f"{path}: unknown region (known: {', '.join(known)})")
            number = check(value, path)
            pair = (min(item["name"], other), max(item["name"], other))
            if pair in seen and seen[pair][0] != number:
                raise SpecError(
                    f"{path}: {number:g} contradicts {seen[pair][1]}: {seen[pair][0]:g}"
                    " (the matrix is symmetric: give each pair once)"
                )
            seen[pair] = (number, path)
    return tuple(sorted((a, b, v) for (a, b), (v, _) in seen.items()))


def _overrides(top: dict[str, Any]) -> tuple[tuple[tuple[str, Any], ...], ...]:
    transport = top.get("transport") or {}
    node = top.get("node") or {}
    if not isinstance(transport, dict):
        raise SpecError("transport: must be a mapping of transport settings")
    if not isinstance(node, dict):
        raise SpecError("node: must be a mapping of node settings")
    _check_transport(transport)
    for key in node:
        if key not in NODE_OVERRIDES:
            raise SpecError(
                f"node.{key}: not a per-testnet setting (allowed: {', '.join(NODE_OVERRIDES)})"
            )
    try:  # the node's own validation, so a spec accepts exactly what a node accepts
        config_from_dict(
            {"data_dir": "/nonexistent", "admin_token": "x" * 16, "first": True, **node}
        )
    except ConfigError as exc:
        raise SpecError(f"node.{exc}") from None
    return tuple(sorted(transport.items())), tuple(sorted(node.items()))


def _check_transport(transport: dict[Any, Any]) -> None:
    for key, value in transport.items():
        default = _TRANSPORT_DEFAULTS.get(key, _MISSING)
        if default is _MISSING:
            known = ", ".join(_TRANSPORT_DEFAULTS)
            raise SpecError(f"transport.{key}: unknown field (known: {known})")
        kind = bool if isinstance(default, bool) else type(default)
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if default is None or key == "cookie_policy":
            ok = True  # checked by TransportConfig itself
        if not ok:
            raise SpecError(f"transport.{key}: must be {kind.__name__}, got {value!r}")
    try:
        TransportConfig(**transport)
    except ConfigError as exc:
        raise SpecError(str(exc)) from None


def churn_from_dict(raw: object, total: int) -> ChurnSpec:
    """Validate a ``churn`` mapping for a testnet of ``total`` nodes."""
    entry = _mapping(raw, "churn", _CHURN_ALL)
    mode = entry.get("mode", "fixed")
    if mode not in CHURN_MODES:
        raise SpecError(f"churn.mode: must be one of {', '.join(CHURN_MODES)}, got {mode!r}")
    interval = _number(entry.get("interval_s", 10.0), "churn.interval_s", low=0.0)
    if interval <= 0:
        raise SpecError("churn.interval_s: must be > 0")
    kills = _integer(entry.get("kills_per_event", 1), "churn.kills_per_event", low=1)
    if kills >= total:
        raise SpecError(
            f"churn.kills_per_event: {kills} would kill every node of {total}; use fewer"
        )
    restart = entry.get("restart_after_s", 5.0)
    if restart is not None:
        restart = _number(restart, "churn.restart_after_s", low=0.0)
    duration = entry.get("duration_s")
    if duration is not None:
        duration = _number(duration, "churn.duration_s", low=0.0)
    events = entry.get("events")
    if events is not None:
        events = _integer(events, "churn.events", low=1)
    if duration is None and events is None:
        raise SpecError("churn: give duration_s or events (when churn should stop)")
    seed = entry.get("seed")
    if seed is not None:
        seed = _integer(seed, "churn.seed", low=0)
    return ChurnSpec(mode, interval, kills, restart, duration, events, seed)


# -- hosts, stages, resources -------------------------------------------------------------


def _hosts(raw: object, backend: str, regions: tuple[RegionSpec, ...]) -> tuple[HostSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise SpecError("hosts: must be a non-empty list of 'local' or 'ssh://user@host[:port]'")
    known = [r.name for r in regions]
    out: list[HostSpec] = []
    placed: dict[str, int] = {}
    for i, item in enumerate(raw):
        host = _host(item, f"hosts[{i}]", known)
        if any(h.url == host.url for h in out):
            raise SpecError(f"hosts[{i}].url: duplicate host {host.url!r}")
        if backend == "local" and not host.is_local:
            raise SpecError(
                f"hosts[{i}].url: backend local runs on this machine only; "
                "use backend: docker for ssh:// hosts"
            )
        for j, region in enumerate(host.regions):
            if region in placed:
                raise SpecError(
                    f"hosts[{i}].regions[{j}]: region {region!r} already runs on "
                    f"hosts[{placed[region]}]; name each region under one host"
                )
            placed[region] = i
        out.append(host)
    unplaced = [name for name in known if name not in placed]
    if unplaced and all(h.regions for h in out):
        raise SpecError(
            f"hosts: regions {', '.join(unplaced)} run on no host; name them under a host "
            "or add a host without regions"
        )
    return tuple(out)


def _host(item: object, path: str, known: list[str]) -> HostSpec:
    if not isinstance(item, str | dict):
        raise SpecError(
            f"{path}: must be 'local', 'ssh://user@host[:port]' or a mapping "
            f"{{url, advertise, regions}}, got {type(item).__name__}"
        )
    entry = {"url": item} if isinstance(item, str) else _mapping(item, path, _HOST)
    if "url" not in entry:
        raise SpecError(f"{path}.url: required ('local' or 'ssh://user@host[:port]')")
    where = path if isinstance(item, str) else f"{path}.url"
    url = _host_url(entry["url"], where)
    advertise = entry.get("advertise")
    if advertise is not None:
        advertise = _address(advertise, f"{path}.advertise")
    names = entry.get("regions") or []
    if not isinstance(names, list):
        raise SpecError(f"{path}.regions: must be a list of region names")
    for j, name in enumerate(names):
        if name not in known:
            raise SpecError(
                f"{path}.regions[{j}]: unknown region {name!r} (known: {', '.join(known)})"
            )
        if names.index(name) != j:
            raise SpecError(f"{path}.regions[{j}]: {name!r} is listed twice")
    return HostSpec(url, advertise, tuple(names))


def _host_url(value: object, path: str) -> str:
    if value == LOCAL_HOST:
        return LOCAL_HOST
    match = _SSH_URL.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise SpecError(f"{path}: must be 'local' or 'ssh://user@host[:port]', got {value!r}")
    _address(match["host"].strip("[]"), path)
    port = match["port"]
    if port is not None and not 1 <= int(port) <= 65535:
        raise SpecError(f"{path}: port must be 1..65535, got {port}")
    return match.string


def _address(value: object, path: str) -> str:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(value)
            return value
        if _HOSTNAME.fullmatch(value) and not value.replace(".", "").isdecimal():
            return value
    raise SpecError(f"{path}: must be an IP address or a host name, got {value!r}")


def _stages(raw: object, regions: tuple[RegionSpec, ...]) -> tuple[StageSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise SpecError("stages: must be a non-empty list of {name, regions: {region: nodes}}")
    sizes = {r.name: r.nodes for r in regions}
    previous = dict.fromkeys(sizes, 0)
    out: list[StageSpec] = []
    for i, item in enumerate(raw):
        path = f"stages[{i}]"
        entry = _mapping(item, path, _STAGE)
        if "name" not in entry:
            raise SpecError(f"{path}.name: required")
        name = _name(entry["name"], f"{path}.name")
        if any(s.name == name for s in out):
            raise SpecError(f"{path}.name: duplicate stage {name!r}")
        given = entry.get("regions")
        if not isinstance(given, dict) or not given:
            raise SpecError(f"{path}.regions: must be a mapping of region name -> node target")
        targets = dict(previous)
        for region, value in given.items():
            targets[region] = _target(region, value, f"{path}.regions.{region}", sizes, previous)
        if targets == previous:
            raise SpecError(f"{path}: adds no node to the stage before; raise a target or drop it")
        out.append(StageSpec(name, tuple(targets.items())))
        previous = targets
    return tuple(out)


def _target(
    region: object, value: object, path: str, sizes: dict[str, int], previous: dict[str, int]
) -> int:
    if region not in sizes:
        raise SpecError(f"{path}: unknown region (known: {', '.join(sizes)})")
    assert isinstance(region, str)
    count = _integer(value, path, low=0)
    if count > sizes[region]:
        raise SpecError(f"{path}: {count} is more than the region's {sizes[region]} nodes")
    if count < previous[region]:
        raise SpecError(
            f"{path}: {count} is below the previous stage's {previous[region]} "
            "(targets are cumulative: a stage never shrinks a region)"
        )
    return count


def _resources(raw: object) -> ResourceSpec:
    entry = _mapping(raw, "resources", _RESOURCES)
    memory = entry.get("memory_mb")
    if memory is not None:
        memory = _integer(memory, "resources.memory_mb", low=MIN_MEMORY_MB)
        if memory > MAX_MEMORY_MB:
            raise SpecError(f"resources.memory_mb: at most {MAX_MEMORY_MB}, got {memory}")
    cpus = entry.get("cpus")
    if cpus is not None:
        cpus = _number(cpus, "resources.cpus", low=0.0, high=MAX_CPUS)
        if cpus <= 0:
            raise SpecError("resources.cpus: must be > 0 (e.g. 0.25 for a quarter of a core)")
    return ResourceSpec(memory, cpus)
