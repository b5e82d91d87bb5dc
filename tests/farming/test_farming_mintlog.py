"""The mint as a replicated log (node/farming/mintlog.py): codecs, the vote rules, and a
seeded simulation of a mint group with racing proposers, lagging members and churn."""

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
    REWARD,
    AllowanceRequest,
    Claim,
    MintOp,
    MintProof,
    MintReplica,
    MintVote,
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


def commit(
    group: dict[bytes, MintReplica], ids: list[Identity], op: MintOp, voters: list[Identity]
) -> MintProof:
    votes = tuple(
        group[v.public_key].vote(op, v, now_epoch=5, candidates=no_candidates) for v in voters
    )
    proof = MintProof(op, votes)
    keys = [i.public_key for i in ids]
    for replica in group.values():
        replica.apply(proof, keys)
    return proof


def test_a_reward_splits_farmer_app_core_and_conserves_supply() -> None:
    ids = members()
    group = {i.public_key: MintReplica(CORE, CONFIG) for i in ids}
    rng = random.Random(1)
    farmer, app = Identity.generate().public_key, Identity.generate().public_key
    claim = replace(winning_claim(rng, farmer), app=app)
    leader = group[ids[0].public_key]
    op = leader.propose(REWARD, claim.encode(), now_epoch=5, candidates=no_candidates)
    assert [c.recipient for c in op.credits] == [farmer, app, CORE]
    assert [c.amount for c in op.credits] == [17, 2, 1]
    proof = commit(group, ids, op, ids[:3])
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


def test_votes_are_one_per_seq_and_check_the_outcome() -> None:
    ids = members()
    group = {i.public_key: MintReplica(CORE, CONFIG) for i in ids}
    owner = Identity.generate()
    allowance = AllowanceRequest.sign(owner).encode()
    op = group[ids[0].public_key].propose(
        ALLOWANCE, allowance, now_epoch=5, candidates=no_candidates
    )
    m = group[ids[1].public_key]
    vote = m.vote(op, ids[1], now_epoch=5, candidates=no_candidates)
    assert m.vote(op, ids[1], now_epoch=5, candidates=no_candidates) == vote  # idempotent
    rival = MintOp(0, ALLOWANCE, AllowanceRequest.sign(Identity.generate()).encode(), op.credits, 0)
    with pytest.raises(RewardError, match="already voted"):
        m.vote(rival, ids[1], now_epoch=5, candidates=no_candidates)
    greedy = replace(op, credits=(replace(op.credits[0], amount=5000),))
    with pytest.raises(RewardError, match="outcome differs"):
        group[ids[2].public_key].vote(greedy, ids[2], now_epoch=5, candidates=no_candidates)
    ahead = replace(op, seq=3)
    with pytest.raises(RewardError, match="behind"):
        group[ids[2].public_key].vote(ahead, ids[2], now_epoch=5, candidates=no_candidates)
    # a proof needs 3 distinct members' valid signatures
    outsider = Identity.generate()
    keys = [i.public_key for i in ids]
    fake = MintProof(op, (vote, vote, MintVote.sign(op, outsider)))
    with pytest.raises(RewardError):
        group[ids[3].public_key].apply(fake, keys)
    forged = MintProof(
        op, (vote, replace(vote, voter=ids[2].public_key), MintVote.sign(op, ids[3]))
    )
    with pytest.raises(RewardError, match="signature"):
        group[ids[3].public_key].apply(forged, keys)
    assert group[ids[3].public_key].next_seq == 0


def test_a_burn_returns_a_store_payment_once() -> None:
    ids = members()
    group = {i.public_key: MintReplica(CORE, CONFIG, unminted=90_000) for i in ids}
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
    commit_votes = [group[i.public_key].vote(op, i, now_epoch=5, candidates=lambda _: near)
                    for i in ids[:3]]  # fmt: skip
    for replica in group.values():
        replica.apply(MintProof(op, tuple(commit_votes)), [i.public_key for i in ids])
        assert replica.unminted == 90_012
    with pytest.raises(RewardError, match="already returned"):
        group[ids[0].public_key].propose(
            BURN, proof.encode(), now_epoch=5, candidates=lambda _: near
        )
    with pytest.raises(RewardError, match="outside"):  # voters not near the sender's wallet
        MintReplica(CORE, CONFIG, unminted=1).propose(
            BURN, proof.encode(), now_epoch=5, candidates=no_candidates
        )


def test_the_supply_is_never_exceeded() -> None:
    ids = members()
    group = {i.public_key: MintReplica(CORE, CONFIG, unminted=70) for i in ids}
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
        commit(group, ids, op, ids[1:])
    assert all(r.unminted == 0 for r in group.values())


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_decoders_raise_only_reward_errors(data: bytes) -> None:
    for decode in (
        Claim.decode,
        MintOp.decode,
        MintProof.decode,
        MintVote.decode,
        AllowanceRequest.decode,
        lambda d: MintReplica.decode(d, CONFIG),
    ):
        with contextlib.suppress(RewardError):
            decode(data)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulated_mint_group_with_races_lag_and_churn(seed: int) -> None:
    rng = random.Random(seed)
    pool = members(8, seed)
    current = pool[:4]
    group = {i.public_key: MintReplica(CORE, CONFIG) for i in current}
    committed: dict[int, bytes] = {}
    minted = returned = 0
    lagging: dict[bytes, list[MintProof]] = {}
    stats = {"committed": 0, "split": 0, "churn": 0}
    for _ in range(250):
        step = rng.random()
        keys = [i.public_key for i in current]
        if step < 0.1 and len(pool) > 4:  # churn: a member leaves, a newcomer syncs from 2
            leaving = rng.choice(current)
            newcomer = rng.choice([p for p in pool if p not in current])
            caught_up = [k for k in keys if k != leaving.public_key and k not in lagging]
            if len(caught_up) < 2:
                continue
            states = [group[k].encode() for k in rng.sample(caught_up, 2)]
            del group[leaving.public_key]
            lagging.pop(leaving.public_key, None)
            current = [c for c in current if c is not leaving] + [newcomer]
            group[newcomer.public_key] = MintReplica.sync(states, CONFIG)
            stats["churn"] += 1
            continue
        # the leader first brings lagging members up to date (the "behind" answer)
        for k in list(lagging):
            if rng.random() < 0.7:
                for late in lagging.pop(k):
                    group[k].apply(late, [*keys, *(i.public_key for i in pool)])
        # usually one proposer; sometimes two race for the same seq (leaders overlapping)
        leaders = [k for k in keys if k not in lagging]
        ops = []
        for _ in range(2 if rng.random() < 0.03 else 1):
            kind = rng.choice((REWARD, ALLOWANCE))
            payload = (
                winning_claim(rng, rng.choice(pool).public_key).encode()
                if kind == REWARD
                else AllowanceRequest.sign(Identity.from_seed(rng.randbytes(32))).encode()
            )
            with contextlib.suppress(RewardError):
                ops.append(
                    group[rng.choice(leaders)].propose(
                        kind, payload, now_epoch=5, candidates=no_candidates
                    )
                )
        votes: dict[bytes, list[MintVote]] = {op.id: [] for op in ops}
        order = list(current)
        rng.shuffle(order)
        for _round in range(2):  # a second round: the leader retries its pending op
            for member in order:
                if member.public_key in lagging:
                    continue
                for op in rng.sample(ops, len(ops)):
                    with contextlib.suppress(RewardError):
                        vote = group[member.public_key].vote(
                            op, member, now_epoch=5, candidates=no_candidates
                        )
                        if vote not in votes[op.id]:
                            votes[op.id].append(vote)
                        break
        winners = [op for op in ops if len(votes[op.id]) >= CONFIG.quorum]
        assert len(winners) <= 1  # never two ops at one seq
        if not winners:
            # a split vote: no op can reach a quorum at this seq; the group refuses
            # every other op there, so nothing is minted twice - the mint stalls
            assert all(len(v) < CONFIG.quorum for v in votes.values())
            if ops:
                # the seq is stalled for good: any later op there is refused by enough
                # members that it cannot reach a quorum (docs/FARMING.md, limits)
                late = ops[0]
                again = [
                    k for k in keys if k not in lagging and group[k].voted.get(late.seq) == late.id
                ]
                assert len(again) < CONFIG.quorum
                stats["split"] += 1
                break
            continue
        op = winners[0]
        assert committed.setdefault(op.seq, op.id) == op.id
        proof = MintProof(op, tuple(votes[op.id]))
        for member in current:
            k = member.public_key
            if k in lagging or rng.random() < 0.1:
                lagging.setdefault(k, []).append(proof)  # missed it: catch up later
            else:
                group[k].apply(proof, keys)
        minted += op.minted
        returned += op.returned
        stats["committed"] += 1
        for k in keys:
            r = group[k]
            if k not in lagging:
                assert r.unminted == CONFIG.total_supply - minted + returned
                assert r.next_seq == len(committed)
    assert stats["committed"] > 20 and (stats["churn"] > 2 or stats["split"]), stats
