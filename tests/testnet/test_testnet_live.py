"""A real local testnet: 8 node processes, real UDP, real admin API, real client.

up -> status -> put 20 chunks -> check clean -> kill 1 node -> the oracle sees the holes and
the network heals them -> down leaves no process and no folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from console.cli import main
from testnet import procs
from testnet.api import Testnet
from testnet.oracle import OracleReport, classify_all
from testnet.spec import spec_from_dict

pytestmark = pytest.mark.slow

WAIT = 45.0  # bound on "eventually"; the checks themselves are not timed


def eventually(probe: Callable[[], OracleReport]) -> OracleReport:
    deadline = time.monotonic() + WAIT
    report = probe()
    while not report.clean and time.monotonic() < deadline:
        time.sleep(0.5)
        report = probe()
    return report


def test_local_testnet_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TROON_HOME", str(tmp_path))
    spec = spec_from_dict({"name": "e2e", "nodes": 8, "seed": 3, "node": {"audit_interval": 1.0}})
    net, up = Testnet.up(spec)
    root = net.state.root
    started = dict(net.pids())
    try:
        assert up.ok, [r.detail for r in up.failed]
        assert len(started) == 8
        assert net.converge(timeout=WAIT).converged

        assert main(["testnet", "status", "e2e"]) == 0
        out = capsys.readouterr().out
        assert "8 of 8 nodes alive" in out and out.count("127.0.0.1:") == 8

        put = net.put(20, 1024)
        assert (put.stored, put.failures) == (20, ())
        ledger = [e.name for e in net.state.ledger()]
        assert len(ledger) == 20

        before = net.check(sample=5, seed=1)
        assert before.clean, before.counts
        assert len(before.fetches) == 5 and all(f.ok for f in before.fetches)

        holders = {v.name: set(v.holders) for v in before.verdicts}
        by_node = {name: {c for c, hs in holders.items() if name in hs} for name in _names(net)}
        victim_name = max(by_node, key=lambda name: len(by_node[name]))
        victim = next(i for i, info in net.live().items() if info.name == victim_name)
        lost_copies = by_node[victim_name]
        assert lost_copies
        assert net.kill(victim).ok

        live_after = [info.name for info in net.live().values()]
        assert len(live_after) == 7 and victim_name not in live_after
        # Without repair, the oracle would see exactly the victim's chunks short of a copy:
        unrepaired = classify_all(
            ledger, {n: list(cs) for n, cs in by_node.items() if n != victim_name}, live_after
        )
        assert {v.name for v in unrepaired if v.status == "under"} == lost_copies

        after = net.check(sample=5, seed=2)
        assert after.live == 7 and not after.data_lost
        assert all(victim_name not in v.holders for v in after.verdicts)

        healed = eventually(lambda: net.check(sample=3, seed=3))
        assert healed.clean, healed.counts
        for v in healed.verdicts:
            assert len(v.holders) >= 4 and set(v.ideal) <= set(v.holders)

        assert main(["testnet", "check", "e2e", "--sample", "2"]) == 0
        assert "clean" in capsys.readouterr().out
    finally:
        down = net.down(grace=3.0)
    assert down.ok
    assert not root.exists()
    for index, pid in started.items():
        assert not procs.pid_alive(pid, str(root / "nodes" / f"n{index:03d}" / "config.yaml"))
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped, not a zombie


def _names(net: Testnet) -> list[bytes]:
    return [info.name for info in net.live().values()]
