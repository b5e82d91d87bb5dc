"""The transport endpoint: demultiplexes datagrams into handshakes and sessions.

Sans-IO.  Feed it datagrams (:meth:`Endpoint.receive_datagram`), ICMP errors
(:meth:`Endpoint.on_unreachable`) and timer ticks; take datagrams to send and
events.  One endpoint owns one UDP socket's worth of peers.

Demultiplexing uses only the 8-byte destination connection ID: a known ID is a
session (or one of our dials awaiting its response); an unknown ID is tried as a
handshake initiation, which must carry a valid ``mac1`` for our key.  Anything
else is dropped and counted.  Invariants:

* no input bytes make :meth:`receive_datagram` raise;
* at most one live session per peer key; simultaneous dials resolve to one
  session (the dial of the peer with the larger key yields);
* a responder session is not announced (no ``Connected``) and sends nothing but
  its handshake response until the initiator proves its keys with a packet;
* a half-open responder session replaces an older session with the same peer only
  once it is confirmed, so a replayed msg1 changes nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, deque
from dataclasses import dataclass, field

from node.identity import Identity
from node.transport.config import TransportConfig
from node.transport.events import Addr, Connected, Event, HandshakeFailed
from node.transport.handshake import (
    COOKIE_REPLY_LEN,
    MSG2_LEN,
    HandshakeError,
    InitiatorHandshake,
    Responder,
)
from node.transport.protection import ProtectionError
from node.transport.session import CODE_NORMAL, CODE_PROTOCOL, ProtocolViolation, Session
from node.transport.streams import StreamError
from node.transport.wire import CID_LEN, MAX_RECV_DATAGRAM, WireError


class TransportError(ValueError):
    """A local API call cannot be carried out (not connected, message too large...)."""


@dataclass
class _Dial:
    """One of our outgoing handshakes."""

    handshake: InitiatorHandshake
    addr: Addr
    started: float
    next_retry: float
    retry_delay: float
    queued: list[bytes] = field(default_factory=list)


class Endpoint:
    """All sessions and handshakes of one identity on one socket."""

    def __init__(
        self, identity: Identity, config: TransportConfig | None = None, *, now: float
    ) -> None:
        self.identity = identity
        self.config = config or TransportConfig()
        self._responder = Responder(identity, now=now)
        self._by_cid: dict[bytes, Session | _Dial] = {}
        self._sessions: dict[bytes, Session] = {}
        self._dials: dict[bytes, _Dial] = {}
        self._half_open: dict[bytes, Session] = {}
        self._msg2_cache: dict[bytes, bytes] = {}
        self._msg1_key: dict[bytes, bytes] = {}
        self._dirty: set[Session] = set()
        self._timers: dict[Session, float] = {}
        self._outbox: list[tuple[bytes, Addr]] = []
        self._events: deque[Event] = deque()
        self.counters: Counter[str] = Counter()

    # ------------------------------------------------------------------ application API

    def connect(self, peer: bytes, addr: Addr, *, now: float) -> None:
        """Dial ``peer`` (its Ed25519 public key) at ``addr``; no-op if connected or dialling."""
        if peer == self.identity.public_key:
            raise TransportError("cannot connect to ourselves")
        existing = self._sessions.get(peer)
        if existing is not None and not existing.alive:
            self._forget(existing)
        if peer in self._sessions or peer in self._dials:
            return
        try:
            hs = InitiatorHandshake(self.identity, peer, self._new_cid())
        except HandshakeError as exc:
            raise TransportError(f"cannot dial that key: {exc}") from exc
        dial = _Dial(hs, addr, now, now + self.config.handshake_retry, self.config.handshake_retry)
        self._dials[peer] = dial
        self._by_cid[hs.local_cid] = dial
        self._outbox.append((hs.message(), addr))
        self.counters["handshakes_initiated"] += 1

    def send(self, peer: bytes, data: bytes) -> None:
        """Queue a reliable ordered message to a connected (or being dialled) peer."""
        session = self._sessions.get(peer)
        try:
            if session is not None:
                if not session.alive:
                    raise TransportError("the session with that peer has ended; connect() again")
                session.send_message(data)
                self._dirty.add(session)
                return
            dial = self._dials.get(peer)
            if dial is None:
                raise TransportError("not connected to that peer; connect() first")
            if len(data) > (1 << 24):
                raise StreamError("message exceeds 16 MiB")
            dial.queued.append(data)
        except StreamError as exc:
            raise TransportError(str(exc)) from exc

    def send_datagram(self, peer: bytes, data: bytes) -> None:
        """Queue an unreliable datagram (dropped if not connected)."""
        session = self._sessions.get(peer)
        if session is None:
            raise TransportError("not connected to that peer")
        try:
            session.send_datagram(data)
        except StreamError as exc:
            raise TransportError(str(exc)) from exc
        self._dirty.add(session)

    def close(self, peer: bytes, reason: str = "", code: int = CODE_NORMAL) -> None:
        """Graceful close: the peer sees it at once (``code`` tells why, e.g. CODE_IDLE)."""
        session = self._sessions.get(peer)
        if session is not None:
            session.close(reason, code)
            self._dirty.add(session)
        dial = self._dials.pop(peer, None)
        if dial is not None:
            self._by_cid.pop(dial.handshake.local_cid, None)

    def close_all(self, reason: str = "") -> None:
        for peer in list(self._sessions):
            self.close(peer, reason)
        for peer in list(self._dials):
            self.close(peer, reason)

    def is_connected(self, peer: bytes) -> bool:
        session = self._sessions.get(peer)
        return session is not None and session.alive

    def peers(self) -> list[bytes]:
        return [p for p, s in self._sessions.items() if s.alive]

    def peer_address(self, peer: bytes) -> Addr | None:
        """The address a live session with ``peer`` currently uses."""
        session = self._sessions.get(peer)
        return session.addr if session is not None and session.alive else None

    def send_buffered(self, peer: bytes) -> int:
        session = self._sessions.get(peer)
        if session is not None:
            return session.send_buffered
        dial = self._dials.get(peer)
        return sum(len(m) for m in dial.queued) if dial else 0

    def session_stats(self, peer: bytes) -> dict[str, float | int | str] | None:
        session = self._sessions.get(peer)
        if session is None:
            return None
        return {"addr": f"{session.addr[0]}:{session.addr[1]}", **session.stats()}

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ network input

    def receive_datagram(self, data: bytes, addr: Addr, *, now: float) -> None:
        """Process one UDP payload from ``addr``.  Never raises."""
        self.counters["datagrams_in"] += 1
        if len(data) <= CID_LEN or len(data) > MAX_RECV_DATAGRAM:
            self.counters["dropped_size"] += 1
            return
        target = self._by_cid.get(data[:CID_LEN])
        try:
            if isinstance(target, Session):
                self._receive_session(target, data, addr, now)
            elif isinstance(target, _Dial):
                self._receive_dial(target, data, addr, now)
            elif self._responder.looks_like_msg1(data):
                self._receive_msg1(data, addr, now)
            else:
                self.counters["dropped_unknown"] += 1
        except (ProtectionError, HandshakeError, WireError):
            self.counters["dropped_auth"] += 1

    def _receive_session(self, session: Session, data: bytes, addr: Addr, now: float) -> None:
        fresh = False
        try:
            fresh = session.receive(data, now=now)
        except ProtocolViolation as exc:
            self.counters["protocol_errors"] += 1
            session.close(f"protocol violation: {exc}", CODE_PROTOCOL)
            session.die(f"protocol violation: {exc}")
        if fresh and session.addr != addr and session.alive:
            session.addr = addr  # the peer moved (NAT rebinding); only authentic packets count
        self._after(session)

    def _receive_dial(self, dial: _Dial, data: bytes, addr: Addr, now: float) -> None:
        hs = dial.handshake
        if len(data) == COOKIE_REPLY_LEN:
            hs.on_cookie_reply(data)
            self.counters["cookies_received"] += 1
            self._outbox.append((hs.message(), dial.addr))
            return
        if len(data) != MSG2_LEN:
            self.counters["dropped_auth"] += 1
            return
        keys = hs.on_response(data)
        del self._dials[hs.peer_public_key]
        session = Session(keys, addr, self.config, now=now, initiator=True)
        for message in dial.queued:
            session.send_message(message)
        self._install(session)
        self.counters["handshakes_completed"] += 1

    def _receive_msg1(self, data: bytes, addr: Addr, now: float) -> None:
        key = hashlib.blake2s(data[:-32], digest_size=16).digest()
        cached = self._msg2_cache.get(key)
        if cached is not None:
            self._outbox.append((cached, addr))
            self.counters["handshake_responses_resent"] += 1
            return
        if self._needs_cookie(data, addr, now):
            self._outbox.append((self._responder.cookie_reply(data, addr, now=now), addr))
            self.counters["cookies_sent"] += 1
            return
        if len(self._half_open) >= self.config.max_half_open:
            self.counters["dropped_half_open_cap"] += 1
            return
        keys, msg2 = self._responder.respond(data, self._new_cid())
        peer = keys.peer_public_key
        if peer == self.identity.public_key or not self._resolve_crossing(peer):
            return
        session = Session(keys, addr, self.config, now=now, initiator=False)
        dial = self._dials.pop(peer, None)
        if dial is not None:
            self._by_cid.pop(dial.handshake.local_cid, None)
            for message in dial.queued:
                session.send_message(message)
        self._by_cid[session.local_cid] = session
        self._half_open[session.local_cid] = session
        self._msg2_cache[key] = msg2
        self._msg1_key[session.local_cid] = key
        self._dirty.add(session)
        self._outbox.append((msg2, addr))
        self.counters["handshakes_answered"] += 1

    def _needs_cookie(self, data: bytes, addr: Addr, now: float) -> bool:
        policy = self.config.cookie_policy
        if policy == "never":
            return False
        if policy == "load" and len(self._half_open) < self.config.load_threshold:
            return False
        return not self._responder.has_valid_cookie(data, addr, now=now)

    def _resolve_crossing(self, peer: bytes) -> bool:
        """Simultaneous dials: the side with the smaller key keeps its own dial."""
        if peer in self._dials and self.identity.public_key < peer:
            self.counters["crossed_dials_ignored"] += 1
            return False
        return True

    def on_unreachable(self, addr: Addr, *, now: float) -> None:
        """ICMP port unreachable for ``addr``: the peer process is gone."""
        self.counters["icmp_unreachable"] += 1
        for session in list(self._sessions.values()):
            if session.addr == addr:
                session.die("unreachable (ICMP)")
                self._after(session)
        for peer, dial in list(self._dials.items()):
            if dial.addr == addr:
                self._fail_dial(peer, dial, "unreachable (ICMP)")

    # ------------------------------------------------------------------ session bookkeeping

    def _install(self, session: Session) -> None:
        old = self._sessions.get(session.peer)
        if old is not None and old is not session:
            old.abandon()
            self._forget(old)
            session.replaced = True
            session.events[:] = [
                e._replace(replaced=True) if isinstance(e, Connected) else e for e in session.events
            ]
        if len(self._sessions) >= self.config.max_sessions and old is None:
            self.counters["dropped_session_cap"] += 1
            session.abandon()
            return
        self._sessions[session.peer] = session
        self._by_cid[session.local_cid] = session
        self._after(session)

    def _after(self, session: Session) -> None:
        """Collect a session's events and retire it if it ended."""
        if session.events:
            if session.local_cid in self._half_open and session.alive:
                self._confirm(session)
            self._events.extend(session.events)
            session.events.clear()
        self._dirty.add(session)

    def _confirm(self, session: Session) -> None:
        del self._half_open[session.local_cid]
        self._msg2_cache.pop(self._msg1_key.pop(session.local_cid, b""), None)
        self._install(session)

    def _forget(self, session: Session) -> None:
        self._by_cid.pop(session.local_cid, None)
        self._half_open.pop(session.local_cid, None)
        if self._sessions.get(session.peer) is session:
            del self._sessions[session.peer]
        self._dirty.discard(session)
        self._timers.pop(session, None)
        self._msg2_cache.pop(self._msg1_key.pop(session.local_cid, b""), None)

    def _fail_dial(self, peer: bytes, dial: _Dial, reason: str) -> None:
        self._dials.pop(peer, None)
        self._by_cid.pop(dial.handshake.local_cid, None)
        self._events.append(HandshakeFailed(peer, dial.addr, reason, len(dial.queued)))
        self.counters["handshakes_failed"] += 1

    def _new_cid(self) -> bytes:
        while True:
            cid = os.urandom(CID_LEN)
            if cid not in self._by_cid:
                return cid

    # ------------------------------------------------------------------ output and time

    def datagrams_to_send(self, *, now: float) -> list[tuple[bytes, Addr]]:
        """Everything that may go out now, as (payload, address) pairs."""
        out = self._outbox
        self._outbox = []
        dirty = self._dirty
        self._dirty = set()
        for session in dirty:
            for packet in session.datagrams_to_send(now=now):
                out.append((packet, session.addr))
            self._collect(session)
        return out

    def _collect(self, session: Session) -> None:
        if session.events:
            self._events.extend(session.events)
            session.events.clear()
        timer = session.get_timer()
        if timer is not None:
            self._timers[session] = timer
        elif not session.alive:
            self._forget(session)
        else:
            self._timers.pop(session, None)

    def get_timer(self) -> float | None:
        """Earliest time :meth:`handle_timer` must run (0.0: output is waiting now)."""
        if self._dirty or self._outbox:
            return 0.0
        times = [d.next_retry for d in self._dials.values()]
        if self._timers:
            times.append(min(self._timers.values()))
        return min(times) if times else None

    def handle_timer(self, *, now: float) -> None:
        for peer, dial in list(self._dials.items()):
            if now >= dial.next_retry:
                self._retry_dial(peer, dial, now)
        due = [s for s, t in self._timers.items() if t <= now]
        for session in due:
            session.handle_timer(now=now)
            self._dirty.add(session)
            self._collect(session)

    def _retry_dial(self, peer: bytes, dial: _Dial, now: float) -> None:
        if now - dial.started >= self.config.handshake_timeout:
            self._fail_dial(peer, dial, "handshake timed out")
            return
        self._outbox.append((dial.handshake.message(), dial.addr))
        dial.retry_delay *= 2
        dial.next_retry = min(now + dial.retry_delay, dial.started + self.config.handshake_timeout)
        self.counters["handshake_retries"] += 1

    def shutdown(self) -> None:
        """Drop every session and dial without a word (the socket is going away)."""
        for session in [*self._sessions.values(), *self._half_open.values()]:
            session.abandon()
        self._sessions.clear()
        self._half_open.clear()
        self._dials.clear()
        self._by_cid.clear()
        self._msg2_cache.clear()
        self._msg1_key.clear()
        self._dirty.clear()
        self._timers.clear()
