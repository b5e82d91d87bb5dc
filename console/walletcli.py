"""``troon wallet create | balance | send | history``: safecoin from the command line.

A wallet is an Ed25519 key.  Its secret stays on this machine in
``$TROON_HOME/wallets/NAME.json`` (mode 0600; ``--name``, default ``default``); its
balance and history are held by the close group of its address on the network.  Another
wallet is named by its address (64 hex characters) or by a local wallet name.  The
gateway node is chosen as for ``troon put`` (``--contact``, ``$TROON_CONTACTS`` or a live
node of ``--testnet``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from pathlib import Path

from rich.console import Console
from rich.table import Table

from console.datacli import _gateway_args, _guard, _with_client
from node.atomicfile import write_atomic
from node.client.aio import Client, ClientError
from node.farming.ledger import BURN_ADDRESS, MAX_AMOUNT, MAX_MEMO
from node.identity import Identity
from testnet.state import troon_home

console = Console()
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wallet = sub.add_parser("wallet", help="safecoin wallets: create, balance, send, history")
    wcmds = wallet.add_subparsers(dest="wallet_cmd", required=True, metavar="COMMAND")
    create = wcmds.add_parser("create", help="make a wallet key here and claim its free coins")
    _wallet_args(create)
    create.set_defaults(func=_guard(cmd_create))
    balance = wcmds.add_parser("balance", help="a wallet's balance as its close group holds it")
    _wallet_args(balance, address=True)
    balance.set_defaults(func=_guard(cmd_balance))
    send = wcmds.add_parser("send", help="transfer coins to another wallet")
    send.add_argument("amount", type=_amount, help="whole coins")
    send.add_argument("to", help="recipient: an address (64 hex) or a local wallet name")
    send.add_argument("--memo", default="", help=f"a note of at most {MAX_MEMO} bytes")
    _wallet_args(send)
    send.set_defaults(func=_guard(cmd_send))
    history = wcmds.add_parser("history", help="a wallet's recent transfers and credits")
    _wallet_args(history, address=True)
    history.set_defaults(func=_guard(cmd_history))


def _wallet_args(parser: argparse.ArgumentParser, *, address: bool = False) -> None:
    parser.add_argument("--name", default="default", help="local wallet name (default: default)")
    if address:
        parser.add_argument("--address", help="any wallet's address instead (64 hex)")
    _gateway_args(parser)


def _amount(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"amount must be a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_AMOUNT:
        raise argparse.ArgumentTypeError(f"amount must be 1..{MAX_AMOUNT}")
    return value


def wallet_path(name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise ClientError(f"bad wallet name {name!r}: letters, digits, . _ - (at most 64)")
    return troon_home() / "wallets" / f"{name}.json"


def load_wallet(name: str) -> Identity:
    path = wallet_path(name)
    try:
        seed = bytes.fromhex(json.loads(path.read_text())["seed"])
        return Identity.from_seed(seed)
    except FileNotFoundError:
        raise ClientError(
            f"no local wallet {name!r} ({path}); make one with `troon wallet create --name {name}`"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClientError(f"{path} is not a Troon wallet file: {exc}") from exc


def _make_wallet(name: str) -> tuple[Identity, bool]:
    path = wallet_path(name)
    if path.exists():
        return load_wallet(name), False
    identity = Identity.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"seed": identity.seed().hex(), "address": identity.public_key.hex()}
    write_atomic(path, (json.dumps(body) + "\n").encode(), mode=0o600)
    return identity, True


def _address(text: str) -> bytes:
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    return load_wallet(text).public_key


def _target(args: argparse.Namespace) -> bytes:
    if getattr(args, "address", None):
        if not re.fullmatch(r"[0-9a-fA-F]{64}", args.address):
            raise ClientError("--address is a wallet address: 64 hex characters")
        return bytes.fromhex(args.address)
    return load_wallet(args.name).public_key


def cmd_create(args: argparse.Namespace) -> int:
    identity, made = _make_wallet(args.name)

    async def body(client: Client) -> int:
        minted = await client.create_wallet(identity)
        state = await client.wallet(identity.public_key)
        verb = "created" if made else "opened existing"
        console.print(f"{verb} wallet {args.name}: address {identity.public_key.hex()}")
        if minted:
            console.print(f"free allowance: {minted} coins")
        console.print(f"balance: {state.balance} coins")
        return 0

    return asyncio.run(_with_client(args, body))


def cmd_balance(args: argparse.Namespace) -> int:
    key = _target(args)

    async def body(client: Client) -> int:
        state = await client.wallet(key)
        console.print(f"{key.hex()}: {state.balance} coins (next transfer seq {state.next_seq})")
        return 0

    return asyncio.run(_with_client(args, body))


def cmd_send(args: argparse.Namespace) -> int:
    owner = load_wallet(args.name)
    recipient = _address(args.to)
    memo = args.memo.encode()
    if len(memo) > MAX_MEMO:
        raise ClientError(f"--memo is {len(memo)} bytes; at most {MAX_MEMO}")
    if recipient == BURN_ADDRESS:
        raise ClientError("that is the burn address; store payments are made by `troon put`")

    async def body(client: Client) -> int:
        proof = await client.send(owner, recipient, args.amount, memo)
        state = await client.wallet(owner.public_key)
        console.print(
            f"sent {args.amount} coins to {recipient.hex()[:16]}... "
            f"(transfer {proof.transfer.id.hex()[:16]}, approved by {len(proof.votes)} of the "
            f"sender's group); balance now {state.balance}"
        )
        return 0

    return asyncio.run(_with_client(args, body))


def cmd_history(args: argparse.Namespace) -> int:
    key = _target(args)

    async def body(client: Client) -> int:
        state = await client.wallet(key)
        table = Table(title=f"wallet {key.hex()[:16]}...: {state.balance} coins")
        for column in ("kind", "id", "counterparty", "amount"):
            table.add_column(column, justify="right" if column == "amount" else "left")
        for kind, ident, counterparty, amount in reversed(state.history):
            who = "network (mint)" if counterparty == BURN_ADDRESS else counterparty.hex()[:16]
            if kind == "debit" and counterparty == BURN_ADDRESS:
                who = "store payment"
            sign = "-" if kind == "debit" else "+"
            table.add_row(kind, ident.hex()[:16], who, f"{sign}{amount}")
        console.print(table)
        return 0

    return asyncio.run(_with_client(args, body))
