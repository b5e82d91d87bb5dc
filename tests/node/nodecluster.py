"""In-process node clusters: real NodeService objects on real UDP sockets (127.0.0.1, port 0)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from node.config import NodeConfig
from node.routing.bootstrap import format_contact
from node.service import NodeService
from node.transport.config import TransportConfig

TOKEN = "test-operator-token-0123456789"
FAST = TransportConfig(idle_timeout=2.0, keepalive_interval=0.5)


def node_config(root: Path, index: int, contacts: tuple[str, ...] = (), **extra: Any) -> NodeConfig:
    return NodeConfig(
        data_dir=root / f"n{index:03d}",
        admin_token=TOKEN,
        **{"first": not contacts, **extra},
        contacts=contacts,
        transport=FAST,
        audit_interval=2.0,
        request_timeout=1.0,
    )


class Cluster:
    """Nodes of one test network, each ``run()`` as a task of this cluster."""

    def __init__(self, root: Path, **extra: Any) -> None:
        self.root = root
        self.extra = extra
        self.nodes: list[NodeService] = []
        self.tasks: dict[NodeService, asyncio.Task[None]] = {}

    def contact(self, i: int = 0) -> str:
        c = self.nodes[i].contact
        assert c is not None
        return format_contact(c)

    async def add(self, config: NodeConfig | None = None) -> NodeService:
        if config is None:
            seeds = tuple(self.contact(i) for i in range(min(3, len(self.nodes))))
            config = node_config(self.root, len(self.nodes), seeds, **self.extra)
        node = NodeService(config)
        self.nodes.append(node)
        self.tasks[node] = asyncio.create_task(node.run())
        await asyncio.wait_for(node.ready.wait(), 30)
        return node

    async def stop(self, node: NodeService) -> None:
        node.stop()
        await asyncio.wait_for(self.tasks.pop(node), 10)
        self.nodes.remove(node)

    async def crash(self, node: NodeService) -> None:
        """Like SIGKILL: the socket closes with no goodbye (peers see ICMP or silence)."""
        task = self.tasks.pop(node)
        node.transport.endpoint.shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        self.nodes.remove(node)

    async def close(self) -> None:
        for node in list(self.tasks):
            await self.stop(node)

    def holders(self, name: bytes) -> list[NodeService]:
        return [n for n in self.nodes if n.store.has(name)]

    def ideal(self, name: bytes, count: int = 4) -> set[bytes]:
        t = int.from_bytes(name, "big")
        names = sorted((n.name for n in self.nodes), key=lambda x: int.from_bytes(x, "big") ^ t)
        return set(names[:count])


@contextlib.asynccontextmanager
async def cluster(root: Path, size: int, **extra: Any) -> AsyncIterator[Cluster]:
    c = Cluster(root, **extra)
    try:
        for _ in range(size):
            await c.add()
        yield c
    finally:
        await c.close()


async def settle(predicate: Any, timeout: float = 20.0, step: float = 0.1) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())


__all__ = ["TOKEN", "Cluster", "cluster", "node_config", "replace", "settle"]
