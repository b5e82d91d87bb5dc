"""Measured RTT between regions: the sampling and the summary are pure; on a real local
testnet (3 regions, real UDP, the nodes' own impairment layers) the measured round trips
match the configured ones, and the admin routes behind it refuse bad input."""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from node.admin import AdminCallError, AdminClient
from node.identity import Identity
from testnet.local import LocalTestnet
from testnet.regions import apply_regions, link_rule
from testnet.rollout import register_rollout
from testnet.rtt import (
    ABS_TOLERANCE_MS,
    Probe,
    ProbeResult,
    RegionPairRtt,
    RttReport,
    measure,
    region_pairs,
    rtt_view,
    sample_pairs,
    summarize,
)
from testnet.spec import spec_from_dict

MATRIX = {"a": {"a": 10, "b": 80, "c": 40}, "b": {"c": 120}}
SPEC = spec_from_dict(
    {
        "name": "tc-rtt",
        "seed": 4,
        "regions": [
            {"name": "a", "nodes": 2, "latency_ms": MATRIX["a"]},
            {"name": "b", "nodes": 2, "latency_ms": MATRIX["b"]},
            {"name": "c", "nodes": 2},
        ],
        "node": {"request_timeout": 1.0},
    }
)


def render(renderable: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(renderable)
    return out.getvalue()


# -- pure ------------------------------------------------------------------------------------


def test_region_pairs_cover_every_unordered_pair_once() -> None:
    assert region_pairs(SPEC) == [
        ("a", "a"),
        ("a", "b"),
        ("a", "c"),
        ("b", "b"),
        ("b", "c"),
        ("c", "c"),
    ]


def test_sampling_is_seeded_distinct_and_skips_impossible_pairs() -> None:
    spec = spec_from_dict(
        {
            "regions": [
                {"name": "x", "nodes": 5},
                {"name": "y", "nodes": 1},
                {"name": "z", "nodes": 2},
            ]
        }
    )
    live = [0, 1, 2, 3, 4, 5, 6]  # node 7 (z) is down
    probes = sample_pairs(spec, live, samples=3, seed=9)
    assert probes == sample_pairs(spec, live, samples=3, seed=9)
    by_pair: dict[tuple[str, str], list[Probe]] = {}
    for p in probes:
        by_pair.setdefault((p.a, p.b), []).append(p)
        assert p.src != p.dst and spec.region_of(p.src) == p.a and spec.region_of(p.dst) == p.b
    assert {k: len(v) for k, v in by_pair.items()} == {
        ("x", "x"): 3,
        ("x", "y"): 3,
        ("x", "z"): 3,
        ("y", "z"): 1,  # one live node on each side: one pair exists
    }  # y-y has one node, z-z one live node: nothing to measure
    pairs = [(p.src, p.dst) for p in by_pair[("x", "x")]]
    assert len({frozenset(p) for p in pairs}) == 3
    with pytest.raises(ValueError, match="samples must be >= 1"):
        sample_pairs(spec, live, samples=0)


def test_summary_takes_the_median_and_judges_it_against_a_tolerance() -> None:
    probes = [Probe("a", "b", 0, 2), Probe("a", "b", 1, 3), Probe("a", "a", 0, 1)]
    results = [
        ProbeResult(0, 2, (81.0, 83.0, 200.0)),
        ProbeResult(1, 3, (82.0,), ("timed out",)),
        ProbeResult(0, 1, (), ("connect: unreachable",)),
    ]
    report = summarize("t", SPEC, probes, results, 1.5)
    ab, aa = report.pair("b", "a"), report.pair("a", "a")
    assert (ab.configured_ms, ab.measured_ms, ab.min_ms, ab.failures) == (80.0, 82.5, 81.0, 1)
    assert ab.ok and ab.tolerance_ms == ABS_TOLERANCE_MS
    assert aa.measured_ms is None and not aa.ok and not report.ok
    far = RegionPairRtt("a", "c", 400.0, (ProbeResult(0, 4, (470.0,)),))
    assert far.tolerance_ms == 60.0 and far.delta_ms == 70.0 and not far.ok
    text = render(rtt_view(RttReport("t", (ab, aa, far))))
    assert "1 of 3 region pairs within tolerance" in text
    assert "a-b" in text and "82.5" in text and "+2.5" in text and "(1 failed)" in text
    assert "no sample" in text and "OFF" in text and "connect: unreachable" in text
    assert "no region pair could be sampled" in render(rtt_view(RttReport("t", ())))
    with pytest.raises(KeyError):
        report.pair("b", "c")


# -- a real testnet --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTestnet]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TROON_HOME", str(home))
        net, report = LocalTestnet.up(SPEC, home=home)
        try:
            assert report.ok, [r.detail for r in report.failed]
            failures = asyncio.run(apply_regions(SPEC, net.live_infos(), net.state.token))
            assert failures == []
            yield net
        finally:
            net.down(grace=2.0)


def _admin(net: LocalTestnet, index: int) -> AdminClient:
    return AdminClient(*net.live_infos()[index].admin, net.state.token, timeout=30.0)


def test_each_node_has_one_rule_per_region_and_its_peers_in_groups(net: LocalTestnet) -> None:
    infos = net.live_infos()
    body = asyncio.run(_admin(net, 0).get("/impairment"))
    assert set(body["rules"]) == {"group:a", "group:b", "group:c"}
    for region, rtt in (("a", 10), ("b", 80), ("c", 40)):
        assert body["rules"][f"group:{region}"]["delay"] == pytest.approx(rtt / 4000)
    reply = asyncio.run(_admin(net, 0).post("/impairment/bulk", {}))
    assert reply["groups"] == {"a": 1, "b": 2, "c": 2}  # node 1 is its only peer in a
    c_body = asyncio.run(_admin(net, 4).get("/impairment"))
    assert set(c_body["rules"]) == {"group:a", "group:b"}  # c-c has no figure
    assert infos[4].region == "c"


def test_measured_round_trips_match_the_configured_ones(net: LocalTestnet) -> None:
    report = asyncio.run(
        measure("tc-rtt", SPEC, net.live_infos(), net.state.token, samples=2, count=4, seed=1)
    )
    assert len(report.pairs) == 6
    measured = [p for p in report.pairs if p.pings]
    # On a loaded machine every ping of a pair's only probe can time out (a known weakness
    # under load); such a pair is reported as failed, not hidden.  Every pair that was
    # measured must match its configured RTT.
    assert len(measured) >= 5, [(p.a, p.b, p.probes) for p in report.pairs]
    for pair in measured:
        assert len(pair.pings) + pair.failures >= 4 * len(pair.probes) >= 4
        assert pair.ok, (pair.a, pair.b, pair.configured_ms, pair.measured_ms, pair.probes)
        assert pair.min_ms is not None and pair.min_ms >= pair.configured_ms - 1.0
    assert report.ok == (len(measured) == 6 and all(p.ok for p in measured))


def test_rtt_command_prints_the_table(
    net: LocalTestnet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = argparse.ArgumentParser()
    register_rollout(parser.add_subparsers(dest="cmd", required=True))
    monkeypatch.setenv("TROON_HOME", str(net.state.root.parent.parent))  # the fixture's home
    args = parser.parse_args(["rtt", "tc-rtt", "--samples", "2", "--count", "2"])
    code = args.func(args)
    out = capsys.readouterr().out
    # accuracy is the test above (more samples); here: the table, and exit 0 iff all pairs
    # are within tolerance (two pings per pair can stray on a loaded machine)
    assert "of 6 region pairs within tolerance" in out and "b-c" in out
    assert code == (0 if "6 of 6 region pairs" in out else 1), out
    args = parser.parse_args(["rtt", "tc-rtt", "--count", "21"])
    assert args.func(args) == 2
    assert "--count: at most 20" in capsys.readouterr().err


def test_probe_reports_an_unreachable_peer_and_refuses_bad_input(net: LocalTestnet) -> None:
    infos = net.live_infos()
    admin = _admin(net, 0)
    ghost = f"127.0.0.1:9/{Identity.generate().public_key.hex()}"  # nobody on that port
    body = asyncio.run(admin.get("/probe", contact=ghost, count="2"))
    assert body["rtt_ms"] == [] and body["errors"][0].startswith("connect:")
    for query, message in (
        ({"contact": "nonsense"}, "contact"),
        ({"contact": infos[0].contact}, "this node itself"),
        ({"contact": infos[1].contact, "count": "0"}, "count must be between 1 and 20"),
    ):
        with pytest.raises(AdminCallError, match=message):
            asyncio.run(admin.get("/probe", **query))


def test_bulk_route_refuses_bad_bodies_and_changes_nothing(net: LocalTestnet) -> None:
    admin = _admin(net, 2)
    before = asyncio.run(admin.get("/impairment"))["rules"]
    bad: list[object] = [
        [],
        {"assign": [], "rules": {}},
        {"assign": {"x": "127.0.0.1:1"}},
        {"assign": {"x": [["127.0.0.1", 1, 2]]}},
        {"assign": {"ok": [["127.0.0.1", 1]]}, "rules": {"group:ok": {"delay": -1}}},
        {"rules": {"group:ok": {"colour": 1}}},
        {"other": 1},
    ]
    for body in bad:
        with pytest.raises(AdminCallError, match=r"\(400\)"):
            asyncio.run(admin.post("/impairment/bulk", body))
    after = asyncio.run(admin.post("/impairment/bulk", {}))
    assert after["rules"] == before and "ok" not in after["groups"]
    assert link_rule(80, 0)["delay"] == pytest.approx(before["group:a"]["delay"])
