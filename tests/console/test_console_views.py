"""Pure console views (console/views.py), rendered to strings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console, RenderableType

from console.debug import (
    ChunkLocation,
    ConnRow,
    CopyRow,
    Integrity,
    LogLine,
    LookupTrace,
    NodeDetail,
    NodeRow,
    RegionRow,
    RouteEntry,
    RoutingAnalysis,
    Snapshot,
    TraceHop,
)
from console.faults import Fault, FaultResult, HealItem, HealReport, NodeOutcome
from console.views import (
    dashboard_view,
    debug_screen,
    detail_view,
    fault_view,
    heal_view,
    location_view,
    trace_view,
)
from testnet.errors import StateError

NAME = "ab" * 32


def render(view: RenderableType, width: int = 160) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(view)
    return console.export_text()


def row(i: int, status: str = "up", **kw: object) -> NodeRow:
    values: dict[str, object] = {
        "index": i,
        "region": "eu" if i < 3 else "us",
        "alive": status != "down",
        "status": status,
        "name": NAME,
        "addr": f"127.0.0.1:{4000 + i}",
        "chunks": 10 + i,
        "peers": 5,
        "rtt_ms": 3.25,
        "coins": 7,
    }
    return NodeRow(**(values | kw))  # type: ignore[arg-type]


def snapshot(rows: list[NodeRow], *, complete: bool = True) -> Snapshot:
    integrity = Integrity(20, {4: 17, 3: 2, 2: 0, 1: 0, 0: 1}, {}, 19, complete)
    fault = Fault(3, 1000.0, "kill", (4,), True, "killed")
    return Snapshot(
        "td-view",
        "local",
        1000.0,
        tuple(rows),
        {"eu": RegionRow("eu", 3, 3), "us": RegionRow("us", 1, 3, 1)},
        integrity,
        2.0,
        (fault,),
        (1, 1, 6),
        0.05,
    )


def test_dashboard_shows_header_table_integrity_events_and_keys() -> None:
    rows = [row(0), row(1), row(2), row(3, "paused"), row(4, "down", chunks=None, name=None)]
    rows.append(row(5, "unreachable", error="timed out after 3.0 s"))
    text = render(
        dashboard_view(
            snapshot(rows, complete=False),
            name="td-view",
            events=["12:00:00 #3 kill n004: killed"],
            status="killed n004",
        )
    )
    assert "troon console: td-view" in text
    assert "4/6 up" not in text  # up counts status 'up' only
    assert "3/6 up" in text and "eu 3/3" in text and "us 1/3 (1 paused)" in text
    assert "churn 2.0/min" in text and "1 killed, 1 paused, 6 link rules" in text
    for needle in ("n004", "down", "paused", "unreachable", "timed out", "abababab"):
        assert needle in text
    assert "retrievable: 19 of 20 chunks" in text and "lower bounds" in text
    assert "#3 kill n004: killed" in text
    assert "killed n004" in text and "heal all" in text


def test_a_big_testnet_shows_its_problem_nodes_first() -> None:
    rows = [row(i) for i in range(100)]
    rows[77] = row(77, "down")
    text = render(dashboard_view(snapshot(rows), name="x", max_rows=10))
    assert "n077" in text and "... and 90 more nodes up" in text


def test_no_snapshot_yet_and_a_failed_refresh_are_shown_not_raised() -> None:
    text = render(dashboard_view(None, name="gone", problem="no testnet named gone"))
    assert "no testnet named gone" in text
    view = dashboard_view(
        snapshot([row(0)]), name="x", problem="nodes did not answer", prompt="kill node(s): 3"
    )
    text = render(view)
    assert "nodes did not answer" in text and "kill node(s): 3_" in text


def test_debug_screen_renders_parts_and_errors() -> None:
    entries = (
        RouteEntry(NAME, 1, "127.0.0.1:1", 250, 251, "ok", True),
        RouteEntry("cd" * 32, 4, "127.0.0.1:2", 255, 256, "stale", False),
    )
    routing = RoutingAnalysis(0, NAME, 4, 5, entries, (("ef" * 32, 3),))
    rule = "addr:127.0.0.1:4001: blackhole"
    conn = ConnRow(NAME, 1, "eu", "127.0.0.1:4001", "up", 12.0, 2.0, 1.0, 0.05, 4, 9, 0, rule)
    logs = [LogLine(7, 1000.0, "WARNING", "troon.admin", "log level set")]
    view = debug_screen(0, name="x", snap=None, routing=routing, connections=[conn], logs=logs)
    text = render(view)
    assert "health 0.38" in text and "stale" in text and "missing nearest peers: n003" in text
    assert "blackhole" in text and "5.0%" in text and "log level set" in text
    down = "n004 is down; op.restart(4) starts it again"
    text = render(debug_screen(4, name="x", snap=None, routing=down, connections=None, logs=[]))
    assert "routing table: n004 is down" in text and "asking n004" in text
    assert "no log records" in text


def test_reports() -> None:
    hop = TraceHop(NAME, 2, "a:1", 1, 3.5, None, "timeout", 250)
    trace = LookupTrace(0, NAME, (hop,), ((NAME, 2),), ((NAME, 2),), 1, 1, 1, 3.5)
    text = render(trace_view(trace))
    assert "found the close group" in text and "timeout" in text
    loc = ChunkLocation(NAME, "under", (CopyRow(1, NAME, "eu", True, "missing"),), False)
    assert "not in this testnet's ledger" in render(location_view(loc))
    item = HealItem(1, "kill", "n001", False, "did not start")
    text = render(heal_view(HealReport("t", (item,), ("n005 is down",))))
    assert "STILL THERE" in text and "did not start" in text and "n005 is down" in text
    assert "healed 0 of 1" in text
    outcome = NodeOutcome(1, False, "x")
    result = FaultResult("kill", False, "kill failed: n001 was not running", (outcome,))
    assert "was not running" in render(fault_view(result))
    storage = {"chunks": 3, "used": 50, "capacity": 100}
    detail = NodeDetail(1, "eu", NAME, "a:1", "0.1.0", 5.0, "INFO", 4, {"pending": 2}, storage,
                        {"rate": 0.5}, {})  # fmt: skip
    text = render(detail_view(detail))
    assert "50.00%" in text and "pending 2" in text


def test_the_dashboard_shows_the_soak_checker_while_a_soak_runs(tmp_path: Path) -> None:
    from testnet.checker import GET, PUT, RECORD_GET, RECORD_PUT, TRANSFER, Op
    from testnet.soak import LiveSoak, _mark, latest_run, live_status

    folder = tmp_path / "soaks" / "td-view-20260101T000000Z"
    folder.mkdir(parents=True)
    _mark(folder, "td-view", running=True)
    ops = [
        Op(PUT, "f1", 0.0, 1.0, True),
        Op(PUT, "f2", 0.5, 1.5, True),
        Op(GET, "f1", 2.0, 2.5, False),  # f1 unreadable right now
        Op(GET, "f2", 2.0, 2.5, True),
        Op(RECORD_PUT, "r", 3.0, 3.5, True, version=5),
        Op(RECORD_GET, "r", 4.0, 4.5, True, version=4),  # went backwards
        Op(TRANSFER, "w", 5.0, 5.5, True, version=0),
    ]
    body = "".join(json.dumps(op.to_dict()) + "\n" for op in ops)
    (folder / "ops.jsonl").write_text(body + '{"kind": "put", "ke')  # torn: being written
    assert latest_run("td-view", home=tmp_path) == folder
    assert latest_run("other", home=tmp_path) is None
    soak = live_status(folder)
    assert soak.running and soak.view.acked == 2 and soak.view.unreadable_now == ("f1",)
    assert len(soak.view.record_violations) == 1 and soak.view.violations == 1
    text = render(
        dashboard_view(snapshot([row(0)]), name="td-view", soak=LiveSoak(folder, True, soak.view))
    )
    assert "soak checker" in text and "running" in text
    assert "2 of 2 puts acknowledged, 1 unreadable now" in text
    assert "records backwards: 1" in text and "VIOLATIONS" in text
    # damage before the last line is an error that names the line, not a silent skip
    (folder / "ops.jsonl").write_text("not json\n" + body)
    with pytest.raises(StateError, match="line 1"):
        live_status(folder)
