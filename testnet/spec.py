"""Testnet specs: YAML -> frozen dataclasses, one schema for every backend.

A spec says what network to build, never how: ``name``; ``backend`` (``local`` processes,
``docker`` containers, ``ssh`` hosts running docker); ``image`` (container backends);
``nodes`` or ``regions`` (each with ``nodes`` and per-pair ``latency_ms`` / ``loss``);
``seed``; ``transport`` and ``node`` overrides for every node's config; ``churn``.

Invariants of a :class:`TestnetSpec` (checked once, in :func:`spec_from_dict`):

- names are DNS-label-like (``[a-z0-9][a-z0-9-]*``, at most 32 characters): they become
  folder, container and impairment-group names;
- there is at least one region (a spec with only ``nodes: N`` gets one region ``local``) and
  at least one node in all, at most :data:`MAX_NODES`;
- the latency and loss matrices are symmetric: each pair may be given once (under either
  region) or twice with the same value; keys name known regions (a region's own name sets
  its intra-region figure); ``latency_ms`` is the round-trip time the pair should see;
- ``transport`` / ``node`` overrides are exactly what a node's config accepts (validated by
  building a real :class:`node.config.NodeConfig`).

Every error is a :class:`SpecError` whose message starts with the field path, e.g.
``regions[1].nodes: must be an integer >= 0, got -3``.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
)
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_TOP = ("name", "backend", "image", "nodes", "regions", "seed", "transport", "node", "churn")
_REGION = ("name", "nodes", "latency_ms", "loss")
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
    top = _mapping(raw, "spec", _TOP)
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
