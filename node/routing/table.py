"""The routing table: 256 k-buckets with ping-before-evict and replacement caches.

Kademlia (Maymounkov & Mazieres 2002), section 2.2: bucket ``i`` holds up to ``k``
contacts at XOR distance ``[2**i, 2**(i+1))`` from our own name, least-recently seen at
the head and most-recently seen at the tail.  A full bucket never evicts a live contact
for a newcomer ("long-lived nodes are more likely to stay"): the newcomer waits in the
bucket's replacement cache (section 4.1) while the table asks the service to ping the
least-recently seen contact; only a failed ping evicts, and then the freshest replacement
is promoted.

Sans-IO: every method takes ``now`` and returns actions (:class:`PingRequest`) and events
(:class:`ContactAdded`, :class:`ContactRemoved`); the table never sends anything itself.

Invariants: our own name is never stored; a name is in at most one place (a bucket or
that bucket's replacement cache); a bucket holds at most ``k`` entries, its cache at most
``replacement_cache_size``; every entry sits in the bucket ``bucket_index(own, name)``;
at most one ping per bucket is pending.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from node.routing.contact import Contact, RoutingError
from node.routing.xorname import NAME_BITS, NAME_BYTES


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """Routing table parameters."""

    k: int = 20
    """Bucket size, and the number of contacts a FIND_NODE returns (paper 2.2: k = 20)."""
    replacement_cache_size: int = 20
    """Newcomers remembered per full bucket, most recent first (paper 4.1)."""
    refresh_interval: float = 600.0
    """Seconds after which a bucket without a lookup is refreshed (paper 2.3 uses an hour)."""
    ping_timeout: float = 30.0
    """Seconds after which an unanswered ping is presumed lost and may be sent again."""

    def __post_init__(self) -> None:
        for name in ("k", "replacement_cache_size"):
            if getattr(self, name) < 1:
                raise RoutingError(f"RoutingConfig.{name} must be >= 1")
        for name in ("refresh_interval", "ping_timeout"):
            if not getattr(self, name) > 0:
                raise RoutingError(f"RoutingConfig.{name} must be > 0")


@dataclass(frozen=True, slots=True)
class PingRequest:
    """Action: ping ``contact`` and report with ``on_ping_result`` (paper 2.2)."""

    contact: Contact


@dataclass(frozen=True, slots=True)
class ContactAdded:
    """Event: ``contact`` entered a k-bucket."""

    contact: Contact


@dataclass(frozen=True, slots=True)
class ContactRemoved:
    """Event: ``contact`` left its k-bucket (failed ping or reported dead)."""

    contact: Contact


Action = PingRequest | ContactAdded | ContactRemoved


@dataclass(slots=True)
class _Entry:
    contact: Contact
    last_seen: float
    added_at: float


@dataclass(slots=True)
class _Bucket:
    entries: dict[int, _Entry] = field(default_factory=dict)  # head = least recently seen
    replacements: dict[int, _Entry] = field(default_factory=dict)  # tail = most recent
    pending: tuple[int, float] | None = None  # (key pinged, sent at)


def _key(name: bytes) -> int:
    if not isinstance(name, bytes) or len(name) != NAME_BYTES:
        raise RoutingError(f"a name is {NAME_BYTES} bytes")
    return int.from_bytes(name, "big")


class RoutingTable:
    """The k-buckets of one node, seen from ``own``."""

    def __init__(self, own: bytes, config: RoutingConfig | None = None) -> None:
        self.own = own
        self.config = config or RoutingConfig()
        self._own = _key(own)
        self._buckets: dict[int, _Bucket] = {}
        self._index: dict[int, _Entry] = {}  # every bucket entry, by name as an integer
        self._refreshed: dict[int, float] = {}

    # -- membership (paper 2.2) -------------------------------------------------------

    def observe(self, contact: Contact, *, now: float) -> list[Action]:
        """We heard from ``contact``: refresh it, insert it, or queue it behind a ping."""
        key = _key(contact.name)
        if key == self._own:
            return []
        bucket = self._bucket(key)
        entry = bucket.entries.get(key)
        if entry is not None:
            self._touch(bucket, key, entry, contact, now)
            return []
        bucket.replacements.pop(key, None)
        if len(bucket.entries) < self.config.k:
            return [self._insert(bucket, key, _Entry(contact, now, now))]
        return self._queue(bucket, key, contact, now)

    def on_ping_result(self, name: bytes, *, alive: bool, now: float) -> list[Action]:
        """The ping of ``name`` came back (alive: move to tail) or failed (evict, promote)."""
        key = _key(name)
        bucket = self._buckets.get(self._index_of(key)) if key != self._own else None
        if bucket is None:
            return []
        if bucket.pending is not None and bucket.pending[0] == key:
            bucket.pending = None
        if not alive:
            return self.remove(name, now=now)
        entry = bucket.entries.get(key)
        if entry is not None:
            self._touch(bucket, key, entry, entry.contact, now)
        return []

    def remove(self, name: bytes, *, now: float) -> list[Action]:
        """``name`` is gone (transport saw it die): drop it, promote a replacement (4.1)."""
        key = _key(name)
        bucket = self._buckets.get(self._index_of(key)) if key != self._own else None
        if bucket is None:
            return []
        bucket.replacements.pop(key, None)
        if bucket.pending is not None and bucket.pending[0] == key:
            bucket.pending = None
        entry = bucket.entries.pop(key, None)
        if entry is None:
            return []
        del self._index[key]
        actions: list[Action] = [ContactRemoved(entry.contact)]
        if bucket.replacements:
            fresh = bucket.replacements.pop(next(reversed(bucket.replacements)))
            fresh.added_at = now
            actions.append(self._insert(bucket, _key(fresh.contact.name), fresh))
        return actions

    # -- queries ------------------------------------------------------------------------

    def closest(self, target: bytes, count: int, *, exclude: Iterable[bytes] = ()) -> list[Contact]:
        """Up to ``count`` known contacts nearest ``target``, nearest first (paper 2.3)."""
        t = _key(target)
        skip = {_key(n) for n in exclude}
        keys: Iterable[int] = (k for k in self._index if k not in skip) if skip else self._index
        return [self._index[k].contact for k in heapq.nsmallest(count, keys, key=t.__xor__)]

    def close_group(
        self, target: bytes, n: int, *, include_self: Contact | None = None
    ) -> list[Contact]:
        """The ``n`` contacts nearest ``target`` among the table plus, if given, ourselves."""
        group = self.closest(target, n)
        if include_self is not None:
            if include_self.name != self.own:
                raise RoutingError("include_self must be this node's own contact")
            t = _key(target)
            group.append(include_self)
            group.sort(key=lambda c: _key(c.name) ^ t)
        return group[:n]

    def contains(self, name: bytes) -> bool:
        """True if ``name`` is in a k-bucket (replacement caches do not count)."""
        return _key(name) in self._index

    __contains__ = contains

    def __len__(self) -> int:
        return len(self._index)

    def get(self, name: bytes) -> Contact | None:
        """The stored contact for ``name``, if it is in a k-bucket."""
        entry = self._index.get(_key(name))
        return entry.contact if entry is not None else None

    def contacts(self) -> list[Contact]:
        """Every contact in the k-buckets, nearest bucket first, head to tail."""
        return [e.contact for i in sorted(self._buckets) for e in self._buckets[i].entries.values()]

    def replacements(self, index: int) -> list[Contact]:
        """Bucket ``index``'s replacement cache, most recently seen first."""
        bucket = self._buckets.get(_check_index(index))
        return [e.contact for e in reversed(bucket.replacements.values())] if bucket else []

    def bucket_of(self, name: bytes) -> int:
        """The bucket index ``name`` belongs in (raises for our own name)."""
        return self._index_of(_key(name))

    def snapshot(self) -> list[dict[str, object]]:
        """JSON-safe view of every non-empty bucket, for the admin API."""
        return [self._bucket_view(i, b) for i, b in sorted(self._buckets.items()) if _used(b)]

    # -- refresh (paper 2.3) ------------------------------------------------------------

    def buckets_needing_refresh(self, *, now: float) -> list[int]:
        """Buckets from our nearest non-empty one outwards not refreshed for an interval.

        Paper 2.3 refreshes "all k-buckets further away than its closest neighbor": nearer
        buckets are empty and a lookup into them finds only the neighbours we already know.
        """
        used = [i for i, b in self._buckets.items() if b.entries]
        if not used:
            return []
        horizon = now - self.config.refresh_interval
        return [
            i
            for i in range(min(used), NAME_BITS)
            if self._refreshed.get(i) is None or self._refreshed[i] <= horizon
        ]

    def mark_refreshed(self, index: int, *, now: float) -> None:
        """A lookup into bucket ``index`` just ran."""
        self._refreshed[_check_index(index)] = now

    def random_name_in_bucket(self, index: int, rng: random.Random) -> bytes:
        """A uniformly random name whose distance from ours falls in bucket ``index``."""
        i = _check_index(index)
        distance = (1 << i) | rng.getrandbits(i) if i else 1
        return (self._own ^ distance).to_bytes(NAME_BYTES, "big")

    # -- internals ----------------------------------------------------------------------

    def _index_of(self, key: int) -> int:
        d = key ^ self._own
        if d == 0:
            raise RoutingError("our own name has no bucket")
        return d.bit_length() - 1

    def _bucket(self, key: int) -> _Bucket:
        i = self._index_of(key)
        bucket = self._buckets.get(i)
        if bucket is None:
            bucket = self._buckets[i] = _Bucket()
        return bucket

    def _touch(
        self, bucket: _Bucket, key: int, entry: _Entry, contact: Contact, now: float
    ) -> None:
        entry.contact = contact  # the peer may have moved address; its name cannot change
        entry.last_seen = now
        del bucket.entries[key]
        bucket.entries[key] = entry  # move to the tail: most recently seen
        if bucket.pending is not None and bucket.pending[0] == key:
            bucket.pending = None  # it spoke to us: that answers the ping

    def _insert(self, bucket: _Bucket, key: int, entry: _Entry) -> ContactAdded:
        bucket.entries[key] = entry
        self._index[key] = entry
        return ContactAdded(entry.contact)

    def _queue(self, bucket: _Bucket, key: int, contact: Contact, now: float) -> list[Action]:
        bucket.replacements[key] = _Entry(contact, now, now)
        while len(bucket.replacements) > self.config.replacement_cache_size:
            del bucket.replacements[next(iter(bucket.replacements))]  # forget the stalest
        pending = bucket.pending
        if pending is not None and now - pending[1] < self.config.ping_timeout:
            return []
        oldest = next(iter(bucket.entries))
        bucket.pending = (oldest, now)
        return [PingRequest(bucket.entries[oldest].contact)]

    def _bucket_view(self, index: int, bucket: _Bucket) -> dict[str, object]:
        return {
            "index": index,
            "entries": [_entry_view(e) for e in bucket.entries.values()],
            "replacements": len(bucket.replacements),
            "pending_ping": bucket.pending[0].to_bytes(NAME_BYTES, "big").hex()
            if bucket.pending
            else None,
            "last_refreshed": self._refreshed.get(index),
        }


def _entry_view(entry: _Entry) -> dict[str, object]:
    host, port = entry.contact.address
    return {
        "name": entry.contact.name.hex(),
        "address": [host, port],
        "last_seen": entry.last_seen,
        "added_at": entry.added_at,
    }


def _used(bucket: _Bucket) -> bool:
    return bool(bucket.entries or bucket.replacements)


def _check_index(index: int) -> int:
    if not isinstance(index, int) or not 0 <= index < NAME_BITS:
        raise RoutingError(f"bucket index must be in 0..{NAME_BITS - 1}")
    return index
