"""Request/response on top of the transport: correlate replies, surface requests and events.

:meth:`Rpc.next_event` is the single reader of the transport's events.  Responses
resolve the matching :meth:`Rpc.call`; requests and notifications, and the
transport's lifecycle events (Connected, PeerDead...), are handed to the caller,
which owns any task it starts for them.  Undecodable messages are counted and
dropped; a request we cannot parse gets no reply.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import Counter
from typing import Any, NamedTuple

from node.messages import RESPONSES, Kind, Message, MessageError, decode, encode, error
from node.transport.aio import Transport
from node.transport.endpoint import TransportError
from node.transport.events import (
    Addr,
    Event,
    HandshakeFailed,
    MessageReceived,
    PeerClosed,
    PeerDead,
)


class RpcError(Exception):
    """A call failed: timeout, unreachable peer, or an ERROR reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _PeerGone(TransportError):
    """The session ended while a call was waiting for its reply."""


class Incoming(NamedTuple):
    """A request or notification from a peer."""

    peer: bytes
    msg: Message


class Rpc:
    """Calls and replies for one transport."""

    def __init__(self, transport: Transport, *, timeout: float = 3.0) -> None:
        self.transport = transport
        self.timeout = timeout
        self._rids = itertools.count(secrets.randbelow(1 << 40))
        self._pending: dict[int, tuple[bytes, asyncio.Future[Message]]] = {}
        self.counters: Counter[str] = Counter()
        self.last_used: dict[bytes, float] = {}
        """When we last sent a request to, or got any message from, each peer."""

    async def call(
        self,
        peer: bytes,
        addr: Addr | None,
        kind: Kind,
        *,
        timeout: float | None = None,
        **body: Any,
    ) -> Message:
        """Send a request and wait for its reply; raises RpcError."""
        limit = timeout if timeout is not None else self.timeout
        if not self.transport.endpoint.is_connected(peer):
            if addr is None:
                raise RpcError("not_connected", "no session and no address for that peer")
            try:
                await self.transport.connect(peer, addr, timeout=limit)
            except TransportError as exc:
                raise RpcError("unreachable", str(exc)) from exc
        self.last_used[peer] = asyncio.get_running_loop().time()
        rid = next(self._rids)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (peer, fut)
        self.counters[f"sent_{kind.name.lower()}"] += 1
        try:
            self.transport.send(peer, encode(kind, rid, **body))
            async with asyncio.timeout(limit):
                reply = await fut
        except TimeoutError as exc:
            self.counters["timeouts"] += 1
            raise RpcError("timeout", f"{kind.name} got no reply in {limit:.1f} s") from exc
        except _PeerGone as exc:
            raise RpcError("peer_closed", str(exc)) from exc
        except TransportError as exc:
            raise RpcError("unreachable", str(exc)) from exc
        finally:
            self._pending.pop(rid, None)
        if reply.kind is Kind.ERROR:
            raise RpcError(reply.body["code"], reply.body["message"])
        return reply

    def reply(self, peer: bytes, request: Message, kind: Kind, **body: Any) -> None:
        self._send(peer, encode(kind, request.rid, **body))

    def reply_error(self, peer: bytes, request: Message, code: str, message: str) -> None:
        self.counters[f"error_{code}"] += 1
        self._send(peer, error(request.rid, code, message))

    def notify(self, peer: bytes, kind: Kind, **body: Any) -> None:
        self._send(peer, encode(kind, 0, **body))

    def _send(self, peer: bytes, data: bytes) -> None:
        try:
            self.transport.send(peer, data)
        except TransportError:
            self.counters["send_to_gone_peer"] += 1

    async def next_event(self) -> Incoming | Event:
        """The next request/notification from a peer, or a transport lifecycle event."""
        while True:
            event = await self.transport.recv()
            if not isinstance(event, MessageReceived):
                if isinstance(event, PeerDead | PeerClosed | HandshakeFailed):
                    self._fail_peer(event.peer, type(event).__name__)
                    self.last_used.pop(event.peer, None)
                return event
            self.last_used[event.peer] = asyncio.get_running_loop().time()
            try:
                msg = decode(event.data)
            except MessageError:
                self.counters["malformed"] += 1
                continue
            if msg.kind in RESPONSES:
                self._resolve(event.peer, msg)
                continue
            self.counters[f"received_{msg.kind.name.lower()}"] += 1
            return Incoming(event.peer, msg)

    def _resolve(self, peer: bytes, msg: Message) -> None:
        pending = self._pending.get(msg.rid)
        if pending is None or pending[0] != peer:
            self.counters["unexpected_reply"] += 1
            return
        if not pending[1].done():
            pending[1].set_result(msg)

    def _fail_peer(self, peer: bytes, why: str) -> None:
        for owner, fut in list(self._pending.values()):
            if owner == peer and not fut.done():
                fut.set_exception(_PeerGone(f"peer gone ({why})"))
