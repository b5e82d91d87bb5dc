"""The operator API (console/operator.py) on a real local testnet: real node processes on
loopback, real signals, real impairment rules, checked from outside the API where it counts
(process states in /proc, rules and drop counters read back from the nodes)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.faults import OperatorError
from console.operator import Operator
from node.admin import admin_call
from node.routing.xorname import closest
from testnet.errors import StateError
from testnet.local import LocalTestnet
from testnet.spec import spec_from_dict

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

WAIT = 40.0
SPEC = {
    "name": "td-op",
    "seed": 5,
    "regions": [{"name": "a", "nodes": 4}, {"name": "b", "nodes": 4}],
    "node": {"audit_interval": 2.0},
}


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    home = tmp_path_factory.mktemp("td-home")
    operator = Operator.start(SPEC, home=home)
    try:
        assert operator.started is not None and operator.started.ok
        put = operator.put(16, 2048, seed=1)
        assert put.stored == 16, put.failures
        yield operator
    finally:
        operator.down()


def admin(op: Operator, index: int, method: str, path: str, body: object = None) -> object:
    info = op.net.live()[index]
    return admin_call(*info.admin, op.net.state.token, method, path, body)


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def eventually(check: object, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_rows_regions_and_integrity(op: Operator) -> None:
    rows = op.nodes()
    assert [r.index for r in rows] == list(range(8))
    assert all(r.status == "up" and r.peers and r.name and r.chunks is not None for r in rows)
    assert {k: (v.up, v.total) for k, v in op.regions().items()} == {"a": (4, 4), "b": (4, 4)}
    eventually(lambda: op.snapshot().integrity.copies[4] == 16, "16 chunks on 4 copies")
    snap = op.snapshot()
    assert snap.integrity.retrievable == 16 and snap.integrity.complete


def test_kill_and_pause_are_logged_and_heal_all_reverts_and_verifies(op: Operator) -> None:
    pids = op.net.pids()
    killed, paused = op.kill(1), op.pause(5)
    assert killed.ok and paused.ok, (killed.message, paused.message)
    assert proc_state(pids[5]) in ("T", "t")
    assert not op.net.backend.alive(1)
    snap = op.snapshot()
    assert (snap.node(1).status, snap.node(5).status) == ("down", "paused")  # type: ignore[union-attr]
    assert snap.in_force == (1, 1, 0)
    assert [(f.kind, f.targets) for f in op.faults()[-2:]] == [("kill", (1,)), ("pause", (5,))]
    from_file = op.logs(1, grep="joined with")  # a dead node's log comes from its file
    assert from_file and from_file[0].logger == "troon.node"

    # bad input: a clear message, nothing done, nothing raised
    for result, needle in (
        (op.kill(99), "no node 99"),
        (op.kill(), "give node indices"),
        (op.pause(1), "is down"),
        (op.resume(2), "was not paused"),
        (op.restart(0), "already running"),
    ):
        assert not result.ok and needle in result.message, result.message
    with pytest.raises(OperatorError, match="n005 is paused"):
        op.routing(5)
    with pytest.raises(OperatorError, match="n001 is down"):
        op.connections(1)

    report = op.heal_all()
    assert report.ok, report.message
    assert sorted((i.kind, i.target) for i in report.items) == [("kill", "n001"), ("pause", "n005")]
    assert op.net.backend.alive(1) and proc_state(pids[5]) not in ("T", "t")
    assert op.in_force().empty
    assert op.heal_all().message.startswith("nothing to heal")
    eventually(lambda: op.snapshot().up == 8, "all 8 nodes up")


def test_churn_is_seeded_and_heals(op: Operator) -> None:
    first = op.churn(2, seed=11)
    assert first.ok and [o.detail for o in first.nodes] == ["killed", "killed"], first.message
    down = sorted(o.index for o in first.nodes)
    second = op.churn(2, seed=11)  # brings those two back and takes two others
    back = sorted(o.index for o in second.nodes if o.detail.startswith("ready"))
    assert second.ok and back == down, second.message
    assert op.snapshot().churn_per_min >= 6.0
    assert op.heal_all().ok
    assert len(op.net.live()) == 8
    assert not op.churn(0).ok


def test_partition_and_impair_act_on_real_links_and_heal_restores_every_rule(
    op: Operator,
) -> None:
    live = op.net.live()
    cut = op.partition("a")
    assert cut.ok, cut.message
    rules = admin(op, 0, "GET", "/impairment")["rules"]  # type: ignore[index]
    b_addrs = {f"addr:{live[i].addr[0]}:{live[i].addr[1]}" for i in range(4, 8)}
    assert b_addrs <= {s for s, r in rules.items() if r["blackhole"]}

    def dropped() -> bool:
        stats = admin(op, 0, "GET", "/impairment")["stats"]  # type: ignore[index]
        return bool(stats["dropped_blackhole"] > 0)

    eventually(dropped, "datagrams to region b dropped by node 0")

    slow = op.impair(latency_ms=40, index=2)
    assert slow.ok, slow.message
    probe = admin(op, 2, "GET", f"/probe?contact={live[3].contact}&count=3")
    assert min(probe["rtt_ms"]) >= 35.0, probe  # type: ignore[index]
    conns = {c.index: c for c in op.connections(2)}
    assert "delay 10 ms" in (conns[3].impairment or "")

    for result, needle in (
        (op.partition("nowhere"), "no region 'nowhere'"),
        (op.impair(), "needs latency_ms"),
        (op.impair(latency_ms=5, region="a", index=1), "not both"),
        (op.impair(loss=1.5), "loss must be"),
    ):
        assert not result.ok and needle in result.message, result.message

    report = op.heal_all()
    assert report.ok, report.message
    assert {i.kind for i in report.items} == {"partition", "impair"}
    for i in range(8):
        assert admin(op, i, "GET", "/impairment")["rules"] == {}  # type: ignore[index]
    assert op.in_force().empty


def test_routing_shows_a_killed_neighbour_stale_until_it_is_evicted(op: Operator) -> None:
    assert op.converge(timeout=WAIT).converged
    before = op.routing(0)
    assert before.health == 1.0 and not before.stale and before.converged
    neighbour = before.entries[0].index
    assert neighbour is not None and before.entries[0].ideal
    # On loopback a dead peer's port answers ICMP unreachable and n000 evicts it at once;
    # drop n000's datagrams to it first, so its death is silent, as across hosts.
    addr = op.net.live()[neighbour].addr
    selector = f"addr:{addr[0]}:{addr[1]}"
    admin(op, 0, "POST", "/impairment", {"selector": selector, "rule": {"blackhole": True}})
    try:
        assert op.kill(neighbour).ok
        after = op.routing(0)
        assert [(e.index, e.state) for e in after.stale] == [(neighbour, "stale")]
        assert after.health < 1.0
        eventually(lambda: not op.routing(0).stale, f"n{neighbour:03d} evicted from n000")
        assert op.routing(0).health == 1.0
    finally:
        admin(op, 0, "POST", "/impairment", {"selector": selector, "rule": None})
        assert op.heal_all().ok


def test_trace_and_locate_agree_with_the_ground_truth(op: Operator) -> None:
    assert op.converge(timeout=WAIT).converged
    chunk = op.net.state.ledger()[0].name
    eventually(lambda: op.locate(chunk.hex()).status == "ok", "the chunk on its ideal 4")
    loc = op.locate(chunk.hex())
    assert loc.in_ledger and sorted(loc.ideal) == sorted(loc.holders) and len(loc.ideal) == 4
    names = {i: info.name for i, info in op.net.live().items()}
    ideal = closest(chunk, list(names.values()), 4)
    assert {names[i] for i in loc.ideal} == set(ideal)
    trace = op.trace(6, chunk.hex())
    assert trace.hops and all(h.hop is not None for h in trace.hops)
    assert trace.found_group and {i for _, i in trace.ideal} == set(loc.ideal)
    stranger = bytes(32)
    nowhere = op.locate(stranger.hex())
    assert not nowhere.in_ledger and nowhere.status == "lost"
    assert {c.state for c in nowhere.copies} == {"missing"}
    with pytest.raises(OperatorError, match="64 hex"):
        op.locate("xyz")
    got = op.get(chunk.hex())
    assert got.ok and got.data is not None and len(got.data) == 2048


def test_logs_filter_by_level_and_the_level_changes_at_run_time(op: Operator) -> None:
    lines = op.logs(3)
    assert any("joined with" in line.message for line in lines)
    assert all(line.level in ("WARNING", "ERROR") for line in op.logs(3, level="warning"))
    with pytest.raises(OperatorError, match="unknown log level 'LOUD'"):
        op.logs(3, level="LOUD")

    def garbage() -> None:  # a malformed admin request: the server logs it at DEBUG
        with socket.create_connection(op.net.live()[3].admin, timeout=5) as s:
            s.sendall(b"NOT HTTP\r\n\r\n")
            s.recv(1024)

    assert op.set_log_level(3, "DEBUG") == "DEBUG"
    assert op.node_detail(3).log_level == "DEBUG"
    garbage()
    eventually(lambda: op.logs(3, level="DEBUG", grep="bad admin request"), "a DEBUG record")
    last = op.logs(3)[-1].seq
    assert op.set_log_level(3, "INFO") == "INFO"
    garbage()
    time.sleep(0.5)
    assert op.logs(3, since=last, grep="bad admin request") == []
    changes = op.logs(3, since=last, grep="log level")
    assert [line.level for line in changes] == ["WARNING"]


def test_detail_connections_and_async_twins_inside_a_running_loop(op: Operator) -> None:
    detail = op.node_detail(0)
    assert detail.storage["chunks"] >= 0 and "pending" in detail.replication
    assert "rate" in detail.farming and detail.peers >= 4
    rows = op.connections(0)
    assert rows and all(r.index is not None and r.impairment is None for r in rows)

    async def inside() -> None:
        other = await Operator.aattach(op.name, home=op.net.state.root.parent.parent)
        snap = await other.asnapshot()
        assert snap.total == 8
        assert op.regions()["a"].total == 4  # the blocking form works under a running loop
        assert (await other.arouting(4)).index == 4

    asyncio.run(inside())
    assert os.environ.get("TROON_HOME") != str(op.net.state.root.parent.parent)


def test_a_testnet_with_nothing_running_gives_clear_answers(tmp_path: Path) -> None:
    spec = spec_from_dict({"name": "td-idle", "nodes": 3})
    LocalTestnet.create(spec, home=tmp_path)
    idle = Operator.attach("td-idle", home=tmp_path)
    snap = idle.snapshot()
    assert [n.status for n in snap.nodes] == ["down"] * 3
    assert "was not running" in idle.kill(0).message
    churn = idle.churn(1)
    assert not churn.ok and "only 0 answer" in churn.message
    with pytest.raises(OperatorError, match="n000 is down"):
        idle.routing(0)
    assert idle.heal_all().message.startswith("nothing to heal")
    with pytest.raises(StateError, match="no testnet named td-gone"):
        Operator.attach("td-gone", home=tmp_path)
