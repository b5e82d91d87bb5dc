"""Hostile and odd input to Endpoint.receive_datagram: random bytes, replays, tampering,
cookie policies and the amplification bound.

Pairs here are driven by hand (no FakeNet) so every datagram on the wire can be captured,
replayed or altered.  Time is a fake ``now``.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.identity import Identity
from node.transport.config import TransportConfig
from node.transport.endpoint import Endpoint
from node.transport.events import Addr, Connected, Event, MessageReceived, PeerDead
from node.transport.handshake import (
    COOKIE_REPLY_LEN,
    MAC_LEN,
    MSG1_LEN,
    MSG2_LEN,
    InitiatorHandshake,
    mac1_key,
)
from node.transport.wire import CID_LEN, MAX_RECV_DATAGRAM

A_ADDR: Addr = ("10.0.0.1", 1000)
B_ADDR: Addr = ("10.0.0.2", 2000)
EVIL: Addr = ("203.0.113.66", 6666)
HORIZON = 0.05
"""Settle() runs timers this far ahead: enough for delayed ACKs, short of keep-alives."""


@dataclass
class Pair:
    """Two endpoints wired back to back; every datagram passes through ``settle``."""

    a: Endpoint
    b: Endpoint
    now: float = 0.0
    wire: list[tuple[str, bytes]] = field(default_factory=list)
    events: dict[str, list[Event]] = field(default_factory=lambda: {"a": [], "b": []})

    def ends(self) -> dict[str, tuple[Endpoint, Endpoint, Addr]]:
        return {"a": (self.a, self.b, A_ADDR), "b": (self.b, self.a, B_ADDR)}

    def flush(self) -> int:
        """Deliver everything both sides want to send now; returns how many datagrams."""
        moved = 0
        for name, (src, dst, src_addr) in self.ends().items():
            for data, _ in src.datagrams_to_send(now=self.now):
                self.wire.append((name, data))
                dst.receive_datagram(data, src_addr, now=self.now)
                moved += 1
        for name, (src, _, _) in self.ends().items():
            while (e := src.next_event()) is not None:
                self.events[name].append(e)
        return moved

    def settle(self) -> None:
        limit = self.now + HORIZON
        for _ in range(10_000):
            if self.flush():
                continue
            timers = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
            if not timers or min(timers) > limit:
                return
            self.now = max(self.now, min(timers))
            self.a.handle_timer(now=self.now)
            self.b.handle_timer(now=self.now)
        raise AssertionError("pair never settled")

    def messages(self, name: str) -> list[bytes]:
        return [e.data for e in self.events[name] if isinstance(e, MessageReceived)]

    def connected(self, name: str) -> list[Event]:
        return [e for e in self.events[name] if isinstance(e, Connected)]


def make_pair(config: TransportConfig | None = None) -> Pair:
    cfg = config or TransportConfig()
    a = Endpoint(Identity.generate(), cfg, now=0.0)
    b = Endpoint(Identity.generate(), cfg, now=0.0)
    pair = Pair(a, b)
    a.connect(b.identity.public_key, B_ADDR, now=0.0)
    pair.settle()
    assert a.is_connected(b.identity.public_key) and b.is_connected(a.identity.public_key)
    pair.wire.clear()
    return pair


def snapshot(pair: Pair) -> tuple[object, ...]:
    pa, pb = pair.a.identity.public_key, pair.b.identity.public_key
    return (
        pair.a.peers(),
        pair.b.peers(),
        pair.a.session_stats(pb),
        pair.b.session_stats(pa),
    )


def data_packet_from_a(pair: Pair, message: bytes) -> bytes:
    """Have a send ``message`` and capture (not deliver) the one packet that carries it."""
    pair.a.send(pair.b.identity.public_key, message)
    [(packet, addr)] = pair.a.datagrams_to_send(now=pair.now)
    assert addr == B_ADDR
    return packet


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x40
    return bytes(out)


# -- random input ----------------------------------------------------------------------------------


def test_random_bytes_never_raise_and_change_no_session_state() -> None:
    pair = make_pair()
    pair.a.send(pair.b.identity.public_key, b"warm up")
    pair.settle()
    session_cid = data_packet_from_a(pair, b"capture")[:CID_LEN]
    pair.a.send(pair.b.identity.public_key, b"x")  # keep a's stream consistent
    pair.settle()
    before = snapshot(pair)

    @settings(max_examples=400, deadline=None)
    @given(
        prefix=st.sampled_from([b"", session_cid]),
        body=st.binary(max_size=MAX_RECV_DATAGRAM + 16),
        src=st.sampled_from([A_ADDR, EVIL]),
    )
    def feed(prefix: bytes, body: bytes, src: Addr) -> None:
        pair.b.receive_datagram(prefix + body, src, now=pair.now)
        assert pair.b.datagrams_to_send(now=pair.now) == []  # no answer to garbage
        assert pair.b.next_event() is None
        assert snapshot(pair) == before

    feed()
    counters = pair.b.counters
    assert counters["dropped_auth"] > 0 and counters["dropped_unknown"] > 0
    assert counters["dropped_size"] > 0


@settings(max_examples=60, deadline=None)
@given(body=st.binary(min_size=MSG1_LEN - 2 * MAC_LEN, max_size=MSG1_LEN - 2 * MAC_LEN))
def test_garbage_msg1_with_valid_mac1_never_raises(body: bytes) -> None:
    """mac1 is keyed by the public key, so anyone can pass it; what follows must not crash
    the endpoint or create state."""
    b = Endpoint(Identity.generate(), now=0.0)
    mac1 = hashlib.blake2s(body, key=mac1_key(b.identity.public_key), digest_size=MAC_LEN).digest()
    b.receive_datagram(body + mac1 + bytes(MAC_LEN), EVIL, now=0.0)
    assert b.counters["dropped_auth"] == 1
    assert b.datagrams_to_send(now=0.0) == []
    assert b.peers() == [] and b.get_timer() is None


@settings(max_examples=100, deadline=None)
@given(length=st.sampled_from([COOKIE_REPLY_LEN, MSG2_LEN, 40, 300]), seed=st.binary(min_size=8))
def test_random_replies_to_a_dial_never_raise(length: int, seed: bytes) -> None:
    """Forged cookie replies and msg2s routed to a pending dial are dropped; the dial lives."""
    a = Endpoint(Identity.generate(), now=0.0)
    peer = Identity.generate().public_key
    a.connect(peer, B_ADDR, now=0.0)
    [(msg1, _)] = a.datagrams_to_send(now=0.0)
    forged = msg1[:CID_LEN] + (seed * (length // len(seed) + 1))[: length - CID_LEN]
    a.receive_datagram(forged, EVIL, now=0.01)
    assert a.counters["dropped_auth"] == 1
    assert a.datagrams_to_send(now=0.01) == []
    assert not a.is_connected(peer)
    assert a.next_event() is None
    a.handle_timer(now=0.25)  # the dial still retries
    assert [d for d, _ in a.datagrams_to_send(now=0.25)] == [msg1]


# -- replay and tampering --------------------------------------------------------------------------


def test_replayed_data_packet_is_counted_as_duplicate_and_not_delivered_twice() -> None:
    pair = make_pair()
    packet = data_packet_from_a(pair, b"once only")
    pair.b.receive_datagram(packet, A_ADDR, now=pair.now)
    pair.settle()
    assert pair.messages("b") == [b"once only"]
    pa = pair.a.identity.public_key
    dups = pair.b.session_stats(pa)["duplicates"]  # type: ignore[index]
    for _ in range(3):
        pair.b.receive_datagram(packet, A_ADDR, now=pair.now)
    pair.settle()
    assert pair.messages("b") == [b"once only"]
    assert pair.b.session_stats(pa)["duplicates"] == dups + 3  # type: ignore[index]
    pair.a.send(pair.b.identity.public_key, b"next")
    pair.settle()
    assert pair.messages("b") == [b"once only", b"next"]


def test_replayed_packet_from_another_address_does_not_move_the_session() -> None:
    pair = make_pair()
    packet = data_packet_from_a(pair, b"hello")
    pair.b.receive_datagram(packet, A_ADDR, now=pair.now)
    pair.settle()
    pa = pair.a.identity.public_key
    pair.b.receive_datagram(packet, EVIL, now=pair.now)  # an on-path copy, sent from elsewhere
    pair.b.send(pa, b"for a's eyes")
    assert {to for _, to in pair.b.datagrams_to_send(now=pair.now)} == {A_ADDR}
    assert pair.b.session_stats(pa)["addr"] == f"{A_ADDR[0]}:{A_ADDR[1]}"  # type: ignore[index]


def test_tampered_data_packet_is_rejected_and_the_session_continues() -> None:
    pair = make_pair()
    packet = data_packet_from_a(pair, b"precious")
    before = pair.b.counters["dropped_auth"]
    for index in (CID_LEN, CID_LEN + 3, CID_LEN + 20, len(packet) - 1):
        pair.b.receive_datagram(flip(packet, index), A_ADDR, now=pair.now)
    assert pair.b.counters["dropped_auth"] == before + 4
    assert pair.messages("b") == []
    pair.b.receive_datagram(packet, A_ADDR, now=pair.now)  # the genuine one still opens
    pair.settle()
    assert pair.messages("b") == [b"precious"]
    assert pair.b.is_connected(pair.a.identity.public_key)


def test_packet_with_an_unknown_connection_id_is_dropped() -> None:
    pair = make_pair()
    packet = data_packet_from_a(pair, b"rerouted")
    before = snapshot(pair)
    pair.b.receive_datagram(flip(packet, 0), A_ADDR, now=pair.now)
    assert pair.b.counters["dropped_unknown"] == 1
    assert snapshot(pair) == before


def test_replayed_msg1_does_not_replace_the_established_session() -> None:
    cfg = TransportConfig()
    a = Endpoint(Identity.generate(), cfg, now=0.0)
    b = Endpoint(Identity.generate(), cfg, now=0.0)
    pair = Pair(a, b)
    a.connect(b.identity.public_key, B_ADDR, now=0.0)
    pair.settle()
    [msg1] = [d for name, d in pair.wire if name == "a" and len(d) == MSG1_LEN]
    assert len(pair.connected("b")) == 1
    pa, pb = a.identity.public_key, b.identity.public_key
    answered = b.counters["handshakes_answered"]
    for src in (A_ADDR, EVIL):
        b.receive_datagram(msg1, src, now=pair.now)
    assert b.counters["handshakes_answered"] > answered  # it did reach the handshake path
    # Keep the old session busy past the idle timeout of any half-open leftover.
    for i in range(8):
        a.send(pb, b"still here %d" % i)
        pair.settle()
        pair.now += cfg.keepalive_interval / 2
        pair.settle()
    assert pair.now > cfg.idle_timeout
    assert len(pair.connected("b")) == 1 and len(pair.connected("a")) == 1
    assert pair.messages("b") == [b"still here %d" % i for i in range(8)]
    assert b.peers() == [pa] and a.peers() == [pb]
    b.send(pa, b"reply on the old session")
    pair.settle()
    assert pair.messages("a") == [b"reply on the old session"]


# -- cookies and load ------------------------------------------------------------------------------


def test_cookie_policy_always_answers_first_msg1_with_only_a_cookie() -> None:
    cfg = TransportConfig(cookie_policy="always")
    a = Endpoint(Identity.generate(), cfg, now=0.0)
    b = Endpoint(Identity.generate(), cfg, now=0.0)
    a.connect(b.identity.public_key, B_ADDR, now=0.0)
    [(msg1, _)] = a.datagrams_to_send(now=0.0)
    b.receive_datagram(msg1, A_ADDR, now=0.0)
    [(reply, to)] = b.datagrams_to_send(now=0.0)
    assert to == A_ADDR
    assert len(reply) == COOKIE_REPLY_LEN <= len(msg1)
    assert b.counters["cookies_sent"] == 1 and b.counters["handshakes_answered"] == 0
    assert b.peers() == [] and b.get_timer() is None  # no half-open session, no timer
    assert b.next_event() is None
    a.receive_datagram(reply, B_ADDR, now=0.01)
    [(retry, _)] = a.datagrams_to_send(now=0.01)
    assert len(retry) == MSG1_LEN and retry != msg1
    pair = Pair(a, b, now=0.01)
    b.receive_datagram(retry, A_ADDR, now=0.01)
    pair.settle()
    assert b.counters["handshakes_answered"] == 1
    assert a.is_connected(b.identity.public_key) and b.is_connected(a.identity.public_key)
    a.send(b.identity.public_key, b"through the cookie")
    pair.settle()
    assert pair.messages("b") == [b"through the cookie"]


def test_cookie_bound_to_one_address_does_not_work_from_another() -> None:
    cfg = TransportConfig(cookie_policy="always")
    a = Endpoint(Identity.generate(), cfg, now=0.0)
    b = Endpoint(Identity.generate(), cfg, now=0.0)
    a.connect(b.identity.public_key, B_ADDR, now=0.0)
    [(msg1, _)] = a.datagrams_to_send(now=0.0)
    b.receive_datagram(msg1, A_ADDR, now=0.0)
    [(reply, _)] = b.datagrams_to_send(now=0.0)
    a.receive_datagram(reply, B_ADDR, now=0.01)
    [(retry, _)] = a.datagrams_to_send(now=0.01)
    b.receive_datagram(retry, EVIL, now=0.01)
    [(second_reply, to)] = b.datagrams_to_send(now=0.01)
    assert to == EVIL and len(second_reply) == COOKIE_REPLY_LEN
    assert b.counters["handshakes_answered"] == 0


def fresh_msg1(responder: bytes) -> InitiatorHandshake:
    return InitiatorHandshake(Identity.generate(), responder, os.urandom(CID_LEN))


def test_load_policy_requires_cookies_past_the_threshold_and_bounds_half_open() -> None:
    cfg = TransportConfig(cookie_policy="load", load_threshold=1, max_half_open=3)
    b = Endpoint(Identity.generate(), cfg, now=0.0)
    pb = b.identity.public_key
    dials = [fresh_msg1(pb) for _ in range(12)]
    addrs: list[Addr] = [(f"198.51.100.{i}", 5000 + i) for i in range(12)]
    replies: dict[Addr, list[bytes]] = {}
    for hs, addr in zip(dials, addrs, strict=True):
        b.receive_datagram(hs.message(), addr, now=0.0)
        for data, to in b.datagrams_to_send(now=0.0):
            replies.setdefault(to, []).append(data)
    assert b.counters["handshakes_answered"] == 1  # the threshold is one half-open handshake
    assert b.counters["cookies_sent"] == 11
    assert [len(r) for r in replies[addrs[0]]] == [MSG2_LEN]
    assert all([len(r) for r in replies[x]] == [COOKIE_REPLY_LEN] for x in addrs[1:])
    # Every flooder proves its address and retries with mac2: the hard cap still holds.
    for hs, addr in zip(dials[1:], addrs[1:], strict=True):
        hs.on_cookie_reply(replies[addr][0])
        b.receive_datagram(hs.message(), addr, now=0.1)
    b.datagrams_to_send(now=0.1)
    assert b.counters["handshakes_answered"] == cfg.max_half_open
    assert b.counters["dropped_half_open_cap"] == 12 - cfg.max_half_open
    assert b.peers() == []  # none of them is a session until it proves its keys


def test_half_open_handshakes_expire_silently() -> None:
    cfg = TransportConfig(cookie_policy="never", max_half_open=2)
    b = Endpoint(Identity.generate(), cfg, now=0.0)
    for _ in range(2):
        b.receive_datagram(fresh_msg1(b.identity.public_key).message(), EVIL, now=0.0)
    b.datagrams_to_send(now=0.0)
    b.receive_datagram(fresh_msg1(b.identity.public_key).message(), EVIL, now=0.0)
    assert b.counters["dropped_half_open_cap"] == 1
    now = 0.0
    while (t := b.get_timer()) is not None:
        now = max(now, t)
        b.handle_timer(now=now)
        assert b.datagrams_to_send(now=now) == []  # nothing but msg2 ever goes out
    assert now >= cfg.idle_timeout
    assert b.next_event() is None  # unconfirmed sessions end without PeerDead
    b.receive_datagram(fresh_msg1(b.identity.public_key).message(), EVIL, now=now)
    assert b.counters["handshakes_answered"] == 3  # the slots were freed


@pytest.mark.parametrize("policy", ["never", "load", "always"])
def test_responder_never_sends_more_than_it_receives_from_an_unproven_address(
    policy: str,
) -> None:
    cfg = TransportConfig(cookie_policy=policy, load_threshold=2)  # type: ignore[arg-type]
    b = Endpoint(Identity.generate(), cfg, now=0.0)
    pb = b.identity.public_key
    got: Counter[Addr] = Counter()
    sent: Counter[Addr] = Counter()
    dials = [fresh_msg1(pb) for _ in range(6)]
    now = 0.0
    for round_ in range(4):  # each spoofed source replays its msg1 several times
        for i, hs in enumerate(dials):
            addr = (f"192.0.2.{i}", 7000)
            msg = hs.message()
            b.receive_datagram(msg, addr, now=now)
            got[addr] += len(msg)
        now += 0.3 * (round_ + 1)
        b.handle_timer(now=now)
        for data, to in b.datagrams_to_send(now=now):
            sent[to] += len(data)
    while (t := b.get_timer()) is not None:  # let every half-open session run out
        now = max(now, t)
        b.handle_timer(now=now)
        for data, to in b.datagrams_to_send(now=now):
            sent[to] += len(data)
    assert sent, "the responder answered nothing at all"
    for addr, n in sent.items():
        assert n <= got[addr], addr
    assert b.peers() == []


def test_icmp_unreachable_ends_the_session_at_once() -> None:
    pair = make_pair()
    pb = pair.b.identity.public_key
    pair.a.on_unreachable(("10.9.9.9", 1), now=pair.now)  # some other address: no effect
    assert pair.a.is_connected(pb)
    pair.a.on_unreachable(B_ADDR, now=pair.now)
    pair.flush()
    assert not pair.a.is_connected(pb)
    assert [e for e in pair.events["a"] if not isinstance(e, Connected)] == [
        PeerDead(pb, "unreachable (ICMP)")
    ]
