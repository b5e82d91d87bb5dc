"""Tests for node.transport.impair: the sans-IO userspace netem/tbf layer.

All time is a fake ``now``; due times are checked arithmetically, never against a wall clock.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.transport.impair import (
    MAX_LINK_STATES,
    MAX_RULES,
    Addr,
    Direction,
    Impairment,
    ImpairmentError,
    LinkRule,
    addr_selector,
    parse_selector,
)

EG, IN = Direction.EGRESS, Direction.INGRESS
A: Addr = ("10.0.0.1", 4000)
B: Addr = ("10.0.0.2", 4000)
C: Addr = ("10.0.0.3", 4000)


def payloads(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") for i in range(n)]


def ids(items: list[tuple[Direction, bytes, Addr]]) -> list[int]:
    return [int.from_bytes(data, "big") for _, data, _ in items]


# -- LinkRule validation and serialisation ---------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("delay", -0.001),
        ("delay", math.nan),
        ("delay", math.inf),
        ("delay", "1"),
        ("delay", True),
        ("jitter", -1.0),
        ("loss", 1.01),
        ("loss", -0.1),
        ("duplicate", 2),
        ("reorder", math.nan),
        ("reorder_gap", -0.5),
        ("rate", 0),
        ("rate", -5.0),
        ("rate", math.inf),
        ("burst", 0),
        ("burst", 1.5),
        ("burst", None),
        ("queue_limit", -1),
        ("queue_limit", 2**40),
        ("blackhole", 1),
        ("blackhole", "yes"),
    ],
)
def test_bad_rule_value_raises_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ImpairmentError, match=rf"LinkRule\.{field}\b"):
        LinkRule.from_dict({field: value})


def test_impairment_error_is_a_value_error() -> None:
    assert issubclass(ImpairmentError, ValueError)


def test_rule_defaults_are_a_perfect_link_and_ints_normalise_to_floats() -> None:
    rule = LinkRule(delay=1, rate=1000)
    assert isinstance(rule.delay, float)
    assert isinstance(rule.rate, float)
    d = LinkRule().to_dict()
    assert d["loss"] == 0.0
    assert d["rate"] is None
    assert d["blackhole"] is False


def test_from_dict_round_trips_and_rejects_unknown_keys() -> None:
    rule = LinkRule(delay=0.1, jitter=0.02, loss=0.3, rate=5e5, burst=9000, blackhole=True)
    assert LinkRule.from_dict(rule.to_dict()) == rule
    assert LinkRule.from_dict({}) == LinkRule()
    with pytest.raises(ImpairmentError, match="latency"):
        LinkRule.from_dict({"delay": 0.1, "latency": 5})
    with pytest.raises(ImpairmentError):
        LinkRule.from_dict([("delay", 1.0)])  # type: ignore[arg-type]


# -- selectors ---------------------------------------------------------------------------------


def test_selector_parsing() -> None:
    assert parse_selector("*") is None
    assert parse_selector("addr:10.0.0.1:4000") == A
    assert parse_selector("addr:[::1]:9") == ("::1", 9)
    assert parse_selector("addr:::1:9") == ("::1", 9)
    assert parse_selector("group:eu-west.1") == "eu-west.1"
    assert addr_selector(("::1", 9)) == "addr:[::1]:9"
    assert addr_selector(A) == "addr:10.0.0.1:4000"


@pytest.mark.parametrize(
    "selector",
    [
        "",
        "**",
        "all",
        "addr:",
        "addr:10.0.0.1",
        "addr::4000",
        "addr:h:65536",
        "addr:h:-1",
        "addr:h:4x",
        "addr:a b:1",
        "group:",
        "group:-x",
        "group:has space",
        "group:" + "x" * 65,
        7,
        None,
    ],
)
def test_bad_selector_raises(selector: object) -> None:
    imp = Impairment()
    with pytest.raises(ImpairmentError):
        imp.set_rule(selector, LinkRule())  # type: ignore[arg-type]
    assert imp.rules() == {}


def test_set_rule_rejects_non_rule_and_caps_rule_count() -> None:
    imp = Impairment()
    with pytest.raises(ImpairmentError):
        imp.set_rule("*", {"delay": 1.0})  # type: ignore[arg-type]
    for port in range(MAX_RULES):
        imp.set_rule(f"addr:h:{port}", LinkRule())
    with pytest.raises(ImpairmentError, match="too many rules"):
        imp.set_rule("addr:h:65000", LinkRule())
    imp.set_rule("addr:h:0", LinkRule(delay=1.0))  # replacing an existing rule is fine
    assert len(imp.rules()) == MAX_RULES


# -- pass-through ------------------------------------------------------------------------------


def test_no_rule_passes_at_now_in_fifo_order() -> None:
    imp = Impairment()
    assert not imp.active
    assert imp.get_timer() is None
    imp.set_rule(addr_selector(C), LinkRule(delay=1.0))  # a rule for someone else
    assert imp.active
    for i, data in enumerate(payloads(50)):
        imp.push(EG if i % 2 else IN, data, A if i % 3 else B, now=10.0)
    assert imp.get_timer() == 10.0
    assert imp.pop_due(now=9.999) == []
    out = imp.pop_due(now=10.0)
    assert ids(out) == list(range(50))
    assert out[0] == (IN, payloads(1)[0], B)
    assert imp.stats()["passed"] == 50
    assert imp.stats()["queued_bytes"] == 0
    assert imp.stats()["delayed"] == 0


# -- loss --------------------------------------------------------------------------------------


def _survivors(seed: int, loss: float, n: int) -> list[int]:
    imp = Impairment(seed=seed)
    imp.set_rule("*", LinkRule(loss=loss))
    for data in payloads(n):
        imp.push(EG, data, A, now=0.0)
    out = ids(imp.pop_due(now=0.0))
    assert imp.stats()["dropped_loss"] == n - len(out)
    return out


def test_loss_rate_is_near_configured_and_seed_replays() -> None:
    n = 10_000
    first = _survivors(42, 0.2, n)
    # sd of the loss fraction is sqrt(.2*.8/1e4) = 0.004; 0.02 is five sd.
    assert abs((n - len(first)) / n - 0.2) < 0.02
    assert _survivors(42, 0.2, n) == first
    assert _survivors(43, 0.2, n) != first


def test_loss_extremes() -> None:
    assert _survivors(1, 0.0, 200) == list(range(200))
    assert _survivors(1, 1.0, 200) == []


# -- delay and jitter --------------------------------------------------------------------------


def test_delay_and_jitter_bounds() -> None:
    imp = Impairment(seed=3)
    imp.set_rule("*", LinkRule(delay=0.05, jitter=0.02))
    pushed = {}
    for i, data in enumerate(payloads(1000)):
        now = i * 0.001
        pushed[data] = now
        imp.push(EG, data, A, now=now)
    first_due = imp.get_timer()
    assert first_due is not None
    assert first_due >= 0.05
    assert imp.pop_due(now=0.0499) == []
    out = imp.pop_due_timed(now=100.0)
    assert len(out) == 1000
    waits = [due - pushed[data] for due, _, data, _ in out]
    assert all(0.05 - 1e-12 <= w <= 0.07 + 1e-12 for w in waits)
    assert max(waits) - min(waits) > 0.015  # jitter really spreads the delays
    assert imp.stats()["delayed"] == 1000


def test_fixed_delay_keeps_order_and_exact_due_time() -> None:
    imp = Impairment()
    imp.set_rule("*", LinkRule(delay=0.25))
    for i, data in enumerate(payloads(10)):
        imp.push(IN, data, A, now=float(i))
    assert imp.get_timer() == 0.25
    out = imp.pop_due_timed(now=100.0)
    assert [due for due, *_ in out] == [i + 0.25 for i in range(10)]
    assert ids([(d, b, a) for _, d, b, a in out]) == list(range(10))


# -- duplication and reordering ----------------------------------------------------------------


def test_duplicate_always_sends_twice() -> None:
    imp = Impairment()
    imp.set_rule("*", LinkRule(duplicate=1.0))
    for data in payloads(20):
        imp.push(EG, data, A, now=0.0)
    out = ids(imp.pop_due(now=0.0))
    assert sorted(out) == sorted(list(range(20)) * 2)
    assert imp.stats()["duplicated"] == 20


def test_duplicate_probability() -> None:
    imp = Impairment(seed=5)
    imp.set_rule("*", LinkRule(duplicate=0.3))
    for data in payloads(5000):
        imp.push(EG, data, A, now=0.0)
    dup = imp.stats()["duplicated"]
    assert len(imp.pop_due(now=0.0)) == 5000 + dup
    assert abs(dup / 5000 - 0.3) < 0.04


def test_reorder_actually_reorders() -> None:
    imp = Impairment(seed=11)
    imp.set_rule("*", LinkRule(reorder=0.25, reorder_gap=0.01))
    for i, data in enumerate(payloads(200)):
        imp.push(EG, data, A, now=i * 0.001)
    out = ids(imp.pop_due(now=10.0))
    assert sorted(out) == list(range(200))
    assert out != list(range(200))
    held = imp.stats()["reordered"]
    assert 0 < held < 200
    inversions = sum(1 for i, x in enumerate(out) for y in out[i + 1 :] if y < x)
    assert inversions > 0


def test_without_reorder_or_jitter_order_is_kept() -> None:
    imp = Impairment(seed=11)
    imp.set_rule("*", LinkRule(delay=0.03, loss=0.1, reorder=0.0))
    for i, data in enumerate(payloads(200)):
        imp.push(EG, data, A, now=i * 0.001)
    out = ids(imp.pop_due(now=10.0))
    assert out == sorted(out)
    assert imp.stats()["reordered"] == 0


# -- rate limit ----------------------------------------------------------------------------------


def test_rate_limit_drains_burst_at_configured_rate_and_tail_drops() -> None:
    imp = Impairment()
    imp.set_rule("*", LinkRule(rate=1000.0, burst=1000, queue_limit=2000))
    for i in range(10):
        imp.push(EG, bytes([i]) * 500, A, now=0.0)
    # 1000 bytes of burst go at once; then 500 bytes per 0.5 s; backlog 2000 bytes max.
    out = imp.pop_due_timed(now=100.0)
    assert [due for due, *_ in out] == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5, 2.0])
    assert [data[0] for _, _, data, _ in out] == [0, 1, 2, 3, 4, 5]
    assert imp.stats()["dropped_queue"] == 4
    # after idling the bucket refills to `burst` (not more)
    for _ in range(3):
        imp.push(EG, b"x" * 500, A, now=10.0)
    assert [due for due, *_ in imp.pop_due_timed(now=100.0)] == pytest.approx([10, 10, 10.5])


def test_rate_is_per_link_and_per_direction_and_adds_delay_after_queueing() -> None:
    imp = Impairment()
    imp.set_rule("*", LinkRule(rate=100.0, burst=100, delay=1.0))
    for direction, addr in [(EG, A), (EG, A), (IN, A), (EG, B)]:
        imp.push(direction, b"y" * 100, addr, now=0.0)
    dues = sorted(due for due, *_ in imp.pop_due_timed(now=100.0))
    assert dues == pytest.approx([1.0, 1.0, 1.0, 2.0])  # only the 2nd A-egress waits


def test_queue_limit_zero_drops_anything_that_would_wait() -> None:
    imp = Impairment()
    imp.set_rule("*", LinkRule(rate=10.0, burst=100, queue_limit=0))
    imp.push(EG, b"a" * 60, A, now=0.0)
    imp.push(EG, b"b" * 60, A, now=0.0)
    imp.push(EG, b"c" * 40, A, now=0.0)
    assert [data[:1] for _, data, _ in imp.pop_due(now=0.0)] == [b"a", b"c"]
    assert imp.stats()["dropped_queue"] == 1


def test_idle_token_buckets_are_swept() -> None:
    imp = Impairment()
    imp.set_rule("*", LinkRule(rate=1e6, burst=1000))
    for port in range(MAX_LINK_STATES + 100):
        imp.push(EG, b"z" * 10, ("10.1.0.1", port), now=port * 0.001)
    # bucket state is private; it is the memory bound the module docstring promises
    assert imp._link_states <= MAX_LINK_STATES
    assert len(imp.pop_due(now=1e3)) == MAX_LINK_STATES + 100


def test_global_byte_cap_drops_and_counts() -> None:
    imp = Impairment(max_queued_bytes=1000)
    imp.push(EG, b"a" * 400, A, now=0.0)  # no rule: still bounded
    imp.set_rule("*", LinkRule(delay=1.0))
    imp.push(EG, b"b" * 400, A, now=0.0)
    imp.push(EG, b"c" * 400, A, now=0.0)
    assert imp.stats()["dropped_queue"] == 1
    assert imp.stats()["queued_bytes"] == 800
    assert len(imp.pop_due(now=1.0)) == 2
    assert imp.stats()["queued_bytes"] == 0
    with pytest.raises(ImpairmentError):
        Impairment(max_queued_bytes=1.5)  # type: ignore[arg-type]


# -- partitions, selectors and groups ----------------------------------------------------------


def test_blackhole_drops_both_directions_for_that_peer_only() -> None:
    imp = Impairment()
    imp.set_rule(addr_selector(A), LinkRule(blackhole=True))
    imp.push(EG, b"to-a", A, now=0.0)
    imp.push(IN, b"from-a", A, now=0.0)
    imp.push(EG, b"to-b", B, now=0.0)
    imp.push(IN, b"from-b", B, now=0.0)
    assert imp.pop_due(now=1.0) == [(EG, b"to-b", B), (IN, b"from-b", B)]
    assert imp.stats()["dropped_blackhole"] == 2


def test_selector_precedence_addr_over_group_over_star() -> None:
    imp = Impairment()
    star, group, own = LinkRule(delay=1.0), LinkRule(delay=2.0), LinkRule(delay=3.0)
    imp.set_rule("*", star)
    imp.set_rule("group:eu", group)
    imp.set_rule(addr_selector(A), own)
    imp.assign_group(A, "eu")
    imp.assign_group(B, "eu")
    assert (imp.rule_for(A), imp.rule_for(B), imp.rule_for(C)) == (own, group, star)
    imp.push(EG, b"a", A, now=0.0)
    imp.push(EG, b"b", B, now=0.0)
    imp.push(EG, b"c", C, now=0.0)
    assert [(due, data) for due, _, data, _ in imp.pop_due_timed(now=9.0)] == [
        (1.0, b"c"),
        (2.0, b"b"),
        (3.0, b"a"),
    ]
    imp.set_rule(addr_selector(A), None)
    assert imp.rule_for(A) == group
    imp.set_rule("group:eu", None)
    assert imp.rule_for(A) == star
    imp.set_rule("*", None)
    assert imp.rule_for(A) is None
    assert not imp.active


def test_group_assignment_and_unassignment() -> None:
    imp = Impairment()
    cut = LinkRule(blackhole=True)
    imp.set_rule("group:asia", cut)  # a rule may precede its members
    assert imp.rule_for(A) is None
    imp.assign_group(A, "asia")
    imp.assign_group(B, "us")
    assert imp.rule_for(A) == cut
    assert imp.group_of(A) == "asia"
    assert imp.groups() == {"asia": [A], "us": [B]}
    imp.assign_group(A, "us")  # moving replaces the old group
    assert imp.rule_for(A) is None
    imp.assign_group(B, "asia")
    imp.assign_group(B, None)
    imp.assign_group(C, None)  # unassigning a stranger is a no-op
    assert imp.rule_for(B) is None
    assert imp.groups() == {"us": [A]}
    for bad_addr in [("h",), ("h", -1), ("h", True), (1, 2), ("", 1), "h:1"]:
        with pytest.raises(ImpairmentError):
            imp.assign_group(bad_addr, "us")  # type: ignore[arg-type]
    for bad_group in ["", "a b", "_x", 5]:
        with pytest.raises(ImpairmentError):
            imp.assign_group(A, bad_group)  # type: ignore[arg-type]
    assert imp.groups() == {"us": [A]}


def test_clear_heals_and_queued_datagrams_keep_their_due_time() -> None:
    imp = Impairment()
    imp.assign_group(B, "eu")
    imp.set_rule("*", LinkRule(delay=5.0))
    imp.set_rule("group:eu", LinkRule(blackhole=True))
    imp.push(EG, b"slow", A, now=0.0)
    imp.clear()
    assert imp.rules() == {}
    assert imp.rule_for(A) is None
    assert imp.rule_for(B) is None
    assert imp.group_of(B) == "eu"  # membership survives healing
    assert imp.active  # still has a queued datagram to hand out
    imp.push(EG, b"fast", A, now=1.0)
    imp.push(EG, b"b", B, now=1.0)
    assert imp.pop_due(now=1.0) == [(EG, b"fast", A), (EG, b"b", B)]
    assert imp.get_timer() == 5.0
    assert imp.pop_due(now=5.0) == [(EG, b"slow", A)]
    assert not imp.active


def test_changing_a_rule_affects_only_new_datagrams() -> None:
    imp = Impairment()
    imp.set_rule("*", LinkRule(delay=2.0))
    imp.push(EG, b"old", A, now=0.0)
    imp.set_rule("*", LinkRule(delay=0.5))
    imp.push(EG, b"new", A, now=0.0)
    assert [(due, data) for due, _, data, _ in imp.pop_due_timed(now=9.0)] == [
        (0.5, b"new"),
        (2.0, b"old"),
    ]


def test_rules_snapshot_round_trips_through_dicts() -> None:
    imp = Impairment()
    imp.set_rule("*", LinkRule(loss=0.01))
    imp.set_rule("group:eu", LinkRule(delay=0.08, jitter=0.01, rate=1e6))
    imp.set_rule("addr:[fe80::1]:7000", LinkRule(blackhole=True))
    imp.set_rule("addr:10.0.0.1:4000", LinkRule(duplicate=0.5, reorder=0.1, reorder_gap=0.004))
    snapshot = imp.rules()
    assert set(snapshot) == {"*", "group:eu", "addr:[fe80::1]:7000", "addr:10.0.0.1:4000"}
    copy = Impairment()
    for selector, d in snapshot.items():
        copy.set_rule(selector, LinkRule.from_dict(d))
    assert copy.rules() == snapshot
    assert copy.rule_for(("fe80::1", 7000)) == LinkRule(blackhole=True)


# -- properties ------------------------------------------------------------------------------------

RULES = st.builds(
    LinkRule,
    delay=st.floats(0.0, 0.5),
    jitter=st.floats(0.0, 0.2),
    loss=st.floats(0.0, 1.0),
    duplicate=st.floats(0.0, 1.0),
    reorder=st.floats(0.0, 1.0),
    reorder_gap=st.floats(0.0, 0.1),
    rate=st.none() | st.floats(1.0, 1e5),
    burst=st.integers(1, 5000),
    queue_limit=st.integers(0, 20_000),
    blackhole=st.booleans(),
)
ADDRS = [A, B, C]
SELECTORS = ["*", "group:g1", "group:g2", addr_selector(A), addr_selector(B)]
OPS = st.one_of(
    st.tuples(
        st.just("push"),
        st.sampled_from([EG, IN]),
        st.integers(0, 3000),
        st.sampled_from(ADDRS),
        st.floats(0.0, 0.2),
    ),
    st.tuples(st.just("rule"), st.sampled_from(SELECTORS), st.none() | RULES),
    st.tuples(st.just("group"), st.sampled_from(ADDRS), st.sampled_from([None, "g1", "g2"])),
    st.tuples(st.just("pop"), st.floats(0.0, 1.0)),
    st.tuples(st.just("clear")),
)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), ops=st.lists(OPS, max_size=60))
def test_any_op_sequence_keeps_due_order_and_conserves_datagrams(
    seed: int, ops: list[tuple[object, ...]]
) -> None:
    imp = Impairment(seed=seed, max_queued_bytes=50_000)
    now, last_due, pushed, popped = 0.0, -math.inf, 0, 0

    def pop(at: float) -> int:
        nonlocal last_due
        out = imp.pop_due_timed(now=at)
        for due, _, _, _ in out:
            assert last_due <= due <= at
            last_due = due
        timer = imp.get_timer()
        assert timer is None or timer > at
        return len(out)

    for op in ops:
        match op:
            case ("push", direction, size, addr, dt):
                now += dt  # type: ignore[operator]
                imp.push(direction, b"\0" * size, addr, now=now)  # type: ignore[arg-type,operator]
                pushed += 1
            case ("rule", selector, rule):
                imp.set_rule(selector, rule)  # type: ignore[arg-type]
            case ("group", addr, group):
                imp.assign_group(addr, group)  # type: ignore[arg-type]
            case ("pop", dt):
                now += dt  # type: ignore[operator]
                popped += pop(now)
            case ("clear",):
                imp.clear()
    popped += pop(now + 10_000.0)
    stats = imp.stats()
    dropped = stats["dropped_loss"] + stats["dropped_blackhole"] + stats["dropped_queue"]
    assert popped == stats["passed"] == pushed + stats["duplicated"] - dropped
    assert stats["queued_bytes"] == 0
    assert imp.get_timer() is None
