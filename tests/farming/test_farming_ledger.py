"""Ledger rules: signed transfers, one vote per (wallet, seq), quorum proofs, credits, sync."""

from __future__ import annotations

import contextlib
import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.farming.ledger import (
    BLOCKED,
    BURN_ADDRESS,
    MAX_MEMO,
    DebitProof,
    DebitVote,
    LedgerError,
    MintCredit,
    Transfer,
    WalletReplica,
    sign_transfer,
)
from node.identity import Identity

OWNER = Identity.from_seed(bytes([1]) * 32)
OTHER = Identity.from_seed(bytes([2]) * 32)
NODES = [Identity.from_seed(bytes([10 + i]) * 32) for i in range(6)]
GROUP = [n.public_key for n in NODES[:4]]


def funded(amount: int = 100) -> list[WalletReplica]:
    replicas = [WalletReplica(OWNER.public_key) for _ in GROUP]
    for r in replicas:
        assert r.apply_mint(MintCredit(b"m" * 32, OWNER.public_key, amount))
    return replicas


def proof_for(transfer: Transfer, replicas: list[WalletReplica], voters: int = 3) -> DebitProof:
    pairs = list(zip(replicas, NODES, strict=False))[:voters]
    return DebitProof(transfer, tuple(r.vote_debit(transfer, n) for r, n in pairs))


def test_transfer_round_trip_and_signature() -> None:
    t = sign_transfer(OWNER, OTHER.public_key, 7, 0, b"rent")
    t.verify()
    assert Transfer.decode(t.encode()) == t
    assert len(t.id) == 32 and t.id != sign_transfer(OWNER, OTHER.public_key, 7, 1).id


def test_forged_transfer_signature_is_rejected() -> None:
    forged = dataclasses.replace(
        sign_transfer(OTHER, NODES[5].public_key, 7, 0), sender=OWNER.public_key
    )
    with pytest.raises(LedgerError, match="signature"):
        forged.verify()
    replica = funded(100)[0]
    with pytest.raises(LedgerError, match="signature"):
        replica.vote_debit(forged, NODES[0])
    assert replica.voted == {}
    tampered = dataclasses.replace(sign_transfer(OWNER, OTHER.public_key, 7, 0), amount=8)
    with pytest.raises(LedgerError, match="signature"):
        tampered.verify()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", 0),
        ("amount", -1),
        ("amount", True),
        ("seq", -1),
        ("memo", b"x" * (MAX_MEMO + 1)),
        ("recipient", b"short"),
        ("recipient", OWNER.public_key),
        ("signature", b"s"),
    ],
)
def test_transfer_fields_are_validated(field: str, value: object) -> None:
    good = sign_transfer(OWNER, OTHER.public_key, 7, 0)
    with pytest.raises(LedgerError, match=field if field != "recipient" else "recipient|sender"):
        dataclasses.replace(good, **{field: value})  # type: ignore[arg-type]


def test_vote_rules_and_idempotence() -> None:
    r = funded(100)[0]
    t0 = sign_transfer(OWNER, OTHER.public_key, 60, 0)
    vote = r.vote_debit(t0, NODES[0])
    assert r.vote_debit(t0, NODES[0]) == vote  # same transfer: same vote again
    vote.verify()
    racer = sign_transfer(OWNER, NODES[5].public_key, 60, 0)
    with pytest.raises(LedgerError, match="already voted"):
        r.vote_debit(racer, NODES[0])
    with pytest.raises(LedgerError, match="out of order"):
        r.vote_debit(sign_transfer(OWNER, OTHER.public_key, 1, 1), NODES[0])
    with pytest.raises(LedgerError, match="insufficient"):
        funded(100)[0].vote_debit(sign_transfer(OWNER, OTHER.public_key, 101, 0), NODES[0])
    with pytest.raises(LedgerError, match="another wallet"):
        r.vote_debit(sign_transfer(OTHER, OWNER.public_key, 1, 0), NODES[0])


def test_debit_and_credit_commit_once() -> None:
    senders = funded(100)
    receiver = WalletReplica(OTHER.public_key)
    t = sign_transfer(OWNER, OTHER.public_key, 60, 0)
    proof = DebitProof.decode(proof_for(t, senders).encode())
    for r in senders:
        r.apply_debit(proof, GROUP)
        assert (r.balance, r.next_seq, r.voted) == (40, 1, {})
    assert receiver.apply_credit(proof, GROUP) and receiver.balance == 60
    before = receiver.encode()
    assert not receiver.apply_credit(proof, GROUP)  # duplicate delivery: no-op
    assert receiver.encode() == before
    for r in senders:
        state = r.encode()
        with pytest.raises(LedgerError, match="replay"):
            r.apply_debit(proof, GROUP)
        with pytest.raises(LedgerError, match="replay"):
            r.vote_debit(t, NODES[0])
        assert r.encode() == state
    assert receiver.history[-1] == ("credit", t.id, OWNER.public_key, 60)


def test_two_transfers_at_one_seq_never_both_reach_quorum() -> None:
    replicas = funded(100)
    a = sign_transfer(OWNER, OTHER.public_key, 90, 0)
    b = sign_transfer(OWNER, NODES[5].public_key, 90, 0)
    votes_a = [replicas[i].vote_debit(a, NODES[i]) for i in (0, 1)]
    votes_b = [replicas[i].vote_debit(b, NODES[i]) for i in (2, 3)]
    for i in range(4):
        with pytest.raises(LedgerError, match="already voted"):
            replicas[i].vote_debit(b if i < 2 else a, NODES[i])
    with pytest.raises(LedgerError, match="quorum"):
        DebitProof(a, tuple(votes_a)).verify(GROUP)
    with pytest.raises(LedgerError, match="quorum"):
        DebitProof(b, tuple(votes_b)).verify(GROUP)


def test_proof_rejects_outsiders_duplicates_and_foreign_votes() -> None:
    replicas = funded(100)
    t = sign_transfer(OWNER, OTHER.public_key, 5, 0)
    votes = proof_for(t, replicas, 4).votes
    outsider = WalletReplica(OWNER.public_key, balance=100).vote_debit(t, NODES[5])
    cases = {
        "outside": (*votes[:2], outsider),
        "twice": (votes[0], votes[0], votes[1]),
        "another transfer": (*votes[:2], DebitVote(b"x" * 32, GROUP[2], votes[2].signature)),
        "does not verify": (*votes[:2], dataclasses.replace(votes[2], voter=GROUP[3])),
    }
    for message, bad in cases.items():
        with pytest.raises(LedgerError, match=message):
            DebitProof(t, bad).verify(GROUP)
    with pytest.raises(LedgerError, match="unsafe"):
        DebitProof(t, votes).verify(GROUP, quorum=2)
    DebitProof(t, votes).verify(GROUP)


def test_credit_to_wrong_wallet_and_mint_checks() -> None:
    replicas = funded(100)
    proof = proof_for(sign_transfer(OWNER, OTHER.public_key, 5, 0), replicas)
    with pytest.raises(LedgerError, match="another wallet"):
        WalletReplica(NODES[5].public_key).apply_credit(proof, GROUP)
    with pytest.raises(LedgerError, match="another wallet"):
        replicas[0].apply_mint(MintCredit(b"n" * 32, OTHER.public_key, 1))
    assert not replicas[0].apply_mint(MintCredit(b"m" * 32, OWNER.public_key, 100))
    with pytest.raises(LedgerError, match="burn"):
        WalletReplica(BURN_ADDRESS)


def test_history_is_bounded() -> None:
    r = WalletReplica(OWNER.public_key, history_limit=3)
    for i in range(10):
        r.apply_mint(MintCredit(bytes([i]) * 32, OWNER.public_key, 1))
    assert [h[1][0] for h in r.history] == [7, 8, 9] and r.balance == 10
    assert WalletReplica.decode(r.encode()) == r


def test_sync_inherits_a_single_pending_vote() -> None:
    replicas = funded(100)
    a = sign_transfer(OWNER, OTHER.public_key, 90, 0)
    votes = [replicas[i].vote_debit(a, NODES[i]) for i in (0, 1)]
    fresh = WalletReplica.sync([r.encode() for r in replicas[:3]])
    newcomer = NODES[4]
    with pytest.raises(LedgerError, match="already voted"):
        fresh.vote_debit(sign_transfer(OWNER, NODES[5].public_key, 90, 0), newcomer)
    group = [*GROUP[:3], newcomer.public_key]
    DebitProof(a, (*votes, fresh.vote_debit(a, newcomer))).verify(group)


def test_sync_blocks_voting_when_peers_disagree() -> None:
    replicas = funded(100)
    a = sign_transfer(OWNER, OTHER.public_key, 90, 0)
    b = sign_transfer(OWNER, NODES[5].public_key, 90, 0)
    replicas[0].vote_debit(a, NODES[0])
    replicas[1].vote_debit(b, NODES[1])
    fresh = WalletReplica.sync([r.encode() for r in replicas[:3]])
    assert fresh.voted == {0: BLOCKED}
    for t in (a, b):
        with pytest.raises(LedgerError, match="already voted"):
            fresh.vote_debit(t, NODES[4])


def test_double_churn_cannot_revive_a_race() -> None:
    """A proof for A exists; two voters churn out; B still cannot reach a quorum."""
    replicas = funded(100)
    a = sign_transfer(OWNER, OTHER.public_key, 90, 0)
    b = sign_transfer(OWNER, NODES[5].public_key, 90, 0)
    proof_for(a, replicas).verify(GROUP)  # held back by the attacker, never applied
    members = dict(zip(GROUP, replicas, strict=True))
    keys = {n.public_key: n for n in NODES}
    for leaving, joining in ((GROUP[1], NODES[4]), (GROUP[2], Identity.generate())):
        del members[leaving]
        members[joining.public_key] = WalletReplica.sync([r.encode() for r in members.values()])
        keys[joining.public_key] = joining
    votes = []
    for key, replica in members.items():
        with contextlib.suppress(LedgerError):
            votes.append(replica.vote_debit(b, keys[key]))
    assert len(votes) == 1  # only the member that never voted (GROUP[3])


def test_sync_needs_two_peers_at_one_seq_and_merges_their_credits() -> None:
    replicas = funded(100)
    proof = proof_for(sign_transfer(OWNER, OTHER.public_key, 30, 0), replicas)
    replicas[0].apply_debit(proof, GROUP)
    with pytest.raises(LedgerError, match="agree"):
        WalletReplica.sync([replicas[0].encode(), replicas[1].encode()])
    with pytest.raises(LedgerError, match="different wallets"):
        WalletReplica.sync([replicas[0].encode(), WalletReplica(OTHER.public_key).encode()])
    # at one seq, replicas that each missed a different credit converge on the union
    replicas[1].apply_mint(MintCredit(b"y" * 32, OWNER.public_key, 1))
    replicas[2].apply_mint(MintCredit(b"z" * 32, OWNER.public_key, 2))
    fresh = WalletReplica.sync([r.encode() for r in replicas[1:3]])
    assert (fresh.next_seq, fresh.balance, len(fresh.credited)) == (0, 103, 3)


def test_sync_takes_the_newest_state_two_peers_agree_on() -> None:
    """Three peers that missed a commit (or came back with old disks) do not outvote two
    that hold it: committed state only grows.  One peer alone does not move the seq, but a
    credit one peer has is taken."""
    replicas = [*funded(100), *funded(100)[:2]]
    a = sign_transfer(OWNER, OTHER.public_key, 30, 0)
    proof = proof_for(a, replicas[:4])
    for r in replicas[3:]:
        r.apply_debit(proof, GROUP)
    fresh = WalletReplica.sync([r.encode() for r in replicas])
    assert (fresh.next_seq, fresh.balance) == (1, 70)
    replicas[4].apply_mint(MintCredit(b"y" * 32, OWNER.public_key, 5))
    fresh = WalletReplica.sync([r.encode() for r in replicas])
    assert (fresh.next_seq, fresh.balance) == (1, 75)
    replicas[5].next_seq, replicas[5].balance = 2, 69  # one peer's word for seq 2
    fresh = WalletReplica.sync([r.encode() for r in replicas])
    assert (fresh.next_seq, fresh.balance) == (1, 75)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_ledger_error(data: bytes) -> None:
    for decode in (Transfer.decode, DebitProof.decode, WalletReplica.decode):
        with contextlib.suppress(LedgerError):
            decode(data)


def test_decoders_reject_truncation_and_trailing_bytes() -> None:
    replicas = funded(100)
    proof = proof_for(sign_transfer(OWNER, OTHER.public_key, 5, 0, b"memo"), replicas)
    for blob, decode in (
        (proof.transfer.encode(), Transfer.decode),
        (proof.encode(), DebitProof.decode),
        (replicas[0].encode(), WalletReplica.decode),
    ):
        assert decode(blob).encode() == blob
        for cut in range(len(blob)):
            with pytest.raises(LedgerError):
                decode(blob[:cut])
        with pytest.raises(LedgerError):
            decode(blob + b"\x00")


def test_a_replica_adopting_a_newer_state_keeps_the_credits_it_acknowledged() -> None:
    senders = funded(100)
    # the recipient's replica that took a credit, and a newer state (one debit ahead)
    # reported by peers that never saw that credit
    mine = WalletReplica(OTHER.public_key, balance=0)
    proof = proof_for(sign_transfer(OWNER, OTHER.public_key, 7, 0), senders)
    assert mine.apply_credit(proof, GROUP)
    assert mine.apply_mint(MintCredit(b"m" * 32, OTHER.public_key, 3))
    newer = WalletReplica(OTHER.public_key, balance=20, next_seq=1)
    assert newer.merge_credits([mine]) == (2, 0)
    assert newer.balance == 30 and newer.credited == mine.credited
    assert newer.merge_credits([mine]) == (0, 0)  # idempotent
    # a credit written before amounts were kept, and too old for the history, cannot be
    # carried, and is reported; one still in the history is read back with its amount
    old = WalletReplica(OTHER.public_key, balance=5, credited={b"o" * 32: 0})
    assert WalletReplica(OTHER.public_key).merge_credits([old]) == (0, 1)
    legacy = msgpack.unpackb(mine.encode())
    legacy[8] = [ident for ident, _ in legacy[8]]
    assert WalletReplica.decode(msgpack.packb(legacy)).credited == mine.credited
