"""The node's data plane for mutable data: signed records and inboxes (asyncio adapter).

A mixin of :class:`node.service.NodeService`: the request handlers and gateway paths for
RECORD_PUT/GET and INBOX_ADD/LIST/DELETE.  The rules themselves are pure
(:mod:`node.data.records`, :mod:`node.data.inbox`); this module only moves them between
a client, its gateway node and the close group of the data's address, and re-sends what
a node holds when membership changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.atomicfile import write_atomic
from node.config import RESPONSIBILITY_MARGIN
from node.data.inbox import Envelope, InboxError, InboxState
from node.data.records import ACCEPTED, Record, RecordError, Verdict
from node.messages import MAX_ENVELOPES, Kind, Message
from node.routing.contact import Contact
from node.rpc.aio import RpcError

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Coroutine

    from node.config import NodeConfig
    from node.identity import Identity
    from node.routing.table import RoutingTable
    from node.rpc.aio import Rpc
    from node.storage.recordstore import RecordStore

PUT_QUORUM = 3
"""A write is acknowledged once this many holders stored it; repair makes the rest."""


class DataPlane:
    """Records and inboxes; mixed into NodeService, which provides the attributes below."""

    config: NodeConfig
    name: bytes
    identity: Identity
    rpc: Rpc
    table: RoutingTable
    records: RecordStore
    inboxes: InboxState
    roles: dict[bytes, str]
    counters: Counter[str]
    _records_dirty: bool

    def _responsible(self, name: bytes) -> bool:
        raise NotImplementedError

    async def close_group(self, name: bytes, count: int | None = None) -> list[Contact]:
        raise NotImplementedError

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        raise NotImplementedError

    async def _on_record_put(self, peer: bytes, msg: Message) -> None:
        try:
            record = Record.decode(msg.body["record"])
            if msg.body["replica"]:
                if not self._responsible(record.address):
                    self.counters["rejected_not_responsible"] += 1
                    self.rpc.reply_error(peer, msg, "not_responsible", "not in its close group")
                    return
                verdict = self.records.put(record)
                self.rpc.reply(peer, msg, Kind.RECORD_OK, verdict=verdict.value, holders=1)
                return
            record.verify()
        except RecordError as exc:
            self.counters["rejected_records"] += 1
            self.rpc.reply_error(peer, msg, "refused", str(exc))
            return
        verdicts = await self.put_record(record)
        stored = sum(1 for v in verdicts if v in ACCEPTED or v is Verdict.SAME)
        if stored >= min(PUT_QUORUM, len(verdicts)):
            self.rpc.reply(peer, msg, Kind.RECORD_OK, verdict="stored", holders=stored)
            return
        why = ", ".join(sorted({v.value if isinstance(v, Verdict) else v for v in verdicts}))
        self.rpc.reply_error(peer, msg, "not_stored", f"close group answered: {why}")

    async def _on_record_get(self, peer: bytes, msg: Message) -> None:
        address = msg.body["address"]
        if self.roles.get(peer) == "node":
            record = self.records.get(address)
        else:
            record = await self.get_record(address)
        if record is None:
            self.rpc.reply_error(peer, msg, "not_found", "no record at that address")
            return
        self.rpc.reply(peer, msg, Kind.RECORD_DATA, record=record.encode())

    async def _on_inbox_add(self, peer: bytes, msg: Message) -> None:
        try:
            envelope = Envelope.decode(msg.body["envelope"])
        except InboxError as exc:
            self.rpc.reply_error(peer, msg, "refused", str(exc))
            return
        if msg.body["replica"]:
            if not self._responsible(envelope.address):
                self.rpc.reply_error(peer, msg, "not_responsible", "not in its close group")
                return
            added = self._inbox_add(envelope)
            self.rpc.reply(peer, msg, Kind.INBOX_OK, count=int(added))
            return
        group = await self.close_group(envelope.address)
        results = await asyncio.gather(*(self._inbox_add_on(c, envelope) for c in group))
        stored = sum(results)
        if stored >= min(PUT_QUORUM, len(group)):
            self.rpc.reply(peer, msg, Kind.INBOX_OK, count=stored)
        else:
            self.rpc.reply_error(peer, msg, "not_stored", f"only {stored} holders took it")

    def _inbox_add(self, envelope: Envelope) -> bool:
        try:
            added = self.inboxes.add(envelope)
        except InboxError:
            return False
        if added:
            save_inboxes(self.config.data_dir / "inboxes.bin", self.inboxes)
        return True

    async def _inbox_add_on(self, contact: Contact, envelope: Envelope) -> bool:
        if contact.name == self.name:
            return self._inbox_add(envelope)
        try:
            await self.rpc.call(
                contact.public_key,
                contact.address,
                Kind.INBOX_ADD,
                envelope=envelope.encode(),
                replica=True,
            )
        except RpcError:
            return False
        return True

    async def _on_inbox_list(self, peer: bytes, msg: Message) -> None:
        address = msg.body["address"]
        envelopes = {e.id: e for e in self.inboxes.list(address)}
        if self.roles.get(peer) != "node":
            for contact in await self.close_group(address):
                if contact.name == self.name:
                    continue
                with contextlib.suppress(RpcError, InboxError):
                    reply = await self.rpc.call(
                        contact.public_key, contact.address, Kind.INBOX_LIST, address=address
                    )
                    for raw in reply.body["envelopes"]:
                        e = Envelope.decode(raw)
                        if e.address == address:
                            envelopes.setdefault(e.id, e)
        newest = list(envelopes.values())[-MAX_ENVELOPES:]
        self.rpc.reply(peer, msg, Kind.INBOX_DATA, envelopes=[e.encode() for e in newest])

    async def _on_inbox_delete(self, peer: bytes, msg: Message) -> None:
        address, ids, proof = msg.body["address"], msg.body["ids"], msg.body["proof"]
        try:
            removed = self.inboxes.delete(address, ids, proof)
        except InboxError as exc:
            self.rpc.reply_error(peer, msg, "refused", str(exc))
            return
        if removed:
            save_inboxes(self.config.data_dir / "inboxes.bin", self.inboxes)
        if not msg.body["replica"]:
            group = [c for c in await self.close_group(address) if c.name != self.name]
            answers = await asyncio.gather(
                *(self._delete_on(c, address, ids, proof) for c in group)
            )
            if "refused" in answers:
                self.rpc.reply_error(peer, msg, "refused", "not the recipient's signature")
                return
            removed = max([removed, *(a for a in answers if isinstance(a, int))])
        self.rpc.reply(peer, msg, Kind.INBOX_OK, count=removed)

    async def _delete_on(
        self, contact: Contact, address: bytes, ids: list[bytes], proof: bytes
    ) -> int | str:
        try:
            reply = await self.rpc.call(
                contact.public_key,
                contact.address,
                Kind.INBOX_DELETE,
                address=address,
                ids=ids,
                proof=proof,
                replica=True,
            )
        except RpcError as exc:
            return exc.code
        return int(reply.body["count"])

    async def put_record(self, record: Record) -> list[Verdict | str]:
        """Write a record to its close group; each member's verdict (or why it failed)."""
        group = await self.close_group(record.address)
        return list(await asyncio.gather(*(self._record_put_on(c, record) for c in group)))

    async def _record_put_on(self, contact: Contact, record: Record) -> Verdict | str:
        if contact.name == self.name:
            try:
                return self.records.put(record)
            except RecordError as exc:
                return f"refused: {exc}"
        try:
            reply = await self.rpc.call(
                contact.public_key,
                contact.address,
                Kind.RECORD_PUT,
                record=record.encode(),
                replica=True,
            )
        except RpcError as exc:
            return exc.code
        try:
            return Verdict(reply.body["verdict"])
        except ValueError:
            return "bad_reply"

    async def get_record(self, address: bytes) -> Record | None:
        """The newest valid record held near ``address``, asking every node that may hold
        it (any within the responsibility margin takes a record), not only the 4 nearest:
        after a partition heals, the nearest can be the side that missed the writes while
        the nodes that took them are a little further out.  Holders among the nearest
        that are behind get the newest (read repair)."""
        rf = self.config.replication_factor
        near = await self.close_group(address, rf * RESPONSIBILITY_MARGIN)
        found = await asyncio.gather(*(self._record_from(c, address) for c in near))
        valid = [r for r in found if r is not None and r.address == address]
        if not valid:
            return None
        best = max(valid, key=lambda r: r.precedence)
        for contact, held in list(zip(near, found, strict=True))[:rf]:
            if held is None or held.precedence < best.precedence:
                self.counters["record_read_repairs"] += 1
                self._spawn(self._repair_record(contact, best))
        return best

    async def _repair_record(self, contact: Contact, record: Record) -> None:
        await self._record_put_on(contact, record)

    async def _record_from(self, contact: Contact, address: bytes) -> Record | None:
        if contact.name == self.name:
            return self.records.get(address)
        try:
            reply = await self.rpc.call(
                contact.public_key, contact.address, Kind.RECORD_GET, address=address
            )
            record = Record.decode(reply.body["record"])
            record.verify()
        except (RpcError, RecordError):
            return None
        return record

    async def _push_records(self) -> None:
        """Re-send held records and letters to their close groups (receivers keep the newest,
        letters are deduplicated by id)."""
        self._records_dirty = False
        for address in self.inboxes.addresses():
            group = self.table.close_group(address, self.config.replication_factor)
            for envelope in self.inboxes.list(address):
                for contact in group:
                    await self._inbox_add_on(contact, envelope)
        for address in self.records.addresses():
            record = self.records.get(address)
            if record is None:
                continue
            for contact in self.table.close_group(address, self.config.replication_factor):
                if contact.name != self.name:
                    await self._record_put_on(contact, record)


def load_inboxes(path: Path) -> InboxState:
    try:
        return InboxState.decode(path.read_bytes())
    except (OSError, InboxError):
        return InboxState()


def save_inboxes(path: Path, state: InboxState) -> None:
    write_atomic(path, state.encode())
