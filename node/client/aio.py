"""A network client: connects to any node (its gateway); stores and fetches chunks,
self-encrypted files and signed records.

Files: self-encryption is blocking and calls ``put_chunk``/``get_chunk`` from the thread
it runs in, so it runs in a worker thread while the chunks travel on the client's event
loop, at most :data:`IN_FLIGHT` chunk stores outstanding (bounded memory).  A private
file's key is its DataMap, kept by the owner; a public file's DataMap is itself stored as
a chunk whose name is an address anyone can fetch.

The client has its own Ed25519 identity, introduces itself as a client (so no
node puts it in a routing table) and verifies every chunk it receives against
its name.  It owns one background task, which reads transport events for the
RPC layer and ends with :meth:`Client.close`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import msgpack

from node import __version__
from node.data.inbox import Envelope, InboxError
from node.data.records import Record, RecordError
from node.farming.ledger import (
    BURN_ADDRESS,
    DebitProof,
    LedgerError,
    Transfer,
    WalletReplica,
    sign_transfer,
)
from node.farming.mintlog import AllowanceRequest, MintProof
from node.farming.rewards import RewardError
from node.identity import Identity
from node.messages import Kind
from node.routing.bootstrap import parse_contact
from node.routing.contact import Contact
from node.rpc.aio import Rpc, RpcError
from node.selfenc import DataMap, SelfEncryptionError, decrypt_file, encrypt_file
from node.storage.chunkstore import MAX_CHUNK_SIZE, chunk_name
from node.transport.aio import Transport
from node.transport.config import TransportConfig

PUT_TIMEOUT = 30.0


_STILL_OPEN = (
    "approved only",
    "timeout",
    "unreachable",
    "peer_closed",
    "not_connected",
    "again",
    "retry",
)
"""Refusals after which an unconfirmed transfer may still commit (or has, with others)."""


T = TypeVar("T")


async def _read_until(
    read: Callable[[], Awaitable[T]], fresh: Callable[[T], bool], tries: int
) -> tuple[T, bool]:
    """Read up to ``tries`` times (0.5 s apart) until ``fresh`` accepts the answer: a gateway
    whose view is partial (just after a partition healed) may answer with an older state
    than this client already saw.  The last answer, and whether it was fresh."""
    for attempt in range(tries):
        answer = await read()
        if fresh(answer):
            return answer, True
        if attempt + 1 < tries:
            await asyncio.sleep(0.5)
    return answer, False


class ClientError(Exception):
    """A client operation failed; the message says why and what to try."""


class Client:
    """Store and fetch chunks through one gateway node."""

    def __init__(self, identity: Identity | None = None, config: TransportConfig | None = None):
        self.identity = identity or Identity.generate()
        self.transport = Transport(
            self.identity, config or TransportConfig(idle_timeout=10.0, keepalive_interval=2.0)
        )
        self.rpc = Rpc(self.transport, timeout=PUT_TIMEOUT)
        self.gateway: Contact | None = None
        self._wallet_locks: dict[bytes, asyncio.Lock] = {}
        self._unconfirmed: dict[bytes, Transfer] = {}
        self._committed: dict[bytes, int] = {}  # wallet -> highest seq we saw committed
        self._records_seen: dict[bytes, tuple[int, bytes]] = {}  # address -> precedence
        self.app = b""  # app wallet named in every GET (farming rewards share 10 % with it)
        self._reader: asyncio.Task[None] | None = None

    async def start(self, host: str = "127.0.0.1") -> None:
        await self.transport.start(host, 0)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            await self.rpc.next_event()  # requests to a client are ignored

    async def connect(self, contact: str | Contact) -> None:
        """Use ``contact`` (``HOST:PORT/PUBKEYHEX`` or a Contact) as the gateway."""
        gw = parse_contact(contact) if isinstance(contact, str) else contact
        try:
            await self.transport.connect(gw.public_key, gw.address)
        except Exception as exc:
            raise ClientError(f"cannot reach the node at {gw.address}: {exc}") from exc
        self.rpc.notify(
            gw.public_key,
            Kind.HELLO,
            role="client",
            region="",
            version=__version__,
            host="",
            port=0,
        )
        self.gateway = gw

    def _gw(self) -> Contact:
        if self.gateway is None:
            raise ClientError("not connected: call connect() with a node contact first")
        return self.gateway

    async def put_chunk(self, data: bytes, *, payment: bytes = b"") -> bytes:
        """Store ``data`` as a chunk; returns its name once the close group holds it.

        ``payment``: an encoded store-payment proof (see :meth:`pay_for`), for networks whose
        nodes require one."""
        if len(data) > MAX_CHUNK_SIZE:
            raise ClientError(f"a chunk is at most {MAX_CHUNK_SIZE} bytes")
        gw = self._gw()
        name = chunk_name(data)
        try:
            await self.rpc.call(
                gw.public_key,
                gw.address,
                Kind.PUT,
                name=name,
                data=data,
                replica=False,
                payment=payment,
            )
        except RpcError as exc:
            raise ClientError(f"store failed: {exc}") from exc
        return name

    async def get_chunk(self, name: bytes, *, app: bytes = b"") -> bytes:
        """Fetch and verify a chunk; ``app`` names the app wallet to share farming rewards."""
        gw = self._gw()
        try:
            reply = await self.rpc.call(
                gw.public_key, gw.address, Kind.GET, name=name, app=app or self.app
            )
        except RpcError as exc:
            raise ClientError(f"fetch failed: {exc}") from exc
        data = bytes(reply.body["data"])
        if chunk_name(data) != name:
            raise ClientError("the node returned data that does not match the chunk name")
        return data

    async def put_record(self, record: Record) -> int:
        """Write a signed record to its close group; returns how many holders stored it."""
        gw = self._gw()
        try:
            reply = await self.rpc.call(
                gw.public_key, gw.address, Kind.RECORD_PUT, record=record.encode(), replica=False
            )
        except RpcError as exc:
            raise ClientError(f"record write refused: {exc}") from exc
        self._saw_record(record)
        return int(reply.body["holders"])

    def _saw_record(self, record: Record) -> None:
        seen = self._records_seen.get(record.address)
        if seen is None or record.precedence > seen:
            self._records_seen[record.address] = record.precedence

    async def get_record(self, address: bytes, tries: int = 3) -> Record | None:
        """The newest record at ``address`` (verified), or None if there is none.

        Monotonic reads: a record older than one this client already wrote or read is not
        returned.  A gateway whose view of the network is still partial (just after a
        partition healed, it may reach only the side that missed the newest writes) is
        asked again, and then the read fails with that reason rather than going back."""
        floor = self._records_seen.get(address)
        record, fresh = await _read_until(
            lambda: self._get_record_once(address),
            lambda r: floor is None or (r is not None and r.precedence >= floor),
            tries,
        )
        if fresh:
            if record is not None:
                self._saw_record(record)
            return record
        assert floor is not None  # without one, the first answer was fresh
        raise ClientError(
            f"the nodes reached through this gateway hold an older version of that record than"
            f" this client already saw (v{floor[0]}): its view of the network may be partial;"
            " try again later or through another node"
        )

    async def _get_record_once(self, address: bytes) -> Record | None:
        gw = self._gw()
        try:
            reply = await self.rpc.call(gw.public_key, gw.address, Kind.RECORD_GET, address=address)
        except RpcError as exc:
            if exc.code == "not_found":
                return None
            raise ClientError(f"record read failed: {exc}") from exc
        try:
            record = Record.decode(reply.body["record"])
            record.verify()
        except RecordError as exc:
            raise ClientError(f"the node returned an invalid record: {exc}") from exc
        if record.address != address:
            raise ClientError("the node returned a record for another address")
        return record

    async def post_letter(self, envelope: Envelope) -> int:
        """Deliver a sealed letter to the recipient's inbox; returns how many holders took it."""
        gw = self._gw()
        try:
            reply = await self.rpc.call(
                gw.public_key, gw.address, Kind.INBOX_ADD, envelope=envelope.encode(), replica=False
            )
        except RpcError as exc:
            raise ClientError(f"message not delivered: {exc}") from exc
        return int(reply.body["count"])

    async def read_inbox(self, address: bytes) -> list[Envelope]:
        """Every envelope the inbox's close group holds (deduplicated, oldest first)."""
        gw = self._gw()
        try:
            reply = await self.rpc.call(gw.public_key, gw.address, Kind.INBOX_LIST, address=address)
        except RpcError as exc:
            raise ClientError(f"cannot read the inbox: {exc}") from exc
        out = []
        for raw in reply.body["envelopes"]:
            try:
                envelope = Envelope.decode(raw)
            except InboxError:
                continue
            if envelope.address == address:
                out.append(envelope)
        return out

    async def delete_letters(self, address: bytes, ids: list[bytes], proof: bytes) -> int:
        gw = self._gw()
        try:
            reply = await self.rpc.call(
                gw.public_key,
                gw.address,
                Kind.INBOX_DELETE,
                address=address,
                ids=ids,
                proof=proof,
                replica=False,
            )
        except RpcError as exc:
            raise ClientError(f"cannot delete: {exc}") from exc
        return int(reply.body["count"])

    # -- safecoin -------------------------------------------------------------------------

    async def _ledger(self, op: str, body: bytes) -> bytes:
        gw = self._gw()
        try:
            reply = await self.rpc.call(
                gw.public_key, gw.address, Kind.LEDGER, op=op, body=body, replica=False
            )
        except RpcError as exc:
            text = exc.message if exc.code in ("refused", "not_found") else str(exc)
            raise ClientError(text) from exc
        return bytes(reply.body["body"])

    async def create_wallet(self, owner: Identity) -> int:
        """Open ``owner``'s wallet on its close group and claim the free allowance once;
        the coins minted (0 if the wallet had its allowance already)."""
        proof = await self._ledger("wallet.create", AllowanceRequest.sign(owner).encode())
        if not proof:
            return 0
        try:
            return MintProof.decode(proof).op.minted
        except RewardError as exc:
            raise ClientError(f"the gateway returned a bad mint proof: {exc}") from exc

    async def wallet(self, key: bytes) -> WalletReplica:
        """The wallet's state as its close group reports it (the majority of replicas)."""
        state = await self._ledger("wallet.get", key)
        try:
            replica = WalletReplica.decode(state)
        except LedgerError as exc:
            raise ClientError(f"the gateway returned a bad wallet state: {exc}") from exc
        if replica.wallet != key:
            raise ClientError("the gateway returned another wallet's state")
        return replica

    async def send(
        self, owner: Identity, recipient: bytes, amount: int, memo: bytes = b""
    ) -> DebitProof:
        """Transfer ``amount`` coins; the proof once the sender's group committed it."""
        if recipient == owner.public_key:
            raise ClientError("cannot send coins to the same wallet")
        # One transfer at a time per wallet: two in flight would race for one seq, and the
        # group refuses both if neither reaches a quorum (that is the double-spend rule).
        lock = self._wallet_locks.setdefault(owner.public_key, asyncio.Lock())
        async with lock:
            return await self._send(owner, recipient, amount, memo)

    async def _send(
        self, owner: Identity, recipient: bytes, amount: int, memo: bytes
    ) -> DebitProof:
        last = ""
        for _ in range(3):
            state = await self._fresh_wallet(owner.public_key)
            if await self._finish_unconfirmed(owner.public_key, state.next_seq):
                state = await self._fresh_wallet(owner.public_key)
            if amount > state.balance:
                raise ClientError(f"insufficient funds: balance {state.balance}, sending {amount}")
            try:
                transfer = sign_transfer(owner, recipient, amount, state.next_seq, memo)
            except LedgerError as exc:
                raise ClientError(str(exc)) from exc
            self._unconfirmed[owner.public_key] = transfer
            try:
                proof = await self._ledger("wallet.transfer", transfer.encode())
            except ClientError as exc:
                last = str(exc)
                if "out of order" in last or "replay" in last:
                    await asyncio.sleep(0.5)  # a replica is behind or ahead: refetch the seq
                    continue
                raise
            self._unconfirmed.pop(owner.public_key, None)
            try:
                done = DebitProof.decode(proof)
            except LedgerError as exc:
                raise ClientError(f"the gateway returned a bad proof: {exc}") from exc
            self._saw_committed(owner.public_key, done.transfer.seq)
            return done
        raise ClientError(f"transfer not accepted: {last}")

    def _saw_committed(self, wallet: bytes, seq: int) -> None:
        self._committed[wallet] = max(seq, self._committed.get(wallet, -1))

    async def _fresh_wallet(self, wallet: bytes, tries: int = 3) -> WalletReplica:
        """The wallet's state, refusing one older than what this client already saw
        committed (read-your-writes).  A gateway cut off from the wallet's group, or whose
        view of it is a stale minority, reports an old seq: signing a transfer at it would
        offer a second, different transfer for a seq that is already spent."""
        floor = self._committed.get(wallet, -1)
        state, fresh = await _read_until(
            lambda: self.wallet(wallet), lambda s: s.next_seq > floor, tries
        )
        if fresh:
            return state
        raise ClientError(
            f"the wallet's group reached through this gateway is behind: it reports seq"
            f" {state.next_seq}, but seq {floor} is already committed; it may be cut off from"
            " the rest of the network: try again later or through another node"
        )

    async def _finish_unconfirmed(self, wallet: bytes, next_seq: int) -> bool:
        """A transfer we signed whose outcome we never learned (a timeout, a dropped
        gateway) may have committed with some of the group: it is sent again, unchanged,
        before anything else is signed at its seq.  Signing a different transfer there
        could let the two sides of a partition each commit one.  True if it was sent (the
        wallet's state may have moved since it was read)."""
        pending = self._unconfirmed.get(wallet)
        if pending is None:
            return False
        if pending.seq < next_seq:  # the group has moved past it: it is settled
            self._unconfirmed.pop(wallet, None)
            self._saw_committed(wallet, next_seq - 1)
            return False
        if pending.seq > next_seq:  # we read seq pending.seq before: this view is stale
            raise ClientError(
                f"an earlier transfer at seq {pending.seq} is still unconfirmed and the"
                f" wallet's group here reports seq {next_seq}: it is behind; try again later"
                " or through another node"
            )
        try:
            await self._ledger("wallet.transfer", pending.encode())
        except ClientError as exc:
            message = str(exc)
            if any(m in message for m in _STILL_OPEN):
                raise ClientError(
                    f"an earlier transfer at seq {pending.seq} is still unconfirmed and must"
                    f" finish first: {exc}"
                ) from exc
        self._unconfirmed.pop(wallet, None)  # committed, or refused for good
        return True

    async def put_paid(self, data: bytes, payer: Identity | None) -> bytes:
        """:meth:`put_chunk`, paying the store cost from ``payer`` first if given."""
        payment = b"" if payer is None else await self.pay_for(payer, data)
        return await self.put_chunk(data, payment=payment)

    async def store_cost(self, size: int) -> int:
        """Coins the gateway asks for storing ``size`` bytes now."""
        raw = await self._ledger("cost", msgpack.packb(size))
        cost = msgpack.unpackb(raw)
        if type(cost) is not int or cost < 0:
            raise ClientError("the gateway returned a bad store cost")
        return cost

    async def pay_for(self, owner: Identity, data: bytes) -> bytes:
        """Pay the store cost of chunk ``data`` from ``owner``'s wallet (a burn that names
        the chunk); the encoded proof to pass as ``put_chunk(payment=...)``."""
        cost = await self.store_cost(len(data))
        proof = await self.send(owner, BURN_ADDRESS, max(1, cost), memo=chunk_name(data))
        return proof.encode()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.transport.aclose("client leaving")


# ---------------------------------------------------------------- files on the network

IN_FLIGHT = 4
Progress = Callable[[int], None]
"""Called with the number of bytes just stored or fetched."""


async def put_file(
    client: Client,
    path: Path,
    *,
    progress: Progress | None = None,
    payer: Identity | None = None,
) -> DataMap:
    """Self-encrypt ``path`` and store every chunk; returns the DataMap (the file's only key).

    ``payer``: pay each chunk's store cost from this wallet (networks that require it)."""
    loop = asyncio.get_running_loop()
    pending: list[tuple[concurrent.futures.Future[bytes], int]] = []

    def settle_one() -> None:
        fut, size = pending.pop(0)
        fut.result()
        if progress is not None:
            progress(size)

    def put_chunk(name: bytes, content: bytes) -> None:
        while len(pending) >= IN_FLIGHT:
            settle_one()
        fut = asyncio.run_coroutine_threadsafe(client.put_paid(bytes(content), payer), loop)
        pending.append((fut, len(content)))

    def work() -> DataMap:
        data_map = encrypt_file(path, put_chunk)
        while pending:
            settle_one()
        return data_map

    try:
        return await asyncio.to_thread(work)
    except SelfEncryptionError as exc:
        raise ClientError(f"cannot encrypt {path}: {exc}") from exc
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}") from exc


async def get_file(
    client: Client, data_map: DataMap, path: Path, *, progress: Progress | None = None
) -> None:
    """Fetch, verify and decrypt a file to ``path`` (nothing is written unless all is good)."""
    loop = asyncio.get_running_loop()

    def get_chunk(name: bytes) -> bytes:
        data = asyncio.run_coroutine_threadsafe(client.get_chunk(name), loop).result()
        if progress is not None:
            progress(len(data))
        return data

    try:
        await asyncio.to_thread(decrypt_file, data_map, get_chunk, path)
    except SelfEncryptionError as exc:
        raise ClientError(f"cannot rebuild the file: {exc}") from exc


async def publish(client: Client, data_map: DataMap) -> bytes:
    """Store a DataMap as a chunk; its name is the file's public address."""
    return await client.put_chunk(data_map.to_bytes())


async def resolve(client: Client, address: bytes) -> DataMap:
    """The DataMap behind a public address."""
    raw = await client.get_chunk(address)
    if len(raw) > MAX_CHUNK_SIZE:
        raise ClientError("that address does not hold a DataMap")
    try:
        return DataMap.from_bytes(raw)
    except SelfEncryptionError as exc:
        raise ClientError(f"that address does not hold a DataMap: {exc}") from exc


def file_size(path: Path) -> int:
    return os.stat(path).st_size
