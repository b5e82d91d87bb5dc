"""Self-authentication and messaging through an in-process cluster on real sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nacl.pwhash.argon2id as argon2id
import pytest
from nodecluster import cluster, settle

from node.client.aio import Client, ClientError
from node.data.account import (
    WRONG_CREDENTIALS,
    AccountError,
    AccountPacket,
    Credentials,
    KdfCost,
    derive_keys,
    open_with_keys,
    seal_with_keys,
)
from node.data.inbox import delete_proof, inbox_address, open_message, seal_message
from node.identity import Identity

CHEAP = KdfCost(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN, testing=True)


def test_account_created_and_logged_into_on_any_node(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 6) as c:
            assert await settle(lambda: all(len(n.table) >= 5 for n in c.nodes))
            creds = Credentials("keyword-1", "2468", "a long password")
            keys = derive_keys(creds, CHEAP)
            me = Identity.generate()
            packet = AccountPacket(me.seed(), Identity.generate().seed(), {"cv.pdf": b"map"}, 7)
            first = Client()
            await first.start()
            await first.connect(c.contact(0))
            assert await first.put_record(seal_with_keys(keys, packet, 0)) >= 3
            await first.close()
            # Log in elsewhere, through another node, deriving everything again.
            other = Client()
            await other.start()
            await other.connect(c.contact(4))
            again = derive_keys(Credentials("keyword-1", "2468", "a long password"), CHEAP)
            opened = open_with_keys(again, await other.get_record(again.address))
            assert opened.identity_seed == me.seed()
            assert dict(opened.datamaps) == {"cv.pdf": b"map"}
            for wrong in (
                Credentials("keyword-1", "2468", "not the password"),
                Credentials("keyword-1", "1357", "a long password"),
                Credentials("keyword-2", "2468", "a long password"),
            ):
                bad = derive_keys(wrong, CHEAP)
                with pytest.raises(AccountError) as err:
                    open_with_keys(bad, await other.get_record(bad.address))
                assert str(err.value) == WRONG_CREDENTIALS
            await other.close()

    asyncio.run(body())


def test_sealed_messages_reach_the_inbox_and_only_the_recipient_reads_them(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with cluster(tmp_path, 6) as c:
            assert await settle(lambda: all(len(n.table) >= 5 for n in c.nodes))
            alice, bob, eve = Identity.generate(), Identity.generate(), Identity.generate()
            client = Client()
            await client.start()
            await client.connect(c.contact(1))
            envelope = seal_message(bob, alice.public_key, b"the DataMap: ...", sent_at=1)
            assert await client.post_letter(envelope) >= 3
            address = inbox_address(alice.public_key)
            held = [n for n in c.nodes if n.inboxes.list(address)]
            assert {n.name for n in held} == c.ideal(address)
            letters = await client.read_inbox(address)
            assert [open_message(alice, e).body for e in letters] == [b"the DataMap: ..."]
            with pytest.raises(ValueError):
                open_message(eve, letters[0])
            ids = [letters[0].id]
            with pytest.raises(ClientError):
                await client.delete_letters(address, ids, delete_proof(eve, ids))
            assert len(await client.read_inbox(address)) == 1
            assert await client.delete_letters(address, ids, delete_proof(alice, ids)) == 1
            assert await settle(lambda: not any(n.inboxes.list(address) for n in c.nodes))
            await client.close()

    asyncio.run(body())
