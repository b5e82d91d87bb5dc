"""Files on the network: self-encrypted put/get through an in-process cluster on real sockets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from nodecluster import cluster, settle

from node.client.aio import Client, ClientError, get_file, publish, put_file, resolve
from node.selfenc import DataMap


def test_file_round_trip_private_and_public(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    src.write_bytes(os.urandom(9 * 1024 * 1024 + 123))

    async def body() -> None:
        async with cluster(tmp_path / "net", 6) as c:
            assert await settle(lambda: all(len(n.table) >= 5 for n in c.nodes))
            client = Client()
            await client.start()
            await client.connect(c.contact(2))
            stored: list[int] = []
            data_map = await put_file(client, src, progress=stored.append)
            assert sum(stored) >= src.stat().st_size  # every chunk acknowledged
            out = tmp_path / "out.bin"
            await get_file(client, data_map, out)
            assert out.read_bytes() == src.read_bytes()
            address = await publish(client, data_map)
            again = await resolve(client, address)
            assert again == data_map
            # Every chunk of the file ends up held by exactly its 4 closest nodes (a copy a
            # busy gateway put elsewhere is moved by replication, then dropped).
            chunk_names = [info.dst_hash for info in data_map.chunk_identifiers]
            assert await settle(
                lambda: all({n.name for n in c.holders(x)} == c.ideal(x) for x in chunk_names),
                timeout=30,
            )
            await client.close()

    asyncio.run(body())


def test_a_corrupt_copy_is_detected_and_another_holder_serves(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    src.write_bytes(os.urandom(300_000))

    async def body() -> None:
        async with cluster(tmp_path / "net", 6) as c:
            assert await settle(lambda: all(len(n.table) >= 5 for n in c.nodes))
            client = Client()
            await client.start()
            gateway = c.nodes[0]
            await client.connect(c.contact(0))
            data_map = await put_file(client, src)
            for info in data_map.chunk_identifiers:
                holders = [n for n in c.holders(info.dst_hash) if n is not gateway]
                path = holders[0].store.root / "chunks" / info.dst_hash.hex()[:2]
                (path / info.dst_hash.hex()).write_bytes(b"rotten bits")
            out = tmp_path / "out.bin"
            await get_file(client, data_map, out)
            assert out.read_bytes() == src.read_bytes()
            with pytest.raises(ClientError):
                await resolve(client, os.urandom(32))
            await client.close()

    asyncio.run(body())


def test_a_forged_datamap_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path / "net", 4) as c:
            client = Client()
            await client.start()
            await client.connect(c.contact(0))
            data_map = await put_file(client, _small(tmp_path))
            infos = list(data_map.chunk_identifiers)
            forged = DataMap(
                tuple([infos[0].__class__(0, os.urandom(32), infos[0].src_hash, infos[0].src_size)])
                + tuple(infos[1:]),
                data_map.child,
            )
            out = tmp_path / "never.bin"
            with pytest.raises(ClientError):
                await get_file(client, forged, out)
            assert not out.exists()
            await client.close()

    asyncio.run(body())


def _small(tmp_path: Path) -> Path:
    path = tmp_path / "small.bin"
    path.write_bytes(b"hello, serverless world" * 100)
    return path
