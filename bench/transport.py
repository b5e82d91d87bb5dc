"""Transport benchmark: Troon's encrypted reliable UDP against its anchors, in one run.

(a) ceiling: raw UDP blast with per-packet AEAD (bench/anchors.py);
(b) anchor: aioquic bulk transfer on one stream (bench/anchors.py);
(c) ours: bulk transfer to a sink process, lossless and at 1% and 5% impairment loss;
(d) 1 KB request/response RTT p50/p99 against an echo process;
(e) time to detect a killed peer process (ICMP) and a silent (blackholed) peer;
(f) CPU cost of keep-alives for 40 idle connections.

Prints a Rich table and writes bench/results/transport.json.  Ratios matter more
than absolute figures: the machine is shared and noisy.

    python bench/transport.py [--mb 50] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anchors

from node.identity import Identity
from node.transport.aio import Transport
from node.transport.events import MessageReceived, PeerDead
from node.transport.impair import LinkRule

RESULTS = Path(__file__).resolve().parent / "results"
console = Console(width=max(Console().width, 110))


class Peer:
    """A node.testing.peer child process."""

    def __init__(self, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.testing.peer", "--mode", mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.key = bytes.fromhex(info["public_key"])
        self.addr = (info["addr"][0], int(info["addr"][1]))

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


async def _next_message(t: Transport, timeout: float = 60.0) -> bytes:
    async def loop() -> bytes:
        while True:
            ev = await t.recv()
            if isinstance(ev, MessageReceived):
                return ev.data

    return await asyncio.wait_for(loop(), timeout)


@contextlib.asynccontextmanager
async def _dialled(mode: str) -> AsyncIterator[tuple[Transport, Peer]]:
    """A fresh transport connected to a new peer process; both torn down afterwards."""
    peer = Peer(mode)
    t = Transport(Identity.generate())
    try:
        await t.start()
        await t.connect(peer.key, peer.addr)
        yield t, peer
    finally:
        await t.aclose()
        peer.kill()


async def _bulk(total: int, loss: float) -> dict[str, float]:
    async with _dialled("sink") as (t, sink):
        if loss:
            t.impairment.set_rule("*", LinkRule(loss=loss))
        chunk = 1 << 20
        count = total // chunk
        start = time.perf_counter()
        cpu0 = time.process_time()
        for _ in range(count):
            t.send(sink.key, bytes(chunk))
            await t.drain(sink.key, low=4 * chunk)
        t.send(sink.key, b"?")
        received = int(await _next_message(t))
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        stats = t.endpoint.session_stats(sink.key) or {}
        assert received == count * chunk, f"sink got {received} of {count * chunk} bytes"
        return {
            "mb_per_s": count * chunk / seconds / 1e6,
            "seconds": seconds,
            "sender_cpu_s": cpu,
            "packets_lost": float(stats.get("packets_lost", 0)),
            "retransmits": float(stats.get("retransmits", 0)),
        }


async def _rtt(rounds: int) -> dict[str, float]:
    async with _dialled("echo") as (t, echo):
        payload = os.urandom(1024)
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            t.send(echo.key, payload)
            await _next_message(t)
            samples.append((time.perf_counter() - start) * 1000)
        samples.sort()
        return {
            "p50_ms": statistics.median(samples),
            "p99_ms": samples[int(len(samples) * 0.99) - 1],
            "rounds": float(rounds),
        }


async def _wait_dead(t: Transport, timeout: float) -> float:
    async def loop() -> float:
        while True:
            ev = await t.recv()
            if isinstance(ev, PeerDead):
                return time.perf_counter()

    return await asyncio.wait_for(loop(), timeout)


async def _killed(active: bool) -> float:
    """Seconds from SIGKILL of the peer process to our PeerDead event."""
    async with _dialled("echo") as (t, echo):
        t.send(echo.key, b"warm-up")
        await _next_message(t)
        stop = asyncio.Event()

        async def traffic() -> None:
            while not stop.is_set():
                if t.endpoint.is_connected(echo.key):
                    t.send(echo.key, b"x" * 1024)
                await asyncio.sleep(0.005)

        pump = asyncio.ensure_future(traffic()) if active else None
        await asyncio.sleep(0.05)
        killed_at = time.perf_counter()
        os.kill(echo.proc.pid, signal.SIGKILL)
        dead_at = await _wait_dead(t, 10)
        stop.set()
        if pump is not None:
            await pump
        return dead_at - killed_at


async def _silent() -> float:
    """Seconds from blackholing a peer to our PeerDead event (default config)."""
    async with _dialled("echo") as (t, echo):
        t.send(echo.key, b"warm-up")
        await _next_message(t)
        await asyncio.sleep(0.2)
        cut_at = time.perf_counter()
        t.impairment.set_rule(f"addr:{echo.addr[0]}:{echo.addr[1]}", LinkRule(blackhole=True))
        return await _wait_dead(t, 10) - cut_at


KEEPALIVE_SPOKES = """
import asyncio, json, sys
from node.identity import Identity
from node.transport.aio import Transport
async def main():
    spokes = [Transport(Identity.generate()) for _ in range(int(sys.argv[1]))]
    for s in spokes:
        await s.start()
    print(json.dumps([[list(s.address), s.identity.public_key.hex()] for s in spokes]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


async def _keepalive_cpu(n: int, seconds: float) -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", KEEPALIVE_SPOKES, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    spokes = json.loads(proc.stdout.readline())
    hub = Transport(Identity.generate())
    try:
        await hub.start()
        for addr, key in spokes:
            await hub.connect(bytes.fromhex(key), (addr[0], addr[1]))
        await asyncio.sleep(1.0)
        sent0 = hub.endpoint.counters["datagrams_in"]
        out0 = sum(
            (hub.endpoint.session_stats(bytes.fromhex(k)) or {}).get("packets_sent", 0)
            for _, k in spokes
        )
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        out1 = sum(
            (hub.endpoint.session_stats(bytes.fromhex(k)) or {}).get("packets_sent", 0)
            for _, k in spokes
        )
        alive = sum(hub.endpoint.is_connected(bytes.fromhex(k)) for _, k in spokes)
        return {
            "connections": float(n),
            "alive_after": float(alive),
            "cpu_percent": 100 * cpu / wall,
            "packets_out_per_s": (out1 - out0) / wall,
            "packets_in_per_s": (hub.endpoint.counters["datagrams_in"] - sent0) / wall,
        }
    finally:
        await hub.aclose()
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=50, help="bulk transfer size (MB)")
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    args = parser.parse_args(argv)
    total = (10 if args.quick else args.mb) * 1_000_000
    reps = 1 if args.quick else 3
    res: dict[str, Any] = {"machine": platform.node(), "cpus": os.cpu_count(), "bytes": total}
    with console.status("ceiling: raw UDP + AEAD"):
        res["ceiling"] = max(
            (anchors.raw_udp_aead_ceiling(total) for _ in range(reps)), key=lambda r: r["mb_per_s"]
        )
    with console.status("anchor: aioquic bulk"):
        res["aioquic"] = max(
            (anchors.aioquic_bulk(total) for _ in range(reps)), key=lambda r: r["mb_per_s"]
        )
    for label, loss in (("ours_lossless", 0.0), ("ours_loss1", 0.01), ("ours_loss5", 0.05)):
        with console.status(f"ours: bulk {label}"):
            res[label] = max(
                (_run(_bulk(total, loss)) for _ in range(reps)), key=lambda r: r["mb_per_s"]
            )
    with console.status("1 KB request/response"):
        res["rtt"] = _run(_rtt(200 if args.quick else 2000))
    with console.status("killed peer detection"):
        active = [_run(_killed(True)) for _ in range(3 if args.quick else 10)]
        idle = [_run(_killed(False)) for _ in range(2 if args.quick else 3)]
        res["killed_active_ms"] = {"median": statistics.median(active) * 1000, "all": active}
        res["killed_idle_ms"] = {"median": statistics.median(idle) * 1000, "all": idle}
    with console.status("silent peer detection"):
        silent = [_run(_silent()) for _ in range(2 if args.quick else 3)]
        res["silent_s"] = {"median": statistics.median(silent), "all": silent}
    with console.status("keep-alive CPU, 40 idle connections"):
        res["keepalive"] = _run(_keepalive_cpu(40, 5 if args.quick else 20))
    _report(res)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transport.json").write_text(json.dumps(res, indent=2) + "\n")
    console.print(f"wrote {RESULTS / 'transport.json'}")
    return 0


def _report(res: dict[str, Any]) -> None:
    ours = res["ours_lossless"]["mb_per_s"]
    quic = res["aioquic"]["mb_per_s"]
    ceil = res["ceiling"]["mb_per_s"]
    rows = [
        ("(a) ceiling: raw UDP + AEAD", f"{ceil:.1f} MB/s", "-", ""),
        ("(b) anchor: aioquic, 1 stream", f"{quic:.1f} MB/s", "-", ""),
        ("(c) ours, lossless", f"{ours:.1f} MB/s", ">= 3x aioquic", f"{ours / quic:.2f}x"),
        ("(c) ours vs ceiling", f"{100 * ours / ceil:.0f}%", ">= 30%", ""),
    ]
    for label in ("ours_loss1", "ours_loss5"):
        r = res[label]["mb_per_s"]
        target = ">= 50% of lossless" if label == "ours_loss5" else ""
        rows.append((f"(c) ours, {label[-1]}% loss", f"{r:.1f} MB/s", target, f"{r / ours:.0%}"))
    rtt = res["rtt"]
    rows.append(("(d) 1 KB RTT p50 / p99", f"{rtt['p50_ms']:.3f} / {rtt['p99_ms']:.3f} ms", "", ""))
    ka, ki = res["killed_active_ms"]["median"], res["killed_idle_ms"]["median"]
    rows.append(("(e) killed peer, active link", f"{ka:.1f} ms", "<= 20 ms", ""))
    rows.append(("(e) killed peer, idle link", f"{ki:.0f} ms", "", "next keep-alive"))
    rows.append(("(e) silent peer", f"{res['silent_s']['median']:.2f} s", "<= 2 s", ""))
    k = res["keepalive"]
    rows.append(
        (
            "(f) keep-alives, 40 idle conns",
            f"{k['cpu_percent']:.2f}% CPU",
            "cheap",
            f"{k['packets_out_per_s']:.0f} out/s, {k['packets_in_per_s']:.0f} in/s",
        )
    )
    table = Table(title="Troon transport benchmark")
    for col in ("measure", "result", "target", "ratio / note"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    raise SystemExit(main())
