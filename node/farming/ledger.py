"""Safecoin ledger: signed transfers, group-voted debits, credits on proof (sans-IO).

A wallet is an Ed25519 public key.  Its balance and history are kept by the close group
of ``xor_name(wallet)``; each member of that group keeps one :class:`WalletReplica`.
There is no global consensus (MaidSafe RFC 0012 "Account Management"; the group-signed
debit follows the later AT2-style Safe Transfers design):

1. the owner signs a :class:`Transfer` carrying the wallet's next sequence number;
2. each group member signs a :class:`DebitVote` for it, at most ONE transfer per
   ``(wallet, seq)`` and never one above the balance it knows;
3. ``quorum`` (3 of 4) distinct votes form a :class:`DebitProof`; the sender's group
   commits the debit on it and the recipient's group credits on it.

Invariants: two transfers with the same ``(wallet, seq)`` can never both get a quorum
because ``2 * quorum > group size`` (checked); a replica changes state only through a
fully validated input, every rejected input raises :class:`LedgerError` and changes
nothing; credits and mints are idempotent by id.  Coins minted by the network arrive as
:class:`MintCredit` (see ``rewards.Mint``), coins spent on storage are sent to
:data:`BURN_ADDRESS` and go back to the unminted supply.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import blake3
import msgpack

from node.identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Identity, IdentityError, verify

ID_SIZE = 32
MAX_AMOUNT = 2**63 - 1  # any single amount or balance; supply caps are the Mint's business
MAX_SEQ = 2**63 - 1
MAX_MEMO = 256
MAX_VOTES = 16
MAX_HISTORY = 4096
MAX_ENCODED_TRANSFER = 512
MAX_ENCODED_PROOF = MAX_ENCODED_TRANSFER + MAX_VOTES * 160
MAX_CREDITS = 1 << 20  # credited/minted ids a replica can persist (see WalletReplica)
MAX_ENCODED_REPLICA = 64 + MAX_CREDITS * 50 + MAX_HISTORY * 120
# Storage payments go here: nobody owns it and no replica holds it; rewards.Mint credits
# debits to it back to the unminted supply.
BURN_ADDRESS = bytes(PUBLIC_KEY_SIZE)
BLOCKED = b""  # voted[seq] marker: peers disagreed at this seq, so this replica never votes

_TRANSFER_TAG = "troon/transfer/v1"
_VOTE_TAG = b"troon/debit-vote/v1"
_FORMAT = 1
_KINDS = {"debit": 0, "credit": 1, "mint": 2}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}


class LedgerError(ValueError):
    """A transfer, vote, proof or replica state is malformed, unauthorised or not allowed."""


def _check_bytes(name: str, value: Any, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise LedgerError(f"{name} must be {size} bytes")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise LedgerError(f"{name} must be an integer in {low}..{high}")


def _unpack(data: Any, cap: int, what: str) -> Any:
    if not isinstance(data, bytes):
        raise LedgerError(f"{what} must be bytes")
    if len(data) > cap:
        raise LedgerError(f"{what} is {len(data)} bytes, the cap is {cap}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, max_map_len=0)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise LedgerError(f"{what} is not valid msgpack: {type(exc).__name__}") from exc


def _list(value: Any, size: int | None, what: str) -> list[Any]:
    if not isinstance(value, list) or (size is not None and len(value) != size):
        raise LedgerError(f"{what}: expected an array" + (f" of {size}" if size else ""))
    return value


@dataclass(frozen=True)
class Transfer:
    """``amount`` coins from wallet ``sender`` to ``recipient``, signed by the sender's key."""

    sender: bytes
    recipient: bytes
    amount: int
    seq: int
    memo: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_bytes("sender", self.sender, PUBLIC_KEY_SIZE)
        _check_bytes("recipient", self.recipient, PUBLIC_KEY_SIZE)
        if self.sender in (self.recipient, BURN_ADDRESS):
            raise LedgerError("sender must differ from the recipient and the burn address")
        _check_int("amount", self.amount, 1, MAX_AMOUNT)
        _check_int("seq", self.seq, 0, MAX_SEQ)
        if not isinstance(self.memo, bytes) or len(self.memo) > MAX_MEMO:
            raise LedgerError(f"memo must be at most {MAX_MEMO} bytes")
        _check_bytes("signature", self.signature, SIGNATURE_SIZE)

    def signing_bytes(self) -> bytes:
        """What the owner signs: every field but the signature, under a domain tag."""
        fields = [_TRANSFER_TAG, self.sender, self.recipient, self.amount, self.seq, self.memo]
        out: bytes = msgpack.packb(fields, use_bin_type=True)
        return out

    @property
    def id(self) -> bytes:
        """BLAKE3 of the signed content (Ed25519 here is not malleable, so one id per transfer)."""
        return blake3.blake3(self.signing_bytes()).digest()

    def verify(self) -> None:
        """Raise :class:`LedgerError` unless the sender's key signed this transfer."""
        try:
            verify(self.sender, self.signing_bytes(), self.signature)
        except IdentityError as exc:
            raise LedgerError("transfer signature does not verify") from exc

    def _fields(self) -> list[Any]:
        return [self.sender, self.recipient, self.amount, self.seq, self.memo, self.signature]

    def encode(self) -> bytes:
        """msgpack ``[1, sender, recipient, amount, seq, memo, signature]``."""
        out: bytes = msgpack.packb([_FORMAT, *self._fields()], use_bin_type=True)
        return out

    @classmethod
    def decode(cls, data: bytes) -> Transfer:
        """Parse :meth:`encode` output (the signature is checked by :meth:`verify`)."""
        return cls._from(_unpack(data, MAX_ENCODED_TRANSFER, "transfer"))

    @classmethod
    def _from(cls, items: Any) -> Transfer:
        items = _list(items, 7, "transfer")
        if items[0] != _FORMAT:
            raise LedgerError(f"transfer: unsupported format {items[0]!r}")
        return cls(*items[1:])


def sign_transfer(
    identity: Identity, recipient: bytes, amount: int, seq: int, memo: bytes = b""
) -> Transfer:
    """A transfer from ``identity``'s wallet, signed by it."""
    unsigned = Transfer(identity.public_key, recipient, amount, seq, memo, bytes(SIGNATURE_SIZE))
    signature = identity.sign(unsigned.signing_bytes())
    return Transfer(identity.public_key, recipient, amount, seq, memo, signature)


@dataclass(frozen=True)
class DebitVote:
    """One group member's signature approving the debit of ``transfer_id``."""

    transfer_id: bytes
    voter: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_bytes("transfer_id", self.transfer_id, ID_SIZE)
        _check_bytes("voter", self.voter, PUBLIC_KEY_SIZE)
        _check_bytes("vote signature", self.signature, SIGNATURE_SIZE)

    def verify(self) -> None:
        """Raise :class:`LedgerError` unless ``voter`` signed this vote."""
        try:
            verify(self.voter, _VOTE_TAG + self.transfer_id, self.signature)
        except IdentityError as exc:
            raise LedgerError("debit vote signature does not verify") from exc


def check_quorum(group: Collection[bytes], quorum: int) -> frozenset[bytes]:
    """The group as a set; raise unless any two quorums of it must share a member."""
    members = frozenset(group)
    if len(members) != len(group) or not 0 < quorum <= len(members) < 2 * quorum:
        raise LedgerError(
            f"quorum {quorum} of a group of {len(group)} distinct members is unsafe: "
            "need group size <= 2 * quorum - 1 and quorum <= group size"
        )
    return members


def count_votes(
    votes: Sequence[tuple[bytes, bytes, Callable[[], None]]],
    subject: bytes,
    candidates: Collection[bytes],
    *,
    quorum: int,
    what: str,
    other: str,
    error: type[LedgerError],
) -> None:
    """Raise ``error`` unless ``quorum`` distinct ``candidates`` signed ``subject``; each vote
    is ``(subject it names, voter, check of its signature)``.  A vote from outside
    ``candidates`` is not counted (its signer may have left the group since)."""
    members = frozenset(candidates)
    voters: set[bytes] = set()
    outside = 0
    for named, voter, check in votes:
        if named != subject:
            raise error(f"a vote in {what} is for {other}")
        if voter in voters:
            raise error(f"a member voted twice in {what}")
        voters.add(voter)
        if voter not in members:
            outside += 1  # not counted: a signer may since have left the group
            continue
        check()
    counted = len(voters) - outside
    if counted < quorum:
        extra = f" ({outside} more from outside the group)" if outside else ""
        raise error(f"{what} has {counted} votes{extra}, the quorum is {quorum}")


@dataclass(frozen=True)
class DebitProof:
    """A transfer and at least ``quorum`` votes from distinct members of the sender's group."""

    transfer: Transfer
    votes: tuple[DebitVote, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.transfer, Transfer):
            raise LedgerError("proof transfer must be a Transfer")
        if not isinstance(self.votes, tuple) or len(self.votes) > MAX_VOTES:
            raise LedgerError(f"proof votes must be a tuple of at most {MAX_VOTES}")

    def verify(self, group: Collection[bytes], quorum: int = 3) -> None:
        """Raise :class:`LedgerError` unless every vote is valid and enough members voted."""
        self.verify_near(check_quorum(group, quorum), quorum)

    def verify_near(self, candidates: Collection[bytes], quorum: int = 3) -> None:
        """Like :meth:`verify`, with voters taken from ``candidates``: the nodes a verifier
        elsewhere in the network believes are near the sender's wallet (a superset of its
        group during churn).  Double-spend safety does not rest on this check but on each
        group member voting once per seq; this one only keeps far-away nodes from forging."""
        self.transfer.verify()
        checked = [(v.transfer_id, v.voter, v.verify) for v in self.votes]
        count_votes(
            checked,
            self.transfer.id,
            candidates,
            quorum=quorum,
            what="the proof",
            other="another transfer",
            error=LedgerError,
        )

    def encode(self) -> bytes:
        """msgpack ``[1, transfer fields, [[transfer_id, voter, signature], ...]]``."""
        votes = [[v.transfer_id, v.voter, v.signature] for v in self.votes]
        body = [_FORMAT, [_FORMAT, *self.transfer._fields()], votes]
        out: bytes = msgpack.packb(body, use_bin_type=True)
        return out

    @classmethod
    def decode(cls, data: bytes) -> DebitProof:
        """Parse :meth:`encode` output; signatures are checked by :meth:`verify`."""
        items = _list(_unpack(data, MAX_ENCODED_PROOF, "debit proof"), 3, "debit proof")
        if items[0] != _FORMAT:
            raise LedgerError(f"debit proof: unsupported format {items[0]!r}")
        votes = _list(items[2], None, "debit proof votes")
        parsed = tuple(DebitVote(*_list(v, 3, "debit vote")) for v in votes)
        return cls(Transfer._from(items[1]), parsed)


@dataclass(frozen=True)
class MintCredit:
    """Coins created from the unminted supply for ``recipient`` (a reward or an allowance).

    Trust: the caller passes only credits its group agreed the Mint issued; ``mint_id``
    makes applying one twice harmless.
    """

    mint_id: bytes
    recipient: bytes
    amount: int

    def __post_init__(self) -> None:
        _check_bytes("mint_id", self.mint_id, ID_SIZE)
        _check_bytes("recipient", self.recipient, PUBLIC_KEY_SIZE)
        _check_int("amount", self.amount, 1, MAX_AMOUNT)


@dataclass
class WalletReplica:
    """What ONE member of a wallet's close group keeps for that wallet.

    ``history`` keeps the newest ``history_limit`` entries ``(kind, id, counterparty,
    amount)``.  ``credited`` (id -> amount of every applied credit and mint) makes credits
    idempotent and mergeable: a replica that missed one takes it from any peer that has it
    (:meth:`merge_credits`); it grows with incoming payments, up to :data:`MAX_CREDITS`.
    """

    wallet: bytes
    quorum: int = 3
    history_limit: int = 64
    balance: int = 0
    next_seq: int = 0
    voted: dict[int, bytes] = field(default_factory=dict)
    history: list[tuple[str, bytes, bytes, int]] = field(default_factory=list)
    credited: dict[bytes, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_bytes("wallet", self.wallet, PUBLIC_KEY_SIZE)
        if self.wallet == BURN_ADDRESS:
            raise LedgerError("the burn address has no wallet")
        _check_int("quorum", self.quorum, 1, MAX_VOTES)
        _check_int("history_limit", self.history_limit, 0, MAX_HISTORY)
        _check_int("balance", self.balance, 0, MAX_AMOUNT)
        _check_int("next_seq", self.next_seq, 0, MAX_SEQ)

    def vote_debit(self, transfer: Transfer, me: Identity) -> DebitVote:
        """Sign approval of ``transfer`` as member ``me``; idempotent for the same transfer."""
        self._check_next(transfer)
        prior = self.voted.get(transfer.seq)
        if prior is not None and prior != transfer.id:
            raise LedgerError(f"already voted for a different transfer at seq {transfer.seq}")
        if transfer.amount > self.balance:
            raise LedgerError(f"insufficient funds: {transfer.amount} > balance {self.balance}")
        self.voted[transfer.seq] = transfer.id
        return DebitVote(transfer.id, me.public_key, me.sign(_VOTE_TAG + transfer.id))

    def apply_debit(
        self, proof: DebitProof, group: Collection[bytes], *, near: bool = False
    ) -> None:
        """Commit a quorum-approved debit: ``balance -= amount``, ``next_seq += 1``.

        ``near``: ``group`` is a verifier's candidate set (see :meth:`DebitProof.verify_near`).
        """
        if near:
            proof.verify_near(group, self.quorum)
        else:
            proof.verify(group, self.quorum)
        transfer = proof.transfer
        self._check_next(transfer)
        if transfer.amount > self.balance:
            raise LedgerError("proof debits more than this replica's balance: resync it")
        self.balance -= transfer.amount
        self.next_seq += 1
        self.voted = {s: t for s, t in self.voted.items() if s >= self.next_seq}
        self._record("debit", transfer.id, transfer.recipient, transfer.amount)

    def apply_credit(
        self, proof: DebitProof, sender_group: Collection[bytes], *, near: bool = False
    ) -> bool:
        """Credit a debit committed by the sender's group; False if already credited."""
        if near:
            proof.verify_near(sender_group, self.quorum)
        else:
            proof.verify(sender_group, self.quorum)
        transfer = proof.transfer
        if transfer.recipient != self.wallet:
            raise LedgerError("proof pays another wallet")
        return self._credit("credit", transfer.id, transfer.sender, transfer.amount)

    def apply_mint(self, credit: MintCredit) -> bool:
        """Credit newly minted coins; False if this mint id was already applied."""
        if credit.recipient != self.wallet:
            raise LedgerError("mint credit is for another wallet")
        return self._credit("mint", credit.mint_id, BURN_ADDRESS, credit.amount)

    def merge_credits(self, others: Sequence[WalletReplica]) -> tuple[int, int]:
        """Take every credit another replica of this wallet applied and this one lacks.

        Credits are a set that only grows (each was applied on a verified proof and counts
        as delivered once 3 replicas took it), so replicas that each missed some converge on
        the union instead of waiting for two of them to be identical.  Returns ``(taken,
        unknown)``: unknown are credits whose amount a peer no longer knows (written before
        amounts were kept)."""
        taken, unknown = 0, set()
        for other in others:
            if other.wallet != self.wallet:
                raise LedgerError("cannot merge credits of another wallet")
            known = {i: (k, c) for k, i, c, _ in other.history if k in ("credit", "mint")}
            for ident, amount in sorted(other.credited.items()):
                if ident in self.credited:
                    continue
                if amount <= 0:
                    unknown.add(ident)
                    continue
                kind, counterparty = known.get(ident, ("credit", BURN_ADDRESS))
                taken += self._credit(kind, ident, counterparty, amount)
        return taken, len(unknown - self.credited.keys())

    def _check_next(self, transfer: Transfer) -> None:
        if transfer.sender != self.wallet:
            raise LedgerError("transfer is from another wallet")
        transfer.verify()
        if transfer.seq < self.next_seq:
            raise LedgerError(f"replay: seq {transfer.seq} is already committed")
        if transfer.seq > self.next_seq:
            raise LedgerError(f"out of order: seq {transfer.seq}, expected {self.next_seq}")

    def _credit(self, kind: str, ident: bytes, counterparty: bytes, amount: int) -> bool:
        if ident in self.credited:
            return False
        if len(self.credited) >= MAX_CREDITS or self.balance + amount > MAX_AMOUNT:
            raise LedgerError("wallet cannot take more credits")
        self.credited[ident] = amount
        self.balance += amount
        self._record(kind, ident, counterparty, amount)
        return True

    def _record(self, kind: str, ident: bytes, counterparty: bytes, amount: int) -> None:
        self.history.append((kind, ident, counterparty, amount))
        del self.history[: max(0, len(self.history) - self.history_limit)]

    def encode(self) -> bytes:
        """msgpack ``[1, wallet, quorum, history_limit, balance, next_seq, voted, history,
        credited]`` with ``voted`` as ``[[seq, id]]`` and ``credited`` as sorted ``[[id,
        amount]]``."""
        voted = sorted([s, t] for s, t in self.voted.items())
        history = [[_KINDS[k], i, c, a] for k, i, c, a in self.history]
        fields = [_FORMAT, self.wallet, self.quorum, self.history_limit, self.balance]
        fields += [self.next_seq, voted, history, sorted([i, a] for i, a in self.credited.items())]
        out: bytes = msgpack.packb(fields, use_bin_type=True)
        return out

    @classmethod
    def decode(cls, data: bytes) -> WalletReplica:
        """Parse :meth:`encode` output, validating every field."""
        items = _list(_unpack(data, MAX_ENCODED_REPLICA, "wallet replica"), 9, "wallet replica")
        if items[0] != _FORMAT:
            raise LedgerError(f"wallet replica: unsupported format {items[0]!r}")
        replica = cls(*items[1:6])
        for pair in _list(items[6], None, "voted"):
            seq, tid = _list(pair, 2, "voted entry")
            _check_int("voted seq", seq, replica.next_seq, MAX_SEQ)
            if tid != BLOCKED:
                _check_bytes("voted id", tid, ID_SIZE)
            replica.voted[seq] = tid
        for entry in _list(items[7], None, "history")[-MAX_HISTORY:]:
            kind, ident, counterparty, amount = _list(entry, 4, "history entry")
            if kind not in _KIND_NAMES:
                raise LedgerError(f"history entry: unknown kind {kind!r}")
            _check_bytes("history id", ident, ID_SIZE)
            _check_bytes("history counterparty", counterparty, PUBLIC_KEY_SIZE)
            _check_int("history amount", amount, 1, MAX_AMOUNT)
            replica.history.append((_KIND_NAMES[kind], ident, counterparty, amount))
        amounts = {i: a for _, i, _, a in replica.history}
        for entry in _list(items[8], None, "credited"):
            if isinstance(entry, bytes):  # written before amounts were kept: 0 if unknown
                ident, amount = entry, amounts.get(entry, 0)
            else:
                ident, amount = _list(entry, 2, "credited entry")
                _check_int("credited amount", amount, 1, MAX_AMOUNT)
            _check_bytes("credited id", ident, ID_SIZE)
            replica.credited[ident] = amount
        return replica

    @classmethod
    def sync(cls, states: Sequence[bytes], *, agree: int = 2) -> WalletReplica:
        """A fresh replica for a joining member, built from the encoded states of others.

        The newest seq at least ``agree`` peers report is taken (committed debits only ever
        add up, and an older state that more peers report - they missed a commit, or came
        back with old disks - must not win), with the credits of every peer merged in
        (:meth:`merge_credits`).  Two replicas at one seq hold the same debits: an owner signs
        one transfer per seq and each member votes for one.  For the pending seq the
        newcomer inherits the peers' vote if they all name the same transfer, and is BLOCKED
        from voting if they disagree: so a member that joins mid-race can never help a
        second transfer reach quorum.
        """
        return cls.agree_on([cls.decode(s) for s in states], agree=agree)

    @classmethod
    def agree_on(cls, replicas: Sequence[WalletReplica], *, agree: int = 2) -> WalletReplica:
        """:meth:`sync` on replicas already decoded (they are not changed)."""
        if len({r.wallet for r in replicas}) > 1:
            raise LedgerError("sync states are for different wallets")
        by_seq: dict[int, list[WalletReplica]] = {}
        for r in replicas:
            by_seq.setdefault(r.next_seq, []).append(r)
        agreed = [seq for seq, group in by_seq.items() if len(group) >= max(agree, 1)]
        if not agreed:
            raise LedgerError(f"fewer than {agree} peers agree on the wallet's seq")
        base = max(by_seq[max(agreed)], key=lambda r: (len(r.credited), r.balance))
        fresh = cls.decode(base.encode())
        fresh.merge_credits(replicas)
        seen = {r.voted[fresh.next_seq] for r in replicas if fresh.next_seq in r.voted}
        fresh.voted = {fresh.next_seq: seen.pop() if len(seen) == 1 else BLOCKED} if seen else {}
        return fresh
