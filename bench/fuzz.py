"""Fuzz every parser that takes input from outside: 1M inputs per target, 0 unhandled errors.

Targets: the packet path (an endpoint with a live session takes any datagram), the
handshake (responder msg1, initiator msg2 and cookie replies), the node message codec, the
DataMap parsers (bincode and JSON), the YAML testnet spec loader, the admin HTTP request
parser, and the ledger codecs (transfers, debit and mint proofs).  Each target states the
one exception type it may raise for bad input; anything else is a finding, saved with its
input under ``bench/results/fuzz-findings/``.

Inputs come from a seeded mutational fuzzer: a corpus of valid inputs captured from the
real encoders, mutated by bit flips, byte sets, interesting values, insertions,
deletions, duplications, splices of two seeds and truncation (the classic AFL stack).
atheris (coverage-guided) is not installable from this machine's package index, so this
fuzzer is blind to coverage; Hypothesis covers the same decoders in the test suite.

    python -m bench.fuzz [--inputs 1000000] [--seed 1] [--targets packet,message,...]

Prints a Rich table, writes bench/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as bench/X.py: bench/testnet.py must not shadow the testnet package

RESULTS = Path(__file__).resolve().parent / "results"
INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0, 0xC1, 0xDC, 0xDD, 0xDE, 0xDF, 0x92, 0x93)


@dataclass
class Target:
    name: str
    seeds: list[bytes]
    run: Callable[[bytes], Any]
    allowed: tuple[type[BaseException], ...]


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4, 8))):
        op = rng.randrange(9)
        n = len(data)
        if op == 0 and n:
            i = rng.randrange(n)
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            data[rng.randrange(n)] = rng.randrange(256)
        elif op == 2 and n:
            data[rng.randrange(n)] = rng.choice(INTERESTING)
        elif op == 3:
            i = rng.randrange(n + 1)
            data[i:i] = rng.randbytes(rng.choice((1, 2, 4, 8, 32)))
        elif op == 4 and n > 1:
            i = rng.randrange(n)
            del data[i : i + rng.randint(1, max(1, n // 4))]
        elif op == 5 and n > 1:
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 32))
            k = rng.randrange(n + 1)
            data[k:k] = data[i:j]
        elif op == 6:
            other = rng.choice(seeds)
            cut = rng.randrange(len(data) + 1)
            data = data[:cut] + other[rng.randrange(len(other) + 1) :]
        elif op == 7 and n:
            del data[rng.randrange(n) :]
        elif op == 8 and n >= 4:  # a 32-bit field set to an edge value
            i = rng.randrange(n - 3)
            data[i : i + 4] = rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF)).to_bytes(4, "big")
    return bytes(data)


# -- targets -----------------------------------------------------------------------------


def packet_target() -> Target:
    from node.identity import Identity
    from node.transport.config import TransportConfig
    from node.transport.endpoint import Endpoint

    a_addr, b_addr = ("10.0.0.1", 1000), ("10.0.0.2", 2000)
    cfg = TransportConfig()
    a = Endpoint(Identity.from_seed(b"a" * 32), cfg, now=0.0)
    b = Endpoint(Identity.from_seed(b"b" * 32), cfg, now=0.0)
    captured: list[bytes] = []
    now = 0.0

    def flush() -> int:
        moved = 0
        for src, dst, addr in ((a, b, a_addr), (b, a, b_addr)):
            for data, _ in src.datagrams_to_send(now=now):
                if src is a:
                    captured.append(data)
                dst.receive_datagram(data, addr, now=now)
                moved += 1
        return moved

    a.connect(b.identity.public_key, b_addr, now=now)
    for i in range(6):
        flush()
        now += 0.01
        if i >= 1:
            a.send(b.identity.public_key, bytes([i]) * (200 * i))
            a.send_datagram(b.identity.public_key, b"dgram")
    flush()
    while a.next_event() or b.next_event():
        pass

    def run(data: bytes) -> None:
        b.receive_datagram(data, a_addr, now=now)
        while b.next_event() is not None:
            pass
        b.datagrams_to_send(now=now)

    return Target("packet (endpoint)", captured, run, ())


def handshake_target() -> Target:
    from node.identity import Identity
    from node.transport.handshake import HandshakeError, InitiatorHandshake, Responder

    alice, bob = Identity.from_seed(b"c" * 32), Identity.from_seed(b"d" * 32)
    responder = Responder(bob, now=0.0)
    init = InitiatorHandshake(alice, bob.public_key, b"\x01" * 8)
    msg1 = init.message()
    _, msg2 = responder.respond(msg1, b"\x02" * 8)
    cookie = responder.cookie_reply(msg1, ("10.0.0.1", 1), now=0.0)
    seeds = [b"\x01" + msg1, b"\x02" + msg2, b"\x03" + cookie]

    def run(data: bytes) -> None:
        kind, body = (data[0] % 3, data[1:]) if data else (0, b"")
        if kind == 0:
            if responder.looks_like_msg1(body):
                responder.has_valid_cookie(body, ("10.0.0.1", 1), now=0.0)
                responder.respond(body, b"\x03" * 8)
        elif kind == 1:
            copy.deepcopy(init).on_response(body)  # msg2 answers this initiator's msg1
        else:
            InitiatorHandshake(alice, bob.public_key, b"\x01" * 8).on_cookie_reply(body)

    return Target("handshake", seeds, run, (HandshakeError,))


def message_target() -> Target:
    from node.messages import Kind, MessageError, decode, encode

    seeds = [
        encode(Kind.HELLO, 0, role="node", region="eu", version="0.1", host="10.0.0.1", port=1),
        encode(Kind.FIND_NODE, 7, target=b"\x05" * 32),
        encode(Kind.NODES, 7, contacts=[[b"\x01" * 32, "10.0.0.1", 7000]] * 3),
        encode(Kind.PUT, 9, name=b"\x02" * 32, data=b"x" * 300, replica=True, payment=b""),
        encode(Kind.GET, 9, name=b"\x02" * 32, app=b""),
        encode(Kind.HAS, 3, names=[b"\x03" * 32] * 4),
        encode(Kind.ERROR, 3, code="refused", message="no"),
        encode(Kind.LEDGER, 4, op="wallet.get", body=b"\x04" * 32, replica=False),
        encode(Kind.INBOX_DELETE, 5, address=b"\x06" * 32, ids=[], proof=b"p", replica=True),
    ]
    return Target("message codec", seeds, decode, (MessageError,))


def _datamap_seeds() -> tuple[bytes, str]:
    import os

    from node.selfenc.stream import encrypt

    data_map, _ = encrypt(os.urandom(40_000), workers=1)
    return data_map.to_bytes(), data_map.to_json()


def datamap_target() -> Target:
    from node.selfenc import SelfEncryptionError
    from node.selfenc.datamap import DataMap

    raw, text = _datamap_seeds()

    def run(data: bytes) -> None:
        if data[:1] == b"{":
            DataMap.from_json(data)
        else:
            DataMap.from_bytes(data)

    return Target("DataMap (bincode + JSON)", [raw, text.encode()], run, (SelfEncryptionError,))


def spec_target() -> Target:
    from testnet.errors import SpecError
    from testnet.spec import parse_spec

    examples = Path(__file__).resolve().parent.parent / "testnet" / "examples"
    seeds = [p.read_bytes() for p in sorted(examples.glob("*.yaml"))]
    seeds.append(b"name: x\nnodes: 3\nseed: 1\n")

    def run(data: bytes) -> None:
        parse_spec(data.decode("utf-8", errors="replace"), source="fuzz")

    return Target("YAML spec loader", seeds, run, (SpecError,))


def admin_target() -> Target:
    from node.admin import AdminError, body_length, parse_request_head, split_target

    seeds = [
        b"GET /lookup?name=00ff HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n",
        b"POST /impairment HTTP/1.1\r\nContent-Length: 12\r\nContent-Type: application/json"
        b"\r\nConnection: keep-alive\r\n\r\n",
        b"GET /metrics?x=1&y=%20 HTTP/1.0\r\n\r\n",
    ]

    def run(data: bytes) -> None:
        _method, target, _version, headers = parse_request_head(data)
        split_target(target)
        body_length(headers, 1 << 20)

    return Target("admin request parser", seeds, run, (AdminError,))


def ledger_target() -> Target:
    from node.farming.ledger import (
        BURN_ADDRESS,
        DebitProof,
        LedgerError,
        Transfer,
        WalletReplica,
        sign_transfer,
    )
    from node.farming.mintlog import AllowanceRequest, Claim, MintOp, MintProof, MintVote
    from node.farming.rewards import RewardError
    from node.identity import Identity

    owner = Identity.from_seed(b"e" * 32)
    members = [Identity.from_seed(bytes([i]) * 32) for i in range(4)]
    transfer = sign_transfer(owner, BURN_ADDRESS, 5, 0, b"memo")
    replicas = [WalletReplica(owner.public_key, balance=9) for _ in members]
    votes = tuple(r.vote_debit(transfer, m) for r, m in zip(replicas, members, strict=True))
    proof = DebitProof(transfer, votes[:3])
    op = MintOp(0, "allowance", AllowanceRequest.sign(owner).encode(), (), 0)
    ballot = (1, members[0].public_key)
    mint_proof = MintProof(op, ballot, tuple(MintVote.sign(op, ballot, m) for m in members[:3]))
    claim = Claim(b"r" * 16, b"\x01" * 32, owner.public_key, 3, 10, 100)
    seeds = [
        b"\x00" + transfer.encode(),
        b"\x01" + proof.encode(),
        b"\x02" + mint_proof.encode(),
        b"\x03" + claim.encode(),
        b"\x04" + replicas[0].encode(),
    ]
    decoders: list[Callable[[bytes], Any]] = [
        Transfer.decode,
        DebitProof.decode,
        MintProof.decode,
        Claim.decode,
        WalletReplica.decode,
    ]
    keys = [m.public_key for m in members]

    def run(data: bytes) -> None:
        if not data:
            raise LedgerError("empty")
        decoded = decoders[data[0] % len(decoders)](data[1:])
        if isinstance(decoded, DebitProof):
            decoded.verify(keys)
        elif isinstance(decoded, MintProof):
            decoded.verify(keys, 3)
        elif isinstance(decoded, Transfer):
            decoded.verify()

    return Target("ledger codecs", seeds, run, (LedgerError, RewardError))


TARGETS: dict[str, Callable[[], Target]] = {
    "packet": packet_target,
    "handshake": handshake_target,
    "message": message_target,
    "datamap": datamap_target,
    "spec": spec_target,
    "admin": admin_target,
    "ledger": ledger_target,
}


@dataclass
class FuzzResult:
    target: str
    inputs: int
    seconds: float
    rejected: int  # inputs refused with the target's own error type
    findings: list[tuple[str, str]]  # (exception, input hex) of unhandled errors

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


def run_target(
    target: Target, inputs: int, seed: int, advance: Callable[[int], None] | None = None
) -> FuzzResult:
    rng = random.Random(seed)
    findings: list[tuple[str, str]] = []
    rejected = 0
    started = time.perf_counter()
    for i in range(inputs):
        data = mutate(rng, target.seeds) if i % 50 else rng.randbytes(rng.randrange(200))
        try:
            target.run(data)
        except target.allowed:
            rejected += 1
        except Exception as exc:  # a finding: anything the target did not promise
            if len(findings) < 20:
                findings.append((f"{type(exc).__name__}: {exc}"[:200], data.hex()))
        if advance is not None and i % 1000 == 999:
            advance(1000)
    return FuzzResult(target.name, inputs, time.perf_counter() - started, rejected, findings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--targets", default=",".join(TARGETS))
    args = parser.parse_args()
    console = Console()
    results: list[FuzzResult] = []
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console) as progress:
        for name in names:
            target = TARGETS[name]()
            task = progress.add_task(target.name, total=args.inputs)

            def advance(n: int, t: TaskID = task) -> None:
                progress.advance(t, n)

            result = run_target(target, args.inputs, args.seed, advance)
            progress.update(task, completed=args.inputs)
            results.append(result)
    table = Table(title=f"fuzzing: {args.inputs:,} inputs per target, seed {args.seed}")
    for col in ("target", "inputs", "inputs/s", "refused (own error)", "unhandled"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for r in results:
        table.add_row(
            r.target,
            f"{r.inputs:,}",
            f"{r.rate:,.0f}",
            f"{r.rejected:,}",
            str(len(r.findings)),
        )
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    findings_dir = RESULTS / "fuzz-findings"
    for r in results:
        for n, (what, data) in enumerate(r.findings):
            findings_dir.mkdir(exist_ok=True)
            (findings_dir / f"{r.target.split()[0]}-{n}.txt").write_text(f"{what}\n{data}\n")
    out = {
        "inputs_per_target": args.inputs,
        "seed": args.seed,
        "targets": [
            {
                "target": r.target,
                "inputs": r.inputs,
                "seconds": round(r.seconds, 1),
                "inputs_per_s": round(r.rate),
                "refused": r.rejected,
                "unhandled": len(r.findings),
                "first_findings": r.findings[:3],
            }
            for r in results
        ],
    }
    (RESULTS / "fuzz.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
