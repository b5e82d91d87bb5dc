"""A testnet's state folder: the only place the toolkit remembers anything.

Layout (``$TROON_HOME`` or ``~/.troon``, then ``testnets/<name>/``)::

    testnet.json        spec (canonical dict) and node list            0600
    admin_token         random bearer token for every node's admin API  0600
    ledger.jsonl        append-only: one JSON object per chunk put       0600
    nodes/n000/         node 0: config.yaml (0600), node.log, pid, node.json (by the node)

Invariants: folders are 0700 and files 0600 (the token is a credential); the folder is
built aside and renamed into place, so two ``up`` runs of one name cannot both win and a
crash leaves no half-made testnet; ``remove`` deletes only a folder that holds
``testnet.json`` (it never wipes a stranger's directory); everything is JSON or YAML, never
pickle; a torn last ledger line (a crash mid-append) is ignored, damage anywhere else is a
:class:`StateError` naming the line.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testnet.errors import SpecError, StateError
from testnet.spec import TestnetSpec, spec_from_dict

HOME_ENV = "TROON_HOME"
STATE_VERSION = 1
MANIFEST = "testnet.json"
TOKEN_FILE = "admin_token"
LEDGER = "ledger.jsonl"
NAME_HEX = 64


def troon_home() -> Path:
    """``$TROON_HOME``, else ``~/.troon``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".troon").expanduser()


def home_testnets(home: Path | None = None) -> Path:
    return (home or troon_home()) / "testnets"


def list_testnets(home: Path | None = None) -> list[str]:
    """Names of the testnets that have a state folder, sorted."""
    root = home_testnets(home)
    if not root.is_dir():
        return []
    found = (p.name for p in root.iterdir() if (p / MANIFEST).is_file())
    return sorted(name for name in found if not name.startswith("."))


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class NodeInfo:
    """What a ready node wrote to ``<data_dir>/node.json``."""

    name: bytes
    public_key: bytes
    addr: tuple[str, int]
    admin: tuple[str, int]
    pid: int
    region: str
    testnet: str

    @property
    def contact(self) -> str:
        """The ``HOST:PORT/PUBKEYHEX`` literal other nodes join through."""
        return f"{self.addr[0]}:{self.addr[1]}/{self.public_key.hex()}"


def node_info_from_dict(raw: object) -> NodeInfo:
    """Validate a parsed ``node.json``; raises ValueError naming the field."""
    if not isinstance(raw, dict):
        raise ValueError("node.json: must be an object")

    def hexfield(key: str) -> bytes:
        value = raw.get(key)
        if not isinstance(value, str) or len(value) != NAME_HEX:
            raise ValueError(f"node.json {key}: must be {NAME_HEX} hex characters")
        return bytes.fromhex(value)

    def addr(key: str) -> tuple[str, int]:
        value = raw.get(key)
        ok = isinstance(value, list) and len(value) == 2
        if not ok or not isinstance(value[0], str) or type(value[1]) is not int:  # type: ignore[index]
            raise ValueError(f"node.json {key}: must be [host, port]")
        return (value[0], value[1])  # type: ignore[index]

    pid = raw.get("pid")
    if type(pid) is not int or pid <= 0:
        raise ValueError("node.json pid: must be a positive integer")
    region, testnet = raw.get("region", ""), raw.get("testnet", "")
    if not isinstance(region, str) or not isinstance(testnet, str):
        raise ValueError("node.json region/testnet: must be strings")
    return NodeInfo(
        hexfield("name"), hexfield("public_key"), addr("addr"), addr("admin"), pid, region, testnet
    )


@dataclass(frozen=True)
class LedgerEntry:
    """One chunk acknowledged by the network (stored by all its holders)."""

    name: bytes
    size: int
    at: float


class State:
    """One testnet's state folder (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def create(cls, spec: TestnetSpec, *, home: Path | None = None) -> State:
        """Make the folder, the token and the manifest; fails if the name is taken.

        Everything is built in a hidden sibling and renamed into place in one step, so a
        crash never leaves a half-made testnet and two creators of one name cannot both win.
        """
        parent = home_testnets(home)
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        root = parent / spec.name
        taken = StateError(
            f"testnet {spec.name} already has a state folder ({root}); "
            f"`troon testnet down {spec.name}` first"
        )
        if root.exists():
            raise taken
        draft = cls(parent / f".{spec.name}.{secrets.token_hex(4)}.tmp")
        draft.root.mkdir(mode=0o700)
        try:
            draft._fill(spec)
            os.rename(draft.root, root)  # fails on a non-empty target: the name is taken
        except OSError:
            shutil.rmtree(draft.root, ignore_errors=True)
            if root.exists():
                raise taken from None
            raise
        return cls(root)

    def _fill(self, spec: TestnetSpec) -> None:
        write_private(self.root / TOKEN_FILE, secrets.token_urlsafe(32) + "\n")
        nodes = [
            {"index": i, "region": spec.region_of(i), "dir": f"nodes/{self.node_dir(i).name}"}
            for i in range(spec.nodes)
        ]
        manifest = {"version": STATE_VERSION, "spec": spec.to_dict(), "nodes": nodes}
        write_private(self.root / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        for i in range(spec.nodes):
            self.node_dir(i).mkdir(mode=0o700, parents=True)

    @classmethod
    def open(cls, name: str, *, home: Path | None = None) -> State:
        """The existing state of testnet ``name``."""
        root = home_testnets(home) / name
        if not (root / MANIFEST).is_file():
            raise StateError(
                f"no testnet named {name} (nothing in {root.parent}); "
                "start one with `troon testnet up`"
            )
        return cls(root)

    def remove(self) -> None:
        """Delete the folder and everything in it (only if it is a testnet folder)."""
        if not (self.root / MANIFEST).is_file():
            raise StateError(f"{self.root} holds no {MANIFEST}; refusing to delete it")
        shutil.rmtree(self.root)

    # -- manifest -------------------------------------------------------------------------

    def _manifest(self) -> dict[str, Any]:
        try:
            raw = json.loads((self.root / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise StateError(f"{self.root / MANIFEST} is unreadable ({exc})") from None
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            raise StateError(f"{self.root / MANIFEST}: not a version {STATE_VERSION} manifest")
        return raw

    @property
    def spec(self) -> TestnetSpec:
        try:
            return spec_from_dict(self._manifest().get("spec"))
        except SpecError as exc:
            raise StateError(f"{self.root / MANIFEST}: damaged spec ({exc})") from None

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def token(self) -> str:
        try:
            token = (self.root / TOKEN_FILE).read_text().strip()
        except OSError as exc:
            raise StateError(f"cannot read the admin token ({exc.strerror})") from None
        if len(token) < 16:
            raise StateError(f"{self.root / TOKEN_FILE} is damaged (token too short)")
        return token

    # -- per node -------------------------------------------------------------------------

    def node_dir(self, index: int) -> Path:
        return self.root / "nodes" / f"n{index:03d}"

    def config_path(self, index: int) -> Path:
        return self.node_dir(index) / "config.yaml"

    def log_path(self, index: int) -> Path:
        return self.node_dir(index) / "node.log"

    def info_path(self, index: int) -> Path:
        return self.node_dir(index) / "node.json"

    def pid_path(self, index: int) -> Path:
        return self.node_dir(index) / "pid"

    def write_node_config(self, index: int, config: dict[str, Any]) -> Path:
        path = self.config_path(index)
        write_private(path, yaml.safe_dump(config, sort_keys=True))
        return path

    def read_node_info(self, index: int) -> NodeInfo | None:
        """``node.json`` of node ``index``, or None while it is absent or half-written."""
        try:
            return node_info_from_dict(json.loads(self.info_path(index).read_text()))
        except (OSError, ValueError):
            return None

    def write_pid(self, index: int, pid: int) -> None:
        write_private(self.pid_path(index), json.dumps({"pid": pid, "at": time.time()}) + "\n")

    def read_pid(self, index: int) -> int | None:
        try:
            pid = json.loads(self.pid_path(index).read_text())["pid"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if type(pid) is int and pid > 0 else None

    # -- ledger ---------------------------------------------------------------------------

    def record(self, entries: Iterable[LedgerEntry]) -> None:
        """Append entries to the ledger (one line each, flushed and fsynced)."""
        lines = "".join(
            json.dumps({"name": e.name.hex(), "size": e.size, "at": round(e.at, 3)}) + "\n"
            for e in entries
        )
        fd = os.open(self.root / LEDGER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, lines.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def ledger(self) -> list[LedgerEntry]:
        """Every recorded chunk, first record wins for duplicates, in order."""
        try:
            text = (self.root / LEDGER).read_text()
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        out: dict[bytes, LedgerEntry] = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = _ledger_entry(json.loads(line))
            except (ValueError, KeyError, TypeError):
                if number == len(lines):  # torn final append: no newline made it to disk
                    break
                raise StateError(f"{self.root / LEDGER} line {number} is damaged") from None
            out.setdefault(entry.name, entry)
        return list(out.values())


def _ledger_entry(raw: Any) -> LedgerEntry:
    name = bytes.fromhex(raw["name"])
    size, at = raw["size"], raw["at"]
    if len(name) != 32 or type(size) is not int or not isinstance(at, int | float):
        raise ValueError("bad ledger entry")
    return LedgerEntry(name, size, float(at))
