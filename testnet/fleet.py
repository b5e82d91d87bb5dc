"""Ask many nodes the same admin question at once (an adapter over :mod:`node.admin`).

One call per node, at most ``concurrency`` in flight, each bounded by ``timeout``.  A node
that fails is reported, never raised: the answer maps every asked index to either the
decoded JSON or a :class:`Failed` carrying a one-line reason (house style 11).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.admin import AdminCallError, AdminClient

DEFAULT_TIMEOUT = 5.0
DEFAULT_CONCURRENCY = 32

Addr = tuple[str, int]


@dataclass(frozen=True)
class Failed:
    """A node that did not answer usefully."""

    reason: str


async def ask_all(
    admins: Mapping[int, Addr],
    token: str,
    path: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
    **query: str,
) -> dict[int, Any]:
    """GET ``path`` from every node; index -> JSON body or :class:`Failed`."""
    gate = asyncio.Semaphore(concurrency)

    async def one(addr: Addr) -> Any:
        async with gate:
            try:
                return await AdminClient(*addr, token, timeout=timeout).get(path, **query)
            except AdminCallError as exc:
                return Failed(str(exc))

    indices = sorted(admins)
    answers = await asyncio.gather(*(one(admins[i]) for i in indices))
    return dict(zip(indices, answers, strict=True))


async def post_all(
    calls: list[tuple[int, Addr, str, Any]],
    token: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[tuple[int, Any]]:
    """POST each ``(index, admin addr, path, body)``; returns ``(index, JSON or Failed)``."""
    gate = asyncio.Semaphore(concurrency)

    async def one(addr: Addr, path: str, body: Any) -> Any:
        async with gate:
            try:
                return await AdminClient(*addr, token, timeout=timeout).post(path, body)
            except AdminCallError as exc:
                return Failed(str(exc))

    answers = await asyncio.gather(*(one(a, p, b) for _, a, p, b in calls))
    return [(c[0], answer) for c, answer in zip(calls, answers, strict=True)]
