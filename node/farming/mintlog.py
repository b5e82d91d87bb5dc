"""The mint as a replicated log: the unminted supply, held by a close group (sans-IO).

The supply that is not yet minted lives with the close group of :data:`MINT_NAME` (four
nodes), like a wallet.  Every change to it is a :class:`MintOp` with a sequence number:
a farming ``reward`` (a won GET lottery), a new wallet's free ``allowance``, or a ``burn``
(a store payment returned to the supply).  An op carries its outcome (the credits it
mints and the coins it returns), so a wallet group can credit on it without knowing the
mint's state.

Protocol (the debit vote of :mod:`node.farming.ledger`, with a sequencer in place of the
wallet owner):

1. the mint leader (the member nearest :data:`MINT_NAME`) turns a request into an op at
   its next seq (:meth:`MintReplica.propose`);
2. each member recomputes the op's outcome from its own state and signs a
   :class:`MintVote`, at most ONE op per seq (:meth:`MintReplica.vote`);
3. ``quorum`` (3) votes make a :class:`MintProof`; every member applies it in seq order
   (:meth:`MintReplica.apply`) and wallet groups credit on it.

Invariants: ``unminted + sum(minted credits) - sum(burns) == total_supply`` for the
sequence of applied ops; an op is only valid if it mints no more than ``unminted``, so
nothing is ever created beyond the supply; two ops can never both be committed at one seq
(``2 * quorum > group size``).  Every rejected input raises :class:`RewardError` and
changes nothing.  Trust in a claim's ``used``/``capacity`` (the farming rate) is the
farmer's word: DECISION, documented in docs/FARMING.md; the lottery itself and the one
reward per (chunk, farmer, epoch) rule are checked by every member.
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
KINDS = (REWARD, ALLOWANCE, BURN)
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
    """One mint member's signature approving ``op_id`` (which includes its seq)."""

    op_id: bytes
    voter: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _bytes("op_id", self.op_id, (ID_SIZE,))
        _bytes("voter", self.voter, (PUBLIC_KEY_SIZE,))
        _bytes("vote signature", self.signature, (SIGNATURE_SIZE,))

    @classmethod
    def sign(cls, op: MintOp, me: Identity) -> MintVote:
        return cls(op.id, me.public_key, me.sign(_VOTE_TAG + op.id))

    def verify(self) -> None:
        try:
            verify(self.voter, _VOTE_TAG + self.op_id, self.signature)
        except IdentityError as exc:
            raise RewardError("mint vote signature does not verify") from exc

    def encode(self) -> bytes:
        return _pack([self.op_id, self.voter, self.signature])

    @classmethod
    def decode(cls, data: bytes) -> MintVote:
        return cls(*_items(_unpack(data, 256, "mint vote"), 3, "mint vote"))


@dataclass(frozen=True)
class MintProof:
    """A mint op with ``quorum`` votes from distinct nodes near :data:`MINT_NAME`."""

    op: MintOp
    votes: tuple[MintVote, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.votes, tuple) or len(self.votes) > MAX_VOTES:
            raise RewardError(f"proof votes must be a tuple of at most {MAX_VOTES}")

    def verify(self, candidates: Collection[bytes], quorum: int) -> None:
        """Raise unless ``quorum`` distinct ``candidates`` validly voted for the op."""
        checked = [(v.op_id, v.voter, v.verify) for v in self.votes]
        count_votes(
            checked,
            self.op.id,
            candidates,
            quorum=quorum,
            what="the mint proof",
            other="another op",
            error=RewardError,
        )

    def encode(self) -> bytes:
        votes = [[v.op_id, v.voter, v.signature] for v in self.votes]
        return _pack([_FORMAT, [_FORMAT, *self.op._fields()], votes])

    @classmethod
    def decode(cls, data: bytes) -> MintProof:
        items = _items(_unpack(data, MAX_ENCODED_MINT_PROOF, "mint proof"), 3, "mint proof")
        if items[0] != _FORMAT:
            raise RewardError(f"mint proof: unsupported format {items[0]!r}")
        votes = _items(items[2], None, "mint proof votes")
        if len(votes) > MAX_VOTES:
            raise RewardError(f"mint proof: at most {MAX_VOTES} votes")
        parsed = tuple(MintVote(*_items(v, 3, "mint vote")) for v in votes)
        return cls(MintOp._from(items[1]), parsed)


@dataclass
class MintReplica:
    """What ONE member of the mint's close group keeps: the supply and the op sequence.

    ``rewarded`` maps epoch -> (chunk + farmer) pairs paid in it (the newest
    ``epoch_window`` epochs); ``granted`` and ``burned`` make allowances and burns one-off.
    """

    core_wallet: bytes
    config: FarmingConfig = field(default_factory=FarmingConfig)
    unminted: int = -1
    next_seq: int = 0
    voted: dict[int, bytes] = field(default_factory=dict)
    rewarded: dict[int, set[bytes]] = field(default_factory=dict)
    granted: set[bytes] = field(default_factory=set)
    burned: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        _bytes("core_wallet", self.core_wallet, (PUBLIC_KEY_SIZE,))
        if self.unminted == -1:
            self.unminted = self.config.total_supply
        _int("unminted", self.unminted, 0, self.config.total_supply)
        _int("next_seq", self.next_seq, 0, 2**63 - 1)

    # -- outcomes (pure) -------------------------------------------------------------------

    def outcome(
        self,
        kind: str,
        payload: bytes,
        *,
        now_epoch: int | None,
        candidates: Candidates | None,
    ) -> tuple[tuple[MintCredit, ...], int]:
        """``(credits, returned)`` that ``kind``/``payload`` would have at the current
        state; raise :class:`RewardError` if the request is not valid now.  ``now_epoch``
        and ``candidates`` check freshness and a burn's voters; committed ops (already
        checked by a quorum) are re-derived with both None."""
        try:
            if kind == REWARD:
                return self._reward(Claim.decode(payload), now_epoch), 0
            if kind == ALLOWANCE:
                return self._allowance(AllowanceRequest.decode(payload)), 0
            if kind == BURN:
                return (), self._burn(DebitProof.decode(payload), candidates)
        except RewardError:
            raise
        except LedgerError as exc:
            raise RewardError(str(exc)) from exc
        raise RewardError(f"unknown mint op kind {kind!r}")

    def _reward(self, claim: Claim, now_epoch: int | None) -> tuple[MintCredit, ...]:
        window = self.config.epoch_window
        if now_epoch is not None and not now_epoch - window < claim.epoch <= now_epoch + 1:
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

    # -- the protocol ----------------------------------------------------------------------

    def propose(
        self, kind: str, payload: bytes, *, now_epoch: int, candidates: Candidates
    ) -> MintOp:
        """The op the leader proposes for ``kind``/``payload`` at its next seq."""
        pending = self.voted.get(self.next_seq)
        if pending is not None:
            raise RewardError(f"seq {self.next_seq} has a vote pending; commit or sync first")
        credits, returned = self.outcome(kind, payload, now_epoch=now_epoch, candidates=candidates)
        return MintOp(self.next_seq, kind, payload, credits, returned)

    def vote(self, op: MintOp, me: Identity, *, now_epoch: int, candidates: Candidates) -> MintVote:
        """Sign ``op`` as member ``me`` if it is valid at our next seq (idempotent)."""
        if op.seq < self.next_seq:
            raise RewardError(f"replay: mint seq {op.seq} is already committed")
        if op.seq > self.next_seq:
            raise RewardError(f"behind: mint seq {op.seq}, this replica is at {self.next_seq}")
        prior = self.voted.get(op.seq)
        if prior is not None and prior != op.id:
            raise RewardError(f"already voted for a different mint op at seq {op.seq}")
        expect = self.outcome(op.kind, op.payload, now_epoch=now_epoch, candidates=candidates)
        if expect != (op.credits, op.returned):
            raise RewardError("the op's outcome differs from this replica's")
        self.voted[op.seq] = op.id
        return MintVote.sign(op, me)

    def apply(self, proof: MintProof, candidates: Collection[bytes]) -> tuple[MintCredit, ...]:
        """Commit a quorum-approved op at our next seq; returns the credits it minted."""
        proof.verify(candidates, self.config.quorum)
        op = proof.op
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
        else:
            self.burned.add(DebitProof.decode(op.payload).transfer.id)
        self.unminted += op.returned - op.minted
        self.next_seq += 1
        self.voted = {s: i for s, i in self.voted.items() if s >= self.next_seq}
        return op.credits

    # -- persistence and sync --------------------------------------------------------------

    def committed(self) -> tuple[int, int]:
        """The part of the state every member must agree on, in short."""
        return self.unminted, self.next_seq

    def encode(self) -> bytes:
        rewarded = sorted([e, sorted(p)] for e, p in self.rewarded.items())
        voted = sorted([s, i] for s, i in self.voted.items())
        fields = [_FORMAT, self.core_wallet, self.unminted, self.next_seq, voted, rewarded]
        return _pack([*fields, sorted(self.granted), sorted(self.burned)])

    @classmethod
    def decode(cls, data: bytes, config: FarmingConfig) -> MintReplica:
        items = _items(_unpack(data, MAX_ENCODED_MINT, "mint replica"), 8, "mint replica")
        if items[0] != _FORMAT:
            raise RewardError(f"mint replica: unsupported format {items[0]!r}")
        replica = cls(items[1], config, items[2], items[3])
        for pair in _items(items[4], None, "voted"):
            seq, op_id = _items(pair, 2, "voted entry")
            _int("voted seq", seq, replica.next_seq, 2**63 - 1)
            _bytes("voted id", op_id, (ID_SIZE, 0))
            replica.voted[seq] = op_id
        for entry in _items(items[5], None, "rewarded"):
            epoch, pairs = _items(entry, 2, "rewarded entry")
            _int("rewarded epoch", epoch, 0, 2**63 - 1)
            for pair in _items(pairs, None, "rewarded pairs"):
                _bytes("rewarded pair", pair, (ID_SIZE + PUBLIC_KEY_SIZE,))
                replica.rewarded.setdefault(epoch, set()).add(pair)
        for wallet in _items(items[6], None, "granted")[:MAX_REMEMBERED]:
            _bytes("granted wallet", wallet, (PUBLIC_KEY_SIZE,))
            replica.granted.add(wallet)
        for ident in _items(items[7], None, "burned")[:MAX_REMEMBERED]:
            _bytes("burned id", ident, (ID_SIZE,))
            replica.burned.add(ident)
        return replica

    @classmethod
    def sync(cls, states: Sequence[bytes], config: FarmingConfig, *, agree: int = 2) -> MintReplica:
        """A replica for a joining member from the states of ``agree`` agreeing peers.

        As for wallets: the pending seq's vote is inherited if the peers agree on it and
        BLOCKED (never vote) if they disagree."""
        replicas = [cls.decode(s, config) for s in states]
        tally: dict[tuple[int, int, bytes], list[MintReplica]] = {}
        for r in replicas:
            key = (r.unminted, r.next_seq, r.core_wallet)
            tally.setdefault(key, []).append(r)
        best = max(tally.values(), key=len, default=[])
        if len(best) < max(agree, 1):
            raise RewardError(f"fewer than {agree} peers agree on the mint state")
        fresh = cls.decode(best[0].encode(), config)
        seen = {r.voted[fresh.next_seq] for r in replicas if fresh.next_seq in r.voted}
        fresh.voted = {fresh.next_seq: seen.pop() if len(seen) == 1 else b""} if seen else {}
        return fresh
