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
    KINDS,
    MINT_NAME,
    REWARD,
    AllowanceRequest,
    Claim,
    MintOp,
    MintProof,
    MintReplica,
    MintVote,
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
        sender_group = await self._near_remote(xor_name(transfer.sender))
        proof.verify_near(sender_group, self.farm_config.quorum)
        replica = await self._replica_for_credit(transfer.recipient)
        credited = self._credit(replica, proof)
        if credited:
            self.ledger.save_wallet(replica)
        return b"1" if credited else b"0"

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
        proof.verify(await self._near_remote(MINT_NAME), self.farm_config.quorum)
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
        if states:
            try:
                replica = WalletReplica.sync(states, agree=min(2, len(states)))
            except LedgerError as exc:
                raise LedgerError(f"cannot take over this wallet yet: {exc}") from exc
        elif missing >= min(2, len(group)):
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
        pushed = self._pushed.setdefault(wallet, {})
        if len(self._pushed) > MAX_PUSHED:
            self._pushed.clear()
            pushed = self._pushed.setdefault(wallet, {})
        pushed[sender] = body
        self._consider_wallet(wallet)
        return b""

    def _consider_wallet(self, wallet: bytes) -> None:
        """Adopt the state two agreeing peers pushed if ours is missing or behind it."""
        states = list(self._pushed.get(wallet, {}).values())
        ours = self.ledger.wallets.get(wallet)
        # With no replica, one member's word is taken (so a wallet whose last holders died
        # down to one is re-replicated); replacing a replica takes two agreeing members.
        need = 1 if ours is None else 2
        if len(states) < need:
            return
        try:
            agreed = WalletReplica.sync(states, agree=need)
        except LedgerError:
            return
        if ours is not None:
            ahead = agreed.next_seq > ours.next_seq or (
                agreed.next_seq == ours.next_seq and agreed.credited > ours.credited
            )
            if not ahead:
                return
            _keep_own_vote(ours.voted, agreed.voted, agreed.next_seq)
        agreed.quorum = self.farm_config.quorum
        agreed.history_limit = self.farm_config.history_limit
        self.ledger.save_wallet(agreed)
        self._pushed.pop(wallet, None)
        self.counters["ledger_synced"] += 1

    # -- the mint, member side ---------------------------------------------------------

    def _mint_held(self) -> MintReplica:
        if self.ledger.mint is None:
            raise NotHeld("no replica of the mint here")
        return self.ledger.mint

    async def _m_mint_get(self, sender: bytes, body: bytes) -> bytes:
        return self._mint_held().encode()

    async def _m_mint_vote(self, sender: bytes, body: bytes) -> bytes:
        op = MintOp.decode(body)
        mint = self._mint_held()
        if op.seq > mint.next_seq:
            raise Behind(mint.next_seq)
        candidates = await self._burn_candidates(op.kind, op.payload)
        vote = mint.vote(op, self.identity, now_epoch=self.epoch_now(), candidates=candidates)
        self.ledger.save_mint(mint)
        self.ledger.save_pending_op(body)
        return vote.encode()

    async def _burn_candidates(
        self, kind: str, payload: bytes
    ) -> Callable[[bytes], frozenset[bytes]]:
        if kind != BURN:
            return lambda _: frozenset()
        sender = DebitProof.decode(payload).transfer.sender
        near = await self._near_remote(xor_name(sender))
        return lambda _: near

    async def _m_mint_commit(self, sender: bytes, body: bytes) -> bytes:
        proof = MintProof.decode(body)
        mint = self._mint_held()
        if proof.op.seq < mint.next_seq:
            return b"dup"
        if proof.op.seq > mint.next_seq:
            raise Behind(mint.next_seq)
        mint.apply(proof, await self._near_remote(MINT_NAME))
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
        if not self._responsible(MINT_NAME) or not self._is_near(sender, None):
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
        if ours is not None:
            if agreed.next_seq <= ours.next_seq:
                return
            _keep_own_vote(ours.voted, agreed.voted, agreed.next_seq)
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
        answers = await self._gather(group, "wallet.commit", encoded)
        committed = sum(1 for a in answers if isinstance(a, bytes))
        if committed == 0:
            raise LedgerError("approved, but no group member committed it: retry the send")
        kind = "burn" if transfer.recipient == BURN_ADDRESS else "credit"
        await self._deliver(OutboxItem(transfer.id, kind, encoded))
        return encoded

    async def _g_mint_request(self, body: bytes) -> bytes:
        items = _unpack(body)
        if not (isinstance(items, list) and len(items) == 2 and items[0] in KINDS):
            raise LedgerError("a mint request is [kind, payload]")
        kind, payload = items
        if not isinstance(payload, bytes):
            raise LedgerError("mint request payload must be bytes")
        assert self.contact is not None
        group = self.table.close_group(
            MINT_NAME, self.config.replication_factor, include_self=self.contact
        )
        if group[0].name != self.name:
            raise LedgerError("not_leader: this node does not lead the mint; ask the nearest")
        if self.ledger.mint is None:
            await self._mint_takeover(group[1:])
        if self.ledger.mint is None:
            raise LedgerError("not_leader: the mint leader has not taken over the mint yet")
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

    # -- the mint, leader side ---------------------------------------------------------

    async def _mint_request(self, kind: str, payload: bytes) -> bytes:
        """Ask the mint leader (nearest MINT_NAME) to run one op; its proof."""
        body = _pack([kind, payload])
        last: Exception | None = None
        for attempt_no in range(6):  # the leader may still be taking the mint over
            group = await self.close_group(MINT_NAME)
            try:
                return await self._call(group[0], "mint.request", body, replica=False)
            except RpcError as exc:
                if exc.code == "refused" and "not_leader" not in exc.message:
                    raise LedgerError(exc.message) from exc
                last = exc
            except LedgerError as exc:
                if "not_leader" not in str(exc):
                    raise
                last = exc
            await asyncio.sleep(0.5 * (attempt_no + 1))
        raise LedgerError(f"the mint did not answer: {last}")

    async def _mint_round(self, kind: str, payload: bytes) -> bytes:
        mint = self._mint_held()
        unfinished = await self._unfinished_op(mint)
        if unfinished is not None:
            await self._commit_round(unfinished)
        candidates = await self._burn_candidates(kind, payload)
        try:
            op = mint.propose(kind, payload, now_epoch=self.epoch_now(), candidates=candidates)
        except RewardError as exc:
            raise LedgerError(str(exc)) from exc
        return await self._commit_round(op)

    async def _unfinished_op(self, mint: MintReplica) -> MintOp | None:
        """An op some member already voted for at our next seq: a leader that stopped
        mid-round left it, and proposing another op there could split the vote."""
        pending = mint.voted.get(mint.next_seq)
        if pending is not None:
            op = self.ledger.pending_op()
            if op is None or op.id != pending or op.seq != mint.next_seq:
                raise LedgerError("the mint is stalled at a split vote; see docs/FARMING.md")
            return op
        others = [c for c in await self.close_group(MINT_NAME) if c.name != self.name]
        for answer in await self._gather(others, "mint.pending", b""):
            if isinstance(answer, bytes) and answer:
                with contextlib.suppress(RewardError):
                    op = MintOp.decode(answer)
                    if op.seq == mint.next_seq:
                        return op
        return None

    async def _m_mint_pending(self, sender: bytes, body: bytes) -> bytes:
        mint = self._mint_held()
        op = self.ledger.pending_op()
        if op is None or mint.voted.get(mint.next_seq) != op.id or op.seq != mint.next_seq:
            return b""
        return op.encode()

    async def _commit_round(self, op: MintOp) -> bytes:
        group = await self.close_group(MINT_NAME)
        keys = {c.public_key for c in group}
        encoded = op.encode()
        answers = await self._gather(group, "mint.vote", encoded)
        behind = [
            c
            for c, a in zip(group, answers, strict=True)
            if isinstance(a, RpcError) and a.code == "behind"
        ]
        if behind:
            await self._catch_up(behind, answers, group)
            again = await self._gather(behind, "mint.vote", encoded)
            answers = [a for a in answers if not (isinstance(a, RpcError) and a.code == "behind")]
            answers += again
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
            if vote.voter in keys and vote.op_id == op.id:
                votes[vote.voter] = vote
        if len(votes) < self.farm_config.quorum:
            why = "; ".join(sorted(set(reasons))) or "no votes"
            raise LedgerError(f"the mint group approved only {len(votes)}: {why}")
        proof = MintProof(op, tuple(votes.values())).encode()
        await self._gather(group, "mint.commit", proof)
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
            if all(c.name != self.name for c in group):
                continue
            state = replica.encode()
            for contact in group:
                if contact.name != self.name:
                    with contextlib.suppress(RpcError, LedgerError):
                        await self._call(contact, "wallet.push", state)
        group = self.table.close_group(MINT_NAME, factor, include_self=self.contact)
        if all(c.name != self.name for c in group):
            return
        if self.ledger.mint is not None:
            state = self.ledger.mint.encode()
            for contact in group:
                if contact.name != self.name:
                    with contextlib.suppress(RpcError, LedgerError):
                        await self._call(contact, "mint.push", state)
            return
        await self._mint_takeover([c for c in group if c.name != self.name])

    async def _mint_takeover(self, others: list[Contact]) -> None:
        """We are in the mint group without a replica: adopt the agreed state, or start the
        mint (genesis) if every other member answers that it has none."""
        answers = await self._gather(others, "mint.get", b"")
        states = [a for a in answers if isinstance(a, bytes)]
        missing = [a for a in answers if isinstance(a, RpcError) and a.code == "not_found"]
        if states:
            for i, state in enumerate(states):
                self._mint_pushed[bytes([i])] = state
            self._consider_mint()
            return
        if len(missing) == len(others) and (others or self.config.first):
            self.ledger.save_mint(MintReplica(self.core_wallet, self.farm_config))
            self.counters["mint_genesis"] += 1
            log.info("mint genesis: %d coins unminted", self.farm_config.total_supply)

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
            else {"unminted": mint.unminted, "next_seq": mint.next_seq},
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
    "mint.pending": LedgerPlane._m_mint_pending,
    "mint.vote": LedgerPlane._m_mint_vote,
    "mint.commit": LedgerPlane._m_mint_commit,
    "mint.push": LedgerPlane._m_mint_push,
}
_GATEWAY_OPS: dict[str, _GatewayOp] = {
    "wallet.get": LedgerPlane._g_wallet_get,
    "wallet.create": LedgerPlane._g_wallet_create,
    "wallet.transfer": LedgerPlane._g_wallet_transfer,
    "mint.request": LedgerPlane._g_mint_request,
    "cost": LedgerPlane._g_cost,
}
