"""console/widgets.py without a kernel: the pure views (HTML, chart data, PNGs, the shrunk
four-region spec) and the panels' task ownership and error line."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from pathlib import Path

import pytest
from notebookkit import require

from console.debug import NodeRow, RegionRow
from console.faults import OperatorError
from testnet.oracle import OracleReport, classify
from testnet.spec import load_spec, spec_from_dict

try:
    from console import widgets as w
except ImportError as exc:  # ipywidgets or matplotlib: the notebook extra
    require(
        "TROON_REQUIRE_NOTEBOOK", f"{exc.name} is not installed", "pip install -e '.[notebook]'"
    )

EXAMPLE = Path(__file__).resolve().parents[2] / "testnet" / "examples" / "four-region-180.yaml"
PNG = b"\x89PNG\r\n\x1a\n"


def row(index: int, status: str = "up", name: str | None = None) -> NodeRow:
    return NodeRow(
        index=index,
        region="eu" if index % 2 else "us",
        alive=status != "down",
        status=status,
        name=name if name is not None else f"{index:02x}" * 32,
        addr=f"127.0.0.1:{7000 + index}",
        chunks=index * 3,
        peers=7,
        rtt_ms=4.25,
        coins=None,
    )


def test_status_table_has_one_row_per_node_and_escapes() -> None:
    rows = [row(0), row(1, "down"), row(2, "paused", name="<script>")]
    html = w.status_html(rows, caption="a & b")
    assert html.count("<tr>") == 1 + 3  # the header, then one per node
    assert 'class="troon-status"' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "a &amp; b" in html
    assert w.STATUS_COLOURS["down"] in html and w.STATUS_COLOURS["paused"] in html
    assert ">4.2<" in html or ">4.3<" in html  # the median RTT, one decimal


def test_regions_and_latency_matrix() -> None:
    regions = {"us": RegionRow("us", 2, 3, 1), "eu": RegionRow("eu", 3, 3)}
    html = w.regions_html(regions)
    assert html.index(">eu<") < html.index(">us<")
    spec = load_spec(EXAMPLE)
    matrix = w.latency_html(spec)
    assert matrix.count("<tr>") == 1 + 4
    assert ">230<" in matrix and ">170<" in matrix  # sgp-nyc and sgp-sfo, both ways
    assert matrix.count(">230<") == 2


def test_copies_by_count() -> None:
    live = [bytes([i]) * 32 for i in range(6)]
    chunk = b"\x07" * 32
    verdicts = (
        classify(chunk, live[:4], live),
        classify(b"\x08" * 32, live[:5], live),  # surplus counts as full
        classify(b"\x09" * 32, live[:1], live),
        classify(b"\x0a" * 32, [], live),
    )
    report = OracleReport("t", len(live), verdicts)
    assert w.copies_of(report, 4) == {0: 1, 1: 1, 2: 0, 3: 0, 4: 2}


def test_ring_angles() -> None:
    assert w.name_angle("00" * 32) == 0.0
    assert w.name_angle("80" + "00" * 31) == pytest.approx(math.pi)
    assert 0 <= w.name_angle("ff" * 32) < 2 * math.pi
    points = w.ring_points([row(0), dataclasses.replace(row(1), name=None), row(2, "down")])
    assert [(p.index, p.status) for p in points] == [(0, "up"), (2, "down")]  # no name: not placed


def test_shrink_the_four_region_example() -> None:
    spec = load_spec(EXAMPLE)
    small = w.shrink_spec(spec, 2, name="te-small", backend="local")
    assert small.nodes == 8 and small.backend == "local" and small.image is None
    assert [dict(s.targets) for s in small.stages] == [
        {"sgp": 1, "sfo": 1, "ams": 0, "nyc": 0},  # 30 of 45 -> 1 of 2
        {"sgp": 2, "sfo": 2, "ams": 2, "nyc": 2},
    ]
    assert small.latency_between("sgp", "nyc") == 230
    assert spec_from_dict(small.to_dict()) == small  # still a valid spec
    with pytest.raises(ValueError, match="per_region"):
        w.shrink_spec(spec, 0, name="x", backend="local")


def test_charts_are_pngs() -> None:
    assert w.copies_png([{4: 10}, {4: 8, 3: 2}, {4: 9, 3: 0, 0: 1}], 4).startswith(PNG)
    points = w.ring_points([row(i) for i in range(6)])
    assert w.ring_png(points, chunks=["ab" * 32]).startswith(PNG)
    sample = w.FarmingSample(0.0, {0: 5, 1: 0}, 0.25, 5, 7)
    assert w.farming_png([sample, w.FarmingSample(2.0, {0: 9}, 0.3, 9, 11)]).startswith(PNG)
    assert w.copies_png([], 4).startswith(PNG)
    assert w.ring_png([]).startswith(PNG) and w.farming_png([]).startswith(PNG)


def test_rich_views_export_to_html() -> None:
    from rich.table import Table

    table = Table(title="x")
    table.add_column("a")
    table.add_row("[red]b[/]")
    html = w.rich_html(table)
    assert html.startswith("<pre") and "color: #800000" in html


def test_a_panel_owns_its_tasks_and_shows_errors_as_one_line() -> None:
    async def scenario() -> None:
        panel = w.Panel()
        started = asyncio.Event()

        async def forever() -> None:
            started.set()
            await asyncio.sleep(3600)

        async def fails() -> None:
            raise OperatorError("no node 99 in testnet t; op.nodes() lists them")

        first = panel.start("x", forever)
        await started.wait()
        assert not await panel.run("x", fails)  # replaces the first, then fails
        assert first.cancelled()
        assert "no node 99" in panel.note.value and "#cf222e" in panel.note.value
        assert "Traceback" not in panel.note.value

        async def boom() -> None:
            raise RuntimeError("unexpected")

        panel.start("y", boom)
        assert not await panel.settled()
        assert "RuntimeError: unexpected" in panel.note.value
        panel.start("follow", forever)  # endless slots are not waited for
        assert not await panel.settled()
        panel.stop()
        await asyncio.sleep(0)
        assert all(t.done() for t in panel._tasks.values())

    asyncio.run(scenario())
