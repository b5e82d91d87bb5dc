"""``troon node ...``: run and inspect a node from the command line (an adapter)."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.transport.aio import Transport


def _console() -> Any:
    from rich.console import Console  # imported lazily: `node run` stays lean in memory

    return Console()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``node`` command group to the top-level parser."""
    node = sub.add_parser("node", help="run and inspect a single node")
    cmds = node.add_subparsers(dest="node_cmd", required=True, metavar="COMMAND")
    keygen = cmds.add_parser("keygen", help="create a node identity file (Ed25519 seed)")
    keygen.add_argument("path", type=Path, help="where to write the key (refuses to overwrite)")
    keygen.set_defaults(func=cmd_keygen)
    run = cmds.add_parser("run", help="run a node until SIGTERM (graceful leave)")
    run.add_argument("--config", type=Path, required=True, help="node config YAML")
    run.add_argument(
        "--contact",
        action="append",
        default=[],
        metavar="HOST:PORT/PUBKEYHEX",
        help="a peer to join from (repeatable; adds to the config's contacts)",
    )
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.set_defaults(func=cmd_run)
    demo = cmds.add_parser("demo", help="two node processes exchange encrypted data over UDP")
    demo.add_argument("--mb", type=int, default=20, help="megabytes to transfer (default 20)")
    demo.set_defaults(func=cmd_demo)


def main_run(argv: list[str]) -> int:
    """``troon node run ARGV...`` without the top-level parser (for fork servers)."""
    parser = argparse.ArgumentParser(prog="troon")
    register(parser.add_subparsers(dest="group", required=True))
    args = parser.parse_args(["node", "run", *argv])
    return int(args.func(args))


def cmd_run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging
    import signal

    from node.config import load_config
    from node.service import NodeService
    from node.transport.config import ConfigError

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config)
        if args.contact:
            config = dataclasses.replace(config, contacts=(*config.contacts, *args.contact))
    except ConfigError as exc:
        print(f"config error in {args.config}: {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        service = NodeService(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.stop)
        await service.run()

    asyncio.run(serve())
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from node.identity import Identity

    console = _console()
    path: Path = args.path
    if path.exists():
        console.print(f"[red]{path} exists; choose another path or remove it first[/red]")
        return 2
    ident = Identity.generate()
    path.write_text(json.dumps({"seed": ident.seed().hex()}) + "\n")
    path.chmod(0o600)
    console.print(f"node id {ident.name.hex()}\npublic key {ident.public_key.hex()}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if not 1 <= args.mb <= 4096:
        _console().print("[red]--mb must be between 1 and 4096[/red]")
        return 2
    return asyncio.run(_demo(args.mb))


async def _demo(mb: int) -> int:
    from node.identity import Identity
    from node.transport.aio import Transport

    console = _console()
    sink = subprocess.Popen(
        [sys.executable, "-m", "node.testing.peer", "--mode", "sink"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert sink.stdout is not None and sink.stdin is not None
    info = json.loads(sink.stdout.readline())
    peer, addr = bytes.fromhex(info["public_key"]), (info["addr"][0], int(info["addr"][1]))
    t = Transport(Identity.generate())
    try:
        await t.start()
        started = time.perf_counter()
        await t.connect(peer, addr)
        console.print(
            f"handshake with {addr[0]}:{addr[1]} (Noise IK, mutual Ed25519 auth) "
            f"in {(time.perf_counter() - started) * 1000:.1f} ms"
        )
        seconds = await _transfer(t, peer, mb)
        _print_stats(t, peer, mb, seconds)
    finally:
        await t.aclose()
        sink.stdin.close()
        sink.wait(timeout=10)
        sink.stdout.close()
    return 0


async def _transfer(t: Transport, peer: bytes, mb: int) -> float:
    from rich.progress import BarColumn, Progress, TextColumn, TransferSpeedColumn

    from node.transport.events import MessageReceived

    console = _console()
    chunk = 1 << 20
    columns = (TextColumn("sending"), BarColumn(), TransferSpeedColumn())
    started = time.perf_counter()
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("send", total=mb * chunk)
        for _ in range(mb):
            t.send(peer, bytes(chunk))
            await t.drain(peer, low=2 * chunk)
            progress.update(task, completed=progress.tasks[0].completed + chunk)
        t.send(peer, b"?")
        while True:
            event = await t.recv()
            if isinstance(event, MessageReceived):
                break
    return time.perf_counter() - started


def _print_stats(t: Transport, peer: bytes, mb: int, seconds: float) -> None:
    from rich.table import Table

    stats = t.endpoint.session_stats(peer) or {}
    rate = mb * 1.048576 / seconds
    table = Table(title=f"{mb} MiB delivered in {seconds:.2f} s ({rate:.1f} MB/s)")
    table.add_column("session figure")
    table.add_column("value", justify="right")
    for key in ("srtt_ms", "min_rtt_ms", "cwnd", "packets_sent", "packets_lost", "retransmits"):
        table.add_row(key, str(stats.get(key)))
    _console().print(table)
