"""Container testnet benchmark: bring-up of 60 and 180 node containers (Docker backend).

For each size, in one run:

* ours: ``Testnet.up`` (backend docker) until every node answers, then until routing has
  converged (every node knows its 8 nearest); containers/s; the CPU the whole machine spent
  meanwhile and the CPU used inside each container (cgroup cpuacct, mean); memory per
  container (cgroup ``memory.usage_in_bytes`` and the ``rss`` line of ``memory.stat``,
  median); ``down``.
* anchor, sequential: ``docker run -d`` of the same image, one after the other with the CLI,
  each container an idle Python process (what the issue measured: 106 s for 180); then one
  ``docker rm -f`` of them all.
* floor, parallel: the same idle containers created and started through the SDK with the
  same concurrency as ours: what Docker itself needs, with no node in them.

    python bench/testnet.py [--sizes 60,180] [--concurrency 8] [--quick]

Prints a Rich table, writes bench/results/testnet.json.  Objects are named ``bench-*``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as bench/testnet.py: this file must not shadow the testnet package

from testnet import Testnet
from testnet.docker_backend import DEFAULT_CONCURRENCY, DockerOptions
from testnet.image import DEFAULT_TAG, docker_client
from testnet.spec import spec_from_dict

RESULTS = Path(__file__).resolve().parent / "results"
CGROUP = Path("/sys/fs/cgroup/memory/docker")
CPUACCT = Path("/sys/fs/cgroup/cpuacct/docker")
IDLE = ["python", "-c", "import signal; signal.pause()"]
LABEL = "troon.bench=testnet"
console = Console(width=max(Console().width, 110))


def machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy (all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def container_memory(ids: list[str]) -> dict[str, float]:
    """Median MB per container: cgroup usage (incl. page cache) and rss."""
    usage, rss = [], []
    for cid in ids:
        base = CGROUP / cid
        try:
            usage.append(int((base / "memory.usage_in_bytes").read_text()) / 2**20)
            stat = dict(line.split() for line in (base / "memory.stat").read_text().splitlines())
            rss.append(int(stat["total_rss"]) / 2**20)
        except (OSError, KeyError, ValueError):
            continue
    if not usage:
        return {"mem_usage_mb": float("nan"), "mem_rss_mb": float("nan")}
    return {"mem_usage_mb": statistics.median(usage), "mem_rss_mb": statistics.median(rss)}


def container_cpu(ids: list[str]) -> float:
    """Mean CPU seconds used so far by each container (cgroup cpuacct)."""
    used = []
    for cid in ids:
        try:
            used.append(int((CPUACCT / cid / "cpuacct.usage").read_text()) / 1e9)
        except (OSError, ValueError):
            continue
    return statistics.mean(used) if used else float("nan")


def ours(n: int, home: Path, concurrency: int) -> dict[str, Any]:
    spec = spec_from_dict({"name": f"bench-{n}", "nodes": n, "backend": "docker", "seed": n})
    options = DockerOptions(image=DEFAULT_TAG, concurrency=concurrency, ready_timeout=180)
    cpu, started = machine_cpu(), time.perf_counter()
    net, report = Testnet.up(spec, home=home, console=console, options=options)
    try:
        ready = time.perf_counter() - started
        conv = net.converge(timeout=180)
        converged = time.perf_counter() - started
        cpu_used = machine_cpu() - cpu
        node_cpu = container_cpu(list(net.docker.ids().values()))
        time.sleep(5.0)  # past the start-up self-lookups
        memory = container_memory(list(net.docker.ids().values()))
        failed = len(report.failed)
    finally:
        began = time.perf_counter()
        net.down(grace=1)
        teardown = time.perf_counter() - began
    return {
        "nodes": n,
        "concurrency": concurrency,
        "failed": failed,
        "ready_s": ready,
        "converged_s": converged,
        "converged": conv.converged,
        "containers_per_s": n / converged,
        "machine_cpu_s": cpu_used,
        "node_cpu_s": node_cpu,
        "teardown_s": teardown,
        **memory,
    }


def sequential_anchor(n: int) -> dict[str, float]:
    """``docker run -d`` one by one with the CLI, then ``docker rm -f`` of them all."""
    network = f"bench-seq-{n}-{os.getpid()}"
    subprocess.run(
        ["docker", "network", "create", "--label", LABEL, network], check=True, capture_output=True
    )
    names = [f"bench-seq-{n}-{i:03d}" for i in range(n)]
    try:
        started = time.perf_counter()
        for name in names:
            subprocess.run(
                [
                    "docker",
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--label",
                    LABEL,
                    "--network",
                    network,
                    "--entrypoint",
                    IDLE[0],
                    DEFAULT_TAG,
                    *IDLE[1:],
                ],
                check=True,
                capture_output=True,
            )
        seconds = time.perf_counter() - started
    finally:
        began = time.perf_counter()
        subprocess.run(["docker", "rm", "-f", *names], check=False, capture_output=True)
        removed = time.perf_counter() - began
        subprocess.run(["docker", "network", "rm", network], check=False, capture_output=True)
    return {"seq_run_s": seconds, "seq_rm_s": removed}


def parallel_floor(n: int, concurrency: int) -> dict[str, float]:
    """The same idle containers created and started through the SDK, ``concurrency`` at once."""
    client = docker_client()
    api = client.api
    network = f"bench-par-{n}-{os.getpid()}"
    api.create_network(network, labels={"troon.bench": "testnet"})
    names = [f"bench-par-{n}-{i:03d}" for i in range(n)]

    def one(name: str) -> None:
        api.create_container(
            DEFAULT_TAG,
            command=IDLE[1:],
            entrypoint=IDLE[:1],
            name=name,
            labels={"troon.bench": "testnet"},
            host_config=api.create_host_config(),
            networking_config=api.create_networking_config({network: api.create_endpoint_config()}),
        )
        api.start(name)

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, names))
        seconds = time.perf_counter() - started
    finally:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda name: api.remove_container(name, force=True), names))
        _remove_network(api, network)
        client.close()
    return {"par_run_s": seconds}


def _remove_network(api: Any, network: str) -> None:
    """Docker sometimes keeps a removed container's endpoint for a moment (and, after many
    parallel removals, until it restarts: moby/moby#42119); retry, then warn, never fail."""
    for _ in range(20):
        try:
            api.remove_network(network)
            return
        except Exception as exc:  # docker.errors.APIError; 404 means it is gone already
            if "404" in str(exc) or "not found" in str(exc).lower():
                return
            last = exc
            time.sleep(0.5)
    console.print(f"[yellow]could not remove network {network}: {last}; `docker network rm` it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="60,180")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--quick", action="store_true", help="20 containers only")
    args = parser.parse_args(argv)
    sizes = [20] if args.quick else [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="troon-bench-") as tmp:
        for n in sizes:
            console.print(f"[bold]{n} containers[/]: ours, then the anchors")
            row = ours(n, Path(tmp), args.concurrency)
            row.update(sequential_anchor(n))
            row.update(parallel_floor(n, args.concurrency))
            row["speedup_vs_sequential"] = row["seq_run_s"] / row["converged_s"]
            results.append(row)
    _report(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "testnet.json").write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {RESULTS / 'testnet.json'}")
    return 0


def _report(results: list[dict[str, Any]]) -> None:
    table = Table(title="Troon container testnet benchmark (Docker backend)")
    for col in ("measure", *(f"{r['nodes']} containers" for r in results), "target"):
        table.add_column(col)
    rows = [
        ("nodes failed to start", "failed", "{:d}", "0"),
        ("every node answering (s)", "ready_s", "{:.1f}", ""),
        ("routing converged (s)", "converged_s", "{:.1f}", "180: <= 60 s"),
        ("containers/s to converged", "containers_per_s", "{:.2f}", ""),
        ("machine CPU during bring-up (CPU-s)", "machine_cpu_s", "{:.0f}", ""),
        ("CPU used inside each container by then (s)", "node_cpu_s", "{:.2f}", ""),
        ("memory per container, cgroup usage (MB)", "mem_usage_mb", "{:.1f}", ""),
        ("memory per container, rss (MB)", "mem_rss_mb", "{:.1f}", ""),
        ("teardown, down (s)", "teardown_s", "{:.1f}", ""),
        ("anchor: sequential docker run -d (s)", "seq_run_s", "{:.1f}", ""),
        ("anchor: docker rm -f of those (s)", "seq_rm_s", "{:.1f}", ""),
        ("floor: idle containers, parallel SDK (s)", "par_run_s", "{:.1f}", ""),
        ("speedup over the sequential loop", "speedup_vs_sequential", "{:.2f}x", ">= 3x"),
    ]
    for label, key, fmt, target in rows:
        table.add_row(label, *(fmt.format(r[key]) for r in results), target)
    console.print(table)


if __name__ == "__main__":
    raise SystemExit(main())
