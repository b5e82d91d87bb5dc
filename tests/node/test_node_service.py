"""Node service end to end, in one process: real NodeService objects on real UDP sockets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from nodecluster import TOKEN, Cluster, cluster, node_config, settle

from node.admin import AdminCallError, AdminClient
from node.client.aio import Client, ClientError
from node.messages import Kind, encode
from node.rpc.aio import Rpc, RpcError
from node.service import NodeService
from node.storage.chunkstore import chunk_name


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def client_of(c: Cluster, i: int = 0) -> Client:
    client = Client()
    await client.start()
    await client.connect(c.contact(i))
    return client


def test_chunks_are_stored_on_their_four_closest_nodes_and_fetched_back(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 8) as c:
            assert await settle(lambda: all(len(n.table) >= 6 for n in c.nodes))
            client = await client_of(c, 3)
            blobs = [os.urandom(100 + 37 * i) for i in range(20)]
            names = [await client.put_chunk(b) for b in blobs]
            for name, blob in zip(names, blobs, strict=True):
                assert {n.name for n in c.holders(name)} == c.ideal(name)
                assert await client.get_chunk(name) == blob
            await client.close()

    run(body())


def test_a_crashed_holder_is_replaced_and_four_copies_return(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 8) as c:
            assert await settle(lambda: all(len(n.table) >= 6 for n in c.nodes))
            client = await client_of(c, 0)
            names = [await client.put_chunk(os.urandom(500)) for _ in range(30)]
            await client.close()
            victim = next(n for n in c.nodes[1:] if any(n.store.has(x) for x in names))
            lost_here = [x for x in names if victim.store.has(x)]
            await c.crash(victim)

            def healed() -> bool:
                return all({n.name for n in c.holders(x)} == c.ideal(x) for x in names)

            assert await settle(healed, timeout=30)
            assert lost_here  # the crash really took copies away

    run(body())


def test_three_of_four_holders_killed_one_after_another_loses_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 9) as c:
            assert await settle(lambda: all(len(n.table) >= 7 for n in c.nodes))
            client = await client_of(c, 0)
            blob = os.urandom(2000)
            name = await client.put_chunk(blob)
            for _ in range(3):
                holders = [n for n in c.holders(name) if n is not c.nodes[0]]
                await c.crash(holders[0])
                assert await settle(
                    lambda: {n.name for n in c.holders(name)} == c.ideal(name), timeout=30
                )
            assert await client.get_chunk(name) == blob
            await client.close()

    run(body())


def test_restarted_node_keeps_its_identity_and_chunks(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 5) as c:
            assert await settle(lambda: all(len(n.table) >= 4 for n in c.nodes))
            client = await client_of(c, 0)
            names = [await client.put_chunk(os.urandom(300)) for _ in range(10)]
            await client.close()
            node = next(n for n in c.nodes[1:] if n.store.stats()["chunks"])
            held = set(node.store.names())
            config, name = node.config, node.name
            await c.stop(node)
            again = await c.add(config)
            assert again.name == name
            assert set(again.store.names()) >= held
            assert set(names) & held

    run(body())


def test_bad_requests_get_error_replies_and_change_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 12) as c:
            assert await settle(lambda: all(len(n.table) >= 11 for n in c.nodes))
            target = c.nodes[2]
            client = await client_of(c, 2)
            rpc: Rpc = client.rpc
            peer = target.identity.public_key
            data = os.urandom(64)
            wrong = bytes(32)
            with pytest.raises(RpcError) as poisoned:
                await rpc.call(
                    peer, None, Kind.PUT, name=wrong, data=data, replica=True, payment=b""
                )
            assert poisoned.value.code == "name_mismatch"
            far = _far_name(c, target)
            far_data, far_name = far
            with pytest.raises(RpcError) as refused:
                await rpc.call(
                    peer, None, Kind.PUT, name=far_name, data=far_data, replica=True, payment=b""
                )
            assert refused.value.code == "not_responsible"
            client.transport.send(peer, b"\xc1 not msgpack")
            client.transport.send(peer, encode(Kind.PONG, 7))
            with pytest.raises(RpcError) as missing:
                await rpc.call(peer, None, Kind.GET, name=os.urandom(32), app=b"")
            assert missing.value.code == "not_found"
            assert not target.store.has(wrong) and not target.store.has(far_name)
            assert target.counters["rejected_poisoned"] == 1
            assert target.counters["rejected_not_responsible"] == 1
            assert target.rpc.counters["malformed"] == 1
            assert target.rpc.counters["unexpected_reply"] == 1
            with pytest.raises(ClientError):
                await client.put_chunk(bytes(5 * 1024 * 1024))
            await client.close()

    run(body())


def _far_name(c: Cluster, node: NodeService) -> tuple[bytes, bytes]:
    """Content whose name ``node`` is not responsible for (not among the 8 closest)."""
    for _ in range(10_000):
        data = os.urandom(48)
        name = chunk_name(data)
        group = node.table.close_group(name, 8, include_self=node.contact)
        if node.name not in {g.name for g in group}:
            return data, name
    raise AssertionError("no far name found: is the cluster larger than 8 nodes?")


def test_admin_api_requires_the_operator_token(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 2) as c:
            node = c.nodes[1]
            host, port = node.admin_address
            stranger = AdminClient(host, port, "not-the-token-at-all")
            for method, path in (("GET", "/info"), ("POST", "/leave"), ("GET", "/chunks")):
                with pytest.raises(AdminCallError) as denied:
                    if method == "GET":
                        await stranger.get(path)
                    else:
                        await stranger.post(path, {})
                assert denied.value.status == 401
            assert not node._stop.is_set()
            admin = AdminClient(host, port, TOKEN)
            info = await admin.get("/info")
            assert info["name"] == node.name.hex()
            routing = await admin.get("/routing")
            assert routing["size"] == 1
            with pytest.raises(AdminCallError) as bad:
                await admin.post("/impairment", {"selector": "*", "rule": {"loss": 7}})
            assert bad.value.status == 400
            assert node.transport.impairment.rules() == {}
            rules = await admin.post("/impairment", {"selector": "*", "rule": {"delay": 0.01}})
            assert "*" in rules["rules"]
            metrics = await admin.get_text("/metrics")
            assert metrics.endswith("# EOF\n")
            with pytest.raises(AdminCallError) as badname:
                await admin.get("/close-group", name="zz")
            assert badname.value.status == 400

    run(body())


def test_graceful_leave_is_seen_at_once_by_peers(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 4) as c:
            assert await settle(lambda: all(len(n.table) >= 3 for n in c.nodes))
            leaving = c.nodes[3]
            await c.stop(leaving)
            assert await settle(
                lambda: all(not n.table.contains(leaving.name) for n in c.nodes), timeout=1.0
            )

    run(body())


def test_config_requires_contacts_or_first(tmp_path: Path) -> None:
    from node.transport.config import ConfigError

    with pytest.raises(ConfigError, match="contacts"):
        node_config(tmp_path, 0, (), first=False)


def test_auto_advertise_uses_the_route_towards_a_contact(tmp_path: Path) -> None:
    from node.service import local_address_towards

    assert local_address_towards(("127.0.0.1", 9)) == "127.0.0.1"

    async def body() -> None:
        async with cluster(tmp_path, 1) as c:
            cfg = node_config(
                tmp_path, 1, (c.contact(0),), listen_host="0.0.0.0", advertise_host="auto"
            )
            node = await c.add(cfg)
            assert node.contact is not None and node.contact.address[0] == "127.0.0.1"
            assert await settle(lambda: len(node.table) == 1)

    run(body())


def test_every_get_served_is_a_farming_attempt_counted_on_the_admin_api(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 6) as c:
            assert await settle(lambda: all(len(n.table) >= 5 for n in c.nodes))
            client = await client_of(c, 0)
            names = [await client.put_chunk(os.urandom(256)) for _ in range(10)]
            for name in names:
                await client.get_chunk(name)
            await client.close()
            attempts = sum(n.farming["attempts"] for n in c.nodes)
            assert attempts == len(names)  # one copy served per GET
            server = next(n for n in c.nodes if n.farming["attempts"])
            host, port = server.admin_address
            farming = await AdminClient(host, port, TOKEN).get("/farming")
            assert farming["attempts"] == server.farming["attempts"]
            assert 0.0 <= farming["rate"] <= 1.0
            metrics = await AdminClient(host, port, TOKEN).get_text("/metrics")
            assert "troon_farming_attempts" in metrics

    run(body())


def test_contacts_that_left_the_table_are_pinged_again(tmp_path: Path) -> None:
    """After a partition each side has evicted the other; a node pings contacts that left
    its table lately, so the two sides find each other again once the partition heals."""

    async def body() -> None:
        async with cluster(tmp_path, 5) as c:
            assert await settle(lambda: all(len(n.table) >= 4 for n in c.nodes))
            a, b = c.nodes[0], c.nodes[1]
            a._apply(a.table.remove(b.name, now=a.now()))
            assert not a.table.contains(b.name) and b.name in a._departed
            await a._probe_departed()
            assert a.table.contains(b.name) and a.counters["departed_back"] >= 1
            assert b.name not in a._departed
            # a contact gone for longer than the window is no longer pinged
            a._apply(a.table.remove(b.name, now=a.now()))
            contact, _ = a._departed[b.name]
            a._departed[b.name] = (contact, a.now() - 10_000)
            await a._probe_departed()
            assert b.name not in a._departed

    asyncio.run(body())
