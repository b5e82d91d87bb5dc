"""Regions: turn a spec's latency/loss matrix into impairment keyed by the peer's region.

Each node impairs its own links (node/transport/impair.py) with one rule per region it has
a figure for, selector ``group:<region>``, and its peers' addresses assigned to the group
named after their region.  Per node that is one ``POST /impairment/bulk`` (assignments and
rules together), so a testnet of N nodes costs N admin calls, not one per node pair (16,110
for 180 nodes).  A grown or restarted node gets its whole plan, and every other node one
small call that puts its address in its region's group.

The per-direction math, now that both ends impair: a datagram from A to B passes A's rule
for B's region on egress and B's rule for A's region on ingress; the matrix is symmetric,
so both are the same rule.  Each direction is delayed twice and the round trip four times,
so ``delay = rtt / 4``; each direction passes two independent loss draws, so for a
configured per-direction loss ``p`` each rule drops ``q = 1 - sqrt(1 - p)`` and
``1 - (1 - q)^2 = p``.  (A single rule on one end, as before, would need ``rtt / 2`` and
``p``; keying by group on both ends is what makes the plan O(N) calls.)

Invariants: :func:`region_plan` is pure and deterministic (sorted output); a node only gets
groups it has a rule for; no matrix means no calls.  Datagrams from addresses in no group
(clients, the orchestrator) pass unimpaired.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from node.transport.impair import addr_selector
from testnet.fleet import Failed, post_all
from testnet.spec import TestnetSpec
from testnet.state import NodeInfo

BULK_PATH = "/impairment/bulk"

Body = dict[str, Any]  # a /impairment/bulk body: {"assign": {...}, "rules": {...}}
Rule = tuple[int, int, str, dict[str, Any]]  # legacy: (on node, for peer, selector, rule)


def link_rule(rtt_ms: float, loss: float) -> dict[str, float]:
    """The rule each END of a link gets for a round-trip time and per-direction loss."""
    rule: dict[str, float] = {}
    if rtt_ms > 0:
        rule["delay"] = rtt_ms / 4000.0
    if loss > 0:
        rule["loss"] = 1.0 - math.sqrt(1.0 - loss)
    return rule


def rules_for_region(spec: TestnetSpec, region: str) -> dict[str, dict[str, float]]:
    """``group:<peer region>`` -> rule, for a node in ``region``."""
    out = {}
    for peer in spec.regions:
        rtt, loss = spec.latency_between(region, peer.name), spec.loss_between(region, peer.name)
        rule = link_rule(rtt, loss)
        if rule:
            out[f"group:{peer.name}"] = rule
    return out


def region_plan(
    spec: TestnetSpec, infos: Mapping[int, NodeInfo], *, only: Collection[int] | None = None
) -> dict[int, Body]:
    """Index -> ``/impairment/bulk`` body making ``infos`` (ready nodes) see the matrix.

    With ``only``, those nodes get their whole plan and the others just the assignment of
    ``only``'s addresses (what a grown or restarted node needs)."""
    if not spec.latency_ms and not spec.loss:
        return {}
    fresh = set(infos) if only is None else set(only) & set(infos)
    plan: dict[int, Body] = {}
    for i in sorted(infos):
        rules = rules_for_region(spec, spec.region_of(i))
        peers = infos if i in fresh else {j: infos[j] for j in fresh}
        assign = _assign(spec, peers, exclude=i, groups={s[6:] for s in rules})
        body: Body = {"assign": assign}
        if i in fresh:
            body["rules"] = rules
        if assign or i in fresh:
            plan[i] = body
    return plan


def _assign(
    spec: TestnetSpec, peers: Mapping[int, NodeInfo], *, exclude: int, groups: set[str]
) -> dict[str, list[list[Any]]]:
    out: dict[str, list[list[Any]]] = {}
    for j in sorted(peers):
        region = spec.region_of(j)
        if j != exclude and region in groups:
            out.setdefault(region, []).append([peers[j].addr[0], peers[j].addr[1]])
    return out


async def apply_regions(
    spec: TestnetSpec,
    infos: Mapping[int, NodeInfo],
    token: str,
    *,
    only: int | Collection[int] | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """Install :func:`region_plan` through every node's admin API; returns the failures
    (``nNNN: reason``), never raises for one node."""
    wanted = [only] if isinstance(only, int) else only
    plan = region_plan(spec, infos, only=wanted)
    calls = [(i, infos[i].admin, BULK_PATH, body) for i, body in plan.items()]
    answers = await post_all(calls, token, timeout=timeout)
    return [f"n{i:03d}: {a.reason}" for i, a in answers if isinstance(a, Failed)]


def region_rules(spec: TestnetSpec, infos: Mapping[int, NodeInfo]) -> list[Rule]:
    """Legacy per-pair plan (one ``addr:`` rule per node pair, on the lower index, with
    ``rtt / 2`` and the full loss since only one end impairs): O(N^2) admin calls.  Kept only
    until ``Testnet.aapply_regions`` calls :func:`apply_regions`; do not use in new code."""
    if not spec.latency_ms and not spec.loss:
        return []
    rules: list[Rule] = []
    indices = sorted(infos)
    for pos, a in enumerate(indices):
        for b in indices[pos + 1 :]:
            ra, rb = spec.region_of(a), spec.region_of(b)
            latency, loss = spec.latency_between(ra, rb), spec.loss_between(ra, rb)
            rule: dict[str, Any] = {}
            if latency > 0:
                rule["delay"] = latency / 2000.0
            if loss > 0:
                rule["loss"] = loss
            if rule:
                rules.append((a, b, addr_selector(infos[b].addr), rule))
    return rules
