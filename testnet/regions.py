"""Regions on one host: turn a spec's latency/loss matrix into per-node impairment rules.

Pure planning.  Each node impairs its own links (node/transport/impair.py), and one rule on
node A for peer B's address acts on both directions of the A-B link (egress to B, ingress
from B).  So each unordered pair gets exactly one rule, on its lower-indexed node:
``delay = latency_ms / 2000`` seconds (the spec's figure is a round-trip time, and each
direction is delayed once) and ``loss = fraction`` (each direction loses that fraction).
Pairs with neither latency nor loss get no rule.  A restarted node has a new port and an
empty rule table, so the rules that involve it are installed again (``Testnet.restart``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from node.transport.impair import addr_selector
from testnet.spec import TestnetSpec
from testnet.state import NodeInfo

Rule = tuple[int, int, str, dict[str, Any]]  # (on node, for peer, selector, LinkRule dict)


def region_rules(spec: TestnetSpec, infos: Mapping[int, NodeInfo]) -> list[Rule]:
    """The impairment rules that make ``infos`` (ready nodes) see the spec's matrix."""
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
