"""The mint as a replicated log: the unminted supply, held by an agreed group (sans-IO).

The supply that is not yet minted lives with the mint's members: up to :data:`MINT_GROUP`
nodes near :data:`MINT_NAME`.  Every change to it is a :class:`MintOp` with a sequence
number: a farming ``reward`` (a won GET lottery), a new wallet's free ``allowance``, a
``burn`` (a store payment returned to the supply), or a membership change (``join`` /
``leave``, one node at a time).  An op carries its outcome (the credits it mints and the
coins it returns), so a wallet group can credit on it without knowing the mint's state.

Each seq is one single-decree Paxos instance among the members of the committed prefix:

1. a proposer (any member; normally the one nearest :data:`MINT_NAME`) picks a ballot
   ``(round, its key)`` and asks the members to :meth:`MintReplica.prepare`: each promises
   to accept nothing below it and reports the op it accepted at that seq, if any;
2. with a majority of promises the proposer must re-propose the op accepted in the
   highest ballot (:func:`choose`), or else its own (:meth:`MintReplica.propose`);
3. each member recomputes the op's outcome from its own state and signs a
   :class:`MintVote` for (op, ballot) unless it promised a higher ballot
   (:meth:`MintReplica.vote`);
4. :func:`quorum_for` votes of one ballot make a :class:`MintProof`; members apply it in seq
   order (:meth:`MintReplica.apply`) and wallet groups credit on it.

Why this and not a fixed leader: with members taken from each node's own view of the
network, the two sides of a partition could each commit a different op at one seq, and
two would-be leaders could split one seq's votes and stall it for good.  Here the voters
are the committed membership (so only a side holding a majority can commit), and a split
or abandoned seq is finished by the next ballot.

Invariants: ``unminted + sum(minted credits) - sum(burns) == total_supply`` for the
sequence of applied ops; an op is only valid if it mints no more than ``unminted``, so
nothing is ever created beyond the supply; two ops can never both be committed at one seq
(any two majorities of the members share one, and a membership change adds or removes one
node).  Every rejected input raises :class:`RewardError` and changes nothing.  Trust in a
claim's ``used``/``capacity`` (the farming rate) is the farmer's word: DECISION,
documented in docs/FARMING.md; the lottery itself and the one reward per (chunk, farmer,
epoch) rule are checked by every member.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import blake3
import msgpack

from node.identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Identity, IdentityError, verify

from .ledger import (
    BURN_ADDRESS,
    ID_SIZE,
    MAX_ENCODED_PROOF,
    MAX_VOTES,
    DebitProof,
    LedgerError,
    MintCredit,
    count_votes,
)
from .rewards import (
    MAX_REQUEST_ID,
    FarmingConfig,
    RewardError,
    attempt,
    attempt_ticket,
    farming_rate,
    reward_amount,
    split_reward,
)

MINT_NAME = blake3.blake3(b"troon/mint/v1").digest()
"""The XOR address whose close group holds the mint."""
REWARD, ALLOWANCE, BURN = "reward", "allowance", "burn"
JOIN, LEAVE = "join", "leave"
MONEY_KINDS = (REWARD, ALLOWANCE, BURN)
CONFIG_KINDS = (JOIN, LEAVE)
KINDS = (*MONEY_KINDS, *CONFIG_KINDS)
MINT_GROUP = 5
"""Members the mint aims for (the nodes nearest :data:`MINT_NAME`): with a majority of 3,
it keeps going with any 2 of them down."""
Ballot = tuple[int, bytes]
"""``(round, proposer's public key)``: ballots are ordered and no two proposers share one."""
NO_BALLOT: Ballot = (0, b"")
MAX_CREDITS_PER_OP = 3
MAX_ENCODED_OP = MAX_ENCODED_PROOF + 1024
MAX_ENCODED_MINT_PROOF = MAX_ENCODED_OP + MAX_VOTES * 160
MAX_REMEMBERED = 1 << 20  # granted wallets / burned ids a replica can hold
MAX_ENCODED_MINT = 1024 + 2 * MAX_REMEMBERED * 40
_OP_TAG = "troon/mint-op/v1"
_VOTE_TAG = b"troon/mint-vote/v1"
_ALLOWANCE_TAG = b"troon/allowance-request/v1"
_FORMAT = 1
_ROLES = (b"farmer", b"app", b"core")

Candidates = Callable[[bytes], Collection[bytes]]
"""Public keys a verifier believes are near a wallet (to check a burn's debit proof)."""


def _int(name: str, value: Any, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise RewardError(f"{name} must be an integer in {low}..{high}")


def _bytes(name: str, value: Any, sizes: tuple[int, ...]) -> None:
    if not isinstance(value, bytes) or len(value) not in sizes:
        raise RewardError(f"{name} must be {' or '.join(map(str, sizes))} bytes")


def _unpack(data: Any, cap: int, what: str) -> Any:
    if not isinstance(data, bytes) or len(data) > cap:
        raise RewardError(f"{what} must be bytes of at most {cap}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, max_map_len=0)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise RewardError(f"{what} is not valid msgpack: {type(exc).__name__}") from exc


def _items(value: Any, size: int | None, what: str) -> list[Any]:
    if not isinstance(value, list) or (size is not None and len(value) != size):
        raise RewardError(f"{what}: expected an array" + (f" of {size}" if size else ""))
    return value


def _check_ballot(ballot: Any) -> None:
    if not isinstance(ballot, tuple) or len(ballot) != 2:
        raise RewardError("a ballot is (round, proposer)")
    _int("ballot round", ballot[0], 0, 2**63 - 1)
    _bytes(
        "ballot proposer", ballot[1], (0, PUBLIC_KEY_SIZE) if ballot[0] == 0 else (PUBLIC_KEY_SIZE,)
    )


def ballot_bytes(ballot: Ballot) -> bytes:
    return ballot[0].to_bytes(8, "big") + ballot[1]


def _pack(value: Any) -> bytes:
    out: bytes = msgpack.packb(value, use_bin_type=True)
    return out


@dataclass(frozen=True)
class Claim:
    """A farmer's claim that serving one GET won the lottery.

    ``used``/``capacity`` are the farmer's store figures that set its farming rate; ``app``
    is the app wallet the request named (``b""`` for none)."""

    request_id: bytes
    chunk_name: bytes
    farmer: bytes
    epoch: int
    used: int
    capacity: int
    app: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.request_id, bytes) or not 1 <= len(self.request_id) <= 64:
            raise RewardError(f"request_id must be 1..{MAX_REQUEST_ID} bytes")
        _bytes("chunk_name", self.chunk_name, (ID_SIZE,))
        _bytes("farmer", self.farmer, (PUBLIC_KEY_SIZE,))
        _int("epoch", self.epoch, 0, 2**63 - 1)
        _int("capacity", self.capacity, 1, 2**63 - 1)
        _int("used", self.used, 0, self.capacity)
        _bytes("app", self.app, (0, PUBLIC_KEY_SIZE))
        if self.app == BURN_ADDRESS:
            raise RewardError("app must not be the burn address")

    def encode(self) -> bytes:
        return _pack([_FORMAT, *self._fields()])

    def _fields(self) -> list[Any]:
        return [
            self.request_id,
            self.chunk_name,
            self.farmer,
            self.epoch,
            self.used,
            self.capacity,
            self.app,
        ]

    @classmethod
    def decode(cls, data: bytes) -> Claim:
        items = _items(_unpack(data, 512, "claim"), 8, "claim")
        if items[0] != _FORMAT:
            raise RewardError(f"claim: unsupported format {items[0]!r}")
        return cls(*items[1:])

    def wins(self, config: FarmingConfig) -> bool:
        rate = farming_rate(self.used, self.capacity, config)
        return attempt(self.request_id, self.chunk_name, self.farmer, self.epoch, rate)

    @property
    def ticket(self) -> bytes:
        return attempt_ticket(self.request_id, self.chunk_name, self.farmer, self.epoch)


@dataclass(frozen=True)
class AllowanceRequest:
    """A new wallet's owner asking for the free allowance (the signature proves the key)."""

    wallet: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _bytes("wallet", self.wallet, (PUBLIC_KEY_SIZE,))
        if self.wallet == BURN_ADDRESS:
            raise RewardError("the burn address has no wallet")
        _bytes("signature", self.signature, (SIGNATURE_SIZE,))

    @classmethod
    def sign(cls, owner: Identity) -> AllowanceRequest:
        return cls(owner.public_key, owner.sign(_ALLOWANCE_TAG + owner.public_key))

    def verify(self) -> None:
        try:
            verify(self.wallet, _ALLOWANCE_TAG + self.wallet, self.signature)
        except IdentityError as exc:
            raise RewardError("allowance request signature does not verify") from exc

    def encode(self) -> bytes:
        return _pack([_FORMAT, self.wallet, self.signature])

    @classmethod
    def decode(cls, data: bytes) -> AllowanceRequest:
        items = _items(_unpack(data, 256, "allowance request"), 3, "allowance request")
        if items[0] != _FORMAT:
            raise RewardError(f"allowance request: unsupported format {items[0]!r}")
        return cls(items[1], items[2])


@dataclass(frozen=True)
class MintOp:
    """One change to the unminted supply at ``seq``, with its outcome."""

    seq: int
    kind: str
    payload: bytes
    credits: tuple[MintCredit, ...]
    returned: int

    def __post_init__(self) -> None:
        _int("seq", self.seq, 0, 2**63 - 1)
        if self.kind not in KINDS:
            raise RewardError(f"op kind must be one of {', '.join(KINDS)}")
        if not isinstance(self.payload, bytes) or len(self.payload) > MAX_ENCODED_PROOF:
            raise RewardError(f"op payload must be bytes of at most {MAX_ENCODED_PROOF}")
        if not isinstance(self.credits, tuple) or len(self.credits) > MAX_CREDITS_PER_OP:
            raise RewardError(f"op credits must be a tuple of at most {MAX_CREDITS_PER_OP}")
        if not all(isinstance(c, MintCredit) for c in self.credits):
            raise RewardError("op credits must be MintCredits")
        _int("returned", self.returned, 0, 2**63 - 1)

    def _fields(self) -> list[Any]:
        credits = [[c.mint_id, c.recipient, c.amount] for c in self.credits]
        return [self.seq, self.kind, self.payload, credits, self.returned]

    def signing_bytes(self) -> bytes:
        return _pack([_OP_TAG, *self._fields()])

    @property
    def id(self) -> bytes:
        return blake3.blake3(self.signing_bytes()).digest()

    @property
    def minted(self) -> int:
        return sum(c.amount for c in self.credits)

    def encode(self) -> bytes:
        return _pack([_FORMAT, *self._fields()])

    @classmethod
    def decode(cls, data: bytes) -> MintOp:
        return cls._from(_unpack(data, MAX_ENCODED_OP, "mint op"))

    @classmethod
    def _from(cls, raw: Any) -> MintOp:
        items = _items(raw, 6, "mint op")
        if items[0] != _FORMAT:
            raise RewardError(f"mint op: unsupported format {items[0]!r}")
        credits = _items(items[4], None, "mint op credits")
        if len(credits) > MAX_CREDITS_PER_OP:
            raise RewardError(f"mint op credits: at most {MAX_CREDITS_PER_OP}")
        try:
            parsed = tuple(MintCredit(*_items(c, 3, "mint credit")) for c in credits)
        except LedgerError as exc:
            raise RewardError(f"mint op credit: {exc}") from exc
        return cls(items[1], items[2], items[3], parsed, items[5])


@dataclass(frozen=True)
class MintVote:
    """One mint member's signature accepting ``op_id`` (which includes its seq) in ``ballot``.

    A ballot is ``(round, proposer key)``; a proof counts only votes of one ballot."""

    op_id: bytes
    ballot: Ballot
    voter: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _bytes("op_id", self.op_id, (ID_SIZE,))
        _check_ballot(self.ballot)
        _bytes("voter", self.voter, (PUBLIC_KEY_SIZE,))
        _bytes("vote signature", self.signature, (SIGNATURE_SIZE,))

    @property
    def subject(self) -> bytes:
        return self.op_id + ballot_bytes(self.ballot)

    @classmethod
    def sign(cls, op: MintOp, ballot: Ballot, me: Identity) -> MintVote:
        return cls(op.id, ballot, me.public_key, me.sign(_VOTE_TAG + op.id + ballot_bytes(ballot)))

    def verify(self) -> None:
        try:
            verify(self.voter, _VOTE_TAG + self.subject, self.signature)
        except IdentityError as exc:
            raise RewardError("mint vote signature does not verify") from exc

    def _fields(self) -> list[Any]:
        return [self.op_id, self.ballot[0], self.ballot[1], self.voter, self.signature]

    def encode(self) -> bytes:
        return _pack(self._fields())

    @classmethod
    def _from(cls, raw: Any) -> MintVote:
        op_id, rnd, proposer, voter, signature = _items(raw, 5, "mint vote")
        return cls(op_id, (rnd, proposer), voter, signature)

    @classmethod
    def decode(cls, data: bytes) -> MintVote:
        return cls._from(_unpack(data, 256, "mint vote"))


@dataclass(frozen=True)
class MintProof:
    """A mint op with a quorum of votes, all in one ballot, from members of the mint."""

    op: MintOp
    ballot: Ballot
    votes: tuple[MintVote, ...]

    def __post_init__(self) -> None:
        _check_ballot(self.ballot)
        if not isinstance(self.votes, tuple) or len(self.votes) > MAX_VOTES:
            raise RewardError(f"proof votes must be a tuple of at most {MAX_VOTES}")

    def verify(self, candidates: Collection[bytes], quorum: int) -> None:
        """Raise unless ``quorum`` distinct ``candidates`` validly voted for the op in the
        proof's ballot."""
        checked = [(v.subject, v.voter, v.verify) for v in self.votes]
        count_votes(
            checked,
            self.op.id + ballot_bytes(self.ballot),
            candidates,
            quorum=quorum,
            what="the mint proof",
            other="another op or ballot",
            error=RewardError,
        )

    def encode(self) -> bytes:
        votes = [v._fields() for v in self.votes]
        ballot = [self.ballot[0], self.ballot[1]]
        return _pack([_FORMAT, [_FORMAT, *self.op._fields()], ballot, votes])

    @classmethod
    def decode(cls, data: bytes) -> MintProof:
        items = _items(_unpack(data, MAX_ENCODED_MINT_PROOF, "mint proof"), 4, "mint proof")
        if items[0] != _FORMAT:
            raise RewardError(f"mint proof: unsupported format {items[0]!r}")
        ballot = tuple(_items(items[2], 2, "mint proof ballot"))
        votes = _items(items[3], None, "mint proof votes")
        if len(votes) > MAX_VOTES:
            raise RewardError(f"mint proof: at most {MAX_VOTES} votes")
        parsed = tuple(MintVote._from(v) for v in votes)
        return cls(MintOp._from(items[1]), (ballot[0], ballot[1]), parsed)


@dataclass(frozen=True)
class Promise:
    """A member's answer to ``prepare``: the op it accepted at its next seq (if any), with
    its own vote for it as evidence."""

    seq: int
    accepted: MintOp | None = None
    vote: MintVote | None = None

    def __post_init__(self) -> None:
        _int("seq", self.seq, 0, 2**63 - 1)
        if (self.accepted is None) != (self.vote is None):
            raise RewardError("a promise carries an accepted op and its vote, or neither")
        if (
            self.accepted is not None
            and self.vote is not None
            and (self.vote.op_id != self.accepted.id or self.accepted.seq != self.seq)
        ):
            raise RewardError("a promise's vote is not for its accepted op")

    def encode(self) -> bytes:
        op = self.accepted.encode() if self.accepted is not None else b""
        vote = self.vote.encode() if self.vote is not None else b""
        return _pack([_FORMAT, self.seq, op, vote])

    @classmethod
    def decode(cls, data: bytes) -> Promise:
        items = _items(_unpack(data, MAX_ENCODED_OP + 512, "promise"), 4, "promise")
        if items[0] != _FORMAT:
            raise RewardError(f"promise: unsupported format {items[0]!r}")
        for raw in items[2:]:
            if not isinstance(raw, bytes):
                raise RewardError("promise: op and vote must be bytes")
        op = MintOp.decode(items[2]) if items[2] else None
        vote = MintVote.decode(items[3]) if items[3] else None
        return cls(items[1], op, vote)


def choose(
    promises: Sequence[Promise], own: MintOp | None
) -> tuple[MintOp | None, MintVote | None]:
    """Paxos' rule for a new ballot: the op accepted in the highest ballot among a quorum's
    promises must be proposed again (it may have been chosen); with none, ``own``.  Returns
    the op and, for a recovered op, a member's vote for it (evidence it was checked)."""
    best: tuple[Ballot, MintOp, MintVote] | None = None
    for p in promises:
        if (
            p.accepted is not None
            and p.vote is not None
            and (best is None or p.vote.ballot > best[0])
        ):
            best = (p.vote.ballot, p.accepted, p.vote)
    if best is None:
        return own, None
    return best[1], best[2]


def quorum_for(kind: str, members: Collection[bytes], config: FarmingConfig) -> int:
    """Votes that commit ``kind`` with ``members``: a majority, and for ops that move
    coins at least ``config.quorum`` (what wallet groups require of a mint proof)."""
    majority = len(members) // 2 + 1
    return majority if kind in CONFIG_KINDS else max(majority, config.quorum)


@dataclass
class MintReplica:
    """What ONE member of the mint group keeps: the supply, the op sequence, the members.

    ``members`` are the public keys that vote at ``next_seq`` (changed only by committed
    ``join``/``leave`` ops); ``promised`` and ``accepted`` are this member's Paxos state for
    ``next_seq``.  ``rewarded`` maps epoch -> (chunk + farmer) pairs paid in it (the newest
    ``epoch_window`` epochs); ``granted`` and ``burned`` make allowances and burns one-off.
    """

    core_wallet: bytes
    config: FarmingConfig = field(default_factory=FarmingConfig)
    unminted: int = -1
    next_seq: int = 0
    members: tuple[bytes, ...] = ()
    promised: Ballot = NO_BALLOT
    accepted: MintOp | None = None
    accepted_vote: MintVote | None = None
    rewarded: dict[int, set[bytes]] = field(default_factory=dict)
    granted: set[bytes] = field(default_factory=set)
    burned: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        _bytes("core_wallet", self.core_wallet, (PUBLIC_KEY_SIZE,))
        if self.unminted == -1:
            self.unminted = self.config.total_supply
        _int("unminted", self.unminted, 0, self.config.total_supply)
        _int("next_seq", self.next_seq, 0, 2**63 - 1)
        if not isinstance(self.members, tuple) or len(self.members) > MINT_GROUP:
            raise RewardError(f"members must be a tuple of at most {MINT_GROUP} keys")
        for key in self.members:
            _bytes("member", key, (PUBLIC_KEY_SIZE,))
        if len(set(self.members)) != len(self.members):
            raise RewardError("members must be distinct")
        self.members = tuple(sorted(self.members))
        _check_ballot(self.promised)

    # -- outcomes (pure) -------------------------------------------------------------------

    def outcome(
        self,
        kind: str,
        payload: bytes,
        *,
        now_epoch: int | None,
        candidates: Candidates | None,
        strict: bool = True,
    ) -> tuple[tuple[MintCredit, ...], int]:
        """``(credits, returned)`` that ``kind``/``payload`` would have at the current
        state; raise :class:`RewardError` if the request is not valid now.  ``now_epoch``
        checks a claim's freshness (only that it is not from the future unless ``strict``);
        ``candidates`` checks a burn's voters and a joining member's place; committed ops
        (already checked by a quorum) are re-derived with both None."""
        if kind in MONEY_KINDS and len(self.members) < self.config.quorum:
            raise RewardError(
                f"the mint has {len(self.members)} members; it needs {self.config.quorum}"
                " before it can move coins"
            )
        try:
            if kind == REWARD:
                return self._reward(Claim.decode(payload), now_epoch, strict), 0
            if kind == ALLOWANCE:
                return self._allowance(AllowanceRequest.decode(payload)), 0
            if kind == BURN:
                return (), self._burn(DebitProof.decode(payload), candidates)
            if kind in CONFIG_KINDS:
                self._membership(kind, payload, candidates)
                return (), 0
        except RewardError:
            raise
        except LedgerError as exc:
            raise RewardError(str(exc)) from exc
        raise RewardError(f"unknown mint op kind {kind!r}")

    def _membership(self, kind: str, key: bytes, candidates: Candidates | None) -> None:
        _bytes("member key", key, (PUBLIC_KEY_SIZE,))
        if kind == JOIN:
            if key in self.members:
                raise RewardError("that node is already a member of the mint")
            if len(self.members) >= MINT_GROUP:
                raise RewardError(f"the mint already has {MINT_GROUP} members")
            if candidates is not None and key not in candidates(MINT_NAME):
                raise RewardError("that node is not near the mint")
        else:
            if key not in self.members:
                raise RewardError("that node is not a member of the mint")
            if len(self.members) <= 1:
                raise RewardError("the mint's last member cannot leave")

    def _reward(self, claim: Claim, now_epoch: int | None, strict: bool) -> tuple[MintCredit, ...]:
        window = self.config.epoch_window
        if now_epoch is not None:
            if claim.epoch > now_epoch + 1:
                raise RewardError(f"claim epoch {claim.epoch} is in the future (now {now_epoch})")
            if strict and claim.epoch <= now_epoch - window:
                raise RewardError(f"claim epoch {claim.epoch} is not current (now {now_epoch})")
        newest = max(self.rewarded, default=claim.epoch)
        if claim.epoch <= newest - window:
            raise RewardError(f"claim epoch {claim.epoch} is too old (newest {newest})")
        if claim.chunk_name + claim.farmer in self.rewarded.get(claim.epoch, set()):
            raise RewardError("this farmer was already rewarded for this chunk in this epoch")
        if not claim.wins(self.config):
            raise RewardError("the claim does not win the farming lottery")
        amount = reward_amount(self.unminted, self.config)
        if amount == 0:
            raise RewardError("the supply is exhausted")
        app = claim.app or None
        shares = split_reward(amount, app is not None, self.config)
        payees = zip(_ROLES, (claim.farmer, app, self.core_wallet), shares, strict=True)
        ticket = claim.ticket
        return tuple(
            MintCredit(blake3.blake3(ticket + role).digest(), wallet, share)
            for role, wallet, share in payees
            if wallet is not None and share > 0
        )

    def _allowance(self, request: AllowanceRequest) -> tuple[MintCredit, ...]:
        request.verify()
        if request.wallet in self.granted:
            raise RewardError("this wallet already had its free allowance")
        if len(self.granted) >= MAX_REMEMBERED:
            raise RewardError("the mint cannot grant more allowances")
        amount = min(self.config.free_allowance, self.unminted)
        if amount == 0:
            raise RewardError("no allowance left to grant")
        mint_id = blake3.blake3(b"troon/allowance/v1" + request.wallet).digest()
        return (MintCredit(mint_id, request.wallet, amount),)

    def _burn(self, proof: DebitProof, candidates: Candidates | None) -> int:
        transfer = proof.transfer
        if transfer.recipient != BURN_ADDRESS:
            raise RewardError("proof does not pay the burn address")
        if transfer.id in self.burned:
            raise RewardError("this payment was already returned to the supply")
        if len(self.burned) >= MAX_REMEMBERED:
            raise RewardError("the mint cannot take more burns")
        if candidates is not None:
            proof.verify_near(candidates(transfer.sender), self.config.quorum)
        if self.unminted + transfer.amount > self.config.total_supply:
            raise RewardError("burn would push unminted past the total supply")
        return transfer.amount

    # -- the protocol: one Paxos instance per seq -------------------------------------------

    def propose(
        self, kind: str, payload: bytes, *, now_epoch: int, candidates: Candidates
    ) -> MintOp:
        """The op a proposer would put at its next seq for ``kind``/``payload``."""
        credits, returned = self.outcome(kind, payload, now_epoch=now_epoch, candidates=candidates)
        return MintOp(self.next_seq, kind, payload, credits, returned)

    def ballot_after(self, me: bytes, seen: int = 0) -> Ballot:
        """A ballot of ours above anything promised here and the ``seen`` round."""
        return (max(self.promised[0], seen) + 1, me)

    def prepare(self, seq: int, ballot: Ballot) -> Promise:
        """Phase 1: promise to accept nothing below ``ballot`` at ``seq`` (our next seq);
        report what we accepted there."""
        _check_ballot(ballot)
        self._at_next(seq)
        if ballot < self.promised:
            raise RewardError(f"promised round {self.promised[0]}: a higher ballot is running")
        self.promised = ballot
        return Promise(seq, self.accepted, self.accepted_vote)

    def vote(
        self,
        op: MintOp,
        ballot: Ballot,
        me: Identity,
        *,
        now_epoch: int,
        candidates: Candidates,
        evidence: MintVote | None = None,
    ) -> MintVote:
        """Phase 2: accept ``op`` in ``ballot`` as member ``me`` if it is valid at our next
        seq and we promised nothing higher (idempotent).  ``evidence``, a member's earlier
        vote for the same op, marks a recovered op: a member checked it fully when it was
        fresh, so only its deterministic outcome and the future-epoch bound are rechecked."""
        _check_ballot(ballot)
        self._at_next(op.seq)
        if me.public_key not in self.members:
            raise RewardError("this node is not a member of the mint")
        if ballot < self.promised:
            raise RewardError(f"promised round {self.promised[0]}: a higher ballot is running")
        mine = self.accepted_vote
        if mine is not None and mine.ballot == ballot:
            if mine.op_id != op.id:
                raise RewardError("already accepted a different op in this ballot")
            return mine
        relaxed = evidence is not None and self._vouches(evidence, op)
        expect = self.outcome(
            op.kind,
            op.payload,
            now_epoch=now_epoch,
            candidates=None if relaxed else candidates,
            strict=not relaxed,
        )
        if expect != (op.credits, op.returned):
            raise RewardError("the op's outcome differs from this replica's")
        vote = MintVote.sign(op, ballot, me)
        self.promised, self.accepted, self.accepted_vote = ballot, op, vote
        return vote

    def _vouches(self, evidence: MintVote, op: MintOp) -> bool:
        if evidence.op_id != op.id or evidence.voter not in self.members:
            return False
        try:
            evidence.verify()
        except RewardError:
            return False
        return True

    def _at_next(self, seq: int) -> None:
        if type(seq) is not int:
            raise RewardError("seq must be an integer")
        if seq < self.next_seq:
            raise RewardError(f"replay: mint seq {seq} is already committed")
        if seq > self.next_seq:
            raise RewardError(f"behind: mint seq {seq}, this replica is at {self.next_seq}")

    def quorum(self, kind: str) -> int:
        return quorum_for(kind, self.members, self.config)

    def apply(self, proof: MintProof) -> tuple[MintCredit, ...]:
        """Commit a quorum-approved op at our next seq; returns the credits it minted."""
        op = proof.op
        proof.verify(self.members, self.quorum(op.kind))
        if op.seq != self.next_seq:
            raise RewardError(f"mint seq {op.seq} cannot apply at {self.next_seq}")
        expect = self.outcome(op.kind, op.payload, now_epoch=None, candidates=None)
        if expect != (op.credits, op.returned):
            raise RewardError("committed op's outcome differs from this replica's: resync")
        if op.kind == REWARD:
            claim = Claim.decode(op.payload)
            self.rewarded.setdefault(claim.epoch, set()).add(claim.chunk_name + claim.farmer)
            newest = max(self.rewarded)
            for old in [e for e in self.rewarded if e <= newest - self.config.epoch_window]:
                del self.rewarded[old]
        elif op.kind == ALLOWANCE:
            self.granted.add(op.credits[0].recipient)
        elif op.kind == BURN:
            self.burned.add(DebitProof.decode(op.payload).transfer.id)
        elif op.kind == JOIN:
            self.members = tuple(sorted((*self.members, op.payload)))
        else:
            self.members = tuple(m for m in self.members if m != op.payload)
        self.unminted += op.returned - op.minted
        self.next_seq += 1
        self.promised, self.accepted, self.accepted_vote = NO_BALLOT, None, None
        return op.credits

    # -- persistence and sync --------------------------------------------------------------

    def committed(self) -> tuple[int, int]:
        """The part of the state every member must agree on, in short."""
        return self.unminted, self.next_seq

    def encode(self) -> bytes:
        rewarded = sorted([e, sorted(p)] for e, p in self.rewarded.items())
        accepted = self.accepted.encode() if self.accepted is not None else b""
        vote = self.accepted_vote.encode() if self.accepted_vote is not None else b""
        fields = [_FORMAT, self.core_wallet, self.unminted, self.next_seq, list(self.members)]
        paxos = [self.promised[0], self.promised[1], accepted, vote]
        return _pack([*fields, paxos, rewarded, sorted(self.granted), sorted(self.burned)])

    @classmethod
    def decode(cls, data: bytes, config: FarmingConfig) -> MintReplica:
        items = _items(_unpack(data, MAX_ENCODED_MINT, "mint replica"), 9, "mint replica")
        if items[0] != _FORMAT:
            raise RewardError(f"mint replica: unsupported format {items[0]!r}")
        members = tuple(_items(items[4], None, "members"))
        rnd, proposer, accepted, vote = _items(items[5], 4, "paxos state")
        replica = cls(items[1], config, items[2], items[3], members, (rnd, proposer))
        if not isinstance(accepted, bytes) or not isinstance(vote, bytes):
            raise RewardError("paxos state: accepted op and vote must be bytes")
        if accepted:
            promise = Promise(replica.next_seq, MintOp.decode(accepted), MintVote.decode(vote))
            replica.accepted, replica.accepted_vote = promise.accepted, promise.vote
        elif vote:
            raise RewardError("paxos state: a vote without its op")
        for entry in _items(items[6], None, "rewarded"):
            epoch, pairs = _items(entry, 2, "rewarded entry")
            _int("rewarded epoch", epoch, 0, 2**63 - 1)
            for pair in _items(pairs, None, "rewarded pairs"):
                _bytes("rewarded pair", pair, (ID_SIZE + PUBLIC_KEY_SIZE,))
                replica.rewarded.setdefault(epoch, set()).add(pair)
        for wallet in _items(items[7], None, "granted")[:MAX_REMEMBERED]:
            _bytes("granted wallet", wallet, (PUBLIC_KEY_SIZE,))
            replica.granted.add(wallet)
        for ident in _items(items[8], None, "burned")[:MAX_REMEMBERED]:
            _bytes("burned id", ident, (ID_SIZE,))
            replica.burned.add(ident)
        return replica

    def public(self) -> MintReplica:
        """This replica's committed state without this member's Paxos state (what another
        node adopts: a promise or vote is only ever its signer's)."""
        fresh = MintReplica.decode(self.encode(), self.config)
        fresh.promised, fresh.accepted, fresh.accepted_vote = NO_BALLOT, None, None
        return fresh

    @classmethod
    def sync(cls, states: Sequence[bytes], config: FarmingConfig, *, agree: int = 2) -> MintReplica:
        """A replica for a node that lacks one or is behind, from the states of ``agree``
        peers that agree on the committed state (supply, seq, members).  No promise or vote
        is inherited: a node only ever votes for itself."""
        replicas = [cls.decode(s, config) for s in states]
        tally: dict[tuple[int, int, bytes, tuple[bytes, ...]], list[MintReplica]] = {}
        for r in replicas:
            key = (r.unminted, r.next_seq, r.core_wallet, r.members)
            tally.setdefault(key, []).append(r)
        best = max(tally.values(), key=len, default=[])
        if len(best) < max(agree, 1):
            raise RewardError(f"fewer than {agree} peers agree on the mint state")
        return best[0].public()
