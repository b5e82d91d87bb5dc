"""Self-encryption benchmark: Troon's node.selfenc beside MaidSafe's self_encryption 0.35.0.

(a) in memory, 1 MB and 100 MB: ``encrypt``/``decrypt`` against the reference's
    ``encrypt``/``decrypt``;
(b) streamed, 1 GB file: ``encrypt_file``/``decrypt_file`` against the reference's
    ``encrypt_from_file``/``streaming_decrypt_from_storage``, each run in its own child process
    that also reports its peak RSS above its own baseline (VmHWM minus VmRSS before the run).
    Both sides keep chunks as one file each in a temporary directory.

Input is incompressible (BLAKE3 XOF) so Brotli cost is the same for both. Prints a Rich table
and writes bench/results/selfenc.json. Ratios matter more than absolute figures: the machine
is shared and noisy (load averages are recorded).

    python bench/selfenc.py [--quick] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from node.selfenc import DataMap, decrypt, decrypt_file, encrypt, encrypt_file

RESULTS = Path(__file__).resolve().parent / "results"
console = Console(width=max(Console().width, 110))
MB = 1_000_000
PIECE = 4 * 1024 * 1024


def _data(size: int, seed: str = "troon/bench/selfenc") -> bytes:
    return blake3.blake3(seed.encode()).digest(length=size)


def _best(fn: Callable[[], object], min_seconds: float, max_reps: int) -> float:
    """Fastest wall time of ``fn`` over repeats (at least one, ~min_seconds in total)."""
    best, spent, reps = float("inf"), 0.0, 0
    while reps < max_reps and (reps == 0 or spent < min_seconds):
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best, spent, reps = min(best, took), spent + took, reps + 1
    return best


def in_memory(size: int, workers: int | None, reference: Any) -> dict[str, Any]:
    data = _data(size)
    reps = 20 if size <= 4 * MB else 3
    out: dict[str, Any] = {"bytes": size}
    data_map, chunks = encrypt(data, workers=workers)
    store = dict(chunks)
    assert decrypt(data_map, store.__getitem__, workers=workers) == data
    out["ours_encrypt_s"] = _best(lambda: encrypt(data, workers=workers), 1.0, reps)
    out["ours_decrypt_s"] = _best(
        lambda: decrypt(data_map, store.__getitem__, workers=workers), 1.0, reps
    )
    if reference is not None:
        their_map, their_chunks = reference.encrypt(data)
        assert reference.decrypt(their_map, their_chunks) == data
        assert their_map.to_json() == data_map.to_json(), "chunk names differ from the reference"
        out["ref_encrypt_s"] = _best(lambda: reference.encrypt(data), 1.0, reps)
        out["ref_decrypt_s"] = _best(lambda: reference.decrypt(their_map, their_chunks), 1.0, reps)
    return out


# --------------------------------------------------------------------------------------
# streamed runs: one child process per step, so each peak RSS is its own
# --------------------------------------------------------------------------------------


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child(step: str, work: Path, workers: int | None) -> dict[str, Any]:
    """Run one streamed step in this (child) process; report seconds and peak RSS delta."""
    source, chunks, output = work / "input", work / f"chunks-{step[:3]}", work / "output"
    map_file = work / f"map-{step[:3]}.json"
    reference: Any = None
    if step.startswith("ref"):
        import self_encryption as reference

    def put_chunk(name: bytes, content: bytes) -> None:
        (chunks / name.hex()).write_bytes(content)

    def get_chunk(name: bytes) -> bytes:
        return (chunks / name.hex()).read_bytes()

    def get_chunks(wanted: list[tuple[int, str]]) -> list[tuple[int, bytes]]:
        return [(index, (chunks / name).read_bytes()) for index, name in wanted]

    baseline = _status("VmRSS")
    start = time.perf_counter()
    if step == "ours-encrypt":
        chunks.mkdir()
        map_file.write_text(encrypt_file(source, put_chunk, workers=workers).to_json())
    elif step == "ours-decrypt":
        decrypt_file(DataMap.from_json(map_file.read_text()), get_chunk, output, workers=workers)
    elif step == "ref-encrypt":
        chunks.mkdir()
        map_file.write_text(reference.encrypt_from_file(str(source), str(chunks))[0].to_json())
    elif step == "ref-decrypt":
        their_map = reference.DataMap.from_json(map_file.read_text())
        reference.streaming_decrypt_from_storage(their_map, str(output), get_chunks)
    else:
        raise ValueError(f"unknown step {step!r}")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_delta": _status("VmHWM") - baseline}


def _spawn(step: str, work: Path, workers: int | None) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", step, "--work", str(work)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{step} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def _same_file(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(PIECE), fb.read(PIECE)
            if x != y:
                return False
            if not x:
                return True


def streamed(size: int, workers: int | None, with_reference: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"bytes": size}
    with tempfile.TemporaryDirectory(prefix="troon-bench-selfenc-") as tmp:
        work = Path(tmp)
        hasher = blake3.blake3(b"troon/bench/selfenc-stream")
        with (work / "input").open("wb") as sink:  # XOF output, written piece by piece
            for offset in range(0, size, PIECE):
                sink.write(hasher.digest(length=min(PIECE, size - offset), seek=offset))
        sides = ["ours", "ref"] if with_reference else ["ours"]
        for side in sides:
            for op in ("encrypt", "decrypt"):
                with console.status(f"streamed {size // MB} MB: {side} {op}"):
                    out[f"{side}_{op}"] = _spawn(f"{side}-{op}", work, workers)
            assert _same_file(work / "input", work / "output"), f"{side} round trip differs"
            (work / "output").unlink()
        if with_reference:
            ours, ref = (work / "map-our.json").read_text(), (work / "map-ref.json").read_text()
            out["maps_identical"] = ours == ref
        shutil.rmtree(work, ignore_errors=True)
    return out


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def _mbps(size: int, seconds: float | None) -> str:
    return "-" if seconds is None else f"{size / MB / seconds:,.0f} MB/s"


def _ratio(ours: float | None, ref: float | None) -> str:
    return "-" if ours is None or ref is None else f"{ref / ours:.2f}x"


def _report(res: dict[str, Any]) -> None:
    table = Table(title="Troon self-encryption vs MaidSafe self_encryption 0.35.0")
    for column in ("case", "ours", "reference", "ours / reference"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for key, case in res["in_memory"].items():
        for op in ("encrypt", "decrypt"):
            ours, ref = case.get(f"ours_{op}_s"), case.get(f"ref_{op}_s")
            row = (_mbps(case["bytes"], ours), _mbps(case["bytes"], ref), _ratio(ours, ref))
            table.add_row(f"{op} {key} in memory", *row)
    stream = res["streamed"]
    size = stream["bytes"]
    for op in ("encrypt", "decrypt"):
        ours = stream[f"ours_{op}"]["seconds"]
        ref = stream.get(f"ref_{op}", {}).get("seconds")
        table.add_row(f"{op} {size // MB} MB streamed", _mbps(size, ours), _mbps(size, ref),
                      _ratio(ours, ref))  # fmt: skip
    for op in ("encrypt", "decrypt"):
        ours = stream[f"ours_{op}"]["peak_rss_delta"] / MB
        ref = stream.get(f"ref_{op}", {}).get("peak_rss_delta")
        table.add_row(f"peak RSS over baseline, {op} {size // MB} MB streamed", f"{ours:.0f} MB",
                      "-" if ref is None else f"{ref / MB:.0f} MB", "")  # fmt: skip
    console.print(table)
    if "maps_identical" in stream:
        console.print(f"streamed DataMaps identical to the reference's: {stream['maps_identical']}")
    console.print(f"load average before/after: {res['load_before']} / {res['load_after']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 MB, 20 MB and a 200 MB stream")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: ours)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.work, args.workers)))
        return 0
    try:
        import self_encryption as reference
    except ImportError:
        console.print("[yellow]self_encryption is not installed: measuring ours only")
        reference = None
    sizes = {"1 MB": MB, "20 MB": 20 * MB} if args.quick else {"1 MB": MB, "100 MB": 100 * MB}
    res: dict[str, Any] = {
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "load_before": [round(x, 1) for x in os.getloadavg()],
        "in_memory": {},
    }
    for key, size in sizes.items():
        with console.status(f"in memory: {key}"):
            res["in_memory"][key] = in_memory(size, args.workers, reference)
    stream_size = 200 * MB if args.quick else 1000 * MB
    res["streamed"] = streamed(stream_size, args.workers, reference is not None)
    res["load_after"] = [round(x, 1) for x in os.getloadavg()]
    _report(res)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "selfenc.json").write_text(json.dumps(res, indent=2) + "\n")
    console.print(f"wrote {RESULTS / 'selfenc.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
