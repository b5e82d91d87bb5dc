"""Routing table: k-buckets, ping-before-evict, replacement caches, close groups, refresh."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.routing.contact import Contact, RoutingError
from node.routing.table import (
    ContactAdded,
    ContactRemoved,
    PingRequest,
    RoutingConfig,
    RoutingTable,
)
from node.routing.xorname import bucket_index, distance

SMALL = RoutingConfig(k=4, replacement_cache_size=3, refresh_interval=600.0, ping_timeout=30.0)


def contact(rng: random.Random) -> Contact:
    return Contact.of(rng.randbytes(32), ("10.0.0.1", rng.randint(1, 65535)))


def in_bucket(own: bytes, index: int, n: int, rng: random.Random) -> list[Contact]:
    """``n`` contacts whose names fall in bucket ``index`` of ``own``."""
    found: list[Contact] = []
    while len(found) < n:
        c = contact(rng)
        if c.name != own and bucket_index(own, c.name) == index:
            found.append(c)
    return found


def full_table(seed: int = 1) -> tuple[RoutingTable, list[Contact]]:
    """A table whose bucket 255 is full (k = 4) plus 4 more candidates for it."""
    rng = random.Random(seed)
    own = contact(rng).name
    table = RoutingTable(own, SMALL)
    peers = in_bucket(own, 255, 8, rng)
    for t, c in enumerate(peers[:4]):
        assert table.observe(c, now=float(t)) == [ContactAdded(c)]
    return table, peers


def bucket_names(table: RoutingTable, index: int) -> list[bytes]:
    return [c.name for c in table.contacts() if table.bucket_of(c.name) == index]


def test_observe_inserts_and_reports() -> None:
    rng = random.Random(0)
    table = RoutingTable(contact(rng).name)
    c = contact(rng)
    assert table.observe(c, now=1.0) == [ContactAdded(c)]
    assert table.contains(c.name) and c.name in table
    assert len(table) == 1
    assert table.get(c.name) == c
    assert table.observe(c, now=2.0) == []  # known: refreshed, not re-added
    assert len(table) == 1


def test_own_name_is_never_stored() -> None:
    rng = random.Random(0)
    me = contact(rng)
    table = RoutingTable(me.name)
    assert table.observe(me, now=0.0) == []
    assert len(table) == 0
    assert table.remove(me.name, now=0.0) == []
    assert table.on_ping_result(me.name, alive=False, now=0.0) == []


def test_seen_contact_moves_to_tail_with_new_address() -> None:
    table, peers = full_table()
    a = peers[0]
    moved = Contact(a.name, a.public_key, ("10.9.9.9", 4242))
    assert table.observe(moved, now=10.0) == []
    assert bucket_names(table, 255) == [p.name for p in peers[1:4]] + [a.name]
    assert table.get(a.name) == moved
    snap = json.loads(json.dumps(table.snapshot()))
    entry = next(e for e in snap[0]["entries"] if e["name"] == a.name.hex())
    assert entry["last_seen"] == 10.0
    assert entry["added_at"] == 0.0
    assert entry["address"] == ["10.9.9.9", 4242]


def test_full_bucket_pings_oldest_and_keeps_newcomer_waiting() -> None:
    # Paper 2.2: a live old contact is never evicted for a newcomer.
    table, peers = full_table()
    assert table.observe(peers[4], now=5.0) == [PingRequest(peers[0])]
    assert peers[4].name not in table
    assert table.replacements(255) == [peers[4]]
    # A second newcomer while the ping is pending: no second ping, cached most recent first.
    assert table.observe(peers[5], now=6.0) == []
    assert table.replacements(255) == [peers[5], peers[4]]
    assert len(table) == 4


def test_alive_ping_keeps_oldest_and_moves_it_to_tail() -> None:
    table, peers = full_table()
    table.observe(peers[4], now=5.0)
    assert table.on_ping_result(peers[0].name, alive=True, now=6.0) == []
    assert bucket_names(table, 255) == [p.name for p in (peers[1], peers[2], peers[3], peers[0])]
    assert table.replacements(255) == [peers[4]]
    # The next newcomer triggers a ping of the new least-recently seen contact.
    assert table.observe(peers[5], now=7.0) == [PingRequest(peers[1])]


def test_dead_ping_evicts_and_promotes_freshest_replacement() -> None:
    table, peers = full_table()
    table.observe(peers[4], now=5.0)
    table.observe(peers[5], now=6.0)
    actions = table.on_ping_result(peers[0].name, alive=False, now=7.0)
    assert actions == [ContactRemoved(peers[0]), ContactAdded(peers[5])]
    assert peers[0].name not in table
    assert bucket_names(table, 255)[-1] == peers[5].name
    assert table.replacements(255) == [peers[4]]
    # The slot is refilled, so the pending ping is gone and a new one can start.
    assert table.observe(peers[6], now=8.0) == [PingRequest(peers[1])]


def test_traffic_from_pinged_contact_answers_the_ping() -> None:
    table, peers = full_table()
    table.observe(peers[4], now=5.0)
    assert table.observe(peers[0], now=6.0) == []  # it spoke: alive, moved to tail
    assert table.observe(peers[5], now=7.0) == [PingRequest(peers[1])]


def test_lost_ping_is_sent_again_after_ping_timeout() -> None:
    table, peers = full_table()
    assert table.observe(peers[4], now=5.0) == [PingRequest(peers[0])]
    assert table.observe(peers[5], now=5.0 + SMALL.ping_timeout - 1) == []
    assert table.observe(peers[6], now=5.0 + SMALL.ping_timeout) == [PingRequest(peers[0])]


def test_remove_promotes_and_ignores_unknown() -> None:
    table, peers = full_table()
    table.observe(peers[4], now=5.0)
    assert table.remove(peers[2].name, now=6.0) == [
        ContactRemoved(peers[2]),
        ContactAdded(peers[4]),
    ]
    assert table.replacements(255) == []
    assert table.remove(peers[2].name, now=7.0) == []  # already gone
    assert table.remove(peers[7].name, now=7.0) == []  # never known
    # Removing a cached candidate just forgets it.
    table.observe(peers[5], now=8.0)
    assert table.remove(peers[5].name, now=9.0) == []
    assert table.replacements(255) == []
    assert len(table) == 4


def test_replacement_cache_is_bounded_and_most_recent_first() -> None:
    rng = random.Random(3)
    own = contact(rng).name
    table = RoutingTable(own, SMALL)
    peers = in_bucket(own, 255, 10, rng)
    for t, c in enumerate(peers):
        table.observe(c, now=float(t))
    assert table.replacements(255) == [peers[9], peers[8], peers[7]]
    # Hearing again from a cached candidate makes it the freshest.
    table.observe(peers[7], now=20.0)
    assert table.replacements(255) == [peers[7], peers[9], peers[8]]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=60, unique=True),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 30),
    st.integers(0, 5),
)
def test_closest_matches_brute_force(
    keys: list[bytes], target: bytes, count: int, n_ex: int
) -> None:
    table = RoutingTable(b"\x00" * 32, RoutingConfig(k=8))
    for i, pk in enumerate(keys):
        table.observe(Contact.of(pk, ("127.0.0.1", 1000 + i)), now=0.0)
    stored = table.contacts()
    exclude = [c.name for c in stored[:n_ex]]
    expected = sorted(
        (c for c in stored if c.name not in exclude), key=lambda c: distance(c.name, target)
    )
    assert table.closest(target, count, exclude=exclude) == expected[:count]


def test_close_group_counts_ourselves() -> None:
    rng = random.Random(5)
    me = contact(rng)
    table = RoutingTable(me.name)
    others = [contact(rng) for _ in range(30)]
    for c in others:
        table.observe(c, now=0.0)
    target = me.name[:-1] + bytes([me.name[-1] ^ 1])  # a chunk name right next to us
    group = table.close_group(target, 4, include_self=me)
    assert group[0] == me
    assert group == sorted([me, *others], key=lambda c: distance(c.name, target))[:4]
    assert (
        table.close_group(target, 4) == sorted(others, key=lambda c: distance(c.name, target))[:4]
    )
    with pytest.raises(RoutingError):
        table.close_group(target, 4, include_self=others[0])


def test_snapshot_is_json_safe_and_complete() -> None:
    table, peers = full_table()
    table.observe(peers[4], now=5.0)
    table.mark_refreshed(255, now=9.0)
    snap = json.loads(json.dumps(table.snapshot()))
    assert [b["index"] for b in snap] == [255]
    assert [e["name"] for e in snap[0]["entries"]] == [p.name.hex() for p in peers[:4]]
    assert snap[0]["entries"][0]["address"] == list(peers[0].address)
    assert snap[0]["replacements"] == 1
    assert snap[0]["pending_ping"] == peers[0].name.hex()
    assert snap[0]["last_refreshed"] == 9.0


def test_buckets_needing_refresh_span_from_nearest_used_bucket() -> None:
    rng = random.Random(7)
    own = contact(rng).name
    table = RoutingTable(own, SMALL)
    assert table.buckets_needing_refresh(now=0.0) == []  # empty table: nothing to refresh
    table.observe(in_bucket(own, 252, 1, rng)[0], now=0.0)
    table.observe(in_bucket(own, 255, 1, rng)[0], now=0.0)
    assert table.buckets_needing_refresh(now=0.0) == [252, 253, 254, 255]
    table.mark_refreshed(253, now=100.0)
    assert table.buckets_needing_refresh(now=100.0 + 599.0) == [252, 254, 255]
    assert table.buckets_needing_refresh(now=100.0 + 600.0) == [252, 253, 254, 255]


@given(st.integers(0, 255), st.integers(0, 2**32))
def test_random_name_in_bucket_lands_in_that_bucket(index: int, seed: int) -> None:
    own = random.Random(seed).randbytes(32)
    table = RoutingTable(own)
    name = table.random_name_in_bucket(index, random.Random(seed))
    assert bucket_index(own, name) == index
    assert table.bucket_of(name) == index


def test_random_names_in_a_bucket_vary() -> None:
    table = RoutingTable(bytes(32))
    rng = random.Random(1)
    assert len({table.random_name_in_bucket(200, rng) for _ in range(20)}) == 20


def test_malformed_inputs_raise_routing_error() -> None:
    table = RoutingTable(bytes(32))
    for call in (
        lambda: RoutingTable(b"short"),
        lambda: table.closest(b"x" * 31, 3),
        lambda: table.remove(b"", now=0.0),
        lambda: table.contains(b"x" * 33),
        lambda: table.bucket_of(bytes(32)),
        lambda: table.random_name_in_bucket(256, random.Random(0)),
        lambda: table.mark_refreshed(-1, now=0.0),
        lambda: RoutingConfig(k=0),
        lambda: RoutingConfig(refresh_interval=0.0),
    ):
        with pytest.raises(RoutingError):
            call()


OPS = st.lists(
    st.tuples(st.sampled_from(["observe", "alive", "dead", "remove"]), st.integers(0, 39)),
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(OPS, st.integers(0, 2**16))
def test_invariants_hold_under_any_event_sequence(ops: list[tuple[str, int]], seed: int) -> None:
    rng = random.Random(seed)
    own = contact(rng).name
    # Names crowd into the top buckets, so k = 4 keeps them full and busy.
    pool = [contact(rng) for _ in range(40)]
    table = RoutingTable(own, SMALL)
    for t, (op, i) in enumerate(ops):
        c = pool[i]
        if op == "observe":
            actions = table.observe(c, now=float(t))
        elif op == "remove":
            actions = table.remove(c.name, now=float(t))
        else:
            actions = table.on_ping_result(c.name, alive=op == "alive", now=float(t))
        for a in actions:
            if isinstance(a, PingRequest):
                assert a.contact.name in table
    stored = table.contacts()
    assert len(stored) == len(table) == len({c.name for c in stored})
    for index in range(256):
        names = bucket_names(table, index)
        cached = [c.name for c in table.replacements(index)]
        assert len(names) <= SMALL.k
        assert len(cached) <= SMALL.replacement_cache_size
        assert not set(names) & set(cached)
        assert all(bucket_index(own, n) == index for n in names + cached)
    # A bucket with waiting candidates is full: promotion never leaves a hole.
    for index in range(256):
        if table.replacements(index):
            assert len(bucket_names(table, index)) == SMALL.k
