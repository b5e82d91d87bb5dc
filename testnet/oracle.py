"""The integrity oracle: is every chunk the network acknowledged still where it should be?

For each chunk name in the ledger (every put the network acknowledged), the ideal holders
are the ``replication_factor`` live nodes closest to the name in XOR space; the actual
holders are the live nodes whose ``GET /chunks`` lists it.  :func:`classify` (pure) sorts
each chunk into exactly one status, worst first:

- ``lost``: no live node holds it;
- ``under``: fewer live holders than ``min(replication_factor, live nodes)``;
- ``misplaced``: enough copies, but some ideal holder lacks it (a copy sits on a non-ideal
  node instead);
- ``ok``: every ideal holder has it.  Copies on further nodes as well are ``surplus``,
  counted but not a fault (a node may keep a chunk after a closer node joins).

Then a seeded sample of chunks is fetched end to end through a real client and verified
(the client checks ``BLAKE3(data) == name``; we check again).  A node whose ``/chunks`` does
not answer is listed as ``unreachable``: its holdings are unknown, so the verdicts are then
pessimistic and the report says it is incomplete.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from node.client.aio import Client, ClientError
from node.routing.xorname import closest
from node.storage.chunkstore import chunk_name
from testnet.fleet import Failed, ask_all
from testnet.state import NodeInfo

REPLICATION_FACTOR = 4
FETCH_TIMEOUT = 15.0
STATUSES = ("lost", "under", "misplaced", "ok")


@dataclass(frozen=True)
class ChunkVerdict:
    """One chunk's placement."""

    name: bytes
    status: str
    holders: tuple[bytes, ...]
    ideal: tuple[bytes, ...]

    @property
    def missing(self) -> tuple[bytes, ...]:
        """Ideal holders that lack the chunk."""
        return tuple(n for n in self.ideal if n not in self.holders)

    @property
    def surplus(self) -> tuple[bytes, ...]:
        """Holders that are not ideal."""
        return tuple(n for n in self.holders if n not in self.ideal)


def classify(
    name: bytes, holders: Iterable[bytes], live: Sequence[bytes], rf: int = REPLICATION_FACTOR
) -> ChunkVerdict:
    """Pure: the verdict for chunk ``name`` held by ``holders`` among ``live`` node names."""
    alive = set(live)
    held = tuple(sorted(h for h in set(holders) if h in alive))
    ideal = tuple(closest(name, list(alive), rf))
    if not held:
        status = "lost"
    elif len(held) < min(rf, len(alive)):
        status = "under"
    elif not set(ideal) <= set(held):
        status = "misplaced"
    else:
        status = "ok"
    return ChunkVerdict(name, status, held, ideal)


def classify_all(
    chunks: Iterable[bytes],
    holdings: Mapping[bytes, Iterable[bytes]],
    live: Sequence[bytes],
    rf: int = REPLICATION_FACTOR,
) -> list[ChunkVerdict]:
    """Pure: verdicts for ``chunks`` given ``holdings`` (node name -> chunk names it holds)."""
    holders: dict[bytes, list[bytes]] = {}
    for node, names in holdings.items():
        for chunk in names:
            holders.setdefault(chunk, []).append(node)
    return [classify(c, holders.get(c, ()), live, rf) for c in chunks]


@dataclass(frozen=True)
class FetchResult:
    """One sampled chunk fetched end to end."""

    name: bytes
    ok: bool
    detail: str
    seconds: float = 0.0


@dataclass(frozen=True)
class OracleReport:
    """Verdicts for every ledger chunk, the sample fetches, and who could not be asked."""

    testnet: str
    live: int
    verdicts: tuple[ChunkVerdict, ...]
    fetches: tuple[FetchResult, ...] = ()
    unreachable: tuple[tuple[int, str], ...] = ()
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for v in self.verdicts if v.status == status)

    @property
    def counts(self) -> dict[str, int]:
        return {s: self.count(s) for s in STATUSES}

    @property
    def surplus(self) -> int:
        return sum(len(v.surplus) for v in self.verdicts)

    @property
    def failed_fetches(self) -> list[FetchResult]:
        return [f for f in self.fetches if not f.ok]

    @property
    def complete(self) -> bool:
        return not self.unreachable

    @property
    def data_lost(self) -> bool:
        """Anything lost, or a sampled chunk that could not be fetched and verified."""
        return self.count("lost") > 0 or bool(self.failed_fetches)

    @property
    def clean(self) -> bool:
        """Every chunk ok, every fetch ok, every node asked."""
        return self.complete and not self.failed_fetches and self.count("ok") == len(self.verdicts)


def holdings_from(
    infos: Mapping[int, NodeInfo], answers: Mapping[int, object]
) -> tuple[dict[bytes, list[bytes]], list[tuple[int, str]]]:
    """Pure: node name -> chunk names from ``GET /chunks`` answers, plus unreachable nodes."""
    holdings: dict[bytes, list[bytes]] = {}
    unreachable: list[tuple[int, str]] = []
    for i in sorted(infos):
        answer = answers.get(i, Failed("not asked"))
        try:
            if isinstance(answer, Failed):
                raise ValueError(answer.reason)
            names = answer["names"]  # type: ignore[index]
            holdings[infos[i].name] = [bytes.fromhex(n) for n in names]
        except (KeyError, TypeError, ValueError) as exc:
            unreachable.append((i, str(exc) or type(exc).__name__))
    return holdings, unreachable


def client_host(contacts: Iterable[str]) -> str:
    """Where a client talking to ``contacts`` binds: loopback for a local testnet, every
    interface when some node is elsewhere (containers on a bridge, other hosts)."""
    hosts = [c.rpartition("/")[0].rpartition(":")[0].strip("[]") for c in contacts]
    local = all(h == "localhost" or h.startswith("127.") or h == "::1" for h in hosts)
    return "127.0.0.1" if local else "0.0.0.0"


async def fetch_sample(
    contacts: Sequence[str], names: Sequence[bytes], *, timeout: float = FETCH_TIMEOUT
) -> list[FetchResult]:
    """Fetch ``names`` through a client connected to the first reachable of ``contacts``."""
    if not names:
        return []
    client = Client()
    await client.start(client_host(contacts))
    try:
        reason = await _connect_any(client, contacts)
        if reason is not None:
            return [FetchResult(n, False, reason) for n in names]
        return [await _fetch_one(client, n, timeout) for n in names]
    finally:
        await client.close()


async def _connect_any(client: Client, contacts: Sequence[str]) -> str | None:
    reason = "no live node to connect to"
    for contact in contacts:
        try:
            await client.connect(contact)
            return None
        except ClientError as exc:
            reason = str(exc)
    return reason


async def _fetch_one(client: Client, name: bytes, timeout: float) -> FetchResult:
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            data = await client.get_chunk(name)
    except (ClientError, TimeoutError) as exc:
        took = time.monotonic() - started
        return FetchResult(name, False, str(exc) or f"timed out after {timeout:g} s", took)
    took = time.monotonic() - started
    if chunk_name(data) != name:
        return FetchResult(name, False, "data does not match the chunk name", took)
    return FetchResult(name, True, f"{len(data)} bytes verified", took)


async def check(
    testnet: str,
    infos: Mapping[int, NodeInfo],
    token: str,
    ledger: Sequence[bytes],
    *,
    sample: int,
    seed: int | None = None,
    rf: int = REPLICATION_FACTOR,
) -> OracleReport:
    """Ask every live node for its chunks, classify the ledger, fetch a sample."""
    started = time.monotonic()
    answers = await ask_all({i: info.admin for i, info in infos.items()}, token, "/chunks")
    holdings, unreachable = holdings_from(infos, answers)
    live = [info.name for info in infos.values()]
    verdicts = classify_all(ledger, holdings, live, rf)
    rng = random.Random(seed)
    picked = rng.sample(list(ledger), min(sample, len(ledger)))
    contacts = [info.contact for info in infos.values()]
    rng.shuffle(contacts)
    fetches = await fetch_sample(contacts, picked)
    took = time.monotonic() - started
    return OracleReport(
        testnet, len(live), tuple(verdicts), tuple(fetches), tuple(unreachable), took
    )
