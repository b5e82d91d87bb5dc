"""``troon account create|login`` and ``troon msg send|read``: self-authentication and messaging.

Credentials are asked for at the terminal (never echoed), or read from TROON_KEYWORD,
TROON_PIN and TROON_PASSWORD for scripts.  Key derivation (Argon2id, ~1 s at the
default cost) runs on this machine; no server is involved: the account is a signed
record on the network that only the holder of all three secrets can find and open.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from console.datacli import _gateway_args, _guard, _with_client
from node.client.aio import Client, ClientError
from node.data.account import (
    AccountError,
    AccountKeys,
    AccountPacket,
    Credentials,
    KdfCost,
    derive_keys,
    open_with_keys,
    seal_with_keys,
)
from node.data.inbox import (
    InboxError,
    delete_proof,
    inbox_address,
    open_message,
    seal_message,
)
from node.identity import Identity
from node.selfenc import DataMap, SelfEncryptionError

console = Console()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    account = sub.add_parser("account", help="create or log in to an account (no server)")
    acmds = account.add_subparsers(dest="account_cmd", required=True, metavar="COMMAND")
    create = acmds.add_parser("create", help="create an account: keyword, PIN, password")
    _gateway_args(create)
    create.set_defaults(func=_wrap(cmd_create))
    login = acmds.add_parser("login", help="find and open your account on the network")
    _gateway_args(login)
    login.set_defaults(func=_wrap(cmd_login))
    msg = sub.add_parser("msg", help="send and read sealed messages")
    mcmds = msg.add_subparsers(dest="msg_cmd", required=True, metavar="COMMAND")
    send = mcmds.add_parser("send", help="seal and sign a message to a public key")
    send.add_argument("--to", required=True, help="recipient's public key (64 hex)")
    send.add_argument("text", nargs="?", default="", help="the message")
    send.add_argument(
        "--datamap", type=Path, help="share a private file: send its DataMap (from `troon put`)"
    )
    _gateway_args(send)
    send.set_defaults(func=_wrap(cmd_send))
    read = mcmds.add_parser("read", help="open the messages in your inbox")
    read.add_argument("--delete", action="store_true", help="delete them after reading")
    read.add_argument(
        "--save-dir", type=Path, default=Path("."), help="where shared DataMaps are saved"
    )
    _gateway_args(read)
    read.set_defaults(func=_wrap(cmd_read))


def _wrap(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (AccountError, InboxError) as exc:
            raise ClientError(str(exc)) from exc

    return _guard(run)


def _credentials(*, confirm: bool = False) -> Credentials:
    keyword = os.environ.get("TROON_KEYWORD") or getpass.getpass("keyword: ")
    pin = os.environ.get("TROON_PIN") or getpass.getpass("PIN: ")
    password = os.environ.get("TROON_PASSWORD") or getpass.getpass("password: ")
    if confirm and "TROON_PASSWORD" not in os.environ and getpass.getpass("again: ") != password:
        raise AccountError("password: the two entries differ")
    return Credentials(keyword, pin, password)


def _keys(*, confirm: bool = False) -> AccountKeys:
    creds = _credentials(confirm=confirm)
    started = time.perf_counter()
    keys = derive_keys(creds, KdfCost())
    console.print(f"keys derived (Argon2id) in {time.perf_counter() - started:.1f} s")
    return keys


def _run(args: argparse.Namespace, body: Callable[[Client], Awaitable[int]]) -> int:
    return asyncio.run(_with_client(args, body))


def cmd_create(args: argparse.Namespace) -> int:
    keys = _keys(confirm=True)

    async def body(client: Client) -> int:
        if await client.get_record(keys.address) is not None:
            raise ClientError("that account exists already; `troon account login`")
        me = Identity.generate()
        packet = AccountPacket(
            identity_seed=me.seed(),
            wallet_seed=Identity.generate().seed(),
            created=int(time.time()),
        )
        holders = await client.put_record(seal_with_keys(keys, packet, 0))
        console.print(f"account created on {holders} nodes")
        wallet = Identity.from_seed(packet.wallet_seed)
        try:  # a new account's free allowance (RFC 0012): best effort, the account stands
            minted = await client.create_wallet(wallet)
            console.print(f"wallet {wallet.public_key.hex()[:16]}...: {minted} free coins")
        except ClientError as exc:
            console.print(f"[yellow]the account's wallet could not claim its allowance yet: {exc}")
        console.print("your public key (give it to people who message you):")
        console.print(me.public_key.hex(), soft_wrap=True)
        return 0

    return _run(args, body)


async def _login(client: Client, keys: AccountKeys) -> AccountPacket:
    return open_with_keys(keys, await client.get_record(keys.address))


def cmd_login(args: argparse.Namespace) -> int:
    keys = _keys()

    async def body(client: Client) -> int:
        packet = await _login(client, keys)
        me = Identity.from_seed(packet.identity_seed)
        table = Table(title="logged in")
        table.add_column("field")
        table.add_column("value")
        table.add_row("network name", me.name.hex())
        table.add_row("files (DataMaps)", str(len(packet.datamaps)))
        table.add_row("created", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(packet.created)))
        console.print(table)
        console.print(f"public key: {me.public_key.hex()}", soft_wrap=True)
        return 0

    return _run(args, body)


def cmd_send(args: argparse.Namespace) -> int:
    try:
        recipient = bytes.fromhex(args.to)
    except ValueError as exc:
        raise ClientError("--to is a public key: 64 hex characters") from exc
    if len(recipient) != 32:
        raise ClientError("--to is a public key: 64 hex characters")
    keys = _keys()

    async def body(client: Client) -> int:
        me = Identity.from_seed((await _login(client, keys)).identity_seed)
        body_bytes = args.text.encode()
        if args.datamap is not None:
            data_map = DataMap.from_json(args.datamap.read_text())  # refuse anything else
            body_bytes = DATAMAP_PREFIX + data_map.to_json().encode()
        if not body_bytes:
            raise ClientError("nothing to send: give a message or --datamap")
        envelope = seal_message(me, recipient, body_bytes, sent_at=int(time.time()))
        holders = await client.post_letter(envelope)
        console.print(f"sealed and delivered to {holders} inbox holders")
        return 0

    return _run(args, body)


DATAMAP_PREFIX = b"troon-datamap:"
"""A message body that shares a private file: the prefix, then the DataMap's JSON."""


def _show(body: bytes, envelope_id: bytes, args: argparse.Namespace) -> str:
    """The text of a message; a shared DataMap is saved to a file and pointed at."""
    if not body.startswith(DATAMAP_PREFIX):
        return body.decode(errors="replace")
    try:
        data_map = DataMap.from_json(body[len(DATAMAP_PREFIX) :].decode())
    except (UnicodeDecodeError, SelfEncryptionError) as exc:
        return f"[red]a shared file whose DataMap is invalid: {exc}[/red]"
    path = args.save_dir / f"shared-{envelope_id.hex()[:12]}.datamap"
    path.write_text(data_map.to_json())
    path.chmod(0o600)
    return f"shared a file: `troon get --map {path} -o FILE`"


def cmd_read(args: argparse.Namespace) -> int:
    keys = _keys()

    async def body(client: Client) -> int:
        me = Identity.from_seed((await _login(client, keys)).identity_seed)
        address = inbox_address(me.public_key)
        envelopes = await client.read_inbox(address)
        table = Table(title=f"{len(envelopes)} message(s)")
        for col in ("from", "sent (UTC)", "message"):
            table.add_column(col)
        opened = []
        for envelope in envelopes:
            try:
                letter = open_message(me, envelope)
            except InboxError as exc:
                table.add_row("?", "", f"[red]unreadable: {exc}[/red]")
                continue
            opened.append(envelope.id)
            sent = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(letter.sent_at))
            table.add_row(letter.sender.hex()[:16], sent, _show(letter.body, envelope.id, args))
        console.print(table)
        if args.delete and opened:
            removed = await client.delete_letters(address, opened, delete_proof(me, opened))
            console.print(f"deleted {removed}")
        return 0

    return _run(args, body)
