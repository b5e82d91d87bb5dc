"""Staged rollout: the plan and the gates are pure; on the local backend a trimmed copy of
the four-region example rolls out 6 -> 12 nodes with every gate passing, and a stage whose
region cannot start stops the rollout with a message that says why and what to do."""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from node.admin import AdminClient
from testnet.api import PutReport, Testnet
from testnet.converge import ConvergenceReport, NodeConvergence
from testnet.errors import SpecError, StateError
from testnet.local import LocalTestnet, NodeResult, Report
from testnet.oracle import ChunkVerdict, FetchResult, OracleReport
from testnet.regions import link_rule
from testnet.rollout import (
    Gates,
    RolloutReport,
    StageOutcome,
    StagePlan,
    convergence_failure,
    grow_failure,
    integrity_failure,
    integrity_passes,
    plan_rollout,
    put_failure,
    register_rollout,
    rollout,
    rollout_view,
)
from testnet.rtt import measure
from testnet.spec import load_spec, spec_from_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "testnet" / "examples" / "four-region-180.yaml"
STAGE = StagePlan("mvn", (("a", 2), ("b", 0)), (0, 1), 2)
GATES = Gates(converge_timeout=60.0, chunks=4, chunk_size=1024, sample=2, integrity_timeout=60.0)


def render(renderable: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(renderable)
    return out.getvalue()


def _oracle(
    *statuses: str, fetch_ok: bool = True, unreachable: tuple[Any, ...] = ()
) -> OracleReport:
    verdicts = tuple(ChunkVerdict(bytes([i]) * 32, s, (), ()) for i, s in enumerate(statuses))
    fetches = (FetchResult(b"\x07" * 32, fetch_ok, "ok" if fetch_ok else "timed out"),)
    return OracleReport("t", 4, verdicts, fetches, unreachable)


# -- pure ------------------------------------------------------------------------------------


def test_the_four_region_example_plans_60_then_180() -> None:
    spec = load_spec(EXAMPLE)
    first, second = plan_rollout(spec)
    assert (first.name, first.total, len(first.new)) == ("mvn", 60, 60)
    assert first.new == (*range(0, 30), *range(45, 75))  # sgp and sfo, 30 each
    assert (second.total, len(second.new)) == (180, 120)
    assert set(first.new) | set(second.new) == set(range(180))


def test_a_short_last_stage_gets_an_implicit_full_stage() -> None:
    spec = spec_from_dict({"nodes": 5, "stages": [{"name": "two", "regions": {"local": 2}}]})
    assert [(p.name, p.new, p.total) for p in plan_rollout(spec)] == [
        ("two", (0, 1), 2),
        ("full", (2, 3, 4), 5),
    ]


def test_gate_failures_say_why_and_what_next() -> None:
    grow = Report(
        "grow", "t", (NodeResult(0, True, "ready"), NodeResult(1, False, "exited 1")), 1.0
    )
    assert grow_failure(STAGE, Report("grow", "t", (NodeResult(0, True, "r"),), 1.0), "t") is None
    text = grow_failure(STAGE, grow, "t")
    assert text is not None and "1 of 2 new nodes did not start (n001: exited 1)" in text
    assert "`troon testnet down t`" in text

    lag = NodeConvergence(3, b"\x03" * 32, 2, (b"\x01" * 32, b"\x02" * 32))
    conv = ConvergenceReport(5, (NodeConvergence(0, b"\x00" * 32, 5, ()), lag), 9.0)
    text = convergence_failure(STAGE, conv, 9.0, "t")
    assert text is not None and "did not converge within 9 s: 1 of 2 nodes" in text
    assert "n003 misses 2" in text and "--converge-timeout" in text
    assert convergence_failure(STAGE, ConvergenceReport(5, (), 0.1), 9.0, "t") is None

    put = PutReport("t", 4, 3, 3072, "gw", 1.0, ("chunk 2: no quorum",))
    text = put_failure(STAGE, put, "t")
    assert text is not None and "only 3 of 4 chunks" in text and "chunk 2: no quorum" in text

    assert integrity_passes(_oracle("ok", "misplaced"))  # replicas still moving: fine
    for bad in (
        _oracle("ok", "lost"),
        _oracle("under"),
        _oracle("ok", fetch_ok=False),
        _oracle("ok", unreachable=((2, "timed out"),)),
    ):
        assert not integrity_passes(bad)
    text = integrity_failure(STAGE, _oracle("lost", "under", "ok"), 30.0, "t")
    assert text is not None and "1 lost; 1 under-replicated" in text
    assert "`troon testnet check t`" in text


def test_rollout_view_marks_passed_failed_and_unrun_stages() -> None:
    later = StagePlan("full", (("a", 2), ("b", 2)), (2, 3), 4)
    last = StagePlan("never", (("a", 2), ("b", 2)), (), 4)
    conv = ConvergenceReport(1, (), 0.4)
    report = RolloutReport(
        "t",
        (STAGE, later, last),
        (
            StageOutcome(STAGE, convergence=conv, integrity=_oracle("ok"), seconds=2.0),
            StageOutcome(later, integrity=_oracle("lost"), failure="stage full: broken"),
        ),
        5.0,
    )
    assert not report.ok and report.failure == "stage full: broken"
    text = render(rollout_view(report))
    assert "1 of 3 stages passed" in text and "not run" in text
    assert "1 ok" in text and "1 lost, 0 under" in text and "stopped: stage full: broken" in text


# -- real rollouts on the local backend ------------------------------------------------------


def _trimmed_four_region(name: str) -> dict[str, Any]:
    """The four-region example with backend local and 3 nodes per region: 6 -> 12 nodes."""
    raw: dict[str, Any] = load_spec(EXAMPLE).to_dict()
    raw.update(name=name, backend="local")
    for region in raw["regions"]:
        region["nodes"] = 3
    raw["stages"] = [{"name": "mvn", "regions": {"sgp": 3, "sfo": 3}}]  # then the implicit full
    return raw


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_four_region_spec_rolls_out_on_the_local_backend(tmp_path: Path) -> None:
    spec = spec_from_dict(_trimmed_four_region("tc-four"))
    assert spec.resources is not None  # container limits: the local backend ignores them
    out = io.StringIO()
    net, report = rollout(spec, home=tmp_path, gates=GATES, console=Console(file=out, width=120))
    try:
        assert report.ok, report.failure
        first, full = report.stages
        assert [first.plan.total, full.plan.total] == [6, 12]
        assert first.grow is not None and len(first.grow.results) == 6
        assert full.grow is not None and len(full.grow.results) == 6
        assert first.integrity is not None and len(first.integrity.verdicts) == 4
        assert full.integrity is not None and len(full.integrity.verdicts) == 8  # all data so far
        assert len(net.live()) == 12
        text = out.getvalue()
        assert "stage 1/2 mvn" in text and "stage 2/2 full" in text
        assert "routing converged over 12 nodes" in text

        nyc = net.live()[9]  # index 9 is nyc's first node; it came in the second stage
        rules = asyncio.run(AdminClient(*nyc.admin, net.state.token).get("/impairment"))["rules"]
        assert rules["group:sgp"]["delay"] == pytest.approx(link_rule(230, 0)["delay"])
        rtt = asyncio.run(
            measure(net.name, spec, net.live(), net.state.token, samples=2, count=2, seed=2)
        )
        assert rtt.pair("sgp", "nyc").ok and rtt.pair("sfo", "nyc").ok, rtt
        assert rtt.pair("ams", "sgp").ok, rtt
    finally:
        net.down(grace=2.0)


def _broken_region_spec(path: Path) -> Path:
    raw = {
        "name": "tc-broken",
        "seed": 8,
        "regions": [
            {"name": "a", "nodes": 3, "latency_ms": {"a": 2, "b": 20}},
            {"name": "b", "nodes": 3},
        ],
        "stages": [{"name": "only-a", "regions": {"a": 3}}],
        "node": {"audit_interval": 2.0},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_a_region_that_cannot_start_stops_the_rollout_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TROON_HOME", str(tmp_path))
    spec_file = _broken_region_spec(tmp_path / "broken.yaml")
    spec = load_spec(spec_file)
    backend = LocalTestnet.create(spec)  # made by hand so region b can be sabotaged
    for i in spec.region_indices("b"):
        (backend.state.node_dir(i) / "key.json").write_text("not a key\n")
    parser = argparse.ArgumentParser()
    register_rollout(parser.add_subparsers(dest="cmd", required=True))
    try:
        with pytest.raises(StateError, match="no running node"):
            rollout(spec)  # without --resume an existing testnet is refused
        other = spec_from_dict({**spec.to_dict(), "seed": 9})
        with pytest.raises(SpecError, match="made from a different spec"):
            rollout(other, resume=True)

        args = parser.parse_args(["rollout", str(spec_file), "--resume", "--chunks", "3"])
        assert args.func(args) == 1
        out = " ".join(capsys.readouterr().out.split())  # undo Rich's line wrapping
        assert "stage 1/2 only-a" in out and "1 of 2 stages passed" in out
        assert "FAILED: stage full: 3 of 3 new nodes did not start" in out
        assert "(n003: exited" in out and "n003/node.log" in out  # where to look
        assert "`troon testnet down tc-broken`" in out
        net = Testnet.open("tc-broken")
        assert sorted(net.live()) == [0, 1, 2]  # left up for inspection
        assert len(net.state.ledger()) == 3  # stage one's data, checked at stage one
    finally:
        LocalTestnet.open("tc-broken").down(grace=2.0)
