"""The iterative lookup state machine: parallelism, timeouts, termination, hops, hygiene."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.routing.contact import Contact, RoutingError
from node.routing.lookup import Lookup, LookupConfig
from node.routing.xorname import distance


def contacts(n: int, seed: int = 0) -> list[Contact]:
    rng = random.Random(seed)
    return [Contact.of(rng.randbytes(32), ("10.0.0.1", 1000 + i)) for i in range(n)]


def by_distance(target: bytes, cs: list[Contact]) -> list[Contact]:
    return sorted(cs, key=lambda c: distance(c.name, target))


TARGET = bytes(32)


def test_keeps_alpha_nearest_requests_in_flight() -> None:
    seeds = by_distance(TARGET, contacts(10))
    lookup = Lookup(TARGET, list(reversed(seeds)), LookupConfig(), now=0.0)
    assert lookup.next_requests(now=0.0) == seeds[:3]
    assert lookup.in_flight == 3
    assert lookup.next_requests(now=0.1) == []  # at capacity
    lookup.on_failure(seeds[1].name, now=0.2)
    assert lookup.next_requests(now=0.2) == [seeds[3]]
    assert (lookup.requests, lookup.failures, lookup.in_flight) == (4, 1, 3)


def test_answer_adds_closer_contacts_which_are_asked_first() -> None:
    pool = by_distance(TARGET, contacts(12))
    near, far = pool[:4], pool[4:]
    lookup = Lookup(TARGET, far, now=0.0)
    first = lookup.next_requests(now=0.0)
    assert first == far[:3]
    lookup.on_success(far[0].name, near, now=0.1)
    assert lookup.next_requests(now=0.1) == [near[0]]
    assert lookup.hops()[near[0].name] == 2
    assert lookup.hops()[far[0].name] == 1


def test_timeout_frees_slot_and_late_answer_is_accepted() -> None:
    pool = by_distance(TARGET, contacts(8))
    lookup = Lookup(TARGET, pool[2:], now=10.0)
    sent = lookup.next_requests(now=10.0)
    assert lookup.get_timer() == 10.0 + LookupConfig().initial_timeout
    assert lookup.handle_timer(now=12.9) == []
    lookup.on_success(sent[1].name, [], now=11.0)  # rtt 1.0 -> srtt 1, rttvar 0.5 -> rto 3
    lookup.on_success(sent[2].name, [], now=11.0)
    assert lookup.handle_timer(now=13.0) == [sent[0]]
    assert lookup.timeouts == 1
    # The slow peer no longer blocks parallelism ...
    assert len(lookup.next_requests(now=13.0)) == 3
    # ... but its late answer still counts, closer contacts included.
    lookup.on_success(sent[0].name, pool[:2], now=14.0)
    assert lookup.hops()[pool[0].name] == 2
    assert sent[0] in lookup.result()
    assert lookup.successes == 3


def test_timed_out_peer_is_treated_as_failed_for_termination() -> None:
    a, b = by_distance(TARGET, contacts(2))
    lookup = Lookup(TARGET, [a, b], LookupConfig(k=2), now=0.0)
    lookup.next_requests(now=0.0)
    lookup.on_success(b.name, [], now=0.5)
    assert not lookup.finished
    assert lookup.get_timer() == 3.0
    lookup.handle_timer(now=3.0)
    assert lookup.finished
    assert lookup.result() == [b]
    assert lookup.get_timer() is None


def test_finishes_when_k_closest_answered_and_abandons_farther_requests() -> None:
    pool = by_distance(TARGET, contacts(6))
    lookup = Lookup(TARGET, pool[3:], LookupConfig(k=3, alpha=3), now=0.0)
    lookup.next_requests(now=0.0)  # asks pool[3], pool[4], pool[5]
    lookup.on_success(pool[3].name, pool[:3], now=0.1)
    asked = lookup.next_requests(now=0.1)
    assert asked == [pool[0]]  # one slot free; the two others still wait
    lookup.on_success(pool[4].name, [], now=0.2)
    lookup.on_success(pool[5].name, [], now=0.2)
    assert lookup.next_requests(now=0.2) == pool[1:3]
    for c in pool[:3]:
        lookup.on_success(c.name, [], now=0.3)
    assert lookup.finished
    assert lookup.result() == pool[:3]
    assert lookup.next_requests(now=0.4) == []


def test_answers_after_finishing_are_ignored() -> None:
    a, b = by_distance(TARGET, contacts(2))
    lookup = Lookup(TARGET, [a], LookupConfig(k=1), now=0.0)
    lookup.next_requests(now=0.0)
    lookup.on_success(a.name, [], now=0.1)
    assert lookup.finished
    lookup.on_success(a.name, [b], now=0.2)
    lookup.on_failure(a.name, now=0.2)
    assert lookup.result() == [a]
    assert (lookup.successes, lookup.failures) == (1, 0)


def test_empty_seeds_finish_at_once() -> None:
    lookup = Lookup(TARGET, [], now=0.0)
    assert lookup.finished
    assert lookup.next_requests(now=0.0) == []
    assert lookup.result() == []
    assert lookup.rounds == 0
    assert lookup.get_timer() is None


def test_ignores_unasked_repeated_own_and_malformed() -> None:
    pool = by_distance(TARGET, contacts(10))
    me = pool[0]
    lookup = Lookup(TARGET, [pool[5], pool[6], me], now=0.0, own=me.name)
    assert me.name not in lookup.hops()  # own name is never a candidate
    assert lookup.next_requests(now=0.0) == [pool[5], pool[6]]
    lookup.on_success(pool[1].name, [pool[2]], now=0.1)  # never asked: ignored
    lookup.on_failure(pool[3].name, now=0.1)
    assert pool[2].name not in lookup.hops()
    junk: list[object] = [me, None, {"name": "ab"}, b"x" * 32, pool[4]]
    lookup.on_success(pool[5].name, junk, now=0.2)  # type: ignore[arg-type]
    assert set(lookup.hops()) == {pool[4].name, pool[5].name, pool[6].name}
    lookup.on_success(pool[5].name, [pool[3]], now=0.3)  # repeated answer: ignored
    assert pool[3].name not in lookup.hops()
    assert (lookup.successes, lookup.failures) == (1, 0)


def test_a_peer_gets_at_most_k_contacts_in() -> None:
    pool = by_distance(TARGET, contacts(30))
    lookup = Lookup(TARGET, [pool[29]], LookupConfig(k=5), now=0.0)
    lookup.next_requests(now=0.0)
    lookup.on_success(pool[29].name, list(reversed(pool[:29])), now=0.1)
    assert set(lookup.hops()) == {c.name for c in pool[:5]} | {pool[29].name}


def test_hops_keep_the_lowest_and_rounds_is_max_hop_in_result() -> None:
    pool = by_distance(TARGET, contacts(4))
    d, c, b, a = pool[0], pool[1], pool[2], pool[3]  # d nearest
    lookup = Lookup(TARGET, [a, b], LookupConfig(k=2, alpha=1), now=0.0)
    assert lookup.next_requests(now=0.0) == [b]
    lookup.on_success(b.name, [a, c], now=0.1)  # a stays hop 1, c is hop 2
    assert lookup.hops() == {a.name: 1, b.name: 1, c.name: 2}
    assert lookup.next_requests(now=0.1) == [c]
    lookup.on_success(c.name, [d], now=0.2)
    assert lookup.next_requests(now=0.2) == [d]
    lookup.on_success(d.name, [], now=0.3)
    assert lookup.finished
    assert lookup.result() == [d, c]
    assert lookup.rounds == 3
    assert lookup.requests == 3  # a was never needed


def test_timeout_adapts_to_measured_rtt() -> None:
    pool = by_distance(TARGET, contacts(10))
    lookup = Lookup(TARGET, pool, LookupConfig(alpha=1), now=0.0)
    assert lookup.current_timeout == 3.0  # no sample yet: RFC 6298 fallback
    lookup.next_requests(now=0.0)
    lookup.on_success(pool[0].name, [], now=0.4)  # srtt 0.4, rttvar 0.2
    assert lookup.current_timeout == pytest.approx(1.2)
    lookup.next_requests(now=1.0)
    assert lookup.get_timer() == pytest.approx(2.2)
    lookup.on_success(pool[1].name, [], now=1.8)  # rttvar 0.25, srtt 0.45
    assert lookup.current_timeout == pytest.approx(1.45)


def test_timeout_clamps_and_uses_initial_estimate() -> None:
    pool = contacts(3)
    config = LookupConfig(min_timeout=1.0, max_timeout=10.0)
    assert Lookup(TARGET, pool, config, now=0.0, rtt_estimate=0.5).current_timeout == 1.5
    assert Lookup(TARGET, pool, config, now=0.0, rtt_estimate=0.01).current_timeout == 1.0
    assert Lookup(TARGET, pool, config, now=0.0, rtt_estimate=100.0).current_timeout == 10.0


def test_malformed_target_and_config_raise_routing_error() -> None:
    with pytest.raises(RoutingError):
        Lookup(b"short", [], now=0.0)
    for bad in (
        {"k": 0},
        {"alpha": 0},
        {"min_timeout": 0.0},
        {"min_timeout": 5.0, "max_timeout": 1.0},
        {"initial_timeout": -1.0},
    ):
        with pytest.raises(RoutingError):
            LookupConfig(**bad)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(5, 60),
    st.integers(1, 6),
    st.integers(1, 4),
    st.sampled_from([0.0, 0.0, 0.1, 0.4]),
    st.integers(0, 2**32),
)
def test_lookup_over_an_oracle_network(
    n: int, k: int, alpha: int, fail_rate: float, seed: int
) -> None:
    # Every responder knows everyone and returns the true k closest (bar the requester);
    # some peers fail; answers arrive in random order.
    rng = random.Random(seed)
    nodes = contacts(n, seed)
    me, others = nodes[0], nodes[1:]
    target = rng.randbytes(32)
    failing = {c.name for c in others if rng.random() < fail_rate}
    config = LookupConfig(k=k, alpha=alpha)
    lookup = Lookup(target, [rng.choice(others)], config, now=0.0, own=me.name)
    waiting: list[Contact] = []
    asked: list[bytes] = []
    answered: list[Contact] = []
    now = 0.0
    while not lookup.finished:
        new = lookup.next_requests(now=now)
        waiting += new
        asked += [c.name for c in new]
        assert lookup.in_flight <= alpha
        assert waiting, "an unfinished lookup always has a request out"
        now += 0.01
        peer = waiting.pop(rng.randrange(len(waiting)))
        if peer.name in failing:
            lookup.on_failure(peer.name, now=now)
        else:
            answered.append(peer)
            lookup.on_success(peer.name, by_distance(target, others)[:k], now=now)
    assert len(asked) == len(set(asked)) == lookup.requests
    result = lookup.result()
    assert result == by_distance(target, answered)[:k]
    if not failing:
        assert result == by_distance(target, others)[:k]
    # Termination (paper 2.3): every candidate nearer than the k-th answer was asked.
    bound = distance(result[-1].name, target) if len(result) == k else 1 << 256
    nearer = [name for name in lookup.hops() if distance(name, target) < bound]
    assert set(nearer) <= set(asked)
