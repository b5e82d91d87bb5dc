"""Signed mutable records through an in-process cluster on real sockets."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from nodecluster import cluster, settle

from node.client.aio import Client, ClientError
from node.data.records import sign_record
from node.identity import Identity


def test_records_are_replicated_versioned_and_refuse_forgeries(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 7) as c:
            assert await settle(lambda: all(len(n.table) >= 6 for n in c.nodes))
            client = Client()
            await client.start()
            await client.connect(c.contact(1))
            owner = Identity.generate()
            v1 = sign_record(owner, b"profile", 1, b"first")
            assert await client.put_record(v1) >= 3
            holders = [n for n in c.nodes if n.records.get(v1.address) is not None]
            assert {n.name for n in holders} == c.ideal(v1.address)
            v2 = sign_record(owner, b"profile", 2, b"second")
            await client.put_record(v2)
            got = await client.get_record(v1.address)
            assert got is not None and got.payload == b"second"
            with pytest.raises(ClientError, match="stale"):
                await client.put_record(v1)  # older than what the group holds
            forged = replace(v2, version=3, payload=b"mallory")
            with pytest.raises(ClientError, match="refused"):
                await client.put_record(forged)
            got = await client.get_record(v1.address)
            assert got is not None and got.version == 2
            stranger = sign_record(Identity.generate(), b"profile", 9, b"x")
            assert await client.get_record(stranger.address) is None
            await client.close()

    asyncio.run(body())


def test_a_record_survives_the_loss_of_holders(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 8) as c:
            assert await settle(lambda: all(len(n.table) >= 7 for n in c.nodes))
            client = Client()
            await client.start()
            await client.connect(c.contact(0))
            record = sign_record(Identity.generate(), b"", 5, b"keep me")
            await client.put_record(record)
            for _ in range(2):
                victim = next(
                    n
                    for n in c.nodes
                    if n is not c.nodes[0] and n.records.get(record.address) is not None
                )
                await c.crash(victim)

            def replicated() -> bool:
                held = {n.name for n in c.nodes if n.records.get(record.address) is not None}
                return c.ideal(record.address) <= held

            assert await settle(replicated, timeout=30)
            got = await client.get_record(record.address)
            assert got == record
            await client.close()

    asyncio.run(body())
