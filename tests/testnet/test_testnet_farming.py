"""Real processes on loopback: files are stored (paid for from wallets) and read, farmers
earn, the supply audit balances; the wallet and farming commands work end to end."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from console.cli import main
from node.client.aio import Client, get_file, put_file
from node.farming.ledger import BURN_ADDRESS
from node.farming.rewards import TOTAL_SUPPLY
from node.identity import Identity
from testnet import farming
from testnet.api import Testnet
from testnet.spec import spec_from_dict

pytestmark = pytest.mark.slow


def wait_for_mint(net: Testnet) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        report = asyncio.run(farming.afarming(net, wait=0.1))
        if report.unminted is not None:
            return
        time.sleep(1.0)
    raise AssertionError("no mint group formed")


async def store_and_read(net: Testnet, tmp: Path) -> tuple[Identity, int, int]:
    """Four paid files, each read ten times; (first payer, its coins spent, chunks read)."""
    client = Client()
    await client.start()
    try:
        await client.connect(next(iter(net.live().values())).contact)
        client.app = Identity.from_seed(b"a" * 32).public_key
        payers, maps, files = [], [], []
        for i in range(4):
            payer = Identity.generate()
            assert await client.create_wallet(payer) == 50
            path = tmp / f"file{i}.bin"
            path.write_bytes(os.urandom(150_000))
            maps.append(await put_file(client, path, payer=payer))
            payers.append(payer)
            files.append(path)
        spent = 50 - (await client.wallet(payers[0].public_key)).balance
        history = (await client.wallet(payers[0].public_key)).history
        assert [h[0] for h in history] == ["mint", "debit", "debit", "debit"]
        assert all(h[2] == BURN_ADDRESS for h in history[1:])
        reads = 0
        for _ in range(10):
            for path, data_map in zip(files, maps, strict=True):
                out = tmp / "out.bin"
                await get_file(client, data_map, out)
                assert out.read_bytes() == path.read_bytes()
                reads += len(data_map.chunk_identifiers)
        return payers[0], spent, reads
    finally:
        await client.close()


def test_paid_files_farming_and_the_audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TROON_HOME", str(tmp_path / "home"))
    spec = spec_from_dict(
        {
            "name": "farm",
            "seed": 7,
            "regions": [{"name": "eu", "nodes": 8}, {"name": "us", "nodes": 8}],
            # capacity: small enough that farming wins come quickly, big enough that a
            # gateway holding more than its share (placement is random) still quotes a cost
            # 3 chunks fit in the 50-coin allowance (at 1 MB a 40%-full gateway quoted 17)
            "node": {"capacity": 2_000_000, "require_payment": True, "audit_interval": 2.0},
        }
    )
    net, up = Testnet.up(spec)
    try:
        assert up.ok, [r.detail for r in up.failed]
        assert net.converge(timeout=60).converged
        wait_for_mint(net)
        payer, spent, reads = asyncio.run(store_and_read(net, tmp_path))
        assert 30 <= spent <= 50  # three chunks at ~10 coins each (the store cost)
        report = asyncio.run(farming.afarming(net, wait=40))
        assert report.balanced, (report.in_flight, report.disagree, report.balances)
        assert report.balances + (report.unminted or 0) == TOTAL_SUPPLY
        paid = sum(n.claims_paid for n in report.nodes)
        assert paid > 0 and sum(n.coins_earned for n in report.nodes) > 0
        assert sum(n.attempts for n in report.nodes) >= reads
        assert set(report.by_region()) == {"eu", "us"}
        earners = [n for n in report.nodes if (n.balance or 0) > 0]
        assert earners, "no farmer's wallet holds its rewards"

        # the operator commands, end to end
        assert main(["testnet", "farming", "farm", "--wait", "30"]) == 0
        assert "audit: balanced" in capsys.readouterr().out
        gateway = ["--testnet", "farm"]
        assert main(["wallet", "create", "--name", "alice", *gateway]) == 0
        assert main(["wallet", "create", "--name", "bob", *gateway]) == 0
        capsys.readouterr()
        assert main(["wallet", "send", "20", "bob", "--name", "alice", *gateway]) == 0
        assert "balance now 30" in capsys.readouterr().out
        assert main(["wallet", "send", "31", "bob", "--name", "alice", *gateway]) == 2
        assert "insufficient funds" in capsys.readouterr().err
        assert main(["wallet", "balance", "--name", "bob", *gateway]) == 0
        assert ": 70 coins" in capsys.readouterr().out
        assert main(["wallet", "history", "--name", "alice", *gateway]) == 0
        assert "-20" in capsys.readouterr().out
        assert main(["wallet", "balance", "--name", "nobody", *gateway]) == 2
        assert "troon wallet create --name nobody" in capsys.readouterr().err
        assert payer.public_key != b""
        final = asyncio.run(farming.afarming(net, wait=30))
        assert final.balanced
    finally:
        net.down()
