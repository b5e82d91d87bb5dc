"""Routing convergence: does every node know its true nearest peers?

Ground truth is the set of live node names.  A node has converged when its routing table
holds each of its ``want = min(8, N - 1)`` closest live peers by XOR distance (Kademlia,
Maymounkov & Mazieres 2002, section 2.3: a node must know its own neighbourhood for lookups
and close groups to agree).  :func:`routing_health` is pure and decides that for one node;
:func:`convergence` polls every node's ``/routing`` once and reports per node;
:func:`wait_converged` polls until all have converged or time runs out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from node.routing.xorname import closest
from testnet.fleet import Failed, ask_all
from testnet.state import NodeInfo

NEIGHBOURHOOD = 8
POLL_INTERVAL = 0.5


def want_for(live: int) -> int:
    """How many nearest peers each of ``live`` nodes must know."""
    return max(0, min(NEIGHBOURHOOD, live - 1))


def routing_health(
    own: bytes, table_names: Iterable[bytes], all_names: Iterable[bytes], want: int
) -> list[bytes]:
    """The ``want`` closest peers of ``own`` (among ``all_names``) missing from its table,
    nearest first.  An empty list means the node has converged."""
    peers = [n for n in set(all_names) if n != own]
    have = set(table_names)
    return [n for n in closest(own, peers, want) if n not in have]


def table_names(routing: Any) -> list[bytes]:
    """Names in a ``GET /routing`` body; raises ValueError if the body is malformed."""
    try:
        return [bytes.fromhex(e["name"]) for b in routing["buckets"] for e in b["entries"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed /routing answer ({exc!r})") from None


@dataclass(frozen=True)
class NodeConvergence:
    """One node's view: table size and the nearest peers it still lacks."""

    index: int
    name: bytes
    table_size: int
    missing: tuple[bytes, ...]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing


@dataclass(frozen=True)
class ConvergenceReport:
    """Every live node's convergence, at one moment."""

    want: int
    nodes: tuple[NodeConvergence, ...]
    seconds: float = 0.0

    @property
    def converged(self) -> bool:
        return all(n.ok for n in self.nodes)

    @property
    def lagging(self) -> list[NodeConvergence]:
        return [n for n in self.nodes if not n.ok]


def assess(infos: Mapping[int, NodeInfo], answers: Mapping[int, Any]) -> ConvergenceReport:
    """Pure: the convergence report for ``/routing`` answers of the nodes in ``infos``."""
    names = [info.name for info in infos.values()]
    want = want_for(len(names))
    out = []
    for i in sorted(infos):
        own, answer = infos[i].name, answers.get(i, Failed("not asked"))
        try:
            if isinstance(answer, Failed):
                raise ValueError(answer.reason)
            table = table_names(answer)
        except ValueError as exc:
            out.append(NodeConvergence(i, own, 0, (), str(exc)))
            continue
        missing = tuple(routing_health(own, table, names, want))
        out.append(NodeConvergence(i, own, len(table), missing))
    return ConvergenceReport(want, tuple(out))


async def convergence(infos: Mapping[int, NodeInfo], token: str) -> ConvergenceReport:
    """Poll every node's ``/routing`` once."""
    answers = await ask_all({i: info.admin for i, info in infos.items()}, token, "/routing")
    return assess(infos, answers)


async def wait_converged(
    infos: Mapping[int, NodeInfo], token: str, *, timeout: float, interval: float = POLL_INTERVAL
) -> ConvergenceReport:
    """Poll until every node has converged or ``timeout`` passes; returns the last report."""
    started = time.monotonic()
    while True:
        report = await convergence(infos, token)
        took = time.monotonic() - started
        if report.converged or took >= timeout:
            return ConvergenceReport(report.want, report.nodes, took)
        await asyncio.sleep(interval)
