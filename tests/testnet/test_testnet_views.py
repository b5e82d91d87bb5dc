"""Views are pure: a report in, text out."""

from __future__ import annotations

import io

from rich.console import Console

from node.routing.xorname import name_from_int
from testnet.api import NodeStatus, PutReport
from testnet.churn import KILL, RESTART, ChurnAction, ChurnOutcome
from testnet.converge import ConvergenceReport, NodeConvergence
from testnet.local import NodeResult, Report
from testnet.views import churn_view, convergence_view, put_view, report_view, status_view


def render(renderable: object, width: int = 120) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


def test_up_report_lists_small_testnets_in_full_with_timing() -> None:
    results = (
        NodeResult(0, True, "ready in 0.40 s", 0.4),
        NodeResult(1, False, "exited with code 1 before it was ready: 'boom'; see log", 0.2),
        NodeResult(2, True, "ready in 0.90 s", 0.9),
    )
    text = render(report_view(Report("up", "demo", results, 1.5, ("a note",))))
    assert "up demo: 2 of 3 nodes ok in 1.5 s" in text
    assert "n001" in text and "FAILED" in text and "boom" in text
    assert "median 0.90 s, slowest 0.90 s (n002)" in text
    assert "a note" in text


def test_up_report_of_a_big_testnet_shows_only_failures() -> None:
    results = tuple(NodeResult(i, i != 33, "x", 1.0) for i in range(60))
    text = render(report_view(Report("up", "big", results, 9.0)))
    assert "59 of 60" in text and "n033" in text and "n034" not in text
    assert "59 more nodes ok" in text
    fine = render(
        report_view(
            Report("up", "big", tuple(NodeResult(i, True, "x", 1.0) for i in range(60)), 9.0)
        )
    )
    assert "up big: 60 of 60 nodes ok" in fine and "all 60 nodes ok" in fine and "┏" not in fine


def test_status_view_rows() -> None:
    rows = [
        NodeStatus(0, "eu", bytes.fromhex("ab" * 32), ("127.0.0.1", 4000), 99, True, 7, 12),
        NodeStatus(1, "us", None, None, None, False, None, None, "gone"),
    ]
    text = render(status_view("demo", rows))
    assert "testnet demo: 1 of 2 nodes alive" in text
    assert "abababab" in text and "127.0.0.1:4000" in text and " 99 " in text
    assert "eu" in text and "gone" in text
    single = render(status_view("demo", [rows[0]]))
    assert "region" not in single  # one region: no column for it


def test_status_fits_an_80_column_terminal() -> None:
    row = NodeStatus(0, "local", bytes(32), ("127.0.0.1", 45000), 123456, True, 19, 1234)
    assert "127.0.0.1:45000" in render(status_view("x", [row]), width=80)


def test_churn_view() -> None:
    outcomes = [
        ChurnOutcome(ChurnAction(5.0, KILL, 3), True, "killed", 0.0),
        ChurnOutcome(ChurnAction(10.0, RESTART, 3), False, "not ready", 1.25),
    ]
    text = render(churn_view(outcomes))
    assert "2 actions, 1 failed" in text and "restart" in text and "not ready" in text


def test_convergence_view_names_lagging_nodes() -> None:
    report = ConvergenceReport(
        2,
        (
            NodeConvergence(0, name_from_int(1), 2, ()),
            NodeConvergence(1, name_from_int(2), 1, (name_from_int(3),)),
        ),
        0.5,
    )
    text = render(convergence_view(report))
    assert "1 of 2 nodes know their 2 nearest peers" in text
    assert "n001 (1 contacts) missing 1:" in text


def test_put_view() -> None:
    text = render(put_view(PutReport("t", 3, 2, 8192, "127.0.0.1:1", 1.0, ("chunk 2: boom",))))
    assert "stored 2 of 3 chunks (8192 bytes)" in text and "chunk 2: boom" in text
