"""The node service: composition root of transport, routing, storage and replication.

It owns the one task group of the process.  Data flows one way: transport events
come in through :class:`~node.rpc.aio.Rpc`; requests are answered by small
handlers; routing and replication decisions come from sans-IO objects
(:class:`RoutingTable`, :class:`Lookup`, :class:`Replicator`) whose actions are
carried out here.  The admin API (node/admin.py) reads and steers it.

Lifecycle: ``run()`` binds the UDP socket and the admin port, joins the network
from its contacts and bootstrap cache (no DNS), writes ``node.json`` into its data
folder, then serves until :meth:`stop`.  A graceful stop closes every session
(peers learn at once) before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

import blake3

from node import __version__
from node.admin import AdminServer
from node.atomicfile import write_atomic
from node.config import RESPONSIBILITY_MARGIN, NodeConfig
from node.data.aio import PUT_QUORUM, DataPlane, load_inboxes
from node.farming.aio import LedgerPlane
from node.farming.ledgerstore import LedgerStore
from node.farming.mintlog import Claim
from node.farming.rewards import FarmingConfig, attempt, farming_rate
from node.identity import Identity, xor_name
from node.messages import Kind, Message
from node.nodeapi import admin_routes
from node.routing.aio import LookupOutcome, run_lookup
from node.routing.bootstrap import BootstrapError, load_cache, parse_contact, save_cache
from node.routing.contact import Contact, RoutingError
from node.routing.lookup import LookupConfig
from node.routing.table import (
    ContactAdded,
    ContactRemoved,
    PingRequest,
    RoutingConfig,
    RoutingTable,
)
from node.rpc.aio import Incoming, Rpc, RpcError
from node.storage.chunkstore import MAX_CHUNK_SIZE, StoreError, chunk_name
from node.storage.diskstore import DiskChunkStore
from node.storage.recordstore import RecordStore
from node.storage.replication import Drop, Push, Query, ReplicationConfig, Replicator
from node.transport.aio import Transport
from node.transport.events import Connected, HandshakeFailed, PeerClosed, PeerDead
from node.transport.session import CODE_IDLE

log = logging.getLogger("troon.node")

MAX_CONCURRENT_REQUESTS = 256
MAX_CONCURRENT_REPLICATION = 16
KEEP_CLOSE = 8
"""Sessions kept open to this many nearest contacts, so their death is seen at once."""
SELF_LOOKUP_INTERVAL = (10.0, 60.0, 120.0)
"""Seconds between lookups of our own name, which keep our nearest neighbours complete:
every 10 s during the first 120 s (neighbours are still arriving), then every 60 s."""
IDLE_SESSION = 20.0
"""Other sessions unused for this long are closed (with CODE_IDLE) to save keep-alives."""
RECORD_AUDIT = 60.0
DEPARTED_WINDOW = 300.0
"""Seconds a contact that left the routing table is still pinged now and then (a partition
heals, a paused node resumes)."""
DEPARTED_PROBES = 4  # departed contacts pinged per maintenance round
MAX_DEPARTED = 256
"""Seconds between full re-sends of held records to their close groups (and on churn)."""
TRANSFER_FLOOR = 1_000_000
"""Bytes per second a chunk transfer may be as slow as before it counts as failed."""


def local_address_towards(addr: tuple[str, int]) -> str:
    """Our own address on the route to ``addr`` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(addr)
        return str(probe.getsockname()[0])


def load_identity(path: Path) -> Identity:
    """The node's key from ``path``, created (mode 0600) on first start."""
    if path.exists():
        try:
            return Identity.from_seed(bytes.fromhex(json.loads(path.read_text())["seed"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(
                f"{path} is not a Troon key file; move it away to start anew"
            ) from exc
    ident = Identity.generate()
    write_atomic(path, (json.dumps({"seed": ident.seed().hex()}) + "\n").encode(), mode=0o600)
    return ident


class NodeService(DataPlane, LedgerPlane):
    """One node: serve peers and clients until stopped."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.identity = load_identity(config.data_dir / "key.json")
        self.name = self.identity.name
        self.store = DiskChunkStore(config.data_dir / "store", config.capacity)
        self.records = RecordStore(config.data_dir / "records")
        self.inboxes = load_inboxes(config.data_dir / "inboxes.bin")
        self._records_dirty = False
        self._departed: dict[bytes, tuple[Contact, float]] = {}  # name -> (contact, left at)
        self.transport = Transport(self.identity, config.transport)
        self.rpc = Rpc(self.transport, timeout=config.request_timeout)
        self.table = RoutingTable(self.name, RoutingConfig(k=config.k))
        self.lookup_config = LookupConfig(k=config.k, alpha=config.alpha)
        self.data_lookup_config = LookupConfig(
            k=min(config.k, 2 * config.replication_factor), alpha=config.alpha
        )
        self.replicator = Replicator(
            self.name,
            ReplicationConfig(
                factor=config.replication_factor, audit_interval=config.audit_interval
            ),
        )
        self.admin = AdminServer(config.admin_token, admin_routes(self))
        self.counters: Counter[str] = Counter()
        self.farming: Counter[str] = Counter(
            {"attempts": 0, "wins": 0, "claims_paid": 0, "claims_refused": 0, "coins_earned": 0}
        )
        self.farm_config = FarmingConfig()
        self.ledger = LedgerStore(config.data_dir / "ledger", self.farm_config)
        self.roles: dict[bytes, str] = {}
        self.regions: dict[bytes, str] = {}
        self.contact: Contact | None = None
        self.admin_address: tuple[str, int] = ("", 0)
        self.started_at = 0.0
        self._rng = random.Random()
        self._stop = asyncio.Event()
        self._wake_replication = asyncio.Event()
        self._requests = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)
        self._replication = asyncio.Semaphore(MAX_CONCURRENT_REPLICATION)
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cached_contacts: frozenset[bytes] = frozenset()
        # Addresses peers advertise in HELLO: behind NAT or Docker's port proxy the source
        # address we observe is not one others can dial.  DECISION: taken on the peer's word
        # (as libp2p identify listen addresses are); docs/RELIABILITY.md lists it.
        self.claimed: dict[bytes, tuple[str, int]] = {}
        self.ready = asyncio.Event()
        self._ledger_init()

    # ------------------------------------------------------------------ lifecycle

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def run(self) -> None:
        """Serve until :meth:`stop`; then leave gracefully."""
        cfg = self.config
        self.started_at = self.now()
        host, port = await self.transport.start(cfg.listen_host, cfg.listen_port)
        self.contact = Contact.of(self.identity.public_key, (self._advertised_host(), port))
        self.admin_address = await self.admin.start(cfg.admin_host, cfg.admin_port)
        log.info("node %s on %s:%d, admin %s", self.name.hex()[:12], host, port, self.admin_address)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                workers = [
                    tg.create_task(self._event_loop()),
                    tg.create_task(self._maintain()),
                    tg.create_task(self._replicate_loop()),
                    tg.create_task(self._ledger_worker()),
                ]
                await self._stop.wait()
                for task in [*workers, *self._tasks]:
                    task.cancel()
        finally:
            self._tg = None
            await self.transport.aclose("leaving")
            await self.admin.close()
            self.store.close()
            with contextlib.suppress(FileNotFoundError):
                (cfg.data_dir / "node.json").unlink()

    async def _ledger_worker(self) -> None:
        await self.ready.wait()
        await self._ledger_loop(self._stop)

    def _advertised_host(self) -> str:
        """The address peers reach us at.  ``auto`` (containers, multi-host): the local
        address the kernel would use towards our first contact, else the one for our
        hostname; the unspecified address is never advertised."""
        cfg = self.config
        host = cfg.advertised
        if host != "auto" and host not in ("0.0.0.0", "::"):
            return host
        for text in cfg.contacts:
            with contextlib.suppress(BootstrapError, OSError):
                return local_address_towards(parse_contact(text).address)
        with contextlib.suppress(OSError):
            return socket.gethostbyname(socket.gethostname())  # /etc/hosts, no network lookup
        return "127.0.0.1"

    def stop(self) -> None:
        """Leave the network gracefully (peers are told at once)."""
        self._stop.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._tg is None or self._stop.is_set():
            coro.close()  # shutting down: the work is abandoned, never half-started
            return
        task = self._tg.create_task(_guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write_node_json(self) -> None:
        assert self.contact is not None
        info = self.info()
        write_atomic(self.config.data_dir / "node.json", (json.dumps(info) + "\n").encode())

    def info(self) -> dict[str, Any]:
        assert self.contact is not None
        return {
            "name": self.name.hex(),
            "public_key": self.identity.public_key.hex(),
            "addr": list(self.contact.address),
            "admin": list(self.admin_address),
            "pid": os.getpid(),
            "region": self.config.region,
            "testnet": self.config.testnet,
            "version": __version__,
            "uptime_s": round(self.now() - self.started_at, 3),
        }

    # ------------------------------------------------------------------ events

    async def _event_loop(self) -> None:
        while True:
            item = await self.rpc.next_event()
            if isinstance(item, Incoming):
                self._on_message(item.peer, item.msg)
            elif isinstance(item, Connected):
                self.rpc.notify(
                    item.peer,
                    Kind.HELLO,
                    role="node",
                    region=self.config.region,
                    version=__version__,
                    host=self.contact.address[0] if self.contact else "",
                    port=self.contact.address[1] if self.contact else 0,
                )
            elif isinstance(item, PeerClosed) and item.code == CODE_IDLE:
                pass  # an idle session was closed; the peer is still a member
            elif isinstance(item, PeerDead | PeerClosed | HandshakeFailed):
                self._on_peer_gone(item.peer)

    def _on_message(self, peer: bytes, msg: Message) -> None:
        if msg.kind is Kind.HELLO:
            self._on_hello(peer, msg)
            return
        if self.roles.get(peer) == "node":
            self._observe(peer)
        if self._requests.locked():
            self.rpc.reply_error(peer, msg, "busy", "too many requests in flight; retry later")
            return
        self._spawn(self._handle(peer, msg))

    def _on_hello(self, peer: bytes, msg: Message) -> None:
        role = msg.body["role"]
        self.roles[peer] = role
        self.regions[peer] = msg.body["region"]
        if msg.body["port"]:
            self.claimed[peer] = (msg.body["host"], msg.body["port"])
        if role == "node":
            self._observe(peer)

    def _observe(self, peer: bytes) -> None:
        addr = self.claimed.get(peer) or self.transport.endpoint.peer_address(peer)
        if addr is None:
            return
        try:
            contact = Contact.of(peer, addr)
        except RoutingError:
            self.counters["bad_contact"] += 1
            return
        self._apply(self.table.observe(contact, now=self.now()))

    def _apply(self, actions: list[Any]) -> None:
        changed = False
        for action in actions:
            if isinstance(action, PingRequest):
                self._spawn(self._ping(action.contact))
            elif isinstance(action, ContactRemoved):
                self.replicator.on_peer_gone(action.contact.name)  # drop its pending work
                self._departed[action.contact.name] = (action.contact, self.now())
                if len(self._departed) > MAX_DEPARTED:
                    del self._departed[next(iter(self._departed))]  # the oldest
                changed = True
            elif isinstance(action, ContactAdded):
                self._departed.pop(action.contact.name, None)
                changed = True
        if changed:
            self.replicator.on_membership_change(now=self.now())
            self._records_dirty = True
            self._wake_replication.set()

    def _on_peer_gone(self, peer: bytes) -> None:
        name = xor_name(peer)
        self.roles.pop(peer, None)
        self.claimed.pop(peer, None)  # a returning peer says HELLO (and its address) again
        self.replicator.on_peer_gone(name)
        self._apply(self.table.remove(name, now=self.now()))

    async def _ping(self, contact: Contact) -> None:
        try:
            await self.rpc.call(contact.public_key, contact.address, Kind.PING)
            alive = True
        except RpcError:
            alive = False
        self._apply(self.table.on_ping_result(contact.name, alive=alive, now=self.now()))

    async def _probe_departed(self) -> None:
        """Ping a few contacts that left the table lately.  During a partition each side
        evicts the other; after it heals nothing else brings the tables back together
        until some lookup happens to cross, and meanwhile a gateway on one side finds only
        that side's nodes (and their older records and wallet states)."""
        now = self.now()
        for name, (_, left) in list(self._departed.items()):
            if now - left > DEPARTED_WINDOW:
                del self._departed[name]
        picks = random.sample(
            [c for c, _ in self._departed.values()], min(DEPARTED_PROBES, len(self._departed))
        )

        async def probe(contact: Contact) -> None:
            with contextlib.suppress(RpcError):
                await self.rpc.call(contact.public_key, contact.address, Kind.PING, timeout=2.0)
                self.counters["departed_back"] += 1
                self._observe(contact.public_key)

        await asyncio.gather(*(probe(c) for c in picks))

    # ------------------------------------------------------------------ request handlers

    async def _handle(self, peer: bytes, msg: Message) -> None:
        async with self._requests:
            handler = self._handlers.get(msg.kind)
            if handler is None:
                self.rpc.reply_error(peer, msg, "unexpected", f"{msg.kind.name} is not a request")
                return
            try:
                await handler(self, peer, msg)
            except StoreError as exc:
                self.rpc.reply_error(peer, msg, "store", str(exc))
            except RpcError as exc:
                self.rpc.reply_error(peer, msg, exc.code, exc.message)

    async def _on_find_node(self, peer: bytes, msg: Message) -> None:
        closest = self.table.closest(msg.body["target"], self.config.k, exclude=[xor_name(peer)])
        wire = [[c.public_key, c.address[0], c.address[1]] for c in closest]
        self.rpc.reply(peer, msg, Kind.NODES, contacts=wire)

    async def _on_ping(self, peer: bytes, msg: Message) -> None:
        self.rpc.reply(peer, msg, Kind.PONG)

    async def _on_has(self, peer: bytes, msg: Message) -> None:
        held = [n for n in msg.body["names"] if self.store.has(n)]
        self.rpc.reply(peer, msg, Kind.HAS_OK, held=held)

    async def _on_put(self, peer: bytes, msg: Message) -> None:
        name, data = msg.body["name"], msg.body["data"]
        if chunk_name(data) != name:
            self.counters["rejected_poisoned"] += 1
            self.rpc.reply_error(peer, msg, "name_mismatch", "chunk content does not hash to name")
            return
        if msg.body["replica"]:
            if not self._responsible(name):
                self.counters["rejected_not_responsible"] += 1
                self.rpc.reply_error(
                    peer, msg, "not_responsible", "not in this chunk's close group"
                )
                return
            stored = await self._store(name, data)
            self.rpc.reply(peer, msg, Kind.PUT_OK, stored=stored, holders=1)
            return
        if self.config.require_payment:
            refusal = await self.check_payment(name, len(data), msg.body["payment"])
            if refusal is not None:
                self.counters["rejected_unpaid"] += 1
                self.rpc.reply_error(peer, msg, "payment_required", refusal)
                return
        holders = await self.put_chunk(name, data)
        self.rpc.reply(peer, msg, Kind.PUT_OK, stored=True, holders=holders)

    async def _on_get(self, peer: bytes, msg: Message) -> None:
        name = msg.body["name"]
        if self.store.has(name):
            data = await asyncio.to_thread(self.store.get, name)
            self.rpc.reply(peer, msg, Kind.GET_OK, data=data)
            self._farm(peer, msg.rid, name, msg.body["app"])
            return
        if self.roles.get(peer) == "node":
            self.rpc.reply_error(peer, msg, "not_found", "chunk not held here")
            return
        data = await self.get_chunk(name, app=msg.body["app"])
        self.rpc.reply(peer, msg, Kind.GET_OK, data=data)

    def _farm(self, peer: bytes, rid: int, name: bytes, app: bytes) -> None:
        """Every GET served is a farming attempt: a lottery anyone can re-check from the
        request, the chunk, our key and the epoch, won with the farming rate of our store.
        A win is claimed from the mint, whose group re-runs the lottery before paying."""
        used, capacity = self.store_load()
        rate = farming_rate(used, capacity)
        request_id = blake3.blake3(peer + rid.to_bytes(8, "big")).digest()
        epoch = self.epoch_now()
        won = attempt(request_id, name, self.identity.public_key, epoch, rate)
        self.farming["attempts"] += 1
        self.farming["wins"] += int(won)
        if won:
            claim = Claim(request_id, name, self.identity.public_key, epoch, used, capacity, app)
            self._claim_reward(claim)

    def farming_rate(self) -> float:
        return farming_rate(*self.store_load())

    _handlers: ClassVar[dict[Kind, Callable[[NodeService, bytes, Message], Awaitable[None]]]] = {
        Kind.FIND_NODE: _on_find_node,
        Kind.PING: _on_ping,
        Kind.HAS: _on_has,
        Kind.PUT: _on_put,
        Kind.GET: _on_get,
        Kind.RECORD_PUT: DataPlane._on_record_put,
        Kind.RECORD_GET: DataPlane._on_record_get,
        Kind.INBOX_ADD: DataPlane._on_inbox_add,
        Kind.INBOX_LIST: DataPlane._on_inbox_list,
        Kind.INBOX_DELETE: DataPlane._on_inbox_delete,
        Kind.LEDGER: LedgerPlane._on_ledger,
    }

    # ------------------------------------------------------------------ data paths

    def _responsible(self, name: bytes) -> bool:
        assert self.contact is not None
        n = self.config.replication_factor * RESPONSIBILITY_MARGIN
        group = self.table.close_group(name, n, include_self=self.contact)
        return any(c.name == self.name for c in group)

    async def _store(self, name: bytes, data: bytes) -> bool:
        stored = await asyncio.to_thread(self.store.put, name, data)
        self.replicator.on_stored(name, now=self.now())
        self._wake_replication.set()
        return stored

    async def close_group(self, name: bytes, count: int | None = None) -> list[Contact]:
        """The replication_factor (or ``count``) live nodes closest to ``name``, by a network
        lookup.

        The lookup only needs to pin down the nearest few, so it runs with a small k
        (twice the group), which roughly halves its requests against k = 20.
        """
        outcome = await self.lookup(name, config=self.data_lookup_config)
        assert self.contact is not None
        candidates = {c.name: c for c in outcome.lookup.result()}
        candidates[self.name] = self.contact
        ordered = sorted(
            candidates.values(),
            key=lambda c: int.from_bytes(c.name, "big") ^ int.from_bytes(name, "big"),
        )
        return ordered[: count or self.config.replication_factor]

    async def lookup(self, target: bytes, *, config: LookupConfig | None = None) -> LookupOutcome:
        """An iterative FIND_NODE lookup (k = 20 unless ``config`` says otherwise)."""
        config = config or self.lookup_config
        seeds = self.table.closest(target, config.k)
        outcome = await run_lookup(
            self.rpc,
            target,
            seeds,
            config,
            own=self.name,
            timeout=self.config.request_timeout,
        )
        for contact in outcome.failed:
            # A lookup timeout on a busy machine is no proof of death: ping before evicting.
            self._spawn(self._ping(contact))
        self.counters["lookups"] += 1
        return outcome

    async def put_chunk(self, name: bytes, data: bytes) -> int:
        """Store a chunk on its close group; returns how many holders stored it."""
        group = await self.close_group(name)
        results = await asyncio.gather(*(self._put_on(c, name, data) for c in group))
        holders = sum(results)
        if holders < len(group):
            group = await self.close_group(name)
            results = await asyncio.gather(*(self._put_on(c, name, data) for c in group))
            holders = sum(results)
        if holders < min(PUT_QUORUM, len(group)):
            raise RpcError("put_failed", f"only {holders} of {len(group)} holders stored the chunk")
        self.counters["client_puts"] += 1
        return holders

    async def _put_on(self, contact: Contact, name: bytes, data: bytes) -> bool:
        if contact.name == self.name:
            await self._store(name, data)
            return True
        try:
            await self._send_replica(contact, name, data)
        except RpcError:
            return False
        return True

    async def _send_replica(self, contact: Contact, name: bytes, data: bytes) -> None:
        """Store a copy of a chunk on ``contact`` (a member of its close group)."""
        await self.rpc.call(
            contact.public_key,
            contact.address,
            Kind.PUT,
            timeout=self._transfer_timeout(len(data)),
            name=name,
            data=data,
            replica=True,
            payment=b"",
        )

    def _transfer_timeout(self, size: int) -> float:
        """Request timeout for a message of ``size`` bytes: the base plus 1 s per MB."""
        return self.config.request_timeout + size / TRANSFER_FLOOR

    async def get_chunk(self, name: bytes, *, app: bytes = b"") -> bytes:
        """Fetch a chunk from its close group, verifying each copy; tries every holder."""
        for contact in await self.close_group(name):
            if contact.name == self.name:
                continue
            try:
                reply = await self.rpc.call(
                    contact.public_key,
                    contact.address,
                    Kind.GET,
                    timeout=self._transfer_timeout(MAX_CHUNK_SIZE),
                    name=name,
                    app=app,
                )
            except RpcError:
                continue
            if chunk_name(reply.body["data"]) == name:
                self.counters["client_gets"] += 1
                return bytes(reply.body["data"])
            self.counters["corrupt_copies_seen"] += 1
        raise RpcError("not_found", "no holder returned a valid copy of that chunk")

    # ------------------------------------------------------------------ background work

    async def _maintain(self) -> None:
        await self._join()
        self._write_node_json()  # ready: we know our neighbourhood; farther buckets fill next
        self.ready.set()
        started = self.now()
        await self._refresh(force=True)
        log.info(
            "buckets refreshed: %d contacts after %.2f s", len(self.table), self.now() - started
        )
        last_self_lookup = last_record_push = self.now()
        while not self._stop.is_set():
            await self._refresh()
            early, late, settle = SELF_LOOKUP_INTERVAL
            interval = early if self.now() - self.started_at < settle else late
            if self.now() - last_self_lookup >= interval:
                self._observe_all(await self.lookup(self.name))
                last_self_lookup = last_record_push = self.now()
            self._keep_close_sessions()
            self._save_bootstrap_cache()
            await self._probe_departed()
            if self._records_dirty or self.now() - last_record_push >= RECORD_AUDIT:
                await self._push_records()
                last_record_push = self.now()
            await asyncio.sleep(min(self.config.refresh_interval, 5.0))

    async def _join(self) -> None:
        contacts = self._initial_contacts()
        if not contacts:
            return
        delay = 0.5
        while True:
            for contact in contacts:
                with contextlib.suppress(RpcError):
                    await self.rpc.call(contact.public_key, contact.address, Kind.PING)
                    self._observe(contact.public_key)
            if len(self.table):
                break
            log.warning("no contact answered; retrying in %.1f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        joined = self.now()
        outcome = await self.lookup(self.name)
        self._observe_all(outcome)
        log.info(
            "joined with %d contacts: self-lookup %d rounds, %.2f s",
            len(self.table),
            outcome.lookup.rounds,
            self.now() - joined,
        )

    def _initial_contacts(self) -> list[Contact]:
        out: list[Contact] = []
        for text in self.config.contacts:
            try:
                out.append(parse_contact(text))
            except BootstrapError as exc:
                log.error("ignoring contact %r: %s", text, exc)
        with contextlib.suppress(BootstrapError, OSError):
            out.extend(load_cache(self.config.data_dir / "bootstrap.json"))
        return [c for c in out if c.name != self.name]

    def _observe_all(self, outcome: LookupOutcome) -> None:
        for contact in outcome.responders:
            if self.transport.endpoint.is_connected(contact.public_key):
                self._observe(contact.public_key)

    async def _refresh(self, *, force: bool = False) -> None:
        now = self.now()
        due = self.table.buckets_needing_refresh(now=now)
        if force:
            due = sorted(set(due) | {self.table.bucket_of(c.name) for c in self.table.contacts()})
        await asyncio.gather(*(self._refresh_bucket(i) for i in due[:16]))

    async def _refresh_bucket(self, index: int) -> None:
        """Look up a random name in bucket ``index`` (paper s2.3) with the light k."""
        target = self.table.random_name_in_bucket(index, self._rng)
        outcome = await self.lookup(target, config=self.data_lookup_config)
        self._observe_all(outcome)
        self.table.mark_refreshed(index, now=self.now())

    def _keep_close_sessions(self) -> None:
        """Hold sessions to our nearest neighbours; close other idle node sessions."""
        keep = {c.public_key for c in self.table.closest(self.name, KEEP_CLOSE)}
        for contact in self.table.closest(self.name, KEEP_CLOSE):
            if not self.transport.endpoint.is_connected(contact.public_key):
                self._spawn(self._ping(contact))
        now = self.now()
        for peer in self.transport.endpoint.peers():
            if peer in keep or self.roles.get(peer) != "node":
                continue
            last = self.rpc.last_used.setdefault(peer, now)
            if now - last > IDLE_SESSION:
                self.rpc.last_used.pop(peer, None)
                self.transport.close_peer(peer, "idle", CODE_IDLE)

    def _save_bootstrap_cache(self) -> None:
        """Keep the bootstrap cache current: written when our nearest contacts change."""
        contacts = self.table.closest(self.name, 64)
        key = frozenset(c.name for c in contacts)
        if contacts and key != self._cached_contacts:
            with contextlib.suppress(OSError):
                save_cache(self.config.data_dir / "bootstrap.json", contacts)
                self._cached_contacts = key

    def _replication_nap(self) -> float:
        """How long the replication loop may sleep: short while work is open, else till audit."""
        stats = self.replicator.stats()
        if stats.get("dirty") or stats.get("pending"):
            return 0.5
        timer = self.replicator.get_timer()
        return 5.0 if timer is None else min(5.0, max(0.05, timer - self.now()))

    async def _replicate_loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: wait_for can swallow a cancel on 3.11
                async with asyncio.timeout(self._replication_nap()):
                    await self._wake_replication.wait()
            self._wake_replication.clear()
            self.replicator.handle_timer(now=self.now())
            actions = self.replicator.plan(
                set(self.store.names()), self._close_group_names, now=self.now()
            )
            for action in actions:
                await self._replication.acquire()
                self._spawn(self._carry_out(action))
            if actions:
                self._wake_replication.set()
                await asyncio.sleep(0.01)

    def _close_group_names(self, name: bytes) -> list[bytes]:
        assert self.contact is not None
        group = self.table.close_group(
            name, self.config.replication_factor, include_self=self.contact
        )
        return [c.name for c in group]

    async def _carry_out(self, action: Query | Push | Drop) -> None:
        try:
            if isinstance(action, Drop):
                self.store.delete(action.name)
                self.replicator.on_deleted(action.name)
                self.counters["replication_drops"] += 1
                return
            contact = self.table.get(action.peer)
            if contact is None:
                self.replicator.on_peer_gone(action.peer)
                return
            if isinstance(action, Query):
                await self._query(contact, list(action.names))
            else:
                await self._push(contact, action.name)
        finally:
            self._replication.release()
            self._wake_replication.set()

    async def _query(self, contact: Contact, names: list[bytes]) -> None:
        try:
            reply = await self.rpc.call(contact.public_key, contact.address, Kind.HAS, names=names)
        except RpcError as exc:
            self._suspect(contact, exc)
            return
        held = set(reply.body["held"])
        missing = [n for n in names if n not in held]
        self.replicator.on_query_result(contact.name, held, missing, now=self.now())

    async def _push(self, contact: Contact, name: bytes) -> None:
        ok = False
        try:
            data = await asyncio.to_thread(self.store.get, name)
            await self._send_replica(contact, name, data)
            ok = True
            self.counters["replication_pushes"] += 1
        except RpcError as exc:
            self._suspect(contact, exc)
        except StoreError:
            ok = False
        self.replicator.on_push_result(contact.name, name, ok, now=self.now())

    def _suspect(self, contact: Contact, exc: RpcError) -> None:
        """A replication call failed: ping the peer, and evict it if it is really gone, so
        close groups (and the repair they drive) stop counting on a dead node."""
        if exc.code in ("unreachable", "timeout"):
            self._spawn(self._ping(contact))


async def _guard(coro: Awaitable[None]) -> None:
    """Run a request or background step; one failure never takes the node down."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("task failed")
