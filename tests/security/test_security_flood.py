"""A flood of valid handshakes from spoofed addresses keeps a node's memory bounded.

Every msg1 here is a real Noise IK first message (fresh initiator keys, right mac1), so the
responder does all its work for each: the hard cap on half-open handshakes, not the cost of
forging, is what has to hold memory down.  The smaller bounds (cookie policy, amplification)
are in tests/transport/test_endpoint_input.py.
"""

from __future__ import annotations

import os
import tracemalloc

from node.identity import Identity
from node.transport.config import TransportConfig
from node.transport.endpoint import Endpoint
from node.transport.handshake import InitiatorHandshake

FLOOD = 3000


def test_a_handshake_flood_is_capped_and_memory_stays_bounded() -> None:
    cfg = TransportConfig(cookie_policy="never", max_half_open=256)
    victim = Endpoint(Identity.generate(), cfg, now=0.0)
    pk = victim.identity.public_key
    attackers = [Identity.generate() for _ in range(64)]
    tracemalloc.start()
    try:
        base = tracemalloc.take_snapshot()
        for i in range(FLOOD):
            hs = InitiatorHandshake(attackers[i % 64], pk, os.urandom(8))
            addr = (f"198.18.{i // 250}.{i % 250}", 1024 + i)
            victim.receive_datagram(hs.message(), addr, now=i * 1e-4)
            victim.datagrams_to_send(now=i * 1e-4)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(base, "filename"))
    assert victim.counters["handshakes_answered"] == cfg.max_half_open
    assert victim.counters["dropped_half_open_cap"] == FLOOD - cfg.max_half_open
    assert victim.peers() == []
    # 256 half-open sessions at a few KB each; nothing grows with the 2,744 dropped ones
    assert grown < 256 * 16 * 1024, f"{grown} bytes retained"
