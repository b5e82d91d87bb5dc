"""Sessions between endpoints on a seeded FakeNet (fake clock, real impairment layer).

Every scenario is deterministic for its seed; "within N seconds" always means simulated
seconds read from ``FakeNet.now``, never a wall clock.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from node.identity import Identity
from node.testing.fakenet import FakeNet, FakeNode
from node.transport.config import TransportConfig
from node.transport.endpoint import Endpoint
from node.transport.events import (
    Addr,
    Connected,
    DatagramReceived,
    Event,
    HandshakeFailed,
    MessageReceived,
    PeerClosed,
    PeerDead,
)
from node.transport.handshake import MSG2_LEN, InitiatorHandshake, Responder
from node.transport.impair import LinkRule, addr_selector
from node.transport.session import INITIAL_MAX_DATA, Session
from node.transport.wire import CID_LEN

CFG = TransportConfig()
DELAY = 0.01
LOSSY = LinkRule(delay=DELAY, jitter=0.005, loss=0.10, duplicate=0.03, reorder=0.05)


MAX_STILL_STEPS = 10_000


def drive(net: FakeNet, done: Callable[[], bool], *, timeout: float) -> bool:
    """``FakeNet.run_until`` that fails fast if simulated time stops moving (a livelock
    would otherwise spin until the per-test timeout)."""
    deadline = net.now + timeout
    last, still = net.now, 0
    while not done():
        if net.now > deadline or not net.step():
            return done()
        if net.now == last:
            still += 1
            assert still < MAX_STILL_STEPS, f"livelock: simulated time stuck at {net.now}"
        else:
            last, still = net.now, 0
    return True


def drive_for(net: FakeNet, seconds: float) -> None:
    assert not drive(net, lambda: False, timeout=seconds)


def of(node: FakeNode, kind: type[Event]) -> list[Event]:
    return [e for e in node.events if isinstance(e, kind)]


def received(node: FakeNode, sender: FakeNode) -> list[bytes]:
    return [
        e.data
        for e in node.events
        if isinstance(e, MessageReceived) and e.peer == sender.identity.public_key
    ]


def pk(node: FakeNode) -> bytes:
    return node.identity.public_key


def connected_pair(
    seed: int = 1, link: LinkRule | None = None, config: TransportConfig = CFG
) -> tuple[FakeNet, FakeNode, FakeNode]:
    net = FakeNet(seed, link=link or LinkRule(delay=DELAY))
    a, b = net.add(config), net.add(config)
    a.endpoint.connect(pk(b), b.addr, now=net.now)
    assert drive(net, lambda: bool(of(a, Connected)) and bool(of(b, Connected)), timeout=10)
    return net, a, b


def payload(i: int, max_size: int = 400) -> bytes:
    """Message i: 4 to ``max_size`` bytes, content tied to i.  With the default size a
    thousand of them (about 200 KiB) fit in the initial 256 KiB flow-control window."""
    size = (i * 7919) % max_size
    return i.to_bytes(4, "big") * (size // 4 + 1)


# -- reliability -----------------------------------------------------------------------------------


# Seeded runs; test_loss_timer_always_makes_progress covers the loss-timer edge across seeds.
@pytest.mark.parametrize("seed", [1, 2, 3, 5])
def test_thousand_messages_exactly_once_in_order_at_10pct_loss(seed: int) -> None:
    net, a, b = connected_pair(seed, LOSSY)
    sent = [payload(i) for i in range(1000)]
    for m in sent:
        a.endpoint.send(pk(b), m)
    assert drive(net, lambda: len(received(b, a)) >= len(sent), timeout=120)
    drive_for(net, 1.0)  # any late duplicate would show up now
    assert received(b, a) == sent
    stats = a.endpoint.session_stats(pk(b))
    assert stats is not None
    assert stats["retransmits"] > 0 and stats["packets_lost"] > 0  # loss really happened
    assert b.endpoint.session_stats(pk(a))["duplicates"] > 0  # type: ignore[index]
    assert not of(a, PeerDead) and not of(b, PeerDead)


def test_bidirectional_traffic_at_10pct_loss() -> None:
    net, a, b = connected_pair(3, LOSSY)
    to_b = [b"a>b" + payload(i) for i in range(400)]
    to_a = [b"b>a" + payload(i + 5) for i in range(400)]
    for x, y in zip(to_b, to_a, strict=True):
        a.endpoint.send(pk(b), x)
        b.endpoint.send(pk(a), y)
    done = lambda: len(received(b, a)) >= 400 and len(received(a, b)) >= 400  # noqa: E731
    assert drive(net, done, timeout=120)
    drive_for(net, 1.0)
    assert received(b, a) == to_b
    assert received(a, b) == to_a


def test_bulk_transfer_grows_the_flow_control_window() -> None:
    """3 MiB is far past the initial 256 KiB window: MAX_DATA updates must flow."""
    net, a, b = connected_pair(19)
    sent = [payload(i, 60_000) for i in range(100)]
    assert sum(map(len, sent)) > 10 * INITIAL_MAX_DATA
    for m in sent:
        a.endpoint.send(pk(b), m)
    assert drive(net, lambda: len(received(b, a)) >= len(sent), timeout=60)
    assert received(b, a) == sent
    assert drive(net, lambda: a.endpoint.send_buffered(pk(b)) == 0, timeout=5)


def test_bulk_transfer_survives_loss_of_the_max_data_frame() -> None:
    net = FakeNet(20, link=LinkRule(delay=DELAY))
    a, b = net.add(), net.add()
    # b's responder session is created with a MAX_DATA update pending, which rides its
    # first ack-eliciting packet.  Lose exactly that packet (the first one after msg2).
    originals = b.endpoint.datagrams_to_send
    dropped: list[bytes] = []

    def lose_first_data_packet(*, now: float) -> list[tuple[bytes, Addr]]:
        out = originals(now=now)
        for i, (data, _) in enumerate(out):
            if not dropped and len(data) != MSG2_LEN:
                dropped.append(data)
                del out[i]
                break
        return out

    b.endpoint.datagrams_to_send = lose_first_data_packet  # type: ignore[method-assign]
    a.endpoint.connect(pk(b), b.addr, now=net.now)
    assert drive(net, lambda: bool(of(a, Connected)) and bool(of(b, Connected)), timeout=5)
    sent = [payload(i, 60_000) for i in range(40)]
    assert sum(map(len, sent)) > 2 * INITIAL_MAX_DATA
    for m in sent:
        a.endpoint.send(pk(b), m)
    assert drive(net, lambda: len(received(b, a)) >= len(sent), timeout=60)
    assert len(dropped) == 1


def test_messages_queued_while_dialling_are_delivered() -> None:
    net = FakeNet(4, link=LOSSY)
    a, b = net.add(), net.add()
    a.endpoint.connect(pk(b), b.addr, now=net.now)
    sent = [payload(i) for i in range(50)]
    for m in sent:
        a.endpoint.send(pk(b), m)
    assert drive(net, lambda: len(received(b, a)) >= 50, timeout=60)
    assert received(b, a) == sent


def test_unreliable_datagrams_arrive_on_a_clean_link() -> None:
    net, a, b = connected_pair(5)
    sent = [b"dg%04d" % i for i in range(300)]
    for start in range(0, len(sent), 32):  # below the 64-datagram send queue
        for d in sent[start : start + 32]:
            a.endpoint.send_datagram(pk(b), d)
        drive_for(net, 0.05)
    drive_for(net, 0.5)
    got = [e.data for e in of(b, DatagramReceived)]  # type: ignore[attr-defined]
    assert len(got) >= 0.95 * len(sent)
    assert set(got) <= set(sent)
    assert len(got) == len(set(got))


def test_datagram_queue_overflow_drops_the_oldest() -> None:
    net, a, b = connected_pair(6)
    sent = [b"q%04d" % i for i in range(CFG.datagram_queue + 10)]
    for d in sent:
        a.endpoint.send_datagram(pk(b), d)
    drive_for(net, 0.5)
    got = [e.data for e in of(b, DatagramReceived)]  # type: ignore[attr-defined]
    assert got == sent[10:]
    assert a.endpoint.session_stats(pk(b))["datagrams_dropped"] == 10  # type: ignore[index]


# -- ending sessions -------------------------------------------------------------------------------


def test_graceful_close_reaches_the_peer_within_one_link_delay() -> None:
    net, a, b = connected_pair(7)
    drive_for(net, 0.2)
    t0 = net.now
    a.endpoint.close(pk(b), "leaving")
    assert drive(net, lambda: bool(of(b, PeerClosed)), timeout=5)
    assert net.now - t0 <= DELAY + 1e-9
    [closed] = of(b, PeerClosed)
    assert closed.peer == pk(a) and closed.reason == "leaving"  # type: ignore[union-attr]
    assert not a.endpoint.is_connected(pk(b))
    assert not b.endpoint.is_connected(pk(a))
    drive_for(net, 3 * CFG.idle_timeout)
    assert not of(a, PeerDead) and not of(b, PeerDead) and not of(a, PeerClosed)


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "mid_transfer"])
@pytest.mark.parametrize("killed", ["initiator", "responder"])
def test_killed_peer_is_declared_dead_by_idle_timeout(killed: str, busy: bool) -> None:
    net, a, b = connected_pair(8)
    drive_for(net, 2.0)
    victim, survivor = (a, b) if killed == "initiator" else (b, a)
    if busy:  # the survivor has unacknowledged data outstanding: PTO probes, then death
        for i in range(200):
            survivor.endpoint.send(pk(victim), payload(i))
        drive_for(net, 0.005)
    t0 = net.now
    net.kill(victim)
    assert drive(net, lambda: bool(of(survivor, PeerDead)), timeout=10)
    elapsed = net.now - t0
    assert elapsed <= CFG.idle_timeout + 1e-9
    assert elapsed >= CFG.idle_timeout - 1.5 * CFG.keepalive_interval - 2 * DELAY
    assert of(survivor, PeerDead) == [PeerDead(pk(victim), "idle timeout")]
    assert not survivor.endpoint.is_connected(pk(victim))
    assert survivor.endpoint.get_timer() is None  # nothing left running


def test_keepalives_keep_an_idle_pair_alive() -> None:
    net, a, b = connected_pair(9)
    drive_for(net, 30.0)
    assert net.now >= 30.0
    assert not of(a, PeerDead) and not of(b, PeerDead)
    assert a.endpoint.is_connected(pk(b)) and b.endpoint.is_connected(pk(a))
    pings = a.endpoint.session_stats(pk(b))["packets_sent"]  # type: ignore[index]
    assert pings >= 30.0 / CFG.keepalive_interval / 2


def test_keepalives_survive_moderate_loss() -> None:
    net, a, b = connected_pair(10, LinkRule(delay=DELAY, loss=0.05))
    drive_for(net, 30.0)
    assert not of(a, PeerDead) and not of(b, PeerDead)
    assert a.endpoint.is_connected(pk(b)) and b.endpoint.is_connected(pk(a))


def test_blackholed_link_ends_in_peer_dead_on_both_sides() -> None:
    net, a, b = connected_pair(11)
    drive_for(net, 1.0)
    t0 = net.now
    a.impairment.set_rule(addr_selector(b.addr), LinkRule(blackhole=True))
    # Datagrams already in flight when the rule is set still arrive (one link delay).
    assert drive(net, lambda: bool(of(b, PeerDead)), timeout=10)
    assert net.now - t0 <= DELAY + CFG.idle_timeout + 1e-9
    assert drive(net, lambda: bool(of(a, PeerDead)), timeout=10)
    assert net.now - t0 <= 2 * (DELAY + CFG.idle_timeout) + 1e-9
    assert of(a, PeerDead) == [PeerDead(pk(b), "idle timeout")]
    assert of(b, PeerDead) == [PeerDead(pk(a), "idle timeout")]


# -- handshake races and restarts ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [12, 13, 14, 15])
def test_simultaneous_connect_yields_one_session_per_side(seed: int) -> None:
    net = FakeNet(seed, link=LinkRule(delay=DELAY, jitter=0.02))
    a, b = net.add(), net.add()
    a.endpoint.connect(pk(b), b.addr, now=net.now)
    b.endpoint.connect(pk(a), a.addr, now=net.now)
    a.endpoint.send(pk(b), b"from a")
    b.endpoint.send(pk(a), b"from b")
    assert drive(net, lambda: bool(received(a, b)) and bool(received(b, a)), timeout=10)
    drive_for(net, 3 * CFG.idle_timeout)
    assert a.endpoint.peers() == [pk(b)] and b.endpoint.peers() == [pk(a)]
    [ca], [cb] = of(a, Connected), of(b, Connected)
    assert {ca.initiator, cb.initiator} == {True, False}  # type: ignore[union-attr]
    assert received(a, b) == [b"from b"] and received(b, a) == [b"from a"]
    assert not of(a, PeerDead) and not of(b, PeerDead)
    assert not of(a, HandshakeFailed) and not of(b, HandshakeFailed)
    a.endpoint.send(pk(b), b"after")
    b.endpoint.send(pk(a), b"after")
    assert drive(net, lambda: len(received(a, b)) == 2 == len(received(b, a)), timeout=5)


@pytest.mark.parametrize("original_dialler", ["survivor", "restarter"])
def test_restarted_peer_replaces_the_old_session(original_dialler: str) -> None:
    net = FakeNet(16, link=LinkRule(delay=DELAY))
    a, b = net.add(), net.add()
    first, second = (a, b) if original_dialler == "survivor" else (b, a)
    first.endpoint.connect(pk(second), second.addr, now=net.now)
    assert drive(net, lambda: bool(of(a, Connected)) and bool(of(b, Connected)), timeout=5)
    drive_for(net, 0.3)
    # b's process restarts: same identity, same address, fresh endpoint, no goodbye.
    b.endpoint = Endpoint(b.identity, CFG, now=net.now)
    b.events.clear()
    b.endpoint.connect(pk(a), a.addr, now=net.now)
    b.endpoint.send(pk(a), b"hello again")
    assert drive(net, lambda: len(of(a, Connected)) == 2 and bool(of(b, Connected)), timeout=5)
    assert of(a, Connected)[-1] == Connected(pk(b), b.addr, False, True)
    assert drive(net, lambda: received(a, b) == [b"hello again"], timeout=5)
    a.endpoint.send(pk(b), b"welcome back")
    assert drive(net, lambda: received(b, a) == [b"welcome back"], timeout=5)
    drive_for(net, 3 * CFG.idle_timeout)
    assert a.endpoint.peers() == [pk(b)] and b.endpoint.peers() == [pk(a)]
    assert not of(a, PeerDead) and not of(b, PeerDead)


def test_dial_to_a_dead_address_fails_after_handshake_timeout() -> None:
    net = FakeNet(17, link=LinkRule(delay=DELAY))
    a = net.add()
    ghost = Identity.generate().public_key
    a.endpoint.connect(ghost, ("10.9.9.9", 9), now=net.now)
    a.endpoint.send(ghost, b"never delivered")
    assert drive(net, lambda: bool(of(a, HandshakeFailed)), timeout=30)
    [failed] = of(a, HandshakeFailed)
    assert failed == HandshakeFailed(ghost, ("10.9.9.9", 9), "handshake timed out", 1)
    assert CFG.handshake_timeout <= net.now <= 2 * CFG.handshake_timeout
    assert a.endpoint.counters["handshake_retries"] >= 3
    assert not a.endpoint.is_connected(ghost)
    assert a.endpoint.get_timer() is None  # nothing left to do


def test_dial_to_the_wrong_key_at_a_live_address_fails() -> None:
    net = FakeNet(18, link=LinkRule(delay=DELAY))
    a, b = net.add(), net.add()
    ghost = Identity.generate().public_key
    a.endpoint.connect(ghost, b.addr, now=net.now)
    assert drive(net, lambda: bool(of(a, HandshakeFailed)), timeout=30)
    assert not of(b, Connected)
    assert b.endpoint.counters["dropped_unknown"] >= 1


# -- Session objects driven by hand ----------------------------------------------------------------


def session_pair(config: TransportConfig) -> tuple[Session, Session]:
    alice, bob = Identity.generate(), Identity.generate()
    hs = InitiatorHandshake(alice, bob.public_key, os.urandom(CID_LEN))
    r_keys, msg2 = Responder(bob, now=0.0).respond(hs.message(), os.urandom(CID_LEN))
    i_keys = hs.on_response(msg2)
    a = Session(i_keys, ("10.0.0.2", 2), config, now=0.0, initiator=True)
    b = Session(r_keys, ("10.0.0.1", 1), config, now=0.0, initiator=False)
    return a, b


@pytest.mark.parametrize(("t0", "t1", "t2"), [(0.121, 0.125, 0.164), (0.876, 0.88, 0.924)])
def test_loss_timer_always_makes_progress(t0: float, t1: float, t2: float) -> None:
    """Packet 0 (sent t0) is lost, packet 1 (sent t1) is acked at t2: packet 0 is under
    the packet threshold, so the time threshold arms a loss timer.  Firing it at its own
    deadline must declare packet 0 lost or move the deadline on."""
    a, b = session_pair(TransportConfig(pacing=False))
    a.send_message(b"zero")
    [_lost] = a.datagrams_to_send(now=t0)
    a.send_message(b"one")
    [p1] = a.datagrams_to_send(now=t1)
    b.receive(p1, now=t2)
    for ack in b.datagrams_to_send(now=t2):
        a.receive(ack, now=t2)
    deadline = a.get_timer()
    assert deadline is not None and t2 < deadline < t2 + 0.1
    a.handle_timer(now=deadline)
    after = a.get_timer()
    assert a.counters["packets_lost"] == 1 or (after is not None and after > deadline)
