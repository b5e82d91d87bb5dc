"""Replicator unit tests: one test per rule, then a Hypothesis property over random histories."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from node.storage.replication import (
    COUNTERS,
    MAX_QUERY_NAMES,
    Action,
    Drop,
    Push,
    Query,
    ReplicationConfig,
    ReplicationError,
    Replicator,
)


def n(i: int) -> bytes:
    """A distinct 32-byte name per small integer."""
    return i.to_bytes(2, "big") * 16


OWN = n(0)
A, B, C, D, E = n(1), n(2), n(3), n(4), n(5)
CHUNK, CHUNK2, CHUNK3 = n(100), n(101), n(102)


def group(*members: bytes) -> Callable[[bytes], Sequence[bytes]]:
    return lambda _name: list(members)


def stored(names: Sequence[bytes], config: ReplicationConfig | None = None) -> Replicator:
    rep = Replicator(OWN, config)
    for name in names:
        rep.on_stored(name, now=0.0)
    return rep


def queries(actions: list[Action]) -> dict[bytes, tuple[bytes, ...]]:
    out = {a.peer: a.names for a in actions if isinstance(a, Query)}
    assert len(out) == sum(isinstance(a, Query) for a in actions)  # one query per peer
    return out


def answer_all(rep: Replicator, actions: list[Action], missing: set[bytes], now: float) -> None:
    """Every queried peer answers: it lacks the names in ``missing`` and holds the rest."""
    for a in actions:
        if isinstance(a, Query):
            lacks = [x for x in a.names if x in missing]
            has = [x for x in a.names if x not in missing]
            rep.on_query_result(a.peer, has, lacks, now=now)


# -- config ---------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    c = ReplicationConfig()
    assert (c.factor, c.batch, c.max_pushes_in_flight) == (4, 64, 16)
    assert (c.confirm_ttl, c.audit_interval, c.request_timeout) == (60.0, 10.0, 30.0)
    assert c.push_grace == 0.0  # every holder pushes a missing copy at once, as specified


@pytest.mark.parametrize(
    "field, value",
    [
        ("factor", 0),
        ("batch", 0),
        ("max_pushes_in_flight", -1),
        ("batch", True),
        ("factor", 2.5),
        ("confirm_ttl", 0.0),
        ("audit_interval", -1.0),
        ("request_timeout", 0),
        ("push_grace", -1.0),
    ],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ReplicationError, match=field):
        ReplicationConfig(**{field: value})  # type: ignore[arg-type]


def test_malformed_names_raise_the_one_error() -> None:
    with pytest.raises(ReplicationError):
        Replicator(b"short")
    rep = Replicator(OWN)
    with pytest.raises(ReplicationError):
        rep.on_stored(b"x", now=0.0)
    with pytest.raises(ReplicationError):
        rep.on_deleted(b"x" * 31)
    with pytest.raises(ReplicationError):
        rep.on_peer_gone("not bytes")  # type: ignore[arg-type]


# -- queries ----------------------------------------------------------------------------


def test_queries_are_batched_one_per_peer_and_skip_ourselves() -> None:
    rep = stored([CHUNK, CHUNK2, CHUNK3])
    held = {CHUNK, CHUNK2, CHUNK3}
    actions = rep.plan(held, group(OWN, A, B, C), now=1.0)
    assert queries(actions) == {p: (CHUNK, CHUNK2, CHUNK3) for p in (A, B, C)}
    assert len(actions) == 3
    assert rep.stats()["queries_sent"] == 3
    assert rep.stats()["names_queried"] == 9


def test_no_second_query_while_one_is_in_flight() -> None:
    rep = stored([CHUNK])
    assert len(rep.plan({CHUNK}, group(OWN, A, B, C), now=1.0)) == 3
    rep.on_stored(CHUNK, now=2.0)  # dirty again, but every question is still out
    assert rep.plan({CHUNK}, group(OWN, A, B, C), now=2.0) == []
    assert rep.stats()["pending"] == 1


def test_query_unanswered_past_the_timeout_is_asked_again() -> None:
    config = ReplicationConfig(request_timeout=5.0, audit_interval=100.0)
    rep = stored([CHUNK], config)
    rep.plan({CHUNK}, group(OWN, A), now=0.0)
    rep.on_stored(CHUNK, now=4.0)
    assert rep.plan({CHUNK}, group(OWN, A), now=4.0) == []
    rep.on_stored(CHUNK, now=5.0)
    assert rep.plan({CHUNK}, group(OWN, A), now=5.0) == [Query(A, (CHUNK,))]


def test_a_query_never_carries_more_than_the_cap() -> None:
    names = [n(1000 + i) for i in range(MAX_QUERY_NAMES + 10)]
    rep = stored(names, ReplicationConfig(batch=1000))
    actions = rep.plan(set(names), group(OWN, A), now=1.0)
    assert [len(a.names) for a in actions if isinstance(a, Query)] == [MAX_QUERY_NAMES, 10]
    assert [x for a in actions if isinstance(a, Query) for x in a.names] == names


def test_work_per_plan_is_bounded_by_batch() -> None:
    names = [n(1000 + i) for i in range(5)]
    rep = stored(names, ReplicationConfig(batch=2))
    held = set(names)
    seen: list[tuple[bytes, ...]] = []
    for t in range(4):
        actions = rep.plan(held, group(OWN, A), now=float(t))
        seen += [a.names for a in actions if isinstance(a, Query)]
    assert seen == [tuple(names[0:2]), tuple(names[2:4]), tuple(names[4:5])]
    assert rep.stats()["evaluated"] == 5


def test_all_confirmed_chunk_becomes_clean() -> None:
    rep = stored([CHUNK])
    actions = rep.plan({CHUNK}, group(OWN, A, B, C), now=1.0)
    answer_all(rep, actions, missing=set(), now=1.5)
    assert rep.stats()["dirty"] == 1  # the answers made it dirty, to be settled
    assert rep.plan({CHUNK}, group(OWN, A, B, C), now=2.0) == []
    assert rep.stats()["dirty"] == 0
    assert rep.stats()["pending"] == 0
    assert rep.stats()["confirmed"] == 3


def test_a_chunk_alone_in_its_group_is_clean_at_once() -> None:
    rep = stored([CHUNK])
    assert rep.plan({CHUNK}, group(OWN), now=1.0) == []
    assert rep.stats()["pending"] == 0


# -- pushes -----------------------------------------------------------------------------


def test_missing_answer_leads_to_a_push() -> None:
    rep = stored([CHUNK])
    actions = rep.plan({CHUNK}, group(OWN, A, B, C), now=1.0)
    answer_all(rep, actions, missing={CHUNK}, now=1.5)
    pushes = rep.plan({CHUNK}, group(OWN, A, B, C), now=2.0)
    assert sorted(pushes) == sorted(Push(p, CHUNK) for p in (A, B, C))
    assert rep.plan({CHUNK}, group(OWN, A, B, C), now=2.5) == []  # all in flight
    for p in (A, B, C):
        rep.on_push_result(p, CHUNK, True, now=3.0)
    assert rep.plan({CHUNK}, group(OWN, A, B, C), now=3.5) == []
    s = rep.stats()
    assert (s["pushes_sent"], s["pushes_ok"], s["pending"], s["pushes_in_flight"]) == (3, 3, 0, 0)


def test_failed_push_is_retried_at_the_next_plan() -> None:
    rep = stored([CHUNK])
    rep.plan({CHUNK}, group(OWN, A), now=1.0)
    rep.on_query_result(A, [], [CHUNK], now=1.0)
    assert rep.plan({CHUNK}, group(OWN, A), now=2.0) == [Push(A, CHUNK)]
    rep.on_push_result(A, CHUNK, False, now=2.5)
    assert rep.plan({CHUNK}, group(OWN, A), now=3.0) == [Push(A, CHUNK)]
    assert rep.stats()["pushes_failed"] == 1


def test_pushes_in_flight_are_bounded() -> None:
    names = [n(1000 + i) for i in range(5)]
    rep = stored(names, ReplicationConfig(max_pushes_in_flight=2))
    held = set(names)
    rep.plan(held, group(OWN, A), now=1.0)
    rep.on_query_result(A, [], names, now=1.0)
    first = rep.plan(held, group(OWN, A), now=2.0)
    assert first == [Push(A, names[0]), Push(A, names[1])]
    assert rep.plan(held, group(OWN, A), now=2.1) == []  # still full, the rest stay dirty
    assert rep.stats()["dirty"] == 3
    rep.on_push_result(A, names[0], True, now=2.2)
    assert rep.plan(held, group(OWN, A), now=2.3) == [Push(A, names[2])]
    assert rep.stats()["pushes_in_flight"] == 2


def test_unreported_push_frees_its_slot_after_the_timeout() -> None:
    config = ReplicationConfig(max_pushes_in_flight=1, request_timeout=5.0, audit_interval=1.0)
    rep = stored([CHUNK, CHUNK2], config)
    held = {CHUNK, CHUNK2}
    rep.plan(held, group(OWN, A), now=0.0)
    rep.on_query_result(A, [], [CHUNK, CHUNK2], now=0.0)
    assert rep.plan(held, group(OWN, A), now=0.5) == [Push(A, CHUNK)]
    rep.handle_timer(now=6.0)  # audit: the unreported push has timed out
    actions = rep.plan(held, group(OWN, A), now=6.0)
    assert actions == [Query(A, (CHUNK,)), Push(A, CHUNK2)]  # re-ask, and the slot is free
    rep.on_push_result(A, CHUNK, True, now=6.5)  # the late report is ignored
    assert rep.stats()["pushes_in_flight"] == 1


def test_unsolicited_and_duplicate_answers_change_nothing() -> None:
    rep = stored([CHUNK])
    rep.on_query_result(A, [CHUNK], [], now=0.5)  # never asked
    rep.on_push_result(A, CHUNK, True, now=0.5)  # never pushed
    actions = rep.plan({CHUNK}, group(A, B, C, D), now=1.0)
    assert set(queries(actions)) == {A, B, C, D}
    answer_all(rep, actions, missing=set(), now=1.5)
    before = rep.stats()
    answer_all(rep, actions, missing={CHUNK}, now=1.6)  # a replayed, contradicting answer
    assert rep.stats() == before
    assert rep.stats()["pushes_in_flight"] == 0


# -- drops ------------------------------------------------------------------------------


def test_no_drop_before_every_member_confirms_then_drop() -> None:
    rep = stored([CHUNK])
    close = group(A, B, C, D)  # we are no longer among the closest
    rep.plan({CHUNK}, close, now=1.0)
    for p in (A, B, C):
        rep.on_query_result(p, [CHUNK], [], now=1.5)
    assert rep.plan({CHUNK}, close, now=2.0) == []
    rep.on_query_result(D, [], [CHUNK], now=2.5)
    assert rep.plan({CHUNK}, close, now=3.0) == [Push(D, CHUNK)]
    assert rep.plan({CHUNK}, close, now=3.1) == []
    rep.on_push_result(D, CHUNK, True, now=3.5)
    assert rep.plan({CHUNK}, close, now=4.0) == [Drop(CHUNK)]
    s = rep.stats()
    assert (s["drops"], s["pending"], s["confirmed"], s["dirty"]) == (1, 0, 0, 0)


def test_stale_confirmation_does_not_allow_a_drop() -> None:
    rep = stored([CHUNK], ReplicationConfig(confirm_ttl=10.0))
    close = group(A, B)
    actions = rep.plan({CHUNK}, close, now=0.0)
    rep.on_query_result(A, [CHUNK], [], now=0.0)  # A confirms early
    rep.on_query_result(B, [CHUNK], [], now=10.0)  # B confirms when A's is stale
    assert len(actions) == 2
    assert rep.plan({CHUNK}, close, now=10.0) == [Query(A, (CHUNK,))]


def test_never_drop_while_in_the_ideal_group() -> None:
    rep = stored([CHUNK])
    close = group(A, B, OWN, C)
    answer_all(rep, rep.plan({CHUNK}, close, now=1.0), missing=set(), now=1.0)
    assert rep.plan({CHUNK}, close, now=2.0) == []
    assert rep.stats()["drops"] == 0


def test_never_drop_the_last_copy_we_know_of() -> None:
    rep = stored([CHUNK])
    assert rep.plan({CHUNK}, group(), now=1.0) == []  # we know nobody at all
    assert rep.stats()["drops"] == 0


def test_membership_change_queries_the_newcomer_and_drops_after() -> None:
    rep = stored([CHUNK])
    answer_all(rep, rep.plan({CHUNK}, group(OWN, A, B, C), now=1.0), missing=set(), now=1.0)
    assert rep.plan({CHUNK}, group(OWN, A, B, C), now=1.5) == []
    rep.on_membership_change(now=2.0)  # E joined, closer than us
    actions = rep.plan({CHUNK}, group(A, E, B, C), now=2.0)
    assert actions == [Query(E, (CHUNK,))]
    rep.on_query_result(E, [], [CHUNK], now=2.1)
    assert rep.plan({CHUNK}, group(A, E, B, C), now=2.2) == [Push(E, CHUNK)]
    rep.on_push_result(E, CHUNK, True, now=2.3)
    assert rep.plan({CHUNK}, group(A, E, B, C), now=2.4) == [Drop(CHUNK)]


# -- push grace: the nearest holder pushes, the others ask again first -------------------


def nearer_than_us(chunk: bytes) -> bytes:
    """A name nearer ``chunk`` than OWN is (it differs from the chunk in the last bit only)."""
    return chunk[:-1] + bytes([chunk[-1] ^ 1])


def test_grace_leaves_the_push_to_a_nearer_confirmed_holder() -> None:
    near = nearer_than_us(CHUNK)
    rep = stored([CHUNK], ReplicationConfig(push_grace=2.0))
    close = group(near, OWN, A, B)
    rep.plan({CHUNK}, close, now=0.0)
    rep.on_query_result(near, [CHUNK], [], now=0.0)
    rep.on_query_result(A, [CHUNK], [], now=0.0)
    rep.on_query_result(B, [], [CHUNK], now=0.0)
    assert rep.plan({CHUNK}, close, now=0.5) == []  # near will push to B
    assert rep.plan({CHUNK}, close, now=1.9) == []
    assert rep.stats()["dirty"] == 1  # kept dirty through the grace period
    assert rep.plan({CHUNK}, close, now=2.5) == [Query(B, (CHUNK,))]
    rep.on_query_result(B, [CHUNK], [], now=2.6)  # it got near's copy: nothing to send
    assert rep.plan({CHUNK}, close, now=2.7) == []
    s = rep.stats()
    assert (s["pushes_sent"], s["pushes_yielded"], s["pending"]) == (0, 1, 0)


def test_grace_pushes_when_the_copy_is_still_missing_after_it() -> None:
    near = nearer_than_us(CHUNK)
    rep = stored([CHUNK], ReplicationConfig(push_grace=2.0))
    close = group(near, OWN, A)
    rep.plan({CHUNK}, close, now=0.0)
    rep.on_query_result(near, [CHUNK], [], now=0.0)
    rep.on_query_result(A, [], [CHUNK], now=0.0)
    assert rep.plan({CHUNK}, close, now=0.5) == []
    assert rep.plan({CHUNK}, close, now=2.4) == []  # yielded at 0.5: grace ends at 2.5
    assert rep.plan({CHUNK}, close, now=2.5) == [Query(A, (CHUNK,))]
    rep.on_query_result(A, [], [CHUNK], now=2.6)  # the nearer holder did not deliver
    assert rep.plan({CHUNK}, close, now=2.7) == [Push(A, CHUNK)]


def test_grace_does_not_hold_back_the_nearest_holder() -> None:
    rep = stored([CHUNK], ReplicationConfig(push_grace=2.0))
    close = group(OWN, A, B)  # A and B are farther from CHUNK than OWN
    rep.plan({CHUNK}, close, now=0.0)
    rep.on_query_result(A, [CHUNK], [], now=0.0)
    rep.on_query_result(B, [], [CHUNK], now=0.0)
    assert rep.plan({CHUNK}, close, now=0.5) == [Push(B, CHUNK)]


def test_grace_ignores_an_unconfirmed_nearer_member() -> None:
    near = nearer_than_us(CHUNK)
    rep = stored([CHUNK], ReplicationConfig(push_grace=2.0))
    close = group(near, OWN, A)
    rep.plan({CHUNK}, close, now=0.0)
    rep.on_query_result(near, [], [CHUNK], now=0.0)  # near lacks it too: nobody to wait for
    rep.on_query_result(A, [], [CHUNK], now=0.0)
    assert sorted(rep.plan({CHUNK}, close, now=0.5)) == sorted([Push(near, CHUNK), Push(A, CHUNK)])


# -- audit, departures, deletions -------------------------------------------------------


def test_timer_is_armed_by_the_first_now_and_early_calls_do_nothing() -> None:
    rep = Replicator(OWN, ReplicationConfig(audit_interval=10.0))
    assert rep.get_timer() is None
    rep.on_stored(CHUNK, now=5.0)
    assert rep.get_timer() == 15.0
    rep.handle_timer(now=14.9)
    assert rep.get_timer() == 15.0
    assert rep.stats()["audits"] == 0
    rep.handle_timer(now=15.0)
    assert rep.get_timer() == 25.0
    assert rep.stats()["audits"] == 1


def test_audit_redirties_everything_and_requeries_only_stale_confirmations() -> None:
    rep = stored([CHUNK, CHUNK2], ReplicationConfig(confirm_ttl=30.0, audit_interval=10.0))
    held = dict.fromkeys([CHUNK, CHUNK2]).keys()  # ordered, so the batch order is known
    answer_all(rep, rep.plan(held, group(OWN, A), now=0.0), missing=set(), now=0.0)
    assert rep.plan(held, group(OWN, A), now=1.0) == []
    evaluated = rep.stats()["evaluated"]
    rep.handle_timer(now=10.0)  # confirmations are fresh: evaluated again, nothing sent
    assert rep.plan(held, group(OWN, A), now=10.0) == []
    assert rep.stats()["evaluated"] == evaluated + 2
    rep.handle_timer(now=20.0)
    rep.handle_timer(now=30.0)  # now stale: re-asked in one batch
    assert rep.plan(held, group(OWN, A), now=30.0) == [Query(A, (CHUNK, CHUNK2))]


def test_audit_picks_up_chunks_the_planner_was_never_told_about() -> None:
    rep = Replicator(OWN)
    rep.handle_timer(now=0.0)
    assert rep.plan({CHUNK}, group(OWN, A), now=0.0) == []
    rep.handle_timer(now=10.0)
    assert rep.plan({CHUNK}, group(OWN, A), now=10.0) == [Query(A, (CHUNK,))]


def test_peer_gone_forgets_its_confirmations_and_in_flight_work() -> None:
    rep = stored([CHUNK, CHUNK2], ReplicationConfig(max_pushes_in_flight=1))
    held = {CHUNK, CHUNK2}
    close = group(A, B)
    rep.plan(held, close, now=0.0)
    rep.on_query_result(A, [CHUNK, CHUNK2], [], now=0.0)
    rep.on_query_result(B, [], [CHUNK, CHUNK2], now=0.0)
    assert rep.plan(held, close, now=1.0) == [Push(B, CHUNK)]
    rep.on_peer_gone(A)
    rep.on_peer_gone(B)
    s = rep.stats()
    assert (s["pushes_in_flight"], s["confirmed"], s["queries_in_flight"]) == (0, 0, 0)
    # A's confirmations are gone: even a stale view that still lists A drops nothing.
    actions = rep.plan(held, close, now=1.5)
    assert {p: set(names) for p, names in queries(actions).items()} == {A: held, B: held}
    assert not any(isinstance(a, Drop) for a in actions)


def test_deleted_chunk_is_forgotten_and_not_planned() -> None:
    rep = stored([CHUNK, CHUNK2], ReplicationConfig(max_pushes_in_flight=1))
    rep.plan({CHUNK, CHUNK2}, group(OWN, A), now=0.0)
    rep.on_query_result(A, [], [CHUNK, CHUNK2], now=0.0)
    assert rep.plan({CHUNK, CHUNK2}, group(OWN, A), now=0.5) == [Push(A, CHUNK)]
    rep.on_deleted(CHUNK)
    rep.on_deleted(CHUNK)  # idempotent
    assert rep.stats()["pushes_in_flight"] == 0
    assert rep.plan({CHUNK2}, group(OWN, A), now=1.0) == [Push(A, CHUNK2)]


def test_chunk_gone_from_the_store_unannounced_is_forgotten() -> None:
    rep = stored([CHUNK])
    rep.plan({CHUNK}, group(OWN, A), now=0.0)
    rep.on_stored(CHUNK, now=0.1)
    assert rep.plan(set(), group(OWN, A), now=0.2) == []
    assert rep.stats()["tracked"] == 0  # forgotten with its unanswered question
    rep.on_membership_change(now=0.3)
    assert rep.plan(set(), group(OWN, A), now=0.3) == []
    assert rep.stats()["queries_in_flight"] == 0


def test_repeated_events_are_idempotent() -> None:
    twice, once = stored([CHUNK, CHUNK]), stored([CHUNK])
    close = group(OWN, A, B)
    for rep in (twice, once):
        rep.on_membership_change(now=0.0)
        rep.on_membership_change(now=0.0)
    assert twice.plan({CHUNK}, close, now=1.0) == once.plan({CHUNK}, close, now=1.0)
    assert twice.stats() == once.stats()


def test_stats_has_every_counter_and_gauge() -> None:
    keys = set(Replicator(OWN).stats())
    gauges = {"dirty", "pending", "tracked", "pushes_in_flight", "queries_in_flight", "confirmed"}
    assert set(COUNTERS) | gauges == keys


# -- property: random histories (a Hypothesis state machine) ----------------------------

PEERS = [n(i) for i in range(1, 6)]
CHUNKS = [n(200 + i) for i in range(4)]
TTL = 20.0


class ReplicatorMachine(RuleBasedStateMachine):
    """Random events against one Replicator; a model of what peers told it checks each Drop."""

    def __init__(self) -> None:
        super().__init__()
        self.rep = Replicator(OWN)
        self.cap = 1
        self.ideal: list[bytes] = [OWN, *PEERS[:2]]
        self.held: set[bytes] = set()
        self.told: dict[tuple[bytes, bytes], float] = {}  # (peer, chunk) -> said "held" at
        self.queries: list[Query] = []
        self.pushes: list[Push] = []
        self.now = 0.0
        self.drops = 0

    @initialize(cap=st.integers(1, 3), grace=st.sampled_from([0.0, 2.0]))
    def configure(self, cap: int, grace: float) -> None:
        self.cap = cap
        config = ReplicationConfig(max_pushes_in_flight=cap, confirm_ttl=TTL, push_grace=grace)
        self.rep = Replicator(OWN, config)

    @rule(chunk=st.sampled_from(CHUNKS))
    def store(self, chunk: bytes) -> None:
        self.held.add(chunk)
        self.rep.on_stored(chunk, now=self.now)

    @rule(chunk=st.sampled_from(CHUNKS))
    def delete(self, chunk: bytes) -> None:
        self.held.discard(chunk)
        self.rep.on_deleted(chunk)

    @rule(members=st.permutations([OWN, *PEERS]).map(lambda p: p[:3]))
    def membership(self, members: list[bytes]) -> None:
        self.ideal = list(members)
        self.rep.on_membership_change(now=self.now)

    @rule(peer=st.sampled_from(PEERS))
    def peer_gone(self, peer: bytes) -> None:
        self.told = {k: v for k, v in self.told.items() if k[0] != peer}
        self.queries = [q for q in self.queries if q.peer != peer]
        self.pushes = [p for p in self.pushes if p.peer != peer]
        self.rep.on_peer_gone(peer)
        self.rep.on_membership_change(now=self.now)  # as the service does when a peer leaves

    @rule(dt=st.floats(0.0, 12.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.rep.handle_timer(now=self.now)

    @rule()
    def plan(self) -> None:
        for action in self.rep.plan(self.held, group(*self.ideal), now=self.now):
            if isinstance(action, Drop):
                self.check_drop(action.name)
            elif isinstance(action, Query):
                assert 0 < len(action.names) <= MAX_QUERY_NAMES and action.peer != OWN
                self.queries.append(action)
            else:
                assert action.name in self.held and action.peer != OWN
                self.pushes.append(action)

    def check_drop(self, name: bytes) -> None:
        """The rule: not ours to keep, and every other member said it holds it, freshly."""
        assert OWN not in self.ideal and name in self.held
        assert all(self.now - self.told.get((m, name), -1e9) < TTL for m in self.ideal)
        self.drops += 1
        self.held.discard(name)
        self.rep.on_deleted(name)

    @rule(has=st.booleans(), every=st.booleans())
    def answer(self, has: bool, every: bool) -> None:
        """The oldest query (or every open one) is answered: all held, or all missing."""
        answered, self.queries = (
            (self.queries, []) if every else (self.queries[:1], self.queries[1:])
        )
        for q in answered:
            if has:
                self.told.update({(q.peer, x): self.now for x in q.names})
            held, missing = (q.names, ()) if has else ((), q.names)
            self.rep.on_query_result(q.peer, held, missing, now=self.now)

    @precondition(lambda self: bool(self.pushes))
    @rule(ok=st.booleans())
    def push_result(self, ok: bool) -> None:
        push = self.pushes.pop(0)
        if ok:
            self.told[(push.peer, push.name)] = self.now
        self.rep.on_push_result(push.peer, push.name, ok, now=self.now)

    @invariant()
    def bounded(self) -> None:
        s = self.rep.stats()
        assert 0 <= s["pushes_in_flight"] <= self.cap
        assert s["tracked"] <= len(self.held)  # memory: state only about chunks we hold


ReplicatorMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None
)
test_random_histories_keep_the_invariants = ReplicatorMachine.TestCase
