"""asyncio adapter: one UDP socket driving one sans-IO :class:`Endpoint`.

This is the only transport module that touches sockets, the clock and the
event loop.  Receive path: the socket is drained with ``add_reader`` +
``recvfrom_into`` into one preallocated buffer (up to :data:`RECV_BATCH`
datagrams per wake-up), with a large ``SO_RCVBUF``; no task or future per
packet.  ICMP errors come from the socket error queue (``IP_RECVERR``), so a
peer whose process died is reported at once.  The userspace impairment layer
sits between the socket and the endpoint, in both directions, and is skipped
entirely while it has no rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from node.identity import Identity
from node.transport.config import TransportConfig
from node.transport.endpoint import Endpoint, TransportError
from node.transport.events import Addr, Connected, Event, HandshakeFailed, PeerClosed, PeerDead
from node.transport.impair import Direction, Impairment
from node.transport.wire import MAX_RECV_DATAGRAM

RECV_BATCH = 512
SOCKET_BUFFER = 8 * 1024 * 1024
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
_EXTENDED_ERR = struct.Struct("=IBBBB")
_ICMP_ORIGINS = (2, 3)  # SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6


def install_uvloop() -> bool:
    """Use uvloop's event loop policy when it is installed; returns whether it was."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def _open_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)
    with contextlib.suppress(OSError):
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    sock.bind((host, port))
    return sock


class Transport:
    """Encrypted reliable UDP for one identity, on one socket."""

    def __init__(
        self,
        identity: Identity,
        config: TransportConfig | None = None,
        *,
        impairment: Impairment | None = None,
    ) -> None:
        self.identity = identity
        self.config = config or TransportConfig()
        self.impairment = impairment or Impairment()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._endpoint: Endpoint | None = None
        self._buf = bytearray(MAX_RECV_DATAGRAM + 1)
        self._view = memoryview(self._buf)
        self._timer: asyncio.Handle | None = None
        self._timer_at: float | None = None
        self._backlog: deque[tuple[bytes, Addr]] = deque()
        self._events: deque[Event] = deque()
        self._event_waiter: asyncio.Future[None] | None = None
        self._dial_waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._drain_waiters: list[tuple[bytes, int, asyncio.Future[None]]] = []
        self._service_scheduled = False
        self.address: Addr = ("", 0)
        self.socket_errors = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Addr:
        """Bind and start serving; returns the bound (host, port)."""
        self._loop = asyncio.get_running_loop()
        self._sock = _open_socket(host, port)
        self.address = self._sock.getsockname()[:2]
        self._endpoint = Endpoint(self.identity, self.config, now=self._loop.time())
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        return self.address

    @property
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            raise TransportError("transport not started; await start() first")
        return self._endpoint

    async def aclose(self, reason: str = "shutting down") -> None:
        """Close every session gracefully (peers see it at once), then the socket."""
        if self._sock is None or self._loop is None:
            return
        self.endpoint.close_all(reason)
        self._service()
        self._flush_backlog()
        self._loop.remove_reader(self._sock.fileno())
        if self._backlog:
            self._loop.remove_writer(self._sock.fileno())
        if self._timer is not None:
            self._timer.cancel()
        self.endpoint.shutdown()
        self._sock.close()
        self._sock = None
        self._fail_waiters(TransportError("transport closed"))

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ application API

    async def connect(self, peer: bytes, addr: Addr, *, timeout: float | None = None) -> None:
        """Dial ``peer`` at ``addr`` and wait until the session is up."""
        ep = self.endpoint
        if ep.is_connected(peer):
            return
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._dial_waiters.setdefault(peer, []).append(fut)
        ep.connect(peer, addr, now=self._loop.time())
        self._schedule_service()
        limit = timeout if timeout is not None else self.config.handshake_timeout + 1.0
        try:
            async with asyncio.timeout(limit):
                await fut
        except TimeoutError as exc:
            raise TransportError(f"no session with the peer at {addr[0]}:{addr[1]}") from exc
        finally:
            waiters = self._dial_waiters.get(peer, [])
            if fut in waiters:
                waiters.remove(fut)

    def send(self, peer: bytes, data: bytes) -> None:
        """Queue a reliable ordered message (up to 16 MiB)."""
        self.endpoint.send(peer, data)
        self._schedule_service()

    def send_datagram(self, peer: bytes, data: bytes) -> None:
        """Send an unreliable datagram (fits one packet)."""
        self.endpoint.send_datagram(peer, data)
        self._schedule_service()

    async def drain(self, peer: bytes, *, low: int | None = None) -> None:
        """Wait until at most ``low`` bytes (default: half the high mark) are queued to ``peer``."""
        threshold = low if low is not None else self.config.send_buffer_high // 2
        if self.endpoint.send_buffered(peer) <= threshold or not self.endpoint.is_connected(peer):
            return
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._drain_waiters.append((peer, threshold, fut))
        await fut

    def close_peer(self, peer: bytes, reason: str = "", code: int = 0) -> None:
        self.endpoint.close(peer, reason, code)
        self._schedule_service()

    async def recv(self) -> Event:
        """The next transport event."""
        while not self._events:
            if self._sock is None:
                raise TransportError("transport closed")
            assert self._loop is not None
            self._event_waiter = self._loop.create_future()
            await self._event_waiter
        return self._events.popleft()

    def poll(self) -> Event | None:
        """The next event if one is waiting, else None."""
        return self._events.popleft() if self._events else None

    async def events(self) -> AsyncIterator[Event]:
        while self._sock is not None:
            yield await self.recv()

    def stats(self) -> dict[str, Any]:
        ep = self.endpoint
        return {
            "address": f"{self.address[0]}:{self.address[1]}",
            "counters": dict(ep.counters),
            "socket_errors": self.socket_errors,
            "impairment": self.impairment.stats(),
            "sessions": {p.hex(): ep.session_stats(p) for p in ep.peers()},
        }

    # ------------------------------------------------------------------ socket I/O

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        assert self._loop is not None and self._endpoint is not None
        now = self._loop.time()
        ep = self._endpoint
        imp = self.impairment
        view = self._view
        recv = sock.recvfrom_into
        buf = self._buf
        for _ in range(RECV_BATCH):
            try:
                n, addr = recv(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._on_socket_error(exc, now)
                continue
            data = view[:n].tobytes()
            if imp.active:
                imp.push(Direction.INGRESS, data, addr[:2], now=now)
            else:
                ep.receive_datagram(data, addr[:2], now=now)
        self._service()

    def _on_socket_error(self, exc: OSError, now: float) -> None:
        self.socket_errors += 1
        if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
            self._read_error_queue(now)

    def _read_error_queue(self, now: float) -> None:
        sock = self._sock
        assert sock is not None and self._endpoint is not None
        for _ in range(64):
            try:
                _, ancdata, _, addr = sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except OSError:
                return
            for _level, kind, cdata in ancdata:
                if kind not in (IP_RECVERR, IPV6_RECVERR) or len(cdata) < _EXTENDED_ERR.size:
                    continue
                err, origin, *_ = _EXTENDED_ERR.unpack_from(cdata)
                if origin in _ICMP_ORIGINS and err == errno.ECONNREFUSED:
                    self._unreachable(addr[:2], now)

    def _unreachable(self, addr: Addr, now: float) -> None:
        rule = self.impairment.rule_for(addr) if self.impairment.active else None
        if rule is not None and rule.blackhole:
            return
        assert self._endpoint is not None
        self._endpoint.on_unreachable(addr, now=now)

    def _sendto(self, data: bytes, addr: Addr) -> None:
        if self._backlog:
            self._backlog.append((data, addr))
            return
        sock = self._sock
        assert sock is not None
        for _ in range(2):
            try:
                sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._backlog.append((data, addr))
                assert self._loop is not None
                self._loop.add_writer(sock.fileno(), self._on_writable)
                return
            except OSError as exc:
                assert self._loop is not None
                self._on_socket_error(exc, self._loop.time())

    def _on_writable(self) -> None:
        self._flush_backlog()
        if not self._backlog and self._sock is not None and self._loop is not None:
            self._loop.remove_writer(self._sock.fileno())

    def _flush_backlog(self) -> None:
        sock = self._sock
        while self._backlog and sock is not None:
            data, addr = self._backlog[0]
            try:
                sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.socket_errors += 1
            self._backlog.popleft()

    # ------------------------------------------------------------------ the service pump

    def _schedule_service(self) -> None:
        if not self._service_scheduled and self._loop is not None:
            self._service_scheduled = True
            self._loop.call_soon(self._service)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._endpoint is None or self._loop is None:
            return
        self._endpoint.handle_timer(now=self._loop.time())
        self._service()

    def _service(self) -> None:
        """Move everything that is due: impairment queue, endpoint output, events, timer."""
        self._service_scheduled = False
        ep = self._endpoint
        if ep is None or self._loop is None or self._sock is None:
            return
        now = self._loop.time()
        imp = self.impairment
        if imp.active:
            self._pump_impairment(now)
        out = ep.datagrams_to_send(now=now)
        if imp.active:
            for data, addr in out:
                imp.push(Direction.EGRESS, data, addr, now=now)
            self._pump_impairment(now)
            out = []
        for data, addr in out:
            self._sendto(data, addr)
        self._dispatch_events()
        self._check_drains()
        self._rearm(now)

    def _pump_impairment(self, now: float) -> None:
        ep = self._endpoint
        assert ep is not None
        for direction, data, addr in self.impairment.pop_due(now=now):
            if direction is Direction.EGRESS:
                self._sendto(data, addr)
            else:
                ep.receive_datagram(data, addr, now=now)

    def _rearm(self, now: float) -> None:
        assert self._loop is not None and self._endpoint is not None
        pair = (self._endpoint.get_timer(), self.impairment.get_timer())
        times = [t for t in pair if t is not None]
        at = min(times) if times else None
        if at is not None and at <= now:
            self._schedule_service_timer()
            return
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._on_timer) if at is not None else None

    def _schedule_service_timer(self) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = None
        self._timer = self._loop.call_soon(self._on_timer)

    def _dispatch_events(self) -> None:
        ep = self._endpoint
        assert ep is not None
        got = False
        while (event := ep.next_event()) is not None:
            got = True
            self._events.append(event)
            if isinstance(event, Connected):
                self._resolve_dial(event.peer, None)
            elif isinstance(event, HandshakeFailed):
                self._resolve_dial(event.peer, TransportError(f"handshake failed: {event.reason}"))
            elif isinstance(event, PeerDead | PeerClosed):
                self._resolve_dial(event.peer, TransportError(f"peer gone: {event}"))
        if got and self._event_waiter is not None and not self._event_waiter.done():
            self._event_waiter.set_result(None)

    def _resolve_dial(self, peer: bytes, error: Exception | None) -> None:
        for fut in self._dial_waiters.pop(peer, []):
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

    def _check_drains(self) -> None:
        if not self._drain_waiters:
            return
        ep = self._endpoint
        assert ep is not None
        keep = []
        for peer, low, fut in self._drain_waiters:
            if fut.done():
                continue
            if ep.send_buffered(peer) <= low or not ep.is_connected(peer):
                fut.set_result(None)
            else:
                keep.append((peer, low, fut))
        self._drain_waiters = keep

    def _fail_waiters(self, error: Exception) -> None:
        for waiters in self._dial_waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(error)
        self._dial_waiters.clear()
        for _, _, fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self._drain_waiters.clear()
        if self._event_waiter is not None and not self._event_waiter.done():
            self._event_waiter.set_result(None)
