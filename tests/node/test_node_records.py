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
            # monotonic reads: this client saw v2, so a gateway offering anything older (a
            # partial view after a partition) gets a clear error, never an older version
            assert client._records_seen[v1.address][0] == 2
            client._records_seen[v1.address] = (5, b"")
            with pytest.raises(ClientError, match="older version"):
                await client.get_record(v1.address, tries=2)
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


def test_a_read_after_a_partition_heals_finds_the_newest_version(tmp_path: Path) -> None:
    """Found by the 20-node soak: writes during a partition went to the nearest nodes the
    writer could reach; after the heal the 4 nearest were the side that missed them, and a
    read went back 50 versions.  Reads now ask every node that may hold the record and
    repair the nearest holders."""

    async def body() -> None:
        async with cluster(tmp_path, 10) as c:
            assert await settle(lambda: all(len(n.table) >= 9 for n in c.nodes))
            client = Client()
            await client.start()
            try:
                await client.connect(c.contact(0))
                owner = Identity.generate()
                old = sign_record(owner, b"r", 1, b"before the partition")
                assert await client.put_record(old) >= 3
                target = int.from_bytes(old.address, "big")
                ranked = sorted(c.nodes, key=lambda n: int.from_bytes(n.name, "big") ^ target)
                group, substitutes = ranked[:4], ranked[4:7]
                new = sign_record(owner, b"r", 7, b"written while the nearest were cut off")
                for n in substitutes:  # where the writes landed during the partition
                    n.records.put(new)
                assert all(n.records.get(old.address) == old for n in group)
                got = await client.get_record(old.address)
                assert got is not None and got.version == 7
                assert await settle(
                    lambda: all(n.records.get(old.address) == new for n in group), timeout=10
                )
            finally:
                await client.close()

    asyncio.run(body())
