"""Safecoin through an in-process cluster on real sockets: wallets, transfers, the mint,
farming rewards and store payments."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import msgpack
import pytest
from nodecluster import Cluster, cluster, settle

from node.client.aio import Client, ClientError
from node.farming.ledger import (
    BURN_ADDRESS,
    DebitProof,
    DebitVote,
    LedgerError,
    WalletReplica,
    sign_transfer,
)
from node.farming.rewards import TOTAL_SUPPLY
from node.identity import Identity, xor_name
from node.messages import Kind, MessageError, decode
from node.rpc.aio import RpcError
from node.service import NodeService


@contextlib.asynccontextmanager
async def ready_client(c: Cluster, gateway: int = 0) -> AsyncIterator[Client]:
    """A client on node ``gateway`` once every table is full and the mint has formed."""
    assert await settle(lambda: all(len(n.table) >= len(c.nodes) - 1 for n in c.nodes))
    assert await mint_ready(c)
    client = Client()
    await client.start()
    try:
        await client.connect(c.contact(gateway))
        yield client
    finally:
        await client.close()


def audit(c: Cluster) -> tuple[int, int, int]:
    """(sum of balances, unminted, outbox items): each balance as at least 3 of the ideal
    4 holders report it, the mint as a majority of its members do (-1 if they do not agree)."""
    keys = {k for n in c.nodes for k in n.ledger.wallets}
    total = 0
    for key in keys:
        ideal = c.ideal(xor_name(key))
        found = [
            n.ledger.wallets[key].balance
            for n in c.nodes
            if n.name in ideal and key in n.ledger.wallets
        ]
        agreed = [b for b in set(found) if found.count(b) >= 3]
        if not agreed:
            return -1, -1, -1
        total += agreed[0]
    outbox = sum(len(n.ledger.outbox) for n in c.nodes)
    return total, mint_agreed(c), outbox


def mint_agreed(c: Cluster) -> int:
    """The unminted supply a majority of the mint's members report at its newest seq."""
    mints = [(n.identity.public_key, n.ledger.mint) for n in c.nodes if n.ledger.mint]
    if not mints:
        return -1
    top = max((m for _, m in mints), key=lambda m: m.next_seq)
    agreeing = [k for k, m in mints if k in top.members and m.committed() == top.committed()]
    return top.unminted if len(agreeing) > len(top.members) // 2 else -1


def mint_states(c: Cluster) -> list[tuple[int, int, int, bool]]:
    """(unminted, next seq, members, is a member) of every mint replica, for failure output."""
    return [
        (
            *n.ledger.mint.committed(),
            len(n.ledger.mint.members),
            n.identity.public_key in n.ledger.mint.members,
        )
        for n in c.nodes
        if n.ledger.mint is not None
    ]


def balanced(c: Cluster) -> bool:
    total, unminted, outbox = audit(c)
    return outbox == 0 and total >= 0 and total + unminted == TOTAL_SUPPLY


async def mint_ready(c: Cluster) -> bool:
    """The mint has the 3 members it needs to move coins, and they agree."""

    def formed() -> bool:
        mints = [n.ledger.mint for n in c.nodes if n.ledger.mint]
        top = max(mints, key=lambda m: m.next_seq, default=None)
        return top is not None and len(top.members) >= 3 and mint_agreed(c) >= 0

    return await settle(formed, timeout=30)


def test_wallets_transfers_and_conservation(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 8) as c:
            assert await settle(lambda: all(len(n.table) >= 7 for n in c.nodes))
            assert await mint_ready(c)
            client = Client()
            await client.start()
            await client.connect(c.contact(2))
            alice, bob = Identity.generate(), Identity.generate()
            assert await client.create_wallet(alice) == 50
            assert await client.create_wallet(alice) == 0  # the allowance comes once
            assert (await client.wallet(alice.public_key)).balance == 50
            await client.send(alice, bob.public_key, 20, b"rent")
            assert (await client.wallet(alice.public_key)).balance == 30
            assert await settle(lambda: _balance(c, bob.public_key) == 20)
            bob_state = await client.wallet(bob.public_key)
            assert bob_state.balance == 20 and bob_state.history[-1][0] == "credit"
            with pytest.raises(ClientError, match="insufficient"):
                await client.send(alice, bob.public_key, 31)
            # over-balance at the group too (the client-side check bypassed)
            over = sign_transfer(alice, bob.public_key, 31, 1)
            with pytest.raises(ClientError, match="insufficient funds"):
                await client._ledger("wallet.transfer", over.encode())
            # replayed and out-of-order transfers are refused and change nothing
            replay = sign_transfer(alice, bob.public_key, 5, 0)
            with pytest.raises(ClientError, match=r"replay|approved"):
                await client._ledger("wallet.transfer", replay.encode())
            ahead = sign_transfer(alice, bob.public_key, 5, 7)
            with pytest.raises(ClientError, match=r"out of order|approved"):
                await client._ledger("wallet.transfer", ahead.encode())
            # a forged signature is refused
            carol = Identity.generate()
            forged = replace(sign_transfer(bob, carol.public_key, 5, 1), sender=alice.public_key)
            with pytest.raises(ClientError, match="signature"):
                await client._ledger("wallet.transfer", forged.encode())
            with pytest.raises(ClientError):
                await client._ledger("wallet.transfer", b"\xc1garbage")
            assert (await client.wallet(alice.public_key)).balance == 30
            # a transfer whose answer never came (here: never sent) goes again, unchanged,
            # before anything else is signed at its seq; one the group moved past is dropped
            client._unconfirmed[alice.public_key] = sign_transfer(alice, bob.public_key, 7, 1)
            proof = await client.send(alice, carol.public_key, 5)
            assert proof.transfer.seq == 2 and not client._unconfirmed
            assert (await client.wallet(alice.public_key)).balance == 18
            assert await settle(lambda: _balance(c, bob.public_key) == 27)
            client._unconfirmed[alice.public_key] = sign_transfer(alice, bob.public_key, 9, 0)
            assert (await client.send(alice, carol.public_key, 1)).transfer.seq == 3
            assert await settle(lambda: _balance(c, carol.public_key) == 6)
            assert client._committed[alice.public_key] == 3
            # read-your-writes: a wallet view older than a seq this client saw committed
            # (what a gateway on the cut-off side of a partition reports) is not signed on
            client._committed[alice.public_key] = 9
            with pytest.raises(ClientError, match="behind"):
                await client.send(alice, carol.public_key, 1)
            assert alice.public_key not in client._unconfirmed
            client._committed[alice.public_key] = 3
            # nor is an unconfirmed transfer signed at a seq above the view dropped
            stale = sign_transfer(alice, bob.public_key, 1, 9)
            client._unconfirmed[alice.public_key] = stale
            with pytest.raises(ClientError, match="behind"):
                await client.send(alice, carol.public_key, 1)
            assert client._unconfirmed[alice.public_key] == stale
            del client._unconfirmed[alice.public_key]
            assert (await client.wallet(alice.public_key)).next_seq == 4
            # a credit whose signers are no longer near the sender (they left since) is taken
            # once the sender's current group confirms the debit; a made-up one is not
            dave = Identity.generate()
            late = DebitProof.decode(
                await client._ledger(
                    "wallet.transfer", sign_transfer(bob, dave.public_key, 2, 0).encode()
                )
            )
            holder = next(n for n in c.nodes if n.name in c.ideal(xor_name(dave.public_key)))

            async def nobody_near(name: bytes) -> frozenset[bytes]:
                return frozenset()

            holder._near_remote = nobody_near  # type: ignore[method-assign]
            await holder._m_wallet_credit(holder.name, late.encode())
            assert holder.ledger.wallets[dave.public_key].balance == 2
            assert holder.counters["ledger_confirmed"] >= 1
            # validly voted by bob's group but never committed: no history confirms it
            unknown = sign_transfer(bob, dave.public_key, 3, 1)
            bobs = [n for n in c.nodes if n.name in c.ideal(xor_name(bob.public_key))]
            votes = tuple(
                [
                    DebitVote(*msgpack.unpackb(await n._m_wallet_vote(n.name, unknown.encode())))
                    for n in bobs
                ]
            )
            with pytest.raises(LedgerError, match="outside"):
                await holder._m_wallet_credit(holder.name, DebitProof(unknown, votes).encode())
            assert holder.ledger.wallets[dave.public_key].balance == 2
            del holder._near_remote
            assert await settle(lambda: balanced(c), timeout=20), audit(c)
            await client.close()

    asyncio.run(body())


def _balance(c: Cluster, key: bytes) -> int | None:
    found = [n.ledger.wallets[key].balance for n in c.nodes if key in n.ledger.wallets]
    return max(set(found), key=found.count) if len(found) >= 3 else None


def test_a_double_spend_race_gets_at_most_one_through(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 8) as c:
            assert await settle(lambda: all(len(n.table) >= 7 for n in c.nodes))
            assert await mint_ready(c)
            clients = []
            for i in range(2):
                cl = Client()
                await cl.start()
                await cl.connect(c.contact(i + 1))
                clients.append(cl)
            alice, bob, carol = (Identity.generate() for _ in range(3))
            await clients[0].create_wallet(alice)
            to_bob = sign_transfer(alice, bob.public_key, 40, 0)
            to_carol = sign_transfer(alice, carol.public_key, 40, 0)
            results = await asyncio.gather(
                clients[0]._ledger("wallet.transfer", to_bob.encode()),
                clients[1]._ledger("wallet.transfer", to_carol.encode()),
                return_exceptions=True,
            )
            ok = [r for r in results if isinstance(r, bytes)]
            assert len(ok) <= 1
            await asyncio.sleep(3)
            bob_b = _balance(c, bob.public_key) or 0
            carol_b = _balance(c, carol.public_key) or 0
            assert bob_b + carol_b == 40 * len(ok)
            assert (await clients[0].wallet(alice.public_key)).balance == 50 - 40 * len(ok)
            for cl in clients:
                await cl.close()

    asyncio.run(body())


def test_displaced_holders_hand_the_group_the_debits_it_missed(tmp_path: Path) -> None:
    """Found on a kept soak: nodes coming back with old state displaced a wallet's holders,
    the new group agreed on the old state and a committed debit was lost (1 coin over the
    supply).  Holders pushed out of the group now keep pushing while near, and the group
    moves forward to their state; a replica is still only started on the group's word."""

    async def body() -> None:
        async with cluster(tmp_path, 10) as c, ready_client(c) as client:
            alice, bob = Identity.generate(), Identity.generate()
            key = alice.public_key
            assert await client.create_wallet(alice) == 50
            target = int.from_bytes(xor_name(key), "big")
            ranked = sorted(c.nodes, key=lambda n: int.from_bytes(n.name, "big") ^ target)
            group, outside = ranked[:4], ranked[4:6]
            assert await settle(lambda: all(key in n.ledger.wallets for n in group))
            old = next(n for n in group if n.ledger.wallets[key].next_seq == 0)
            before = old.ledger.wallets[key].encode()
            proof = await client.send(alice, bob.public_key, 10)
            assert await settle(lambda: all(key in n.ledger.wallets for n in group))
            holder = next(n for n in group if n.ledger.wallets[key].next_seq == 1)
            after = holder.ledger.wallets[key].encode()
            # the debit now lives only with two nodes outside the group; the group itself
            # is back at the old state, as if its nodes had returned with old disks
            for n in outside:
                n.ledger.save_wallet(WalletReplica.decode(after))
            for n in group:
                n.ledger.save_wallet(WalletReplica.decode(before))
            # an outside holder's word does not start a replica on a group member
            bare = group[0]
            kept = bare.ledger.wallets.pop(key)
            for n in outside:
                await bare._m_wallet_push(n.name, after)
            assert key not in bare.ledger.wallets
            bare.ledger.save_wallet(kept)

            def moved_on() -> bool:
                states = [n.ledger.wallets[key] for n in group]
                return all((r.next_seq, r.balance) == (1, 40) for r in states)

            assert await settle(moved_on, timeout=30), [
                (n.ledger.wallets[key].next_seq, n.ledger.wallets[key].balance) for n in group
            ]
            history = group[0].ledger.wallets[key].history
            assert any(k == "debit" and i == proof.transfer.id for k, i, _, _ in history)

    asyncio.run(body())


def test_farming_rewards_and_paid_puts(tmp_path: Path) -> None:
    # a small store capacity makes the farming rate high enough to win in a short test
    async def body() -> None:
        async with cluster(tmp_path, 8, capacity=300_000, require_payment=True) as c:
            assert await settle(lambda: all(len(n.table) >= 7 for n in c.nodes))
            assert await mint_ready(c)
            client = Client()
            await client.start()
            await client.connect(c.contact(3))
            payer = Identity.generate()
            await client.create_wallet(payer)
            data = os.urandom(20_000)
            with pytest.raises(ClientError, match="requires payment"):
                await client.put_chunk(data)
            cost = await client.store_cost(len(data))
            assert cost >= 10
            payment = await client.pay_for(payer, data)
            name = await client.put_chunk(data, payment=payment)
            assert (await client.wallet(payer.public_key)).balance == 50 - cost
            with pytest.raises(ClientError, match="not a store payment for this chunk"):
                await client.put_chunk(os.urandom(100), payment=payment)
            # the burn returns the coins to the unminted supply
            assert await settle(lambda: balanced(c), timeout=20), audit(c)
            # store more (paid) data, then read it many times: farmers earn
            app = Identity.generate()
            client.app = app.public_key
            names = [name]
            for _ in range(6):
                blob = os.urandom(20_000)
                fresh = Identity.generate()  # 50 free coins pay for one such chunk
                await client.create_wallet(fresh)
                names.append(await client.put_chunk(blob, payment=await _pay(client, fresh, blob)))
            for _ in range(10):
                for n in names:
                    await client.get_chunk(n)
            assert await settle(lambda: sum(n.farming["claims_paid"] for n in c.nodes) > 0, 20)
            assert await settle(lambda: balanced(c), timeout=30), audit(c)
            paid = sum(n.farming["claims_paid"] for n in c.nodes)
            core = c.nodes[0].core_wallet
            assert (_balance(c, core) or 0) == paid  # 5 % of a 20-coin reward: 1 coin each
            farmers = [n for n in c.nodes if (_balance(c, n.identity.public_key) or 0) > 0]
            assert farmers
            assert (_balance(c, app.public_key) or 0) > 0  # the app developer's 10 %
            await client.close()

    asyncio.run(body())


async def _pay(client: Client, payer: Identity, blob: bytes) -> bytes:
    try:
        return await client.pay_for(payer, blob)
    except ClientError as exc:
        raise AssertionError(f"payment failed: {exc}") from exc


def test_bad_ledger_requests_get_clear_errors(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 5) as c:
            node: NodeService = c.nodes[1]
            client = Client()
            await client.start()
            await client.connect(c.contact(1))
            for op, payload in [
                ("wallet.get", b"short"),
                ("wallet.create", b"\x93\x01\x02\x03"),
                ("cost", b"\xa3abc"),
                ("mint.request", b"\x92\xa4nope\xc4\x00"),
                ("wallet.vote", b""),
            ]:
                with pytest.raises(ClientError):
                    await client._ledger(op, payload)
            with pytest.raises(ClientError, match="not a client operation"):
                await client._ledger("wallet.commit", b"")
            # a client posing as a group member gets nothing out of a member-only op
            with pytest.raises(RpcError, match=r"no replica|not in the close group|refused"):
                await client.rpc.call(
                    node.identity.public_key,
                    None,
                    Kind.LEDGER,
                    op="wallet.vote",
                    body=sign_transfer(Identity.generate(), BURN_ADDRESS, 1, 0).encode(),
                    replica=True,
                )
            bad = msgpack.packb([int(Kind.LEDGER), 1, {"op": "nope", "body": b"", "replica": True}])
            with pytest.raises(MessageError, match="unknown ledger op"):
                decode(bad)
            with pytest.raises(ClientError, match="no such wallet"):
                await client.wallet(Identity.generate().public_key)
            with pytest.raises(ClientError):
                await client.wallet(BURN_ADDRESS)
            await client.close()

    asyncio.run(body())


def test_wallets_and_the_mint_survive_churn(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 10) as c, ready_client(c) as client:
            alice, bob = Identity.generate(), Identity.generate()
            await client.create_wallet(alice)
            await client.send(alice, bob.public_key, 15)
            assert await settle(lambda: balanced(c), timeout=20), audit(c)
            # crash two of alice's four holders and one of the mint's (not the gateway)
            # (at most 2 of the mint's 5 members: it needs a majority to go on, and
            # wallet holders are often mint members too in a 10-node cluster)
            holders = [n for n in c.nodes if alice.public_key in n.ledger.wallets]
            mints = [n.ledger.mint for n in c.nodes if n.ledger.mint is not None]
            members = max(mints, key=lambda m: m.next_seq).members

            def member(n: NodeService) -> bool:
                return n.identity.public_key in members

            others = [n for n in holders if n is not c.nodes[0]]
            two = sorted(others, key=member)[:2]
            minter = next(
                (n for n in c.nodes if member(n) and n not in holders and n is not c.nodes[0]),
                None,
            )
            victims = [*two, *([minter] if minter and not any(map(member, two)) else [])]
            for victim in victims:
                await c.crash(victim)
            # new members take over by push-sync; transfers and the mint still work
            assert await settle(lambda: balanced(c), timeout=40), (audit(c), mint_states(c))
            # a newcomer takes a replica once two surviving holders agree on it (push rounds)
            ideal = c.ideal(xor_name(alice.public_key))
            assert await settle(
                lambda: ideal <= {n.name for n in c.nodes if alice.public_key in n.ledger.wallets},
                timeout=40,
            )
            await client.send(alice, bob.public_key, 5)
            carol = Identity.generate()
            assert await client.create_wallet(carol) == 50
            assert await settle(lambda: balanced(c), timeout=30), audit(c)
            assert _balance(c, bob.public_key) == 20
            # a restarted node keeps its ledger on disk
            keeper = next(n for n in c.nodes[1:] if alice.public_key in n.ledger.wallets)
            config = keeper.config
            await c.stop(keeper)
            again = await c.add(config)
            assert again.ledger.wallets[alice.public_key].balance == 30

    asyncio.run(body())
