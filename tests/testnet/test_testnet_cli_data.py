"""The user's commands against a real local testnet: troon put/get, account, msg."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import nacl.pwhash.argon2id as argon2id
import pytest

from console import accountcli
from console.cli import main
from node.data.account import KdfCost
from testnet import farming
from testnet.api import Testnet
from testnet.spec import spec_from_dict

pytestmark = pytest.mark.slow


def test_files_accounts_and_messages_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TROON_HOME", str(tmp_path / "home"))
    # The real Argon2id cost takes ~1 s per login; the derivation is tested at full cost in
    # tests/data, so here a cheap cost keeps the CLI flow quick.
    cheap = KdfCost(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN, testing=True)
    monkeypatch.setattr(accountcli, "KdfCost", lambda: cheap)
    net, up = Testnet.up(spec_from_dict({"name": "cli", "nodes": 6, "seed": 2}))
    try:
        assert up.ok
        assert net.converge(timeout=60).converged
        src = tmp_path / "report.bin"
        src.write_bytes(os.urandom(5_000_000))
        assert main(["put", str(src), "--public", "--testnet", "cli"]) == 0
        out = capsys.readouterr().out
        address = re.search(r"public address: ([0-9a-f]{64})", out)
        assert address is not None
        fetched = tmp_path / "fetched.bin"
        assert main(["get", address.group(1), "-o", str(fetched), "--testnet", "cli"]) == 0
        assert fetched.read_bytes() == src.read_bytes()
        assert main(["get", "ab" * 32, "-o", str(tmp_path / "x"), "--testnet", "cli"]) == 2
        assert not (tmp_path / "x").exists()

        # an account's wallet claims its allowance from the mint: let the mint form first
        deadline = time.monotonic() + 40
        while asyncio.run(farming.afarming(net, wait=0.1)).unminted is None:
            assert time.monotonic() < deadline, "no mint group formed"
            time.sleep(1.0)
        for who in ("alice", "bob"):
            monkeypatch.setenv("TROON_KEYWORD", f"{who}-keyword")
            monkeypatch.setenv("TROON_PIN", "4321")
            monkeypatch.setenv("TROON_PASSWORD", f"{who}'s password")
            assert main(["account", "create", "--testnet", "cli"]) == 0
            assert ": 50 free coins" in capsys.readouterr().out  # the account's wallet
        assert main(["account", "create", "--testnet", "cli"]) == 2  # bob exists already
        monkeypatch.setenv("TROON_KEYWORD", "alice-keyword")
        monkeypatch.setenv("TROON_PASSWORD", "alice's password")
        capsys.readouterr()
        assert main(["account", "login", "--testnet", "cli"]) == 0
        alice_pk = re.search(r"public key: ([0-9a-f]{64})", capsys.readouterr().out)
        assert alice_pk is not None
        monkeypatch.setenv("TROON_PASSWORD", "wrong password")
        assert main(["account", "login", "--testnet", "cli"]) == 2
        assert "wrong keyword, PIN or password" in capsys.readouterr().err

        monkeypatch.setenv("TROON_KEYWORD", "bob-keyword")
        monkeypatch.setenv("TROON_PASSWORD", "bob's password")
        datamap = src.with_name(src.name + ".datamap")
        send = ["msg", "send", "--to", alice_pk.group(1), "--testnet", "cli"]
        assert main([*send, "hi alice"]) == 0
        assert main([*send, "--datamap", str(datamap)]) == 0

        monkeypatch.setenv("TROON_KEYWORD", "alice-keyword")
        monkeypatch.setenv("TROON_PASSWORD", "alice's password")
        capsys.readouterr()
        read = ["msg", "read", "--save-dir", str(tmp_path), "--delete", "--testnet", "cli"]
        assert main(read) == 0
        text = capsys.readouterr().out
        assert "hi alice" in text and "deleted 2" in text
        shared = next(tmp_path.glob("shared-*.datamap"))
        copy = tmp_path / "copy.bin"
        assert main(["get", "--map", str(shared), "-o", str(copy), "--testnet", "cli"]) == 0
        assert copy.read_bytes() == src.read_bytes()
    finally:
        net.down(grace=3.0)
