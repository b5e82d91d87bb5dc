"""Pure analyses of the console (console/debug.py): admin answers in, reports out."""

from __future__ import annotations

from console.debug import (
    DOWN,
    PAUSED,
    UNREACHABLE,
    UP,
    analyse_routing,
    build_connections,
    build_location,
    build_snapshot,
    build_trace,
    filter_logs,
    median_rtt,
    parse_log_text,
    snapshot_events,
)
from console.faults import Outstanding
from node.routing.xorname import closest
from testnet.fleet import Failed
from testnet.local import NodeProc
from testnet.state import NodeInfo


def name(i: int) -> bytes:
    return bytes([i * 16 + 1]) + bytes(31)


def info(i: int) -> NodeInfo:
    return NodeInfo(name(i), bytes([200 + i]) * 32, ("127.0.0.1", 4000 + i),
                    ("127.0.0.1", 5000 + i), 100 + i, "r", "t")  # fmt: skip


def routing_answer(names: list[bytes]) -> dict[str, object]:
    entries = [{"name": n.hex(), "address": ["127.0.0.1", 1]} for n in names]
    return {"size": len(names), "buckets": [{"index": 250, "entries": entries}]}


def test_routing_analysis_against_ground_truth() -> None:
    live = {name(i): i for i in range(6)}  # node 6 died, node 7 is paused
    known = {name(i): i for i in range(8)}
    table = [name(1), name(2), name(6), name(7), bytes([0xEE]) * 32]
    analysis = analyse_routing(0, name(0), routing_answer(table), live, known, paused=[name(7)])
    states = {e.index: e.state for e in analysis.entries}
    assert states == {1: "ok", 2: "ok", 6: "stale", 7: "paused", None: "foreign"}
    assert analysis.want == 5
    assert {i for _, i in analysis.missing} == {3, 4, 5}
    assert analysis.health == round((2 / 5) * (2 / 5), 4)
    distances = [
        int.from_bytes(bytes.fromhex(e.name)) ^ int.from_bytes(name(0)) for e in analysis.entries
    ]
    assert distances == sorted(distances)  # nearest first
    assert not analysis.converged


def test_routing_analysis_of_a_full_fresh_table_is_healthy() -> None:
    live = {name(i): i for i in range(4)}
    analysis = analyse_routing(2, name(2), routing_answer([name(0), name(1), name(3)]), live, live)
    assert analysis.health == 1.0 and analysis.converged
    assert all(e.ideal for e in analysis.entries)


def test_trace_is_ordered_by_hop_and_checked_against_the_close_group() -> None:
    target = name(5)
    live = {name(i): i for i in range(8)}
    ideal = closest(target, list(live), 4)
    answer = {
        "target": target.hex(),
        "closest": [n.hex() for n in ideal],
        "rounds": 2,
        "requests": 3,
        "failures": 1,
        "ms": 12.5,
        "trace": [
            {"peer": name(3).hex(), "address": "a:1", "ms": 4.0, "returned": 5, "hop": 1},
            {"peer": name(1).hex(), "address": "a:2", "ms": 2.0, "returned": 4, "hop": 0},
            {"peer": name(6).hex(), "address": "a:3", "ms": 3000.0, "error": "timeout", "hop": 1},
        ],
    }
    trace = build_trace(0, answer, live, live)
    assert [h.hop for h in trace.hops] == [0, 1, 1]
    assert trace.hops[0].index == 1
    assert trace.found_group
    assert [h.index for h in trace.timeouts] == [6]
    assert {i for _, i in trace.ideal} == {live[n] for n in ideal}


def test_chunk_location_states() -> None:
    infos = {i: info(i) for i in range(7)}
    chunk = name(2)
    ideal = {
        i for i in infos if infos[i].name in closest(chunk, [x.name for x in infos.values()], 4)
    }
    holder_outside = next(i for i in infos if i not in ideal)
    silent = sorted(ideal)[0]
    lacking = sorted(ideal)[1]
    answers: dict[int, object] = {i: {"held": i in ideal and i != lacking} for i in infos}
    answers[holder_outside] = {"held": True}
    answers[silent] = Failed("timed out")
    loc = build_location(chunk, answers, infos, {}, in_ledger=True)
    states = {c.index: c.state for c in loc.copies}
    assert states[silent] == "unreachable"
    assert states[lacking] == "missing"
    assert states[holder_outside] == "surplus"
    assert sum(s == "ok" for s in states.values()) == 2
    assert loc.status == "under" and set(loc.ideal) == ideal  # 3 live copies of 4


def test_connections_show_the_rule_in_force_per_peer() -> None:
    answer = {
        info(1).public_key.hex(): {
            "addr": "127.0.0.1:4001",
            "state": "established",
            "srtt_ms": 12.0,
            "min_rtt_ms": 2.0,
            "packets_sent": 200,
            "packets_lost": 10,
            "retransmits": 4,
            "cwnd": 12000,
        },
        info(2).public_key.hex(): {"addr": "127.0.0.1:4002", "srtt_ms": 1.0, "min_rtt_ms": -1.0},
    }
    rules = {"rules": {"addr:127.0.0.1:4001": {"blackhole": True}, "group:b": {"delay": 0.01}}}
    by_key = {info(i).public_key: i for i in (1, 2)}
    rows = build_connections(answer, rules, by_key, {1: "a", 2: "b"}, {1: name(1), 2: name(2)})
    assert [r.index for r in rows] == [1, 2]
    assert rows[0].loss == 0.05 and rows[0].retransmits == 4
    assert rows[0].impairment == "addr:127.0.0.1:4001: blackhole"
    assert rows[1].impairment == "group:b: delay 10 ms" and rows[1].min_rtt_ms is None
    assert median_rtt(answer) == 12.0


def test_log_file_parsing_keeps_tracebacks_with_their_record() -> None:
    text = (
        "--- troon: starting node 3 at 2025-01-01T00:00:00 ---\n"
        "2025-01-01 10:00:00,100 INFO troon.node: node abc on 127.0.0.1:1\n"
        "2025-01-01 10:00:01,200 ERROR troon.node: task failed\n"
        "Traceback (most recent call last):\n"
        "ValueError: boom\n"
        "2025-01-01 10:00:02,300 WARNING troon.admin: level set\n"
    )
    lines = parse_log_text(text)
    assert [line.level for line in lines] == ["INFO", "INFO", "ERROR", "WARNING"]
    assert "ValueError: boom" in lines[2].message
    assert [line.seq for line in filter_logs(lines, level="WARNING")] == [3, 4]
    assert [line.seq for line in filter_logs(lines, grep="LEVEL")] == [4]
    assert [line.seq for line in filter_logs(lines, since=3)] == [4]


def test_snapshot_rows_regions_integrity_and_events() -> None:
    infos = {i: info(i) for i in range(5)}
    procs = [
        NodeProc(0, "a", 100, True, infos[0]),
        NodeProc(1, "a", 101, True, infos[1]),
        NodeProc(2, "b", 102, True, infos[2]),  # paused
        NodeProc(3, "b", None, False, None),  # down
        NodeProc(4, "b", 104, True, infos[4]),  # not answering
    ]
    chunk = name(9)
    routing = {0: routing_answer([name(1)]), 1: routing_answer([name(0)]), 4: Failed("timeout")}
    chunks = {i: {"count": 1, "names": [chunk.hex()]} for i in (0, 1)} | {4: Failed("timeout")}
    force = Outstanding(paused={2: 7})
    snap = build_snapshot(
        "t",
        "local",
        procs,
        {"/routing": routing, "/chunks": chunks},
        ledger=[chunk],
        faults=[],
        in_force=force,
        now=1000.0,
    )
    assert [n.status for n in snap.nodes] == [UP, UP, PAUSED, DOWN, UNREACHABLE]
    assert snap.nodes[4].error == "timeout" and snap.nodes[0].peers == 1
    assert (snap.regions["a"].up, snap.regions["b"].up, snap.regions["b"].paused) == (2, 0, 1)
    assert snap.integrity.copies[2] == 1 and snap.integrity.retrievable == 1
    assert not snap.integrity.complete  # nodes 2 and 4 did not tell what they hold
    later = build_snapshot(
        "t", "local", [*procs[:3], NodeProc(3, "b", 9, True, infos[3]), procs[4]],
        {"/routing": routing | {3: routing_answer([])}, "/chunks": chunks},
        ledger=[chunk], faults=[], in_force=force, now=1002.0,
    )  # fmt: skip
    assert snapshot_events(snap, later) == ["n003 down -> up"]
    assert snapshot_events(None, later) == []
