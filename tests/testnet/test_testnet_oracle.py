"""The integrity oracle's pure parts: classification, holdings, the report and its view."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from node.routing.xorname import closest, name_from_int
from testnet.fleet import Failed
from testnet.oracle import (
    ChunkVerdict,
    FetchResult,
    OracleReport,
    classify,
    classify_all,
    holdings_from,
)
from testnet.state import NodeInfo
from testnet.views import oracle_view


def n(value: int) -> bytes:
    return name_from_int(value)


LIVE = [n(v) for v in (1, 2, 3, 4, 5, 6, 7, 8)]
CHUNK = n(0)
IDEAL = [n(1), n(2), n(3), n(4)]  # the 4 live names closest to 0


def test_ideal_holders_are_the_four_closest_live_nodes() -> None:
    assert list(classify(CHUNK, IDEAL, LIVE).ideal) == IDEAL


def test_ok_when_every_ideal_holder_has_it() -> None:
    v = classify(CHUNK, IDEAL, LIVE)
    assert v.status == "ok" and v.missing == () and v.surplus == ()


def test_extra_copies_are_surplus_not_a_fault() -> None:
    v = classify(CHUNK, [*IDEAL, n(8)], LIVE)
    assert v.status == "ok" and v.surplus == (n(8),)


def test_misplaced_when_a_non_ideal_node_holds_an_ideal_copy() -> None:
    v = classify(CHUNK, [n(1), n(2), n(3), n(7)], LIVE)
    assert v.status == "misplaced" and v.missing == (n(4),) and v.surplus == (n(7),)


def test_under_replicated_below_four_live_copies() -> None:
    assert classify(CHUNK, [n(1), n(2), n(3)], LIVE).status == "under"
    assert classify(CHUNK, [n(6), n(7), n(8)], LIVE).status == "under"


def test_lost_when_nobody_live_holds_it() -> None:
    assert classify(CHUNK, [], LIVE).status == "lost"
    dead = n(9)
    assert classify(CHUNK, [dead], LIVE).status == "lost"  # a dead holder does not count


def test_dead_holders_do_not_count_and_ideal_moves_to_live_nodes() -> None:
    live = [x for x in LIVE if x != n(2)]  # n(2) crashed
    v = classify(CHUNK, IDEAL, live)
    assert v.status == "under" and v.holders == (n(1), n(3), n(4))
    assert v.ideal == (n(1), n(3), n(4), n(5))
    assert v.missing == (n(5),)


def test_small_networks_need_every_node_not_four() -> None:
    live = [n(1), n(2), n(3)]
    assert classify(CHUNK, live, live).status == "ok"
    assert classify(CHUNK, live[:2], live).status == "under"


def test_classify_all_inverts_holdings() -> None:
    c2 = n(1 << 200)
    holdings = {n(1): [CHUNK], n(2): [CHUNK], n(3): [CHUNK], n(4): [CHUNK, c2]}
    verdicts = classify_all([CHUNK, c2, n(5 << 100)], holdings, LIVE)
    assert [v.status for v in verdicts] == ["ok", "under", "lost"]


@given(
    st.sets(st.integers(1, 1 << 20), min_size=1, max_size=12),
    st.integers(0, 1 << 20),
    st.sets(st.integers(1, 1 << 20), max_size=12),
)
def test_exactly_one_status_consistent_with_its_definition(
    live_ints: set[int], chunk_int: int, holder_ints: set[int]
) -> None:
    live = [n(v) for v in live_ints]
    chunk = n(chunk_int)
    v = classify(chunk, [n(h) for h in holder_ints], live)
    held = {n(h) for h in holder_ints} & set(live)
    ideal = set(closest(chunk, live, 4))
    assert set(v.ideal) == ideal and set(v.holders) == held
    expected = (
        "lost"
        if not held
        else "under"
        if len(held) < min(4, len(live))
        else "misplaced"
        if not ideal <= held
        else "ok"
    )
    assert v.status == expected


def _info(value: int) -> NodeInfo:
    return NodeInfo(n(value), bytes(32), ("127.0.0.1", 1), ("127.0.0.1", 2), 1, "", "")


def test_holdings_from_answers_lists_unreachable_nodes() -> None:
    infos = {0: _info(1), 1: _info(2), 2: _info(3)}
    answers: dict[int, object] = {
        0: {"count": 1, "names": [CHUNK.hex()]},
        1: Failed("admin call failed (no response): refused"),
        2: {"count": 1, "names": ["nothex"]},
    }
    holdings, unreachable = holdings_from(infos, answers)
    assert holdings == {n(1): [CHUNK]}
    assert [i for i, _ in unreachable] == [1, 2]
    assert "refused" in unreachable[0][1]


def _report(statuses: list[str], fetch_ok: bool = True, unreachable: bool = False) -> OracleReport:
    verdicts = tuple(ChunkVerdict(n(i + 1), s, (), ()) for i, s in enumerate(statuses))
    fetches = (FetchResult(n(1), fetch_ok, "4096 bytes verified" if fetch_ok else "timed out"),)
    lost = ((3, "refused"),) if unreachable else ()
    return OracleReport("t", 8, verdicts, fetches, lost, 0.5)


def test_report_verdicts() -> None:
    clean = _report(["ok", "ok"])
    assert clean.clean and not clean.data_lost and clean.counts["ok"] == 2
    settling = _report(["ok", "under", "misplaced"])
    assert not settling.clean and not settling.data_lost
    assert _report(["ok", "lost"]).data_lost
    assert _report(["ok"], fetch_ok=False).data_lost
    assert not _report(["ok"], unreachable=True).clean


def render(renderable: object) -> str:
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(renderable)
    return out.getvalue()


def test_oracle_view_shows_counts_problems_and_verdict() -> None:
    text = render(oracle_view(_report(["ok", "under", "lost"], fetch_ok=False, unreachable=True)))
    assert "integrity of t: 3 chunks over 8 live nodes" in text
    assert "chunks needing attention" in text and "under" in text and "lost" in text
    assert "FAILED: timed out" in text
    assert "n003 did not answer /chunks: refused" in text
    assert "DATA LOST" in text
    assert "clean:" in render(oracle_view(_report(["ok"])))
    assert "still settling" in render(oracle_view(_report(["ok", "under"])))
