"""End-to-end file benchmark: put and get a file through a local testnet of node processes.

The file is self-encrypted on the client, every chunk stored with 4 copies through one
gateway node, then fetched, verified and decrypted.  Reports MB/s both ways next to the
self-encryption speed alone (the anchor: the network's share of the time is the rest).

    python bench/data.py [--mb 100] [--nodes 30]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as bench/X.py: bench/testnet.py must not shadow the testnet package

from node.client.aio import Client, get_file, put_file
from node.selfenc import decrypt_file, encrypt_file
from testnet import Testnet
from testnet.oracle import client_host
from testnet.spec import spec_from_dict

RESULTS = Path(__file__).resolve().parent / "results"
console = Console()


def _digest(path: Path) -> str:
    h = hashlib.blake2b()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


async def _through(contact: str, src: Path, out: Path) -> tuple[float, float]:
    client = Client()
    await client.start(client_host([contact]))
    try:
        await client.connect(contact)
        started = time.perf_counter()
        data_map = await put_file(client, src)
        put_s = time.perf_counter() - started
        started = time.perf_counter()
        await get_file(client, data_map, out)
        return put_s, time.perf_counter() - started
    finally:
        await client.close()


def _local_only(src: Path, out: Path) -> tuple[float, float]:
    chunks: dict[bytes, bytes] = {}
    started = time.perf_counter()
    data_map = encrypt_file(src, lambda name, content: chunks.__setitem__(name, bytes(content)))
    enc = time.perf_counter() - started
    started = time.perf_counter()
    decrypt_file(data_map, chunks.__getitem__, out)
    return enc, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=30)
    args = parser.parse_args(argv)
    size = args.mb * 1_000_000
    with tempfile.TemporaryDirectory(prefix="troon-data-") as tmp:
        root = Path(tmp)
        src = root / "file.bin"
        with src.open("wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1_000_000))
        enc_s, dec_s = _local_only(src, root / "local.out")
        spec = spec_from_dict({"name": "bench-data", "nodes": args.nodes, "seed": 5})
        net, report = Testnet.up(spec, home=root / "home", console=console)
        try:
            if not report.ok or not net.converge(timeout=60).converged:
                raise SystemExit("testnet did not come up")
            contact = next(iter(net.live().values())).contact
            put_s, get_s = asyncio.run(_through(contact, src, root / "net.out"))
        finally:
            net.down(grace=5)
        same = _digest(src) == _digest(root / "net.out")
    result = {
        "bytes": size,
        "nodes": args.nodes,
        "selfenc_encrypt_mb_s": size / enc_s / 1e6,
        "selfenc_decrypt_mb_s": size / dec_s / 1e6,
        "put_mb_s": size / put_s / 1e6,
        "get_mb_s": size / get_s / 1e6,
        "put_s": put_s,
        "get_s": get_s,
        "verified": same,
    }
    table = Table(title=f"{args.mb} MB file through a {args.nodes}-node local testnet")
    table.add_column("measure")
    table.add_column("MB/s", justify="right")
    table.add_row(
        "self-encryption alone: encrypt (anchor)", f"{result['selfenc_encrypt_mb_s']:.1f}"
    )
    table.add_row(
        "self-encryption alone: decrypt (anchor)", f"{result['selfenc_decrypt_mb_s']:.1f}"
    )
    table.add_row("put: encrypt + store 4 copies of every chunk", f"{result['put_mb_s']:.1f}")
    table.add_row("get: fetch + verify + decrypt", f"{result['get_mb_s']:.1f}")
    table.add_row("round trip byte-identical", "yes" if same else "NO")
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "data.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
