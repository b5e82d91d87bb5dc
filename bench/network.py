"""Network benchmark: local process testnets of 60 and 180 nodes.

For each size: time to every node ready and routing converged; RSS and PSS per idle
node; lookup rounds (median, p95) against log2 N; chunk PUT/GET latency p50/p99.
On the smaller net: 1,000 chunks stored, the node holding most of them killed, and
the time until no live node lists it (detection) and until every chunk is back on
its 4 ideal holders (repair).

    python bench/network.py [--sizes 60,180] [--quick]

Prints a Rich table, writes bench/results/network.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as bench/X.py: bench/testnet.py must not shadow the testnet package

from node.admin import AdminClient
from node.client.aio import Client
from testnet import Testnet
from testnet.spec import spec_from_dict
from testnet.state import NodeInfo

RESULTS = Path(__file__).resolve().parent / "results"
console = Console(width=max(Console().width, 110))


def memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process in MB."""
    rss = pss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    return rss, pss


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def lookup_rounds(
    infos: list[NodeInfo], token: str, samples: int, rng: random.Random
) -> list[int]:
    rounds = []
    for _ in range(samples):
        info = rng.choice(infos)
        admin = AdminClient(*info.admin, token, timeout=30)
        body = await admin.get("/lookup", name=os.urandom(32).hex())
        rounds.append(int(body["rounds"]))
    return rounds


async def put_get_latency(contact: str, count: int, size: int) -> dict[str, float]:
    client = Client()
    await client.start()
    try:
        await client.connect(contact)
        puts, gets, names = [], [], []
        for _ in range(count):
            started = time.perf_counter()
            names.append(await client.put_chunk(os.urandom(size)))
            puts.append((time.perf_counter() - started) * 1000)
        for name in names:
            started = time.perf_counter()
            await client.get_chunk(name)
            gets.append((time.perf_counter() - started) * 1000)
    finally:
        await client.close()
    return {
        "put_p50_ms": statistics.median(puts),
        "put_p99_ms": pct(puts, 0.99),
        "get_p50_ms": statistics.median(gets),
        "get_p99_ms": pct(gets, 0.99),
    }


async def heal(net: Testnet, chunks: int) -> dict[str, float]:
    """Store ``chunks``, kill the busiest holder, time until every chunk is back on its 4."""
    report = await net.aput(chunks, 1024, seed=7)
    token = net.state.token
    infos = net.live()
    counts = {}
    for index, info in infos.items():
        counts[index] = (await AdminClient(*info.admin, token).get("/chunks"))["count"]
    victim = max(counts, key=lambda i: counts[i])
    killed_at = time.perf_counter()
    net.kill(victim)
    repaired = math.nan
    while time.perf_counter() - killed_at < 120:
        if (await net.acheck(sample=0)).clean:
            repaired = time.perf_counter() - killed_at
            break
        await asyncio.sleep(0.1)
    return {
        "chunks": float(report.stored),
        "victim_chunks": float(counts[victim]),
        "repaired_s": repaired,
    }


def run_size(n: int, home: Path, *, heal_chunks: int, samples: int) -> dict[str, Any]:
    spec = spec_from_dict({"name": f"bench-{n}", "nodes": n, "seed": n})
    started = time.perf_counter()
    net, report = Testnet.up(spec, home=home, console=console, ready_timeout=120)
    try:
        ready = time.perf_counter() - started
        if not report.ok:
            raise SystemExit(f"{len(report.failed)} nodes failed to start")
        conv = net.converge(timeout=120)
        converged = time.perf_counter() - started
        time.sleep(2.0)
        mems = [memory(info.pid) for info in net.live().values()]
        infos = list(net.live().values())
        rng = random.Random(n)
        rounds = asyncio.run(lookup_rounds(infos, net.state.token, samples, rng))
        latency = asyncio.run(put_get_latency(infos[0].contact, samples, 4096))
        out: dict[str, Any] = {
            "nodes": n,
            "ready_s": ready,
            "converged_s": converged,
            "converged": conv.converged,
            "rss_mb_median": statistics.median(m[0] for m in mems),
            "pss_mb_median": statistics.median(m[1] for m in mems),
            "lookup_rounds_median": statistics.median(rounds),
            "lookup_rounds_p95": pct([float(r) for r in rounds], 0.95),
            "log2_n": math.log2(n),
            **latency,
        }
        if heal_chunks:
            out["heal"] = asyncio.run(heal(net, heal_chunks))
        return out
    finally:
        net.down(grace=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="60,180")
    parser.add_argument("--quick", action="store_true", help="20 nodes, fewer samples")
    args = parser.parse_args(argv)
    sizes = [20] if args.quick else [int(s) for s in args.sizes.split(",")]
    samples = 20 if args.quick else 100
    results = []
    with tempfile.TemporaryDirectory(prefix="troon-bench-") as tmp:
        for i, n in enumerate(sizes):
            heal_chunks = (100 if args.quick else 1000) if i == 0 else 0
            results.append(run_size(n, Path(tmp), heal_chunks=heal_chunks, samples=samples))
    _report(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "network.json").write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {RESULTS / 'network.json'}")
    return 0


def _report(results: list[dict[str, Any]]) -> None:
    table = Table(title="Troon local testnet benchmark")
    for col in ("measure", *(f"{r['nodes']} nodes" for r in results), "target"):
        table.add_column(col)
    rows = [
        ("all nodes ready (s)", "ready_s", "{:.1f}", ""),
        ("routing converged (s)", "converged_s", "{:.1f}", "180: <= 60 s"),
        ("RSS per idle node, median (MB)", "rss_mb_median", "{:.1f}", "<= 40 MB"),
        ("PSS per idle node, median (MB)", "pss_mb_median", "{:.1f}", ""),
        ("lookup rounds, median", "lookup_rounds_median", "{:.1f}", ""),
        ("lookup rounds, p95", "lookup_rounds_p95", "{:.0f}", "<= 5"),
        ("log2 N", "log2_n", "{:.1f}", ""),
        ("chunk PUT p50 / p99 (ms)", ("put_p50_ms", "put_p99_ms"), "{:.0f} / {:.0f}", ""),
        ("chunk GET p50 / p99 (ms)", ("get_p50_ms", "get_p99_ms"), "{:.0f} / {:.0f}", ""),
    ]
    for label, key, fmt, target in rows:
        cells = []
        for r in results:
            values = [r[k] for k in key] if isinstance(key, tuple) else [r[key]]
            cells.append(fmt.format(*values))
        table.add_row(label, *cells, target)
    for r in results:
        if "heal" in r:
            h = r["heal"]
            table.add_row(
                f"kill holder of {h['victim_chunks']:.0f}/{h['chunks']:.0f} chunks: 4 copies back",
                *[f"{h['repaired_s']:.1f} s after kill" if x is r else "" for x in results],
                "<= 5 s after detection",
            )
    console.print(table)


if __name__ == "__main__":
    raise SystemExit(main())
