"""The mint as a replicated log (node/farming/mintlog.py): codecs, the Paxos rules, and a
seeded simulation of the mint with racing proposers, lost messages, partitions, crashes and
membership changes."""

from __future__ import annotations

import contextlib
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.farming.ledger import BURN_ADDRESS, DebitProof, WalletReplica, sign_transfer
from node.farming.mintlog import (
    ALLOWANCE,
    BURN,
    JOIN,
    LEAVE,
    MINT_GROUP,
    REWARD,
    AllowanceRequest,
    Ballot,
    Candidates,
    Claim,
    MintOp,
    MintProof,
    MintReplica,
    MintVote,
    Promise,
    choose,
)
from node.farming.rewards import FarmingConfig, RewardError
from node.identity import Identity

CORE = Identity.from_seed(b"c" * 32).public_key
CONFIG = FarmingConfig(total_supply=100_000, base_reward=20)


def members(n: int = 4, seed: int = 0) -> list[Identity]:
    rng = random.Random(seed)
    return [Identity.from_seed(rng.randbytes(32)) for _ in range(n)]


def winning_claim(rng: random.Random, farmer: bytes, epoch: int = 5) -> Claim:
    while True:  # used == capacity: the farming rate is 1, every attempt wins
        claim = Claim(rng.randbytes(16), rng.randbytes(32), farmer, epoch, 100, 100)
        if claim.wins(CONFIG):
            return claim


def no_candidates(_: bytes) -> frozenset[bytes]:
    return frozenset()


def mint_group(ids: list[Identity], **kw: int) -> dict[bytes, MintReplica]:
    keys = tuple(i.public_key for i in ids)
    return {k: MintReplica(CORE, CONFIG, members=keys, **kw) for k in keys}


B1: Ballot = (1, b"\x01" * 32)


def commit(
    group: dict[bytes, MintReplica],
    op: MintOp,
    voters: list[Identity],
    ballot: Ballot = B1,
    candidates: Candidates = no_candidates,
) -> MintProof:
    votes = tuple(
        group[v.public_key].vote(op, ballot, v, now_epoch=5, candidates=candidates) for v in voters
    )
    proof = MintProof(op, ballot, votes)
    for replica in group.values():
        replica.apply(proof)
    return proof


def test_a_reward_splits_farmer_app_core_and_conserves_supply() -> None:
    ids = members()
    group = mint_group(ids)
    rng = random.Random(1)
    farmer, app = Identity.generate().public_key, Identity.generate().public_key
    claim = replace(winning_claim(rng, farmer), app=app)
    leader = group[ids[0].public_key]
    op = leader.propose(REWARD, claim.encode(), now_epoch=5, candidates=no_candidates)
    assert [c.recipient for c in op.credits] == [farmer, app, CORE]
    assert [c.amount for c in op.credits] == [17, 2, 1]
    proof = commit(group, op, ids[:3])
    assert MintProof.decode(proof.encode()) == proof
    for replica in group.values():
        assert replica.unminted == CONFIG.total_supply - 20 and replica.next_seq == 1
    # the same claim again, or an old epoch, is refused and changes nothing
    before = leader.encode()
    with pytest.raises(RewardError, match="already rewarded"):
        leader.propose(REWARD, claim.encode(), now_epoch=5, candidates=no_candidates)
    stale = winning_claim(rng, farmer, epoch=2)
    with pytest.raises(RewardError, match="not current"):
        leader.propose(REWARD, stale.encode(), now_epoch=5, candidates=no_candidates)
    loser = Claim(b"r", bytes(32), farmer, 5, 0, 100)  # rate 0: never wins
    with pytest.raises(RewardError, match="does not win"):
        leader.propose(REWARD, loser.encode(), now_epoch=5, candidates=no_candidates)
    assert leader.encode() == before


def test_votes_are_one_per_ballot_and_check_the_outcome() -> None:
    ids = members()
    group = mint_group(ids)
    owner = Identity.generate()
    allowance = AllowanceRequest.sign(owner).encode()
    op = group[ids[0].public_key].propose(
        ALLOWANCE, allowance, now_epoch=5, candidates=no_candidates
    )
    m = group[ids[1].public_key]
    vote = m.vote(op, B1, ids[1], now_epoch=5, candidates=no_candidates)
    assert m.vote(op, B1, ids[1], now_epoch=5, candidates=no_candidates) == vote  # idempotent
    rival = MintOp(0, ALLOWANCE, AllowanceRequest.sign(Identity.generate()).encode(), op.credits, 0)
    with pytest.raises(RewardError, match="different op in this ballot"):
        m.vote(rival, B1, ids[1], now_epoch=5, candidates=no_candidates)
    # a promise to a higher ballot refuses anything lower, and reports what was accepted
    b2: Ballot = (2, ids[2].public_key)
    promise = m.prepare(0, b2)
    assert promise.accepted == op and promise.vote == vote
    assert Promise.decode(promise.encode()) == promise
    with pytest.raises(RewardError, match="promised round 2"):
        m.vote(op, B1, ids[1], now_epoch=5, candidates=no_candidates)
    with pytest.raises(RewardError, match="promised round 2"):
        m.prepare(0, B1)
    greedy = replace(op, credits=(replace(op.credits[0], amount=5000),))
    with pytest.raises(RewardError, match="outcome differs"):
        group[ids[2].public_key].vote(greedy, B1, ids[2], now_epoch=5, candidates=no_candidates)
    ahead = replace(op, seq=3)
    with pytest.raises(RewardError, match="behind"):
        group[ids[2].public_key].vote(ahead, B1, ids[2], now_epoch=5, candidates=no_candidates)
    outsider = Identity.generate()
    with pytest.raises(RewardError, match="not a member"):
        MintReplica(CORE, CONFIG, members=(ids[0].public_key,)).vote(
            op, B1, outsider, now_epoch=5, candidates=no_candidates
        )
    # a proof needs a quorum of distinct members' valid signatures, all in one ballot
    fake = MintProof(op, B1, (vote, vote, MintVote.sign(op, B1, outsider)))
    with pytest.raises(RewardError):
        group[ids[3].public_key].apply(fake)
    forged = MintProof(
        op, B1, (vote, replace(vote, voter=ids[2].public_key), MintVote.sign(op, B1, ids[3]))
    )
    with pytest.raises(RewardError, match="signature"):
        group[ids[3].public_key].apply(forged)
    mixed = MintProof(op, B1, (vote, MintVote.sign(op, b2, ids[2]), MintVote.sign(op, B1, ids[3])))
    with pytest.raises(RewardError, match="another op or ballot"):
        group[ids[3].public_key].apply(mixed)
    assert group[ids[3].public_key].next_seq == 0


def test_a_new_ballot_must_finish_the_op_a_member_accepted() -> None:
    ids = members()
    group = mint_group(ids)
    first = group[ids[0].public_key].propose(
        ALLOWANCE, AllowanceRequest.sign(Identity.generate()).encode(), now_epoch=5,
        candidates=no_candidates,
    )  # fmt: skip
    # the first proposer got 2 of 4 votes (a split or a crash): nothing is committed
    for i in ids[:2]:
        group[i.public_key].vote(first, B1, i, now_epoch=5, candidates=no_candidates)
    own = group[ids[3].public_key].propose(
        ALLOWANCE, AllowanceRequest.sign(Identity.generate()).encode(), now_epoch=5,
        candidates=no_candidates,
    )  # fmt: skip
    b2: Ballot = (2, ids[3].public_key)
    promises = [group[i.public_key].prepare(0, b2) for i in ids[1:]]
    op, evidence = choose(promises, own)
    assert op == first and evidence is not None and evidence.voter == ids[1].public_key
    # much later (the claim's epoch long gone) the evidence lets members finish it
    proof = MintProof(
        first,
        b2,
        tuple(
            group[i.public_key].vote(
                first, b2, i, now_epoch=500, candidates=no_candidates, evidence=evidence
            )
            for i in ids[1:]
        ),
    )
    for replica in group.values():
        replica.apply(proof)
    assert {r.next_seq for r in group.values()} == {1}
    assert choose([Promise(1)], own) == (own, None)


def test_membership_changes_one_node_at_a_time_and_sets_the_quorum() -> None:
    ids = members(7)
    group = mint_group(ids[:1])
    near = lambda _: frozenset(i.public_key for i in ids[:6])  # noqa: E731
    assert group[ids[0].public_key].quorum(JOIN) == 1
    with pytest.raises(RewardError, match="needs 3"):  # too few members to move coins
        group[ids[0].public_key].propose(
            ALLOWANCE, AllowanceRequest.sign(ids[6]).encode(), now_epoch=5,
            candidates=no_candidates,
        )  # fmt: skip
    current = [ids[0]]
    for newcomer in ids[1:5]:
        leader = group[ids[0].public_key]
        op = leader.propose(
            JOIN,
            newcomer.public_key,
            now_epoch=5,
            candidates=near,
        )
        commit(group, op, current, candidates=near)
        group[newcomer.public_key] = MintReplica.sync([leader.encode()], CONFIG, agree=1)
        current.append(newcomer)
    assert len(current) == MINT_GROUP and all(len(r.members) == 5 for r in group.values())
    leader = group[ids[0].public_key]
    assert leader.quorum(ALLOWANCE) == 3 and leader.quorum(LEAVE) == 3
    with pytest.raises(RewardError, match="already has 5"):
        leader.propose(JOIN, ids[5].public_key, now_epoch=5, candidates=no_candidates)
    with pytest.raises(RewardError, match="already a member"):
        leader.propose(JOIN, ids[1].public_key, now_epoch=5, candidates=no_candidates)
    op = leader.propose(LEAVE, ids[4].public_key, now_epoch=5, candidates=no_candidates)
    commit(group, op, current[:3])
    assert ids[4].public_key not in leader.members
    with pytest.raises(RewardError, match="not near the mint"):
        leader.propose(JOIN, ids[6].public_key, now_epoch=5, candidates=near)
    assert leader.propose(JOIN, ids[5].public_key, now_epoch=5, candidates=near).seq == 5
    # a replica adopted from a peer never carries the peer's promise or vote
    leader.prepare(leader.next_seq, (9, ids[0].public_key))
    synced = MintReplica.sync([leader.encode()], CONFIG, agree=1)
    assert synced.promised == (0, b"") and synced.accepted is None
    assert MintReplica.decode(leader.encode(), CONFIG).promised == (9, ids[0].public_key)


def test_a_burn_returns_a_store_payment_once() -> None:
    ids = members()
    group = mint_group(ids, unminted=90_000)
    owner = Identity.generate()
    wallet_group = members(4, seed=9)
    replicas = [WalletReplica(owner.public_key, balance=50) for _ in wallet_group]
    transfer = sign_transfer(owner, BURN_ADDRESS, 12, 0, b"chunk")
    votes = tuple(r.vote_debit(transfer, m) for r, m in zip(replicas, wallet_group, strict=True))
    proof = DebitProof(transfer, votes[:3])
    near = frozenset(m.public_key for m in wallet_group)
    op = group[ids[0].public_key].propose(
        BURN, proof.encode(), now_epoch=5, candidates=lambda _: near
    )
    assert op.returned == 12 and op.credits == ()
    commit_votes = [group[i.public_key].vote(op, B1, i, now_epoch=5, candidates=lambda _: near)
                    for i in ids[:3]]  # fmt: skip
    for replica in group.values():
        replica.apply(MintProof(op, B1, tuple(commit_votes)))
        assert replica.unminted == 90_012
    with pytest.raises(RewardError, match="already returned"):
        group[ids[0].public_key].propose(
            BURN, proof.encode(), now_epoch=5, candidates=lambda _: near
        )
    with pytest.raises(RewardError, match="outside"):  # voters not near the sender's wallet
        MintReplica(CORE, CONFIG, unminted=1, members=tuple(group)).propose(
            BURN, proof.encode(), now_epoch=5, candidates=no_candidates
        )


def test_the_supply_is_never_exceeded() -> None:
    ids = members()
    group = mint_group(ids, unminted=70)
    for _ in range(3):  # 50, then the last 20, then nothing
        owner = Identity.generate()
        leader = group[ids[0].public_key]
        try:
            op = leader.propose(
                ALLOWANCE,
                AllowanceRequest.sign(owner).encode(),
                now_epoch=5,
                candidates=no_candidates,
            )
        except RewardError as exc:
            assert "no allowance left" in str(exc)
            break
        commit(group, op, ids[1:])
    assert all(r.unminted == 0 for r in group.values())


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_decoders_raise_only_reward_errors(data: bytes) -> None:
    for decode in (
        Claim.decode,
        MintOp.decode,
        MintProof.decode,
        MintVote.decode,
        Promise.decode,
        AllowanceRequest.decode,
        lambda d: MintReplica.decode(d, CONFIG),
    ):
        with contextlib.suppress(RewardError):
            decode(data)


class PaxosSim:
    """Members as MintReplicas; every message may be lost or cut off by a partition; every
    vote cast anywhere is recorded, so a second op reaching a quorum at one seq would be
    seen even if no proposer ever learned of it."""

    def __init__(self, rng: random.Random, pool: list[Identity]) -> None:
        self.rng = rng
        self.ids = {i.public_key: i for i in pool}
        genesis = tuple(i.public_key for i in pool[:MINT_GROUP])
        self.nodes = {k: MintReplica(CORE, CONFIG, members=genesis) for k in genesis}
        self.log: list[MintProof] = []  # the committed ops, by seq
        self.cast: dict[tuple[int, Ballot, bytes], set[bytes]] = {}
        self.quorums: dict[int, tuple[bytes, ...]] = {}
        self.kinds: dict[bytes, str] = {}
        self.loss = 0.0
        self.crash = 0.05  # a proposer stops after phase 1 or before committing
        self.skew = 3  # members' clocks: a claim may already be stale for some
        self.side: set[bytes] | None = None  # a partition: only this side talks
        self.stats = {"committed": 0, "recovered": 0, "failed": 0, "join": 0, "leave": 0}

    def near(self, _: bytes) -> frozenset[bytes]:
        return frozenset(self.ids)

    def reach(self, a: bytes, b: bytes) -> bool:
        if self.side is not None and (a in self.side) != (b in self.side):
            return False
        return a == b or self.rng.random() >= self.loss

    def catch_up(self, k: bytes) -> None:
        node = self.nodes[k]
        for proof in self.log[node.next_seq :]:
            node.apply(proof)

    def request(self) -> tuple[str, bytes]:
        rng = self.rng
        config = self.log_config()
        outside = [k for k in self.ids if k not in config]
        if rng.random() < 0.15 and outside and len(config) < MINT_GROUP:
            return JOIN, rng.choice(outside)
        if rng.random() < 0.15 and len(config) == MINT_GROUP:
            return LEAVE, rng.choice(config)
        if rng.random() < 0.5:
            return REWARD, winning_claim(rng, rng.choice(list(self.ids))).encode()
        return ALLOWANCE, AllowanceRequest.sign(Identity.from_seed(rng.randbytes(32))).encode()

    def log_config(self) -> tuple[bytes, ...]:
        ahead = max(self.nodes.values(), key=lambda n: n.next_seq)
        return ahead.members

    def round(self, proposer: bytes, kind: str, payload: bytes, rnd: int) -> MintProof | None:
        """One ballot by ``proposer``; stops short at any point a real node could."""
        me = self.nodes[proposer]
        if proposer not in me.members:
            return None
        try:
            own = me.propose(kind, payload, now_epoch=5, candidates=self.near)
        except RewardError:
            return None
        ballot: Ballot = (rnd, proposer)
        seq, members = me.next_seq, me.members
        promises = []
        for k in members:
            if not self.reach(proposer, k) or k not in self.nodes:
                continue
            node = self.nodes[k]
            if node.next_seq < seq and self.rng.random() < 0.8:
                self.catch_up(k)  # the proposer sends it the commits it missed
            if node.next_seq > seq:
                self.catch_up(proposer)  # "committed": the proposer learns and stops
                return None
            with contextlib.suppress(RewardError):
                promises.append(node.prepare(seq, ballot))
        if len(promises) < len(members) // 2 + 1 or self.rng.random() < self.crash:
            return None  # no majority, or the proposer crashed after phase 1
        op, evidence = choose(promises, own)
        assert op is not None
        votes = []
        for k in members:
            if not self.reach(proposer, k) or k not in self.nodes:
                continue
            with contextlib.suppress(RewardError):
                vote = self.nodes[k].vote(
                    op,
                    ballot,
                    self.ids[k],
                    now_epoch=5 + self.rng.randrange(self.skew),
                    candidates=self.near,
                    evidence=evidence,
                )
                self.cast.setdefault((seq, ballot, op.id), set()).add(k)
                self.quorums[seq] = members
                self.kinds[op.id] = op.kind
                if self.reach(k, proposer):  # the reply can be lost too
                    votes.append(vote)
        if len(votes) < me.quorum(op.kind) or self.rng.random() < self.crash:
            return None
        proof = MintProof(op, ballot, tuple(votes))
        if seq == len(self.log):
            self.log.append(proof)
        assert self.log[seq].op.id == op.id, "two different ops committed at one seq"
        for k in members:
            if k in self.nodes and self.nodes[k].next_seq == seq and self.reach(proposer, k):
                self.nodes[k].apply(proof)
        if op.id != own.id:
            self.stats["recovered"] += 1
        return proof

    def chosen_per_seq(self) -> dict[int, set[bytes]]:
        chosen: dict[int, set[bytes]] = {}
        for (seq, _ballot, op_id), voters in self.cast.items():
            need = quorum_needed(self.quorums[seq], self.kinds[op_id])
            if len(voters) >= need:
                chosen.setdefault(seq, set()).add(op_id)
        return chosen


def quorum_needed(members: tuple[bytes, ...], kind: str) -> int:
    return MintReplica(CORE, CONFIG, members=members).quorum(kind)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_simulated_mint_with_races_loss_partitions_and_membership_changes(seed: int) -> None:
    rng = random.Random(seed)
    pool = members(8, seed)
    sim = PaxosSim(rng, pool)
    rnd = 0
    for step in range(400):
        if step % 50 == 0:  # a new weather: partitions and loss come and go
            sim.loss = rng.choice((0.0, 0.1, 0.3))
            keys = list(sim.nodes)
            sim.side = (
                set(rng.sample(keys, rng.randrange(1, len(keys)))) if rng.random() < 0.5 else None
            )
        for k in pool:  # nodes that became members take a replica from the log
            if k.public_key not in sim.nodes and k.public_key in sim.log_config():
                sim.nodes[k.public_key] = MintReplica.sync(
                    [max(sim.nodes.values(), key=lambda n: n.next_seq).encode()], CONFIG, agree=1
                )
        kind, payload = sim.request()
        # usually one proposer, sometimes two racing with interleaved ballots
        proposers = rng.sample(list(sim.nodes), 2 if rng.random() < 0.2 else 1)
        for proposer in proposers:
            rnd += 1
            proof = sim.round(proposer, kind, payload, rnd)
            if proof is None:
                sim.stats["failed"] += 1
            else:
                sim.stats["committed"] += 1
                if proof.op.kind in (JOIN, LEAVE):
                    sim.stats[proof.op.kind] += 1
    # faults stop: one proposer finishes whatever any ballot left half-done, then moves on
    sim.loss, sim.side, sim.crash, sim.skew = 0.0, None, 0.0, 1
    for k in sim.nodes:
        sim.catch_up(k)
    before = len(sim.log)
    leader = next(k for k in sim.nodes if k in sim.log_config())
    for _ in range(3):
        rnd += 1
        kind, payload = REWARD, winning_claim(rng, leader).encode()
        assert (
            sim.round(leader, kind, payload, rnd) is not None
            or sim.round(leader, kind, payload, rnd + 1000) is not None
        ), "the mint stalled after the faults stopped"
        rnd += 1000
    assert len(sim.log) > before
    # safety: never two ops chosen at one seq, by anyone's votes
    assert all(len(ids) == 1 for ids in sim.chosen_per_seq().values())
    # the supply: every member that applied the log agrees, and nothing was minted twice
    minted = sum(p.op.minted for p in sim.log)
    for k, node in sim.nodes.items():
        sim.catch_up(k)
        assert node.unminted == CONFIG.total_supply - minted and node.next_seq == len(sim.log)
    assert sim.stats["committed"] > 50 and sim.stats["failed"] > 10, sim.stats
    assert sim.stats["join"] + sim.stats["leave"] > 2, sim.stats
    assert sim.stats["recovered"] > 5, sim.stats  # half-done ballots were finished by others
