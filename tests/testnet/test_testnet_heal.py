"""Real processes on loopback: a 30-node testnet loses nothing while 3 of a chunk's 4 holders
are killed one after another, and a restarted node comes back with its data.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from node.admin import admin_call
from testnet.api import Testnet
from testnet.oracle import OracleReport
from testnet.spec import spec_from_dict

pytestmark = pytest.mark.slow

WAIT = 60.0
CONVERGE_WAIT = 180.0  # bring-up is a precondition here, not the subject: a loaded CI box
# (the whole suite on 2 cores) once took more than 60 s to converge 30 nodes, and once more
# than the 120 s default test timeout (10 s alone, 11 s with both cores busy: not understood)


def healed(net: Testnet) -> OracleReport:
    deadline = time.monotonic() + WAIT
    report = net.check(sample=0)
    while not report.clean and time.monotonic() < deadline:
        time.sleep(0.5)
        report = net.check(sample=0)
    return report


@pytest.mark.timeout(CONVERGE_WAIT + 2 * WAIT + 60)
def test_three_of_four_holders_killed_in_turn_lose_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TROON_HOME", str(tmp_path))
    spec = spec_from_dict(
        {"name": "heal", "nodes": 30, "seed": 11, "node": {"audit_interval": 2.0}}
    )
    net, up = Testnet.up(spec)
    try:
        assert up.ok, [r.detail for r in up.failed]
        converged = net.converge(timeout=CONVERGE_WAIT)
        assert converged.converged, converged
        put = net.put(200, 2048)
        assert (put.stored, put.failures) == (200, ())
        first = net.check(sample=0)
        assert first.clean, first.counts
        target = first.verdicts[0]
        by_name = {info.name: i for i, info in net.live().items()}
        killed: list[int] = []
        for holder in list(target.holders)[:3]:
            index = by_name[holder]
            assert net.kill(index).ok
            killed.append(index)
            report = healed(net)
            assert report.clean, report.counts
            assert not report.data_lost
        final = net.check(sample=10, seed=5)
        assert final.clean and all(f.ok for f in final.fetches)
        assert final.live == 27

        # A restarted node keeps its identity and the chunks on its disk.
        index = killed[0]
        restarted = net.restart(index)
        assert restarted.ok, restarted.detail
        info = net.live()[index]
        assert info.name == target.holders[0]
        chunks = admin_call(*info.admin, net.state.token, "GET", "/chunks")
        assert target.name.hex() in chunks["names"]
    finally:
        net.down(grace=3.0)


@pytest.mark.timeout(CONVERGE_WAIT + 2 * WAIT + 60)
def test_eight_of_thirty_nodes_killed_at_once_lose_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TROON_HOME", str(tmp_path))
    net, up = Testnet.up(spec_from_dict({"name": "mass", "nodes": 30, "seed": 9}))
    try:
        converged = net.converge(timeout=CONVERGE_WAIT)
        assert up.ok and converged.converged, converged
        put = net.put(300, 1024)
        assert put.stored == 300
        # precondition: every chunk on its 4 holders (a put is acknowledged at 3)
        before = healed(net)
        assert before.clean, before.counts
        # 8 victims at once, but never all 4 holders of one chunk: with random IDs, about 1 run
        # in 16 has some close group made only of the every-4th nodes this test once took, and
        # a chunk whose every copy is killed is gone by definition (3 of 4 is the test above)
        groups = [set(v.holders) for v in before.verdicts]
        names = {i: info.name for i, info in net.live().items()}
        victims: list[int] = []
        for index in [*list(names)[1::4], *list(names)]:
            dead = {names[v] for v in [*victims, index]}
            if index not in victims and not any(g <= dead for g in groups):
                victims.append(index)
            if len(victims) == 8:
                break
        assert len(victims) == 8
        for index in victims:
            assert net.kill(index).ok
        report = healed(net)
        assert report.clean, report.counts
        assert report.live == 22 and not report.data_lost
    finally:
        net.down(grace=3.0)
