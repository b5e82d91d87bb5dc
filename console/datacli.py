"""``troon put`` / ``troon get``: files on the network, from the command line.

A file is self-encrypted on this machine; only encrypted chunks leave it.  A private
file's DataMap (its only key) is written next to you (mode 0600); ``--public`` stores
the DataMap on the network too and prints an address anyone can fetch.  The gateway
node is ``--contact HOST:PORT/PUBKEY``, else any live node of ``--testnet NAME``
(default ``local``), else ``$TROON_CONTACTS``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from node.client.aio import Client, ClientError, file_size, get_file, publish, put_file, resolve
from node.selfenc import DataMap, SelfEncryptionError
from testnet.cli import command_guard
from testnet.oracle import client_host

console = Console()
Command = Callable[[argparse.Namespace], int]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    put = sub.add_parser(
        "put", help="self-encrypt a file and store it with 4 copies of every chunk"
    )
    put.add_argument("file", type=Path)
    put.add_argument(
        "--public", action="store_true", help="also store the DataMap: print an address"
    )
    put.add_argument(
        "--map-out", type=Path, help="where to write the DataMap (default FILE.datamap)"
    )
    put.add_argument(
        "--pay", metavar="WALLET", help="pay the store cost from this local wallet (see wallet)"
    )
    _gateway_args(put)
    put.set_defaults(func=_guard(cmd_put))
    get = sub.add_parser("get", help="fetch, verify and decrypt a file")
    source = get.add_mutually_exclusive_group(required=True)
    source.add_argument("address", nargs="?", help="a public file's address (64 hex characters)")
    source.add_argument("--map", type=Path, help="a private file's DataMap file")
    get.add_argument("-o", "--out", type=Path, required=True, help="where to write the file")
    _gateway_args(get)
    get.set_defaults(func=_guard(cmd_get))


def _gateway_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contact", help="gateway node HOST:PORT/PUBKEYHEX")
    parser.add_argument("--testnet", default="local", help="use a live node of this local testnet")


_guard = command_guard(SelfEncryptionError)


def _contacts(args: argparse.Namespace) -> list[str]:
    if args.contact:
        return [args.contact]
    env = [c.strip() for c in os.environ.get("TROON_CONTACTS", "").split(",") if c.strip()]
    if env:
        return env
    from testnet.api import Testnet

    live = Testnet.open(args.testnet).live()
    if not live:
        raise ClientError(f"testnet {args.testnet} has no live node; `troon testnet up` first")
    return [info.contact for info in live.values()]


async def _with_client(args: argparse.Namespace, body: Callable[[Client], Awaitable[int]]) -> int:
    contacts = _contacts(args)
    client = Client()
    await client.start(client_host(contacts))  # every interface if the nodes are containers
    try:
        last: Exception | None = None
        for contact in contacts[:5]:
            try:
                await client.connect(contact)
                break
            except ClientError as exc:
                last = exc
        else:
            raise ClientError(f"no gateway node answered: {last}")
        return await body(client)
    finally:
        await client.close()


def _bar(label: str, total: int) -> Progress:
    columns = (TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    return Progress(*columns, console=console, transient=False)


def cmd_put(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        raise ClientError(f"{path} is not a file")
    size = file_size(path)
    payer = None
    if args.pay:
        from console.walletcli import load_wallet

        payer = load_wallet(args.pay)

    async def body(client: Client) -> int:
        started = time.perf_counter()
        with _bar(f"storing {path.name}", size) as bar:
            task = bar.add_task("put", total=size)
            data_map = await put_file(
                client, path, progress=lambda n: bar.advance(task, n), payer=payer
            )
            bar.update(task, completed=size)
        seconds = time.perf_counter() - started
        out = args.map_out or path.with_name(path.name + ".datamap")
        _write_private(out, data_map.to_json().encode())
        console.print(f"stored {size} bytes in {seconds:.1f} s; DataMap (the file's key): {out}")
        if args.public:
            address = await publish(client, data_map)
            console.print(f"public address: {address.hex()}")
        return 0

    return asyncio.run(_with_client(args, body))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def cmd_get(args: argparse.Namespace) -> int:
    async def body(client: Client) -> int:
        if args.map is not None:
            data_map = DataMap.from_json(args.map.read_text())
        else:
            try:
                address = bytes.fromhex(args.address)
            except ValueError as exc:
                raise ClientError("an address is 64 hex characters") from exc
            if len(address) != 32:
                raise ClientError("an address is 64 hex characters")
            data_map = await resolve(client, address)
        # A shrunk map (child level) does not know the file's size until it is expanded.
        total = None if data_map.child is not None else data_map.file_size
        started = time.perf_counter()
        with _bar(f"fetching {args.out.name}", total or 0) as bar:
            task = bar.add_task("get", total=total)
            await get_file(client, data_map, args.out, progress=lambda n: bar.advance(task, n))
            bar.update(task, total=bar.tasks[0].completed, completed=bar.tasks[0].completed)
        seconds = time.perf_counter() - started
        size = args.out.stat().st_size
        console.print(f"rebuilt and verified {size} bytes into {args.out} in {seconds:.1f} s")
        return 0

    return asyncio.run(_with_client(args, body))
