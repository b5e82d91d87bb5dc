"""The iterative node lookup as a sans-IO state machine (rust-libp2p kad ClosestPeersIter style).

Kademlia (Maymounkov & Mazieres 2002), section 2.3: the initiator keeps the candidates it
knows sorted by XOR distance to the target and sends FIND_NODE to ``alpha`` of the ``k``
closest it has not yet asked; every answer adds the answerer's closer contacts.  The
lookup terminates when the ``k`` closest candidates that have not failed have all
answered.  Here, ``alpha`` requests stay in flight while such candidates remain (the
paper's "recursive" step without waiting for whole rounds, as in libp2p).

A request that outlives its timeout stops counting against ``alpha`` and is treated as
failed, but a late answer is still accepted (libp2p's "unresponsive" state).  Timeouts
adapt to the round-trip times seen in this lookup, RFC 6298 section 2:
``timeout = srtt + 4 * rttvar``, clamped to ``[min_timeout, max_timeout]``.

``rounds`` measures hops: seeds are hop 1, contacts learnt from a hop-``h`` peer are hop
``h + 1`` (or less if also learnt elsewhere); ``rounds`` is the largest hop in the result.

Invariants: at most ``alpha`` requests are waiting (not yet timed out); every peer is asked
at most once; our own name, unasked answerers and non-``Contact`` items are ignored;
``result()`` is always the nearest answered peers, nearest first.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass

from node.routing.contact import Contact, RoutingError
from node.routing.xorname import NAME_BYTES


@dataclass(frozen=True, slots=True)
class LookupConfig:
    """Lookup parameters (defaults: paper 2.3 and RFC 6298)."""

    k: int = 20
    """Result size: the lookup ends when the k closest candidates have answered."""
    alpha: int = 3
    """Requests kept in flight (paper 2.3: alpha = 3)."""
    initial_timeout: float = 3.0
    """Per-request timeout before any RTT is known (RFC 6298 section 5, the 3 s fallback)."""
    min_timeout: float = 1.0
    """Lower clamp of the adaptive timeout (RFC 6298 section 2.4)."""
    max_timeout: float = 10.0
    """Upper clamp of the adaptive timeout (rust-libp2p kad's request timeout)."""

    def __post_init__(self) -> None:
        for name in ("k", "alpha"):
            if getattr(self, name) < 1:
                raise RoutingError(f"LookupConfig.{name} must be >= 1")
        if not 0 < self.min_timeout <= self.max_timeout:
            raise RoutingError("LookupConfig needs 0 < min_timeout <= max_timeout")
        if not self.initial_timeout > 0:
            raise RoutingError("LookupConfig.initial_timeout must be > 0")


class _State(enum.Enum):
    NOT_CONTACTED = "not contacted"
    WAITING = "waiting"
    UNRESPONSIVE = "unresponsive"  # timed out; a late answer is still welcome
    SUCCEEDED = "succeeded"
    FAILED = "failed"


_ASKED = (_State.WAITING, _State.UNRESPONSIVE)
_DEAD = (_State.UNRESPONSIVE, _State.FAILED)


@dataclass(slots=True)
class _Peer:
    contact: Contact
    hop: int
    state: _State = _State.NOT_CONTACTED
    sent_at: float = 0.0
    deadline: float = 0.0


class _Rtt:
    """Smoothed RTT estimator, RFC 6298 section 2 (alpha = 1/8, beta = 1/4, K = 4)."""

    def __init__(self, initial: float | None) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        if initial is not None:
            self.sample(initial)

    def sample(self, rtt: float) -> None:
        rtt = max(rtt, 0.0)
        if self.srtt is None:  # RFC 6298 (2.2)
            self.srtt, self.rttvar = rtt, rtt / 2
            return
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)  # (2.3)
        self.srtt = 0.875 * self.srtt + 0.125 * rtt

    def timeout(self, config: LookupConfig) -> float:
        if self.srtt is None:
            return config.initial_timeout
        rto = self.srtt + 4 * self.rttvar
        return min(max(rto, config.min_timeout), config.max_timeout)


class Lookup:
    """One iterative lookup of ``target``, started from ``seeds``."""

    def __init__(
        self,
        target: bytes,
        seeds: list[Contact],
        config: LookupConfig | None = None,
        *,
        now: float,
        own: bytes | None = None,
        rtt_estimate: float | None = None,
    ) -> None:
        if not isinstance(target, bytes) or len(target) != NAME_BYTES:
            raise RoutingError(f"a lookup target is {NAME_BYTES} bytes")
        self.target = target
        self.own = own
        self.config = config or LookupConfig()
        self.started_at = now
        self.requests = 0
        self.successes = 0
        self.failures = 0
        self.timeouts = 0
        self._t = int.from_bytes(target, "big")
        self._rtt = _Rtt(rtt_estimate)
        self._peers: dict[bytes, _Peer] = {}
        self._order: list[tuple[int, bytes]] = []  # (distance to target, name), sorted
        self._waiting: set[bytes] = set()
        self._finished = False
        for seed in seeds:
            self._learn(seed, hop=1)
        self._update_finished()

    # -- driving the lookup -----------------------------------------------------------

    def next_requests(self, *, now: float) -> list[Contact]:
        """Peers to send FIND_NODE to now, keeping ``alpha`` in flight (paper 2.3)."""
        self.handle_timer(now=now)
        if self._finished:
            return []
        sent: list[Contact] = []
        for peer in self._window():
            if len(self._waiting) >= self.config.alpha:
                break
            if peer.state is _State.NOT_CONTACTED:
                self._send(peer, now)
                sent.append(peer.contact)
        return sent

    def on_success(self, name: bytes, closer: list[Contact], *, now: float) -> None:
        """``name`` answered with ``closer`` contacts; unasked or repeated answers are ignored."""
        peer = self._peers.get(name)
        if self._finished or peer is None or peer.state not in _ASKED:
            return
        self._waiting.discard(name)
        peer.state = _State.SUCCEEDED
        self.successes += 1
        self._rtt.sample(now - peer.sent_at)
        for contact in self._closest_k(closer):
            self._learn(contact, hop=peer.hop + 1)
        self._update_finished()

    def on_failure(self, name: bytes, *, now: float) -> None:
        """The request to ``name`` failed (transport error or error reply)."""
        peer = self._peers.get(name)
        if self._finished or peer is None or peer.state not in _ASKED:
            return
        self._waiting.discard(name)
        peer.state = _State.FAILED
        self.failures += 1
        self._update_finished()

    def handle_timer(self, *, now: float) -> list[Contact]:
        """Mark overdue requests unresponsive (freeing their slots); returns those peers."""
        if self._finished:
            return []
        overdue = [self._peers[n] for n in self._waiting if self._peers[n].deadline <= now]
        for peer in overdue:
            self._waiting.discard(peer.contact.name)
            peer.state = _State.UNRESPONSIVE
            self.timeouts += 1
        if overdue:
            self._update_finished()
        return [p.contact for p in overdue]

    def get_timer(self) -> float | None:
        """When the earliest waiting request times out, or ``None``."""
        if self._finished or not self._waiting:
            return None
        return min(self._peers[n].deadline for n in self._waiting)

    # -- outcome ----------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """The k closest non-failed candidates have answered, or no candidate is left."""
        return self._finished

    @property
    def in_flight(self) -> int:
        """Requests sent and neither answered, failed nor timed out."""
        return len(self._waiting)

    @property
    def current_timeout(self) -> float:
        """The timeout the next request gets (RFC 6298 section 2)."""
        return self._rtt.timeout(self.config)

    def result(self) -> list[Contact]:
        """The k closest peers that answered, nearest first."""
        return [p.contact for p in self._answered()]

    @property
    def rounds(self) -> int:
        """The largest hop number among the result's peers (0 if empty)."""
        return max((p.hop for p in self._answered()), default=0)

    def hops(self) -> dict[bytes, int]:
        """Hop number of every candidate seen, by name."""
        return {name: p.hop for name, p in self._peers.items()}

    # -- internals --------------------------------------------------------------------

    def _learn(self, contact: object, *, hop: int) -> None:
        if not isinstance(contact, Contact) or contact.name == self.own:
            return
        known = self._peers.get(contact.name)
        if known is not None:
            known.hop = min(known.hop, hop)
            return
        self._peers[contact.name] = _Peer(contact, hop)
        distance = int.from_bytes(contact.name, "big") ^ self._t
        bisect.insort(self._order, (distance, contact.name))

    def _closest_k(self, closer: list[Contact]) -> list[Contact]:
        valid = [c for c in closer if isinstance(c, Contact)]
        if len(valid) <= self.config.k:
            return valid
        valid.sort(key=lambda c: int.from_bytes(c.name, "big") ^ self._t)
        return valid[: self.config.k]  # a peer owes us k contacts, never more (paper 2.3)

    def _send(self, peer: _Peer, now: float) -> None:
        peer.state = _State.WAITING
        peer.sent_at = now
        peer.deadline = now + self._rtt.timeout(self.config)
        self._waiting.add(peer.contact.name)
        self.requests += 1

    def _window(self) -> list[_Peer]:
        """The k closest candidates that have not failed or timed out, nearest first."""
        window: list[_Peer] = []
        for _, name in self._order:
            peer = self._peers[name]
            if peer.state not in _DEAD:
                window.append(peer)
                if len(window) == self.config.k:
                    break
        return window

    def _answered(self) -> list[_Peer]:
        answered: list[_Peer] = []
        for _, name in self._order:
            peer = self._peers[name]
            if peer.state is _State.SUCCEEDED:
                answered.append(peer)
                if len(answered) == self.config.k:
                    break
        return answered

    def _update_finished(self) -> None:
        # Paper 2.3: done once the k closest live candidates have all been asked and
        # answered; with none left to ask, done as well.
        self._finished = all(p.state is _State.SUCCEEDED for p in self._window())
