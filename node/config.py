"""Node configuration: one frozen dataclass loaded from YAML, every error naming its field.

A node needs: where its key and data live, where to listen (UDP for peers, TCP for
the admin API), how to join (contacts given as ``HOST:PORT/PUBKEYHEX`` literals, never
DNS names, or ``first: true`` to start a new network), the operator token for the
admin API, and the protocol parameters (replication factor 4, k = 20, alpha = 3).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from node.transport.config import ConfigError, TransportConfig

ADMIN_TOKEN_ENV = "TROON_ADMIN_TOKEN"
CONTACTS_ENV = "TROON_CONTACTS"
MIN_TOKEN_LEN = 16
NODE_TRANSPORT = TransportConfig(idle_timeout=6.0, keepalive_interval=1.5)
"""A node's transport defaults: looser than the bare transport's (1.5 s / 0.5 s), because a
testnet packs many nodes onto few cores and a busy event loop must not look like a death.
A killed process is still seen at once through ICMP on the next keep-alive."""
RESPONSIBILITY_MARGIN = 2
"""A node holds data for names it is among the replication_factor x this nearest nodes to
(the group as others see it can differ a little from its own view during churn)."""


@dataclass(frozen=True)
class NodeConfig:
    """Everything one node process needs.

    Attributes:
        data_dir: the node's own folder: key, chunk store, bootstrap cache, ``node.json``.
        admin_token: operator bearer token for the admin API (or env TROON_ADMIN_TOKEN).
        listen_host / listen_port: UDP address for peers (port 0 = any free port).
        admin_host / admin_port: TCP address of the admin API (port 0 = any free port).
        advertise_host: address peers should use to reach us (default: listen_host; ``auto``:
            our address on the route to the first contact, for containers and multi-host).
        contacts: peers to join from, ``HOST:PORT/PUBKEYHEX``; env TROON_CONTACTS adds more
            (comma separated).
        first: start a new network with no contacts.
        region: label used for regions and per-region impairment.
        testnet: label of the testnet this node belongs to.
        capacity: bytes of disk donated to the chunk store.
        replication_factor: copies of every chunk (the close group size).
        k / alpha: Kademlia bucket size and lookup parallelism.
        audit_interval: seconds between full replication audits.
        refresh_interval: seconds between bucket refreshes.
        request_timeout: seconds before a request to a peer counts as failed.
        require_payment: refuse client PUTs that carry no valid store payment.
        reward_wallet: hex public key farming rewards go to (default: the node's own key).
        core_wallet: hex public key of the core-development wallet (default: the testnet's
            well-known one, :data:`node.farming.aio.DEFAULT_CORE_WALLET`); every node of a
            network must agree on it.
        transport: transport settings (keep-alive, idle timeout...).
    """

    data_dir: Path
    admin_token: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    admin_host: str = "127.0.0.1"
    admin_port: int = 0
    advertise_host: str = ""
    contacts: tuple[str, ...] = ()
    first: bool = False
    region: str = "local"
    testnet: str = ""
    capacity: int = 1024 * 1024 * 1024
    replication_factor: int = 4
    k: int = 20
    alpha: int = 3
    audit_interval: float = 10.0
    refresh_interval: float = 300.0
    request_timeout: float = 3.0
    require_payment: bool = False
    reward_wallet: str = ""
    core_wallet: str = ""
    transport: TransportConfig = NODE_TRANSPORT

    def __post_init__(self) -> None:
        if len(self.admin_token) < MIN_TOKEN_LEN:
            raise ConfigError(f"admin_token must be at least {MIN_TOKEN_LEN} characters")
        for name in ("listen_port", "admin_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be 0..65535, got {port}")
        if not self.first and not self.contacts:
            raise ConfigError("contacts is empty: give contacts to join, or first: true")
        if self.capacity < 0:
            raise ConfigError("capacity must be >= 0")
        if not 1 <= self.replication_factor <= self.k:
            raise ConfigError("replication_factor must be between 1 and k")
        if self.k < 1 or self.alpha < 1:
            raise ConfigError("k and alpha must be >= 1")
        for name in ("audit_interval", "refresh_interval", "request_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0")
        for name in ("reward_wallet", "core_wallet"):
            value = getattr(self, name)
            if value and not (len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
                raise ConfigError(f"{name} must be 64 lowercase hex digits (a public key)")

    @property
    def advertised(self) -> str:
        return self.advertise_host or self.listen_host


_SCALARS = {f.name: f for f in dataclasses.fields(NodeConfig) if f.name != "transport"}


def config_from_dict(raw: Any, *, base: Path | None = None) -> NodeConfig:
    """Build a NodeConfig from parsed YAML; raises ConfigError naming the bad field."""
    if not isinstance(raw, dict):
        raise ConfigError("node config must be a mapping")
    unknown = set(raw) - set(_SCALARS) - {"transport"}
    if unknown:
        raise ConfigError(f"unknown node config field(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        values[name] = _coerce(name, value, base)
    values.setdefault("admin_token", os.environ.get(ADMIN_TOKEN_ENV, ""))
    env_contacts = [c for c in os.environ.get(CONTACTS_ENV, "").split(",") if c.strip()]
    values["contacts"] = tuple(values.get("contacts", ())) + tuple(c.strip() for c in env_contacts)
    if "data_dir" not in values:
        raise ConfigError("data_dir is required")
    try:
        return NodeConfig(**values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc


def _coerce(name: str, value: Any, base: Path | None) -> Any:
    if name == "transport":
        if not isinstance(value, dict):
            raise ConfigError("transport must be a mapping")
        known = {f.name for f in dataclasses.fields(TransportConfig)}
        bad = set(value) - known
        if bad:
            raise ConfigError(f"unknown transport field(s): {', '.join(sorted(bad))}")
        try:
            return dataclasses.replace(NODE_TRANSPORT, **value)
        except TypeError as exc:
            raise ConfigError(f"transport: {exc}") from exc
    if name == "data_dir":
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() or base is None else base / path
    if name == "contacts":
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise ConfigError("contacts must be a list of HOST:PORT/PUBKEYHEX strings")
        return tuple(value)
    return _typed(name, value)


def _typed(name: str, value: Any) -> Any:
    default = _SCALARS[name].default
    kind = type(default) if default is not dataclasses.MISSING else str
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is not type(value) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{name} must be {kind.__name__}, got {type(value).__name__}")
    return value


def load_config(path: Path) -> NodeConfig:
    """Read a node config YAML file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return config_from_dict(raw, base=path.parent)
