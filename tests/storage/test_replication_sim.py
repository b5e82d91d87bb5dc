"""A seeded many-node simulation of replication through churn, over the real planner and table.

220 nodes with Identity names, each with its own MemoryChunkStore, RoutingTable (k = 20,
filled by observing every other live node; routing itself is tested elsewhere) and
Replicator.  Every node's ``close_group`` comes from its OWN table.  400 random chunks are
put on their 4 ideal holders (the client PUT), then nodes die in three waves (one wave
kills 3 of the 4 holders of a chunk) and 20 nodes join.  After each event every live node
hears ``on_membership_change`` and the network runs in rounds: every live node plans, then
its actions are delivered by function calls (a Query is answered from the receiver's
store, a Push is stored only if the receiver is in the chunk's group by its own view, a
Drop deletes), with a fake clock of one second per round, until a round sends nothing.
Ground truth (the 4 closest live nodes) comes from the full node list.  Each test builds
its own network from the seed; figures are printed (run with ``-s``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

import pytest

from node.identity import Identity
from node.routing.contact import Contact
from node.routing.table import PingRequest, RoutingConfig, RoutingTable
from node.routing.xorname import closest
from node.storage.chunkstore import MemoryChunkStore, chunk_name
from node.storage.replication import Action, Drop, Push, Query, ReplicationConfig, Replicator

N = 220
CHUNKS = 400
FACTOR = 4
SEED = 20141119  # MaidSafe's SAFE network crowdsale began in 2014
MAX_ROUNDS = 30


@dataclass
class SimNode:
    contact: Contact
    table: RoutingTable
    store: MemoryChunkStore
    rep: Replicator

    @property
    def name(self) -> bytes:
        return self.contact.name

    def close_group(self, chunk: bytes) -> list[bytes]:
        group = self.table.close_group(chunk, FACTOR, include_self=self.contact)
        return [c.name for c in group]

    def held(self) -> Collection[bytes]:
        return dict.fromkeys(self.store.names()).keys()


@dataclass
class Sim:
    rng: random.Random
    config: ReplicationConfig = field(default_factory=ReplicationConfig)
    nodes: dict[bytes, SimNode] = field(default_factory=dict)
    live: dict[bytes, SimNode] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    now: float = 0.0
    traffic: Counter[str] = field(default_factory=Counter)
    unsafe_drops: list[str] = field(default_factory=list)

    # -- membership ---------------------------------------------------------------------

    def add(self, identity: Identity) -> SimNode:
        index = len(self.nodes)
        address = (f"10.1.{index // 200}.{index % 200 + 1}", 7000)
        contact = Contact.of(identity.public_key, address)
        table = RoutingTable(contact.name, RoutingConfig(k=20))
        rep = Replicator(contact.name, self.config)
        node = SimNode(contact, table, MemoryChunkStore(), rep)
        for other in self.live.values():
            self.observe(node, other.contact)
            self.observe(other, contact)
        self.nodes[contact.name] = self.live[contact.name] = node
        return node

    def observe(self, node: SimNode, heard: Contact) -> None:
        for action in node.table.observe(heard, now=self.now):
            if isinstance(action, PingRequest):  # every table entry is alive: it stays
                node.table.on_ping_result(action.contact.name, alive=True, now=self.now)

    def kill(self, names: list[bytes]) -> None:
        for name in names:
            del self.live[name]
            for node in self.live.values():
                node.table.remove(name, now=self.now)
                node.rep.on_peer_gone(name)
        self.membership_changed()

    def join(self, count: int) -> list[SimNode]:
        joined = [self.add(Identity.from_seed(self.rng.randbytes(32))) for _ in range(count)]
        self.membership_changed()
        return joined

    def membership_changed(self) -> None:
        for node in self.live.values():
            node.rep.on_membership_change(now=self.now)

    # -- data ---------------------------------------------------------------------------

    def ideal(self, chunk: bytes) -> set[bytes]:
        return set(closest(chunk, list(self.live), FACTOR))

    def holders(self, chunk: bytes) -> set[bytes]:
        return {name for name, node in self.live.items() if node.store.has(chunk)}

    def put_chunks(self, count: int) -> None:
        """The client PUT: each chunk goes to its ideal group, which is told ``on_stored``."""
        for _ in range(count):
            data = self.rng.randbytes(self.rng.randint(1, 256))
            chunk = chunk_name(data)
            self.chunks.append(chunk)
            for name in self.ideal(chunk):
                self.live[name].store.put(chunk, data)
                self.live[name].rep.on_stored(chunk, now=self.now)

    def copies_needed(self) -> int:
        """Copies missing from ideal groups right now (what replication must create)."""
        return sum(len(self.ideal(chunk) - self.holders(chunk)) for chunk in self.chunks)

    def misplaced(self) -> list[str]:
        """Chunks not held by exactly their ideal live group (empty when all is well)."""
        bad = []
        for chunk in self.chunks:
            holders, ideal = self.holders(chunk), self.ideal(chunk)
            if holders != ideal:
                bad.append(f"{chunk.hex()[:8]}: {len(holders & ideal)}/4 + {len(holders - ideal)}")
        return bad

    # -- rounds -------------------------------------------------------------------------

    def settle(self) -> Counter[str]:
        """Run rounds until one sends nothing and no planner has work left; the traffic."""
        before = self.traffic.copy()
        for rounds in range(1, MAX_ROUNDS + 1):
            self.now += 1.0
            sent = self.round()
            if not sent and all(n.rep.stats()["pending"] == 0 for n in self.live.values()):
                spent = self.traffic - before
                spent["rounds"] = rounds - 1  # rounds that sent something
                return spent
        raise AssertionError(f"not quiescent after {MAX_ROUNDS} rounds")

    def round(self) -> int:
        planned: list[tuple[SimNode, list[Action]]] = []
        for node in list(self.live.values()):
            timer = node.rep.get_timer()
            if timer is not None and timer <= self.now:
                node.rep.handle_timer(now=self.now)
            planned.append((node, node.rep.plan(node.held(), node.close_group, now=self.now)))
        for node, actions in planned:
            for action in actions:
                self.deliver(node, action)
        return sum(len(actions) for _, actions in planned)

    def deliver(self, node: SimNode, action: Action) -> None:
        if isinstance(action, Query):
            self.answer(node, action)
        elif isinstance(action, Push):
            self.push(node, action)
        else:
            self.drop(node, action)

    def answer(self, node: SimNode, query: Query) -> None:
        self.traffic["queries"] += 1
        self.traffic["names_queried"] += len(query.names)
        store = self.live[query.peer].store
        held = [name for name in query.names if store.has(name)]
        missing = [name for name in query.names if not store.has(name)]
        node.rep.on_query_result(query.peer, held, missing, now=self.now)

    def push(self, node: SimNode, push: Push) -> None:
        self.traffic["pushes"] += 1
        receiver = self.live[push.peer]
        ok = receiver.name in receiver.close_group(push.name)
        if not ok:
            self.traffic["pushes_refused"] += 1
        elif receiver.store.put(push.name, node.store.get(push.name)):
            receiver.rep.on_stored(push.name, now=self.now)
        else:
            self.traffic["pushes_redundant"] += 1  # another holder's push arrived first
        node.rep.on_push_result(push.peer, push.name, ok, now=self.now)

    def drop(self, node: SimNode, drop: Drop) -> None:
        """Delete, after checking the rule against ground truth at this very moment."""
        self.traffic["drops"] += 1
        ideal = self.ideal(drop.name)
        lacking = [m for m in ideal if not self.live[m].store.has(drop.name)]
        if node.name in ideal or lacking:
            self.unsafe_drops.append(f"{drop.name.hex()[:8]} by {node.name.hex()[:8]}")
        node.store.delete(drop.name)
        node.rep.on_deleted(drop.name)


def build(config: ReplicationConfig | None = None, seed: int = SEED) -> Sim:
    """The network with every chunk on its ideal group, settled once."""
    sim = Sim(random.Random(seed), config or ReplicationConfig())
    for _ in range(N):
        sim.add(Identity.from_seed(sim.rng.randbytes(32)))
    sim.put_chunks(CHUNKS)
    spent = sim.settle()
    print(f"\nplacement: {dict(spent)}")
    return sim


def victims(sim: Sim, count: int, forced: list[bytes], spare: bytes) -> list[bytes]:
    """``count`` live nodes to kill, ``forced`` among them and ``spare`` not, leaving every
    chunk a holder (losing all 4 copies at once is beyond any replication)."""
    while True:
        others = [n for n in sorted(sim.live) if n not in forced and n != spare]
        chosen = forced + sim.rng.sample(others, count - len(forced))
        if all(sim.holders(chunk) - set(chosen) for chunk in sim.chunks):
            return chosen


def check(sim: Sim, label: str, spent: Counter[str], needed: int) -> None:
    print(f"{label} (grace {sim.config.push_grace}, {needed} copies to make): {dict(spent)}")
    assert sim.misplaced() == []
    assert sim.unsafe_drops == []
    assert spent["pushes_refused"] == 0
    assert spent["pushes"] - spent["pushes_redundant"] == needed
    if sim.config.push_grace > 0:  # one round: the nearest holder's push lands in time
        assert spent["pushes_redundant"] == 0
    assert spent["rounds"] <= 4


GRACE = pytest.mark.parametrize(
    "config",
    [ReplicationConfig(), ReplicationConfig(push_grace=1.0)],
    ids=["every-holder-pushes", "nearest-holder-pushes"],
)


def test_initial_placement_settles_with_questions_only() -> None:
    sim = build()
    assert sim.misplaced() == []
    stats = Counter[str]()
    for node in sim.live.values():
        stats.update(node.rep.stats())
    assert stats["names_queried"] == CHUNKS * FACTOR * (FACTOR - 1)  # each holder asks 3
    assert stats["pushes_sent"] == stats["drops"] == 0
    pairs = {(h, m) for c in sim.chunks for h in sim.ideal(c) for m in sim.ideal(c) if h != m}
    assert stats["queries_sent"] == len(pairs)  # one round: one query per (node, peer) pair


@GRACE
def test_three_waves_of_deaths_restore_exactly_four_copies(config: ReplicationConfig) -> None:
    sim = build(config)
    target = sim.chunks[0]
    *three, survivor = sorted(sim.holders(target))
    for number in range(1, 4):
        forced = three if number == 2 else []  # wave 2 kills 3 of the 4 holders of a chunk
        wave = victims(sim, 10, forced, spare=survivor)
        sim.now += 1.0
        sim.kill(wave)
        needed = sim.copies_needed()
        spent = sim.settle()
        check(sim, f"deaths wave {number}", spent, needed)
        assert spent["pushes"] > 0
        assert spent["drops"] == 0  # nobody left an ideal group: deaths only pull nodes in
    assert len(sim.live) == N - 30
    assert sim.holders(target) == sim.ideal(target)
    assert survivor in sim.holders(target)
    assert not set(three) & set(sim.live)


@GRACE
def test_joining_nodes_take_over_and_far_holders_drop(config: ReplicationConfig) -> None:
    sim = build(config)
    before = {chunk: sim.holders(chunk) for chunk in sim.chunks}
    sim.now += 1.0
    joined = {node.name for node in sim.join(20)}
    moved = [chunk for chunk in sim.chunks if sim.ideal(chunk) & joined]
    needed = sim.copies_needed()
    spent = sim.settle()
    check(sim, "join 20", spent, needed)
    assert len(moved) > CHUNKS // 20
    for chunk in moved:
        displaced = before[chunk] - sim.ideal(chunk)
        assert displaced and not displaced & sim.holders(chunk)
        assert sim.ideal(chunk) & joined <= sim.holders(chunk)
    assert spent["drops"] == sum(len(before[c] - sim.ideal(c)) for c in sim.chunks)


def test_audit_after_the_ttl_only_asks_again() -> None:
    sim = build()
    sim.now += ReplicationConfig().confirm_ttl + ReplicationConfig().audit_interval
    spent = sim.settle()
    print(f"audit after ttl: {dict(spent)}")
    assert spent["names_queried"] == CHUNKS * FACTOR * (FACTOR - 1)
    assert spent["pushes"] == spent["drops"] == 0
    assert sim.misplaced() == []
