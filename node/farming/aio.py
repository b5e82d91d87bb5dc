"""Safecoin on the network: wallet groups, the mint group, store payments (asyncio adapter).

A mixin of :class:`node.service.NodeService`.  The rules are pure
(:mod:`node.farming.ledger`, :mod:`node.farming.mintlog`, :mod:`node.farming.rewards`);
this module moves them between a client, its gateway node and the close groups involved,
over one request kind (``LEDGER`` with an ``op`` name; ``replica`` says whether the caller
is a gateway talking to a group member or a client talking to its gateway).

Flows:

- transfer: the gateway asks the sender's group for votes (``wallet.vote``), makes a
  :class:`DebitProof` of 3, has the group commit it (``wallet.commit``); each member keeps
  the proof in its outbox until the recipient's group acknowledged the credit
  (``wallet.credit``) or, for a store payment, the mint took the coins back (a ``burn``);
- mint: farming wins, allowances and burns go to the mint leader (the node nearest
  :data:`MINT_NAME`), which runs one vote per seq with the mint group (``mint.vote``,
  ``mint.commit``); members keep the committed op in their outbox until every payee's
  group credited it (``wallet.mint``);
- churn: every holder pushes its replicas to the other members every
  :data:`LEDGER_SYNC_INTERVAL`; a member with no replica (or one that two agreeing peers
  show to be behind) adopts the agreed state (:meth:`WalletReplica.sync`).

A group's signatures are checked against the nodes a network lookup finds nearest that
group's name (a wallet's members rarely know the far-away mint group from their tables).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import blake3
import msgpack

from node.identity import Identity, xor_name
from node.messages import Kind, Message
from node.rpc.aio import RpcError

from .ledger import (
    BLOCKED,
    BURN_ADDRESS,
    DebitProof,
    DebitVote,
    LedgerError,
    Transfer,
    WalletReplica,
)
from .ledgerstore import LedgerStore, OutboxItem
from .mintlog import (
    ALLOWANCE,
    BURN,
    JOIN,
    LEAVE,
    MINT_GROUP,
    MINT_NAME,
    MONEY_KINDS,
    REWARD,
    AllowanceRequest,
    Ballot,
    Claim,
    MintOp,
    MintProof,
    MintReplica,
    MintVote,
    Promise,
    choose,
)
from .rewards import FarmingConfig, RewardError, store_cost

if TYPE_CHECKING:
    from collections import Counter

    from node.config import NodeConfig
    from node.routing.aio import LookupOutcome
    from node.routing.contact import Contact
    from node.routing.lookup import LookupConfig
    from node.routing.table import RoutingTable
    from node.rpc.aio import Rpc
    from node.storage.diskstore import DiskChunkStore

log = logging.getLogger("troon.ledger")

DEFAULT_CORE_WALLET = Identity.from_seed(
    blake3.blake3(b"troon/core-development-wallet/v1").digest()
).public_key
"""The core-development wallet of a testnet unless the config names another: its key is
derived from a published seed, so on a testnet anyone can spend from it (a real network
would configure a key nobody else holds)."""
FARMING_EPOCH = 60.0
"""Seconds per farming epoch (wall clock, so every node agrees on the current one)."""
NEAR = 8
"""Nodes a verifier accepts as a group's signers: the 8 nearest the group's name."""
COMMIT_TRIES = 3  # rounds of wallet.commit to the members that have not taken a debit yet
LEDGER_SYNC_INTERVAL = 5.0
"""Seconds between pushes of held replicas to the other members of their groups."""
OUTBOX_INTERVAL = 2.0
"""Seconds between delivery rounds of unacknowledged credits."""
OUTBOX_GRACE = 3.0
"""A member leaves a new outbox item this long to the gateway that made it."""
NEAR_CACHE_TTL = 15.0
PAYMENT_SLACK = Fraction(3, 2)
"""A payment covers a store if ``amount * 1.5 >= cost``: the cost rises as stores fill,
and a quote is taken before the payment's vote and commit, which take a few round trips
while other writes land (DECISION: the client pays the quote; no second quote)."""
MAX_PUSHED = 4096
MAX_MINT_LOG = 256
MINT_ATTEMPTS = 8
"""Ballots a proposer tries for one request before it gives up (a partition without a
majority of members, or proposers racing)."""
_MINT_INT = int.from_bytes(MINT_NAME, "big")
_PROMISED = re.compile(r"promised round (\d+)")


def _retryable(message: str) -> bool:
    """A refusal another member (or a later try) may not give."""
    return any(m in message for m in ("not_leader", "retry:", "promised round", "behind"))


class NotHeld(LedgerError):
    """This node keeps no replica of the wallet (or of the mint)."""


class Behind(RewardError):
    """The mint replica is behind the op it was asked about."""

    def __init__(self, next_seq: int) -> None:
        super().__init__(f"behind: this mint replica is at seq {next_seq}")
        self.next_seq = next_seq


def _pack(value: Any) -> bytes:
    out: bytes = msgpack.packb(value, use_bin_type=True)
    return out


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, max_map_len=16)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise LedgerError(f"not valid msgpack: {type(exc).__name__}") from exc


def _keep_own_vote(ours: dict[int, bytes], agreed: dict[int, bytes], seq: int) -> None:
    """A replica adopting a newer agreed state keeps the vote it cast at ``seq``; if the
    peers voted otherwise there, it is BLOCKED from voting at that seq at all."""
    mine, theirs = ours.get(seq), agreed.get(seq)
    if mine is not None:
        agreed[seq] = BLOCKED if theirs is not None and theirs != mine else mine


def _pubkey(data: bytes) -> bytes:
    if len(data) != 32:
        raise LedgerError("a wallet is a 32-byte public key")
    return data


class LedgerPlane:
    """Wallets, the mint and payments; mixed into NodeService (attributes below)."""

    config: NodeConfig
    name: bytes
    identity: Identity
    rpc: Rpc
    table: RoutingTable
    store: DiskChunkStore
    counters: Counter[str]
    farming: Counter[str]
    contact: Contact | None
    data_lookup_config: LookupConfig
    ledger: LedgerStore
    farm_config: FarmingConfig

    def _responsible(self, name: bytes) -> bool:
        raise NotImplementedError

    async def close_group(self, name: bytes) -> list[Contact]:
        raise NotImplementedError

    async def lookup(self, target: bytes, *, config: LookupConfig | None = None) -> LookupOutcome:
        raise NotImplementedError

    def _spawn(self, coro: Any) -> None:
        raise NotImplementedError

    def _ledger_init(self) -> None:
        cfg = self.config
        core = cfg.core_wallet
        self.core_wallet = bytes.fromhex(core) if core else DEFAULT_CORE_WALLET
        self.reward_wallet = (
            bytes.fromhex(cfg.reward_wallet) if cfg.reward_wallet else self.identity.public_key
        )
        self._pushed: dict[bytes, dict[bytes, bytes]] = {}
        self._mint_pushed: dict[bytes, bytes] = {}
        self._mint_lock = asyncio.Lock()
        self._mint_log: dict[int, bytes] = {}
        self._near_cache: dict[bytes, tuple[float, frozenset[bytes]]] = {}
        self._outbox_seen: dict[bytes, float] = {}
        self._delivering: set[bytes] = set()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def epoch_now() -> int:
        return int(time.time() // FARMING_EPOCH)

    def _near_local(self, name: bytes) -> frozenset[bytes]:
        group = self.table.close_group(name, NEAR, include_self=self.contact)
        return frozenset(c.public_key for c in group)

    async def _near_remote(self, name: bytes) -> frozenset[bytes]:
        """Public keys of the nodes nearest ``name`` by a network lookup (cached briefly)."""
        now = time.monotonic()
        hit = self._near_cache.get(name)
        if hit is not None and now - hit[0] < NEAR_CACHE_TTL:
            return hit[1]
        outcome = await self.lookup(name, config=self.data_lookup_config)
        found = {c.name: c for c in outcome.lookup.result()}
        assert self.contact is not None
        found[self.name] = self.contact
        key = int.from_bytes(name, "big")
        nearest = sorted(found.values(), key=lambda c: int.from_bytes(c.name, "big") ^ key)
        keys = frozenset(c.public_key for c in nearest[:NEAR]) | self._near_local(name)
        if len(self._near_cache) > 1024:
            self._near_cache.clear()
        self._near_cache[name] = (now, keys)
        return keys

    async def _call(self, contact: Contact, op: str, body: bytes, *, replica: bool = True) -> bytes:
        """Run ledger ``op`` on ``contact`` (locally if that is us)."""
        if contact.name == self.name:
            if replica:
                return await self._member_op(self.name, op, body)
            return await self._gateway_op(op, body)
        reply = await self.rpc.call(
            contact.public_key, contact.address, Kind.LEDGER, op=op, body=body, replica=replica
        )
        return bytes(reply.body["body"])

    async def _gather(
        self, contacts: list[Contact], op: str, body: bytes
    ) -> list[bytes | Exception]:
        async def one(c: Contact) -> bytes | Exception:
            try:
                return await self._call(c, op, body)
            except (RpcError, LedgerError) as exc:
                return exc

        return list(await asyncio.gather(*(one(c) for c in contacts)))

    # ------------------------------------------------------------------ request entry

    async def _on_ledger(self, peer: bytes, msg: Message) -> None:
        op, body, replica = msg.body["op"], msg.body["body"], msg.body["replica"]
        try:
            if replica:
                out = await self._member_op(xor_name(peer), op, body)
            else:
                out = await self._gateway_op(op, body)
        except NotHeld as exc:
            self.rpc.reply_error(peer, msg, "not_found", str(exc))
            return
        except Behind as exc:
            self.rpc.reply_error(peer, msg, "behind", str(exc.next_seq))
            return
        except LedgerError as exc:
            self.counters["ledger_refused"] += 1
            self.rpc.reply_error(peer, msg, "refused", str(exc))
            return
        self.rpc.reply(peer, msg, Kind.LEDGER_OK, body=out)

    # ------------------------------------------------------------------ group members

    async def _member_op(self, sender: bytes, op: str, body: bytes) -> bytes:
        handler = _MEMBER_OPS.get(op)
        if handler is None:
            raise LedgerError(f"{op} is not a group member operation")
        return await handler(self, sender, body)

    def _held(self, wallet: bytes) -> WalletReplica:
        replica = self.ledger.wallets.get(wallet)
        if replica is None:
            raise NotHeld("no replica of that wallet here")
        return replica

    def _check_responsible(self, name: bytes, what: str) -> None:
        if not self._responsible(name):
            self.counters["rejected_not_responsible"] += 1
            raise LedgerError(f"not in the close group of that {what}")

    async def _m_wallet_get(self, sender: bytes, body: bytes) -> bytes:
        return self._held(_pubkey(body)).encode()

    async def _m_wallet_open(self, sender: bytes, body: bytes) -> bytes:
        wallet = _pubkey(body)
        self._check_responsible(xor_name(wallet), "wallet")
        if wallet not in self.ledger.wallets:
            self.ledger.save_wallet(self._fresh_wallet(wallet))
        return b""

    def _is_near(self, sender: bytes, wallet: bytes | None) -> bool:
        """Is node ``sender`` among the nodes we believe nearest the wallet (or the mint)?"""
        target = MINT_NAME if wallet is None else xor_name(wallet)
        return sender in {xor_name(k) for k in self._near_local(target)}

    def _fresh_wallet(self, wallet: bytes) -> WalletReplica:
        cfg = self.farm_config
        return WalletReplica(wallet, quorum=cfg.quorum, history_limit=cfg.history_limit)

    async def _m_wallet_vote(self, sender: bytes, body: bytes) -> bytes:
        transfer = Transfer.decode(body)
        replica = self._held(transfer.sender)
        vote = replica.vote_debit(transfer, self.identity)
        self.ledger.save_wallet(replica)
        return _pack([vote.transfer_id, vote.voter, vote.signature])

    async def _m_wallet_commit(self, sender: bytes, body: bytes) -> bytes:
        proof = DebitProof.decode(body)
        transfer = proof.transfer
        replica = self._held(transfer.sender)
        if transfer.seq < replica.next_seq:
            if any(h[1] == transfer.id for h in replica.history):
                return b"dup"
            raise LedgerError(f"replay: seq {transfer.seq} is already committed")
        replica.apply_debit(proof, self._near_local(xor_name(transfer.sender)), near=True)
        self.ledger.save_wallet(replica)
        kind = "burn" if transfer.recipient == BURN_ADDRESS else "credit"
        self._outbox_add(OutboxItem(transfer.id, kind, body))
        self.counters["ledger_debits"] += 1
        return b""

    async def _m_wallet_credit(self, sender: bytes, body: bytes) -> bytes:
        proof = DebitProof.decode(body)
        transfer = proof.transfer
        if transfer.recipient == BURN_ADDRESS:
            raise LedgerError("burn payments go to the mint, not to a wallet")
        self._check_responsible(xor_name(transfer.recipient), "wallet")
        await self._debit_signers(proof)
        replica = await self._replica_for_credit(transfer.recipient)
        credited = self._credit(replica, proof)
        if credited:
            self.ledger.save_wallet(replica)
        return b"1" if credited else b"0"

    async def _debit_signers(self, proof: DebitProof) -> frozenset[bytes]:
        """The keys a debit proof's votes are checked against: the nodes near the sender
        now, or, when too few of its signers still are (they died or moved away since it
        was committed, perhaps long ago in an outbox), its own signers, once a quorum of the
        sender's current group confirms the debit is in their replicas' history."""
        near = await self._near_remote(xor_name(proof.transfer.sender))
        try:
            proof.verify_near(near, self.farm_config.quorum)
            return near
        except LedgerError:
            if not await self._confirm_debit(proof):
                raise
        self.counters["ledger_confirmed"] += 1
        return frozenset(v.voter for v in proof.votes)

    async def _confirm_debit(self, proof: DebitProof) -> bool:
        transfer = proof.transfer
        proof.verify([v.voter for v in proof.votes], self.farm_config.quorum)  # signatures
        group = await self.close_group(xor_name(transfer.sender))
        confirmed = 0
        for answer in await self._gather(group, "wallet.get", transfer.sender):
            if isinstance(answer, bytes):
                with contextlib.suppress(LedgerError):
                    held = WalletReplica.decode(answer)
                    if any(k == "debit" and i == transfer.id for k, i, _, _ in held.history):
                        confirmed += 1
        return confirmed >= min(self.farm_config.quorum, len(group))

    async def _confirm_mint(self, proof: MintProof) -> bool:
        """A mint proof whose signers are no longer all near the mint counts if a quorum of
        the mint's current neighbourhood committed that op at that seq."""
        proof.verify([v.voter for v in proof.votes], self.farm_config.quorum)  # signatures
        group = await self.close_group(MINT_NAME)
        body = _pack([proof.op.seq, proof.op.id])
        answers = await self._gather(group, "mint.confirm", body)
        confirmed = sum(1 for a in answers if a == b"1")
        if confirmed >= min(self.farm_config.quorum, len(group)):
            self.counters["ledger_confirmed"] += 1
            return True
        return False

    async def _m_mint_confirm(self, sender: bytes, body: bytes) -> bytes:
        """``[seq, op id]`` -> ``b"1"`` if this member committed that op at that seq."""
        items = _unpack(body)
        if not (isinstance(items, list) and len(items) == 2 and isinstance(items[1], bytes)):
            raise LedgerError("mint.confirm takes [seq, op id]")
        seq, op_id = items
        if type(seq) is not int:
            raise LedgerError("mint.confirm: seq must be an integer")
        held = self._mint_log.get(seq)
        with contextlib.suppress(RewardError):
            if held is not None and MintProof.decode(held).op.id == op_id:
                return b"1"
        return b"0"

    def _credit(self, replica: WalletReplica, proof: DebitProof) -> bool:
        # the proof was verified against the sender's group found by lookup; apply it
        # against exactly its own voters (the check is then only the quorum count)
        voters = [v.voter for v in proof.votes]
        return replica.apply_credit(proof, voters, near=True)

    async def _m_wallet_mint(self, sender: bytes, body: bytes) -> bytes:
        """``[recipient, mint proof]``: credit that recipient's share of a committed op."""
        items = _unpack(body)
        if not (isinstance(items, list) and len(items) == 2 and isinstance(items[1], bytes)):
            raise LedgerError("wallet.mint takes [recipient, mint proof]")
        recipient = _pubkey(items[0]) if isinstance(items[0], bytes) else b""
        proof = MintProof.decode(items[1])
        credits = [c for c in proof.op.credits if c.recipient == recipient]
        if not credits:
            raise LedgerError("the mint op pays nothing to that wallet")
        self._check_responsible(xor_name(recipient), "wallet")
        try:
            proof.verify(await self._near_remote(MINT_NAME), self.farm_config.quorum)
        except RewardError:
            if not await self._confirm_mint(proof):
                raise
        replica = await self._replica_for_credit(recipient)
        applied = sum(replica.apply_mint(credit) for credit in credits)
        if applied:
            self.ledger.save_wallet(replica)
        return _pack(applied)

    async def _replica_for_credit(self, wallet: bytes) -> WalletReplica:
        """Our replica of ``wallet``; if we have none, the state agreed by the group, or a
        new empty wallet if no member has one."""
        replica = self.ledger.wallets.get(wallet)
        if replica is not None:
            return replica
        group = [c for c in await self.close_group(xor_name(wallet)) if c.name != self.name]
        answers = await self._gather(group, "wallet.get", wallet)
        states = [a for a in answers if isinstance(a, bytes)]
        missing = sum(1 for a in answers if isinstance(a, RpcError) and a.code == "not_found")
        peers = []
        for a in states:
            with contextlib.suppress(LedgerError):
                peers.append(WalletReplica.decode(a))
        # A wallet nobody has spent from (every state at seq 0: a new wallet whose group is
        # still creating it) starts here with the credits its peers have; otherwise the seq
        # must come from two agreeing members, like any replica's start.
        unspent = all(p.next_seq == 0 for p in peers)
        answered = len(peers) + missing >= min(2, len(group))
        if peers:
            try:
                agree = 1 if unspent and answered else min(2, len(group))
                replica = WalletReplica.agree_on(peers, agree=agree)
            except LedgerError as exc:
                raise LedgerError(f"cannot take over this wallet yet: {exc}") from exc
        elif answered:
            replica = self._fresh_wallet(wallet)
        else:
            raise LedgerError("cannot reach the wallet's group to take over its state yet")
        replica.quorum = self.farm_config.quorum
        replica.history_limit = self.farm_config.history_limit
        self.ledger.save_wallet(replica)
        self.counters["ledger_takeovers"] += 1
        return replica

    async def _m_wallet_push(self, sender: bytes, body: bytes) -> bytes:
        replica = WalletReplica.decode(body)
        wallet = replica.wallet
        if not self._responsible(xor_name(wallet)) or not self._is_near(sender, wallet):
            return b""  # only the wallet's own neighbourhood may vouch for its state
        if wallet not in self.ledger.wallets and not self._in_group(sender, wallet):
            return b""  # a replica is only started on the word of the group itself
        pushed = self._pushed.setdefault(wallet, {})
        if len(self._pushed) > MAX_PUSHED:
            self._pushed.clear()
            pushed = self._pushed.setdefault(wallet, {})
        pushed[sender] = body
        self._consider_wallet(wallet)
        return b""

    def _in_group(self, sender: bytes, wallet: bytes) -> bool:
        """Is node ``sender`` in the wallet's close group as we see it (not just near)?"""
        assert self.contact is not None
        factor = self.config.replication_factor
        group = self.table.close_group(xor_name(wallet), factor, include_self=self.contact)
        return any(c.name == sender for c in group)

    def _consider_wallet(self, wallet: bytes) -> None:
        """Move our replica forward on what near holders pushed: to the newest seq two of
        them agree on (two, both to start a replica and to move one: on one member's word,
        the side of a partition holding a single replica could seed a whole new group and
        commit transfers the other side never sees), and take any credit one of them has
        and we lack (credits only accumulate; every one was applied on a verified proof)."""
        pushed = self._pushed.get(wallet, {})
        ours = self.ledger.wallets.get(wallet)
        peers: list[WalletReplica] = []
        for body in pushed.values():
            with contextlib.suppress(LedgerError):
                peers.append(WalletReplica.decode(body))
        if not peers:
            return
        merged: WalletReplica | None = None
        if ours is not None:
            merged = WalletReplica.decode(ours.encode())
            merged.merge_credits(peers)
        try:
            agreed: WalletReplica | None = WalletReplica.agree_on(
                [*peers, *([ours] if ours is not None else [])], agree=2
            )
        except LedgerError:
            agreed = None
        if agreed is not None and (merged is None or agreed.next_seq > merged.next_seq):
            if ours is not None:
                _keep_own_vote(ours.voted, agreed.voted, agreed.next_seq)
            merged = agreed
        if merged is None:
            return
        if ours is not None:
            if (merged.next_seq, merged.credited.keys()) == (ours.next_seq, ours.credited.keys()):
                return
            self.counters["ledger_credits_carried"] += len(merged.credited.keys() - ours.credited)
        merged.quorum = self.farm_config.quorum
        merged.history_limit = self.farm_config.history_limit
        self.ledger.save_wallet(merged)
        self._pushed.pop(wallet, None)
        self.counters["ledger_synced"] += 1

    # -- the mint, member side ---------------------------------------------------------

    def _mint_held(self) -> MintReplica:
        if self.ledger.mint is None:
            raise NotHeld("no replica of the mint here")
        return self.ledger.mint

    async def _m_mint_get(self, sender: bytes, body: bytes) -> bytes:
        return self._mint_held().encode()

    async def _m_mint_prepare(self, sender: bytes, body: bytes) -> bytes:
        """Phase 1: ``[seq, round, proposer]`` -> ``["promise", promise]``, or
        ``["committed", proof or b""]`` when that seq is already behind us."""
        items = _unpack(body)
        if not (isinstance(items, list) and len(items) == 3):
            raise LedgerError("mint.prepare takes [seq, round, proposer]")
        seq, rnd, proposer = items
        mint = self._mint_held()
        if type(seq) is not int or seq < 0:
            raise LedgerError("mint.prepare: seq must be a non-negative integer")
        if seq > mint.next_seq:
            raise Behind(mint.next_seq)
        if seq < mint.next_seq:
            return _pack(["committed", self._mint_log.get(seq, b"")])
        promise = mint.prepare(seq, (rnd, proposer))
        self.ledger.save_mint(mint)
        return _pack(["promise", promise.encode()])

    async def _m_mint_vote(self, sender: bytes, body: bytes) -> bytes:
        """Phase 2: ``[op, round, proposer, evidence vote or b""]`` -> our vote."""
        items = _unpack(body)
        if not (isinstance(items, list) and len(items) == 4):
            raise LedgerError("mint.vote takes [op, round, proposer, evidence]")
        raw_op, rnd, proposer, raw_evidence = items
        if not isinstance(raw_op, bytes) or not isinstance(raw_evidence, bytes):
            raise LedgerError("mint.vote: op and evidence must be bytes")
        op = MintOp.decode(raw_op)
        evidence = MintVote.decode(raw_evidence) if raw_evidence else None
        mint = self._mint_held()
        if op.seq > mint.next_seq:
            raise Behind(mint.next_seq)
        candidates = await self._op_candidates(op.kind, op.payload)
        vote = mint.vote(
            op,
            (rnd, proposer),
            self.identity,
            now_epoch=self.epoch_now(),
            candidates=candidates,
            evidence=evidence,
        )
        self.ledger.save_mint(mint)
        return vote.encode()

    async def _op_candidates(
        self, kind: str, payload: bytes
    ) -> Callable[[bytes], frozenset[bytes]]:
        """Who may have signed a burn's debit (near the payer), or be a member (near the
        mint), as this node sees it."""
        if kind == BURN:
            near = await self._debit_signers(DebitProof.decode(payload))
        elif kind == JOIN:
            near = await self._near_remote(MINT_NAME)
        else:
            near = frozenset()
        return lambda _: near

    async def _m_mint_commit(self, sender: bytes, body: bytes) -> bytes:
        proof = MintProof.decode(body)
        mint = self._mint_held()
        if proof.op.seq < mint.next_seq:
            return b"dup"
        if proof.op.seq > mint.next_seq:
            raise Behind(mint.next_seq)
        mint.apply(proof)
        self.ledger.save_mint(mint)
        self._remember_mint(proof.op.seq, body)
        if proof.op.credits:
            self._outbox_add(OutboxItem(proof.op.id, "mint", body))
        self.counters["mint_ops"] += 1
        return b""

    def _remember_mint(self, seq: int, proof: bytes) -> None:
        self._mint_log[seq] = proof
        for old in [s for s in self._mint_log if s <= seq - MAX_MINT_LOG]:
            del self._mint_log[old]

    async def _m_mint_push(self, sender: bytes, body: bytes) -> bytes:
        if not (self.ledger.mint is not None or self._responsible(MINT_NAME)):
            return b""
        if not self._is_near(sender, None):
            return b""
        MintReplica.decode(body, self.farm_config)  # validate before keeping it
        self._mint_pushed[sender] = body
        self._consider_mint()
        return b""

    def _consider_mint(self) -> None:
        states = list(self._mint_pushed.values())
        ours = self.ledger.mint
        need = 1 if ours is None else 2
        if len(states) < need:
            return
        try:
            agreed = MintReplica.sync(states, self.farm_config, agree=need)
        except RewardError:
            return
        if agreed.core_wallet != self.core_wallet:
            return
        if ours is not None and agreed.next_seq <= ours.next_seq:
            return
        self.ledger.save_mint(agreed)
        self._mint_pushed.clear()
        self.counters["mint_synced"] += 1

    # ------------------------------------------------------------------ gateway side

    async def _gateway_op(self, op: str, body: bytes) -> bytes:
        handler = _GATEWAY_OPS.get(op)
        if handler is None:
            raise LedgerError(f"{op} is not a client operation")
        return await handler(self, body)

    async def _g_wallet_get(self, body: bytes) -> bytes:
        wallet = _pubkey(body)
        group = await self.close_group(xor_name(wallet))
        answers = await self._gather(group, "wallet.get", wallet)
        states: dict[tuple[int, int], list[bytes]] = {}
        for a in answers:
            if isinstance(a, bytes):
                r = WalletReplica.decode(a)
                states.setdefault((r.next_seq, r.balance), []).append(a)
        if not states:
            raise NotHeld("no such wallet: create it with `troon wallet create`")
        best = max(states.items(), key=lambda kv: (len(kv[1]), kv[0]))
        return best[1][0]

    async def _g_wallet_create(self, body: bytes) -> bytes:
        try:
            request = AllowanceRequest.decode(body)
            request.verify()
        except RewardError as exc:
            raise LedgerError(str(exc)) from exc
        group = await self.close_group(xor_name(request.wallet))
        answers = await self._gather(group, "wallet.open", request.wallet)
        opened = sum(1 for a in answers if isinstance(a, bytes))
        if opened < min(self.farm_config.quorum, len(group)):
            raise LedgerError(f"only {opened} of the wallet's group opened it: try again")
        try:
            proof = MintProof.decode(await self._mint_request(ALLOWANCE, body))
        except LedgerError as exc:
            if "already had" in str(exc):
                return b""
            raise
        await self._deliver(OutboxItem(proof.op.id, "mint", proof.encode()))
        return proof.encode()

    async def _g_wallet_transfer(self, body: bytes) -> bytes:
        transfer = Transfer.decode(body)
        transfer.verify()
        group = await self.close_group(xor_name(transfer.sender))
        keys = {c.public_key for c in group}
        answers = await self._gather(group, "wallet.vote", body)
        votes: dict[bytes, DebitVote] = {}
        reasons: list[str] = []
        for answer in answers:
            if isinstance(answer, Exception):
                reasons.append(str(answer))
                continue
            try:
                vote = DebitVote(*_unpack(answer))
                vote.verify()
            except (LedgerError, TypeError) as exc:
                reasons.append(f"bad vote: {exc}")
                continue
            if vote.voter in keys and vote.transfer_id == transfer.id:
                votes[vote.voter] = vote
        if len(votes) < self.farm_config.quorum:
            why = "; ".join(sorted(set(reasons))) or "no votes"
            raise LedgerError(
                f"only {len(votes)} of {len(group)} of the sender's group approved: {why}"
            )
        proof = DebitProof(transfer, tuple(votes.values()))
        encoded = proof.encode()
        # Acknowledge only once a quorum holds the debit committed: a debit on one replica
        # alone can be outvoted by two agreeing stale ones when the group changes (a holder
        # displaced by nodes returning with old state), and then it would be lost.
        need = min(self.farm_config.quorum, len(group))
        pending, committed = list(group), 0
        for attempt in range(COMMIT_TRIES):
            answers = await self._gather(pending, "wallet.commit", encoded)
            committed += sum(1 for a in answers if isinstance(a, bytes))
            pending = [c for c, a in zip(pending, answers, strict=True) if isinstance(a, Exception)]
            if committed >= need or not pending:
                break
            await asyncio.sleep(0.2 * (attempt + 1))
        if committed < need:
            raise LedgerError(
                f"approved only: {committed} of the sender's group committed it (need {need});"
                " send the same transfer again to finish it"
            )
        kind = "burn" if transfer.recipient == BURN_ADDRESS else "credit"
        await self._deliver(OutboxItem(transfer.id, kind, encoded))
        return encoded

    async def _g_mint_request(self, body: bytes) -> bytes:
        items = _unpack(body)
        if not (isinstance(items, list) and len(items) == 2 and items[0] in MONEY_KINDS):
            raise LedgerError("a mint request is [kind, payload]")
        kind, payload = items
        if not isinstance(payload, bytes):
            raise LedgerError("mint request payload must be bytes")
        if self.ledger.mint is None and self._responsible(MINT_NAME):
            await self._mint_takeover(self._mint_neighbours())
        mint = self.ledger.mint
        if mint is None or self.identity.public_key not in mint.members:
            raise LedgerError("not_leader: this node is not a member of the mint; ask another")
        async with self._mint_lock:
            return await self._mint_round(kind, payload)

    async def _g_cost(self, body: bytes) -> bytes:
        size = _unpack(body)
        if type(size) is not int or size < 0:
            raise LedgerError("cost takes a size in bytes")
        return _pack(self.store_cost(size))

    def store_load(self) -> tuple[int, int]:
        """``(used, capacity)`` of our chunk store, as the farming rate and store cost take
        them (capacity at least 1, used never above it)."""
        capacity = max(1, self.config.capacity)
        return min(self.store.used_bytes(), capacity), capacity

    def store_cost(self, size: int) -> int:
        return store_cost(*self.store_load(), size, self.farm_config)

    # -- the mint, proposer side -------------------------------------------------------

    async def _mint_request(self, kind: str, payload: bytes) -> bytes:
        """Have a member of the mint run one op; its proof.  Members are among the nodes
        nearest MINT_NAME; the nearest that is a member answers (any member can)."""
        body = _pack([kind, payload])
        last: Exception | None = None
        for attempt_no in range(6):  # a member may still be catching up, or ballots racing
            group = await self.close_group(MINT_NAME)
            for contact in group:
                try:
                    return await self._call(contact, "mint.request", body, replica=False)
                except RpcError as exc:
                    if exc.code == "refused" and not _retryable(exc.message):
                        raise LedgerError(exc.message) from exc
                    last = exc
                except LedgerError as exc:
                    if not _retryable(str(exc)):
                        raise
                    last = exc
            await asyncio.sleep(0.5 * (attempt_no + 1))
        raise LedgerError(f"the mint did not answer: {last}")

    def _member_contacts(self, mint: MintReplica, extra: list[Contact]) -> list[Contact]:
        """Contacts for the members we can address (from the table or ``extra``)."""
        assert self.contact is not None
        known = {c.public_key: c for c in extra}
        out: list[Contact] = []
        for key in mint.members:
            contact = (
                self.contact
                if key == self.identity.public_key
                else known.get(key) or self.table.get(xor_name(key))
            )
            if contact is not None:
                out.append(contact)
        return out

    async def _mint_round(self, kind: str, payload: bytes) -> bytes:
        """Run ``kind``/``payload`` through the mint: a ballot of ours, the promises of a
        majority, then the op they force (finishing it first if it is another's) or ours."""
        seen = 0
        candidates = await self._op_candidates(kind, payload)
        for attempt_no in range(MINT_ATTEMPTS):
            mint = self._mint_held()
            if self.identity.public_key not in mint.members:
                raise LedgerError("not_leader: this node is not a member of the mint")
            try:
                own = mint.propose(kind, payload, now_epoch=self.epoch_now(), candidates=candidates)
            except RewardError as exc:
                raise LedgerError(str(exc)) from exc
            ballot = mint.ballot_after(self.identity.public_key, seen)
            near = await self.close_group(MINT_NAME)
            contacts = self._member_contacts(mint, near)
            promises, seen, moved = await self._prepare(mint, ballot, contacts)
            if moved:  # a member was ahead: we applied what it had; propose again
                continue
            majority = len(mint.members) // 2 + 1
            if len(promises) >= majority:
                op, evidence = choose(promises, own)
                assert op is not None
                proof = await self._accept(mint, op, ballot, evidence, [*contacts, *near])
                if proof is not None:
                    if op.id == own.id:
                        return proof
                    self.counters["mint_recovered"] += 1
                    continue  # we finished another proposer's op; now ours
            self.counters["mint_retries"] += 1
            await asyncio.sleep(random.uniform(0.05, 0.3) * (attempt_no + 1))
        raise LedgerError(
            f"retry: the mint could not reach a majority of its {len(self._mint_held().members)}"
            " members (partitioned or racing proposers); try again"
        )

    async def _prepare(
        self, mint: MintReplica, ballot: Ballot, contacts: list[Contact]
    ) -> tuple[list[Promise], int, bool]:
        """Phase 1 with every member we can reach: (promises, highest round seen, whether
        we caught up from a member that was ahead)."""
        seq = mint.next_seq
        body = _pack([seq, ballot[0], ballot[1]])
        answers = await self._gather(contacts, "mint.prepare", body)
        promises: list[Promise] = []
        seen = ballot[0]
        moved = False
        for contact, first in zip(contacts, answers, strict=True):
            answer = first
            if isinstance(first, RpcError) and first.code == "behind":
                await self._catch_up([contact], [first], [contact])
                with contextlib.suppress(RpcError, LedgerError):
                    answer = await self._call(contact, "mint.prepare", body)
            if isinstance(answer, Exception):
                found = _PROMISED.search(str(answer))
                if found:
                    seen = max(seen, int(found.group(1)))
                continue
            try:
                status, data = _unpack(answer)
                if status == "committed":
                    if data and self._mint_held().next_seq == seq:
                        await self._member_op(self.name, "mint.commit", data)
                    moved = moved or self._mint_held().next_seq > seq
                    continue
                promise = Promise.decode(data)
            except (ValueError, TypeError, LedgerError) as exc:
                log.debug("bad mint.prepare answer from %s: %s", contact.name.hex()[:8], exc)
                continue
            if promise.seq == seq and contact.public_key in mint.members:
                promises.append(promise)
        return promises, seen, moved

    async def _accept(
        self,
        mint: MintReplica,
        op: MintOp,
        ballot: Ballot,
        evidence: MintVote | None,
        targets: list[Contact],
    ) -> bytes | None:
        """Phase 2: the proof if a quorum accepted ``op`` in ``ballot`` (then committed to
        ``targets``: the members and the nodes near the mint), else None."""
        body = _pack([op.encode(), ballot[0], ballot[1], evidence.encode() if evidence else b""])
        unique = list({c.name: c for c in targets}.values())
        members = [c for c in unique if c.public_key in mint.members]
        answers = await self._gather(members, "mint.vote", body)
        votes: dict[bytes, MintVote] = {}
        reasons: list[str] = []
        for answer in answers:
            if isinstance(answer, Exception):
                reasons.append(str(answer))
                continue
            try:
                vote = MintVote.decode(answer)
                vote.verify()
            except RewardError as exc:
                reasons.append(str(exc))
                continue
            if vote.voter in mint.members and vote.op_id == op.id and vote.ballot == ballot:
                votes[vote.voter] = vote
        if len(votes) < mint.quorum(op.kind):
            log.debug("mint seq %d: %d votes; %s", op.seq, len(votes), "; ".join(reasons))
            return None
        proof = MintProof(op, ballot, tuple(votes.values())).encode()
        await self._gather(unique, "mint.commit", proof)
        return proof

    async def _catch_up(
        self, behind: list[Contact], answers: list[bytes | Exception], group: list[Contact]
    ) -> None:
        for contact in behind:
            answer = answers[group.index(contact)]
            assert isinstance(answer, RpcError)
            try:
                start = int(answer.message)
            except ValueError:
                continue
            for seq in sorted(s for s in self._mint_log if s >= start):
                with contextlib.suppress(RpcError, LedgerError):
                    await self._call(contact, "mint.commit", self._mint_log[seq])

    async def _mint_reconfigure(self) -> None:
        """Keep the members the nodes nearest MINT_NAME, one change at a time: a nearer node
        that holds a current replica joins while there is room; when the mint is full, a
        member no longer among the nearest leaves to make room for it."""
        mint = self.ledger.mint
        me = self.identity.public_key
        if mint is None or me not in mint.members or self._mint_lock.locked():
            return
        assert self.contact is not None
        target = self.table.close_group(MINT_NAME, MINT_GROUP, include_self=self.contact)
        keys = [c.public_key for c in target]
        # only the member nearest the mint among those we see proposes changes
        proposer = next((k for k in keys if k in mint.members), None)
        if proposer != me:
            return
        newcomers = [c for c in target if c.public_key not in mint.members]
        ready: Contact | None = None
        for contact in newcomers:
            with contextlib.suppress(RpcError, LedgerError):
                state = MintReplica.decode(
                    await self._call(contact, "mint.get", b""), self.farm_config
                )
                if state.next_seq >= mint.next_seq:
                    ready = contact
                    break
        if ready is None:
            return
        stale = [k for k in mint.members if k not in keys]
        change: tuple[str, bytes] | None = None
        if len(mint.members) < MINT_GROUP:
            change = (JOIN, ready.public_key)
        elif stale:
            far = max(stale, key=lambda k: int.from_bytes(xor_name(k), "big") ^ _MINT_INT)
            change = (LEAVE, far)
        if change is None:
            return
        async with self._mint_lock:
            try:
                await self._mint_round(*change)
                self.counters[f"mint_{change[0]}s"] += 1
                log.info("mint membership: %s %s", change[0], change[1].hex()[:12])
            except LedgerError as exc:
                log.debug("mint membership change %s failed: %s", change[0], exc)

    # ------------------------------------------------------------------ outbox

    def _outbox_add(self, item: OutboxItem) -> None:
        if self.ledger.add_outbox(item):
            self._outbox_seen[item.ident] = time.monotonic()

    async def _deliver(self, item: OutboxItem) -> bool:
        """Try once to have ``item``'s effect acknowledged; True (and dropped) if it was."""
        if item.ident in self._delivering:
            return False
        self._delivering.add(item.ident)
        try:
            done = await self._deliver_once(item)
        except (RpcError, LedgerError) as exc:
            log.debug("delivery of %s failed: %s", item.ident.hex()[:12], exc)
            done = False
        finally:
            self._delivering.discard(item.ident)
        if done:
            self.ledger.done(item.ident)
            self._outbox_seen.pop(item.ident, None)
            self.counters["ledger_delivered"] += 1
        return done

    async def _deliver_once(self, item: OutboxItem) -> bool:
        need = self.farm_config.quorum
        if item.kind == "credit":
            recipient = DebitProof.decode(item.proof).transfer.recipient
            group = await self.close_group(xor_name(recipient))
            answers = await self._gather(group, "wallet.credit", item.proof)
            return sum(isinstance(a, bytes) for a in answers) >= min(need, len(group))
        if item.kind == "burn":
            try:
                await self._mint_request(BURN, item.proof)
            except LedgerError as exc:
                if "already returned" not in str(exc):
                    raise
            return True
        proof = MintProof.decode(item.proof)
        for recipient in {c.recipient for c in proof.op.credits}:
            group = await self.close_group(xor_name(recipient))
            body = _pack([recipient, item.proof])
            answers = await self._gather(group, "wallet.mint", body)
            if sum(isinstance(a, bytes) for a in answers) < min(need, len(group)):
                return False
        return True

    async def _outbox_round(self) -> None:
        now = time.monotonic()
        due = [
            item
            for item in list(self.ledger.outbox.values())
            if now - self._outbox_seen.setdefault(item.ident, now - OUTBOX_GRACE) >= OUTBOX_GRACE
        ]
        for item in due[:64]:
            await self._deliver(item)

    # ------------------------------------------------------------------ sync (churn)

    async def _ledger_sync_round(self) -> None:
        """Push held replicas to the other members; take over the mint if we should."""
        assert self.contact is not None
        factor = self.config.replication_factor
        for wallet, replica in list(self.ledger.wallets.items()):
            name = xor_name(wallet)
            group = self.table.close_group(name, factor, include_self=self.contact)
            # A holder that nearer nodes displaced (nodes coming back with old state, say)
            # keeps pushing while it is still near: its newer state is how the group learns
            # the debits it committed.  Pushes only ever move a replica forward.
            if all(c.name != self.name for c in group) and not self._responsible(name):
                continue
            state = replica.encode()
            for contact in group:
                if contact.name != self.name:
                    with contextlib.suppress(RpcError, LedgerError):
                        await self._call(contact, "wallet.push", state)
        others = self._mint_neighbours()
        mint = self.ledger.mint
        if mint is None:
            if self._responsible(MINT_NAME):
                await self._mint_takeover(others)
            return
        targets = {c.name: c for c in [*others, *self._member_contacts(mint, others)]}
        targets.pop(self.name, None)
        state = mint.public().encode()
        for contact in targets.values():
            with contextlib.suppress(RpcError, LedgerError):
                await self._call(contact, "mint.push", state)
        await self._mint_reconfigure()

    def _mint_neighbours(self) -> list[Contact]:
        """The other nodes of the mint's neighbourhood (the MINT_GROUP nearest MINT_NAME)."""
        assert self.contact is not None
        group = self.table.close_group(MINT_NAME, MINT_GROUP, include_self=self.contact)
        return [c for c in group if c.name != self.name]

    async def _mint_takeover(self, others: list[Contact]) -> None:
        """We are near the mint without a replica: adopt the agreed state, or start the
        mint (genesis) if we are the nearest node and every other answers that it has none.
        Genesis members are the nodes that answered (the mint's neighbourhood)."""
        answers = await self._gather(others, "mint.get", b"")
        states = [a for a in answers if isinstance(a, bytes)]
        missing = [
            c
            for c, a in zip(others, answers, strict=True)
            if isinstance(a, RpcError) and a.code == "not_found"
        ]
        if states:
            for i, state in enumerate(states):
                self._mint_pushed[bytes([i])] = state
            self._consider_mint()
            return
        nearest = min(
            [self.name, *(c.name for c in others)],
            key=lambda n: int.from_bytes(n, "big") ^ _MINT_INT,
        )
        if len(missing) == len(others) and (others or self.config.first) and nearest == self.name:
            members = (self.identity.public_key, *(c.public_key for c in missing))
            self.ledger.save_mint(
                MintReplica(self.core_wallet, self.farm_config, members=members[:MINT_GROUP])
            )
            self.counters["mint_genesis"] += 1
            log.info(
                "mint genesis: %d coins unminted, %d members",
                self.farm_config.total_supply,
                len(members),
            )

    async def _ledger_loop(self, stop: asyncio.Event) -> None:
        next_sync = 0.0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), OUTBOX_INTERVAL)
            if stop.is_set():
                return
            try:
                await self._outbox_round()
                if time.monotonic() >= next_sync:
                    next_sync = time.monotonic() + LEDGER_SYNC_INTERVAL
                    await self._ledger_sync_round()
            except (RpcError, LedgerError) as exc:
                log.debug("ledger round: %s", exc)

    # ------------------------------------------------------------------ farming + payments

    def _claim_reward(self, claim: Claim) -> None:
        self._spawn(self._send_claim(claim))

    async def _send_claim(self, claim: Claim) -> None:
        try:
            proof = MintProof.decode(await self._mint_request(REWARD, claim.encode()))
        except (RpcError, LedgerError) as exc:
            self.farming["claims_refused"] += 1
            log.info("farming claim refused: %s", exc)
            return
        self.farming["claims_paid"] += 1
        self.farming["coins_earned"] += sum(
            c.amount for c in proof.op.credits if c.recipient == self.reward_wallet
        )
        await self._deliver(OutboxItem(proof.op.id, "mint", proof.encode()))

    async def check_payment(self, name: bytes, size: int, payment: bytes) -> str | None:
        """None if ``payment`` pays for storing chunk ``name`` of ``size`` bytes here,
        else why not."""
        if not payment:
            cost = self.store_cost(size)
            return f"this network requires payment: storing it costs {cost} coins"
        try:
            proof = DebitProof.decode(payment)
            transfer = proof.transfer
            if transfer.recipient != BURN_ADDRESS or transfer.memo != name:
                return "the payment is not a store payment for this chunk"
            proof.verify_near(
                await self._near_remote(xor_name(transfer.sender)), self.farm_config.quorum
            )
        except LedgerError as exc:
            return f"invalid payment: {exc}"
        cost = self.store_cost(size)
        if transfer.amount * PAYMENT_SLACK < cost:
            return f"payment of {transfer.amount} is below the store cost of {cost} coins"
        return None

    # ------------------------------------------------------------------ admin

    def ledger_snapshot(self) -> dict[str, Any]:
        mint = self.ledger.mint
        pending: dict[str, int] = {}
        for item in self.ledger.outbox.values():
            pending[item.kind] = pending.get(item.kind, 0) + 1
        return {
            "wallets": {
                w.hex(): {"balance": r.balance, "next_seq": r.next_seq}
                for w, r in sorted(self.ledger.wallets.items())
            },
            "mint": None
            if mint is None
            else {
                "unminted": mint.unminted,
                "next_seq": mint.next_seq,
                "members": len(mint.members),
                "member": self.identity.public_key in mint.members,
            },
            "outbox": pending,
            "reward_wallet": self.reward_wallet.hex(),
            "core_wallet": self.core_wallet.hex(),
        }


_MemberOp = Callable[[LedgerPlane, bytes, bytes], Awaitable[bytes]]
_GatewayOp = Callable[[LedgerPlane, bytes], Awaitable[bytes]]
_MEMBER_OPS: dict[str, _MemberOp] = {
    "wallet.get": LedgerPlane._m_wallet_get,
    "wallet.open": LedgerPlane._m_wallet_open,
    "wallet.vote": LedgerPlane._m_wallet_vote,
    "wallet.commit": LedgerPlane._m_wallet_commit,
    "wallet.credit": LedgerPlane._m_wallet_credit,
    "wallet.mint": LedgerPlane._m_wallet_mint,
    "wallet.push": LedgerPlane._m_wallet_push,
    "mint.get": LedgerPlane._m_mint_get,
    "mint.prepare": LedgerPlane._m_mint_prepare,
    "mint.vote": LedgerPlane._m_mint_vote,
    "mint.commit": LedgerPlane._m_mint_commit,
    "mint.confirm": LedgerPlane._m_mint_confirm,
    "mint.push": LedgerPlane._m_mint_push,
}
_GATEWAY_OPS: dict[str, _GatewayOp] = {
    "wallet.get": LedgerPlane._g_wallet_get,
    "wallet.create": LedgerPlane._g_wallet_create,
    "wallet.transfer": LedgerPlane._g_wallet_transfer,
    "mint.request": LedgerPlane._g_mint_request,
    "cost": LedgerPlane._g_cost,
}
