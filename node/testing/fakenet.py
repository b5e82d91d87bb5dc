"""FakeNet: many transport endpoints in one process on a fake clock.

Each endpoint gets an address and its own :class:`~node.transport.impair.Impairment`
(seeded), exactly as a real node would, so loss, duplication, delay and
reordering come from the same code the real adapter uses.  Time only moves when
nothing is due, jumping to the next timer or delivery: a run is deterministic
for a given seed and fast however long the simulated time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from node.identity import Identity
from node.transport.config import TransportConfig
from node.transport.endpoint import Endpoint
from node.transport.events import Addr, Event
from node.transport.impair import Direction, Impairment, LinkRule


@dataclass
class FakeNode:
    """One endpoint on the fake network."""

    identity: Identity
    addr: Addr
    endpoint: Endpoint
    impairment: Impairment
    events: list[Event] = field(default_factory=list)
    alive: bool = True


class FakeNet:
    """A seeded network of endpoints with a fake clock."""

    def __init__(self, seed: int = 0, *, link: LinkRule | None = None, start: float = 0.0) -> None:
        self.seed = seed
        self.now = start
        self.link = link or LinkRule(delay=0.0005)
        self.nodes: dict[Addr, FakeNode] = {}
        self.delivered = 0

    def add(
        self, config: TransportConfig | None = None, identity: Identity | None = None
    ) -> FakeNode:
        addr = ("10.0.0.1", 1000 + len(self.nodes))
        ident = identity or Identity.generate()
        imp = Impairment(seed=self.seed * 7919 + len(self.nodes))
        imp.set_rule("*", self.link)
        node = FakeNode(ident, addr, Endpoint(ident, config, now=self.now), imp)
        self.nodes[addr] = node
        return node

    def kill(self, node: FakeNode) -> None:
        """The node stops processing anything (a crashed process with no ICMP)."""
        node.alive = False

    def _flush(self) -> None:
        for node in self.nodes.values():
            if not node.alive:
                continue
            for data, dst in node.endpoint.datagrams_to_send(now=self.now):
                node.impairment.push(Direction.EGRESS, data, dst, now=self.now)
            while (event := node.endpoint.next_event()) is not None:
                node.events.append(event)

    def _next_time(self) -> float | None:
        times: list[float] = []
        for node in self.nodes.values():
            if not node.alive:
                continue
            for t in (node.endpoint.get_timer(), node.impairment.get_timer()):
                if t is not None:
                    times.append(t)
        return min(times) if times else None

    def step(self) -> bool:
        """Advance to the next moment anything happens; False if nothing ever will."""
        self._flush()
        t = self._next_time()
        if t is None:
            return False
        self.now = max(self.now, t)
        for node in list(self.nodes.values()):
            if not node.alive:
                continue
            for _, data, dst in node.impairment.pop_due(now=self.now):
                target = self.nodes.get(dst)
                if target is not None and target.alive:
                    target.endpoint.receive_datagram(data, node.addr, now=self.now)
                    self.delivered += 1
        for node in self.nodes.values():
            timer = node.endpoint.get_timer()
            if node.alive and timer is not None and timer <= self.now:
                node.endpoint.handle_timer(now=self.now)
        self._flush()
        return True

    def run_until(self, done: Callable[[], bool], *, timeout: float) -> bool:
        """Step until ``done()`` or ``timeout`` simulated seconds pass; returns ``done()``."""
        deadline = self.now + timeout
        while not done():
            if self.now > deadline or not self.step():
                return done()
        return True

    def run_for(self, seconds: float) -> None:
        deadline = self.now + seconds
        while self.now < deadline and self.step():
            pass
