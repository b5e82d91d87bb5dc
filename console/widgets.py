"""Notebook widgets for the operator console (ipywidgets 8): what notebooks/*.ipynb display.

Views are pure: data in, HTML text or PNG bytes out (``*_html``, ``*_png``, matplotlib's Agg
canvas, no pyplot state), tested without a kernel.  Panels are thin adapters over
:class:`console.operator.Operator`'s async methods (a notebook's cells run inside the
kernel's event loop): a panel owns its widgets and its tasks, one per slot (a new action
cancels the slot's previous one; :meth:`Panel.stop` ends them all), and every error an
operator can cause (an unknown node, a node down or not answering, a stopped testnet) shows
as one red line in the panel, never as a traceback.  Public ``a``-methods return whether they
succeeded, so a notebook can assert on them; :meth:`Panel.settled` waits for work a button or
a dropdown started.
"""

from __future__ import annotations

import asyncio
import html
import io
import math
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import ipywidgets as widgets  # type: ignore[import-untyped, import-not-found, unused-ignore]
from rich.console import Console, RenderableType

from console.debug import (
    ConnRow,
    LogLine,
    LookupTrace,
    NodeDetail,
    NodeRow,
    RegionRow,
    RoutingAnalysis,
    Snapshot,
)
from console.faults import OperatorError
from console.operator import Operator
from node.admin import AdminCallError
from node.client.aio import ClientError
from testnet import rtt
from testnet.errors import TestnetError
from testnet.farming import FarmingReport
from testnet.farming import render as farming_view
from testnet.oracle import OracleReport
from testnet.rollout import Gates, RolloutReport, plan_rollout, rollout, rollout_view
from testnet.rtt import RttReport
from testnet.spec import RegionSpec, StageSpec, TestnetSpec

SHORT = 12  # hex characters of a name shown
HTML_WIDTH = 110  # columns of Rich renderables exported to HTML
LOG_LINES = 200  # newest log lines shown
FOLLOW_EVERY = 1.0  # seconds between polls of a followed log
STATUS_COLOURS = {"up": "#1a7f37", "paused": "#b35900", "down": "#cf222e"}
COPY_COLOURS = ("#cf222e", "#fb8500", "#ffb703", "#8ecae6", "#1a7f37")  # 0 copies .. rf
RING_INNER, RING_STEP = 0.6, 0.25  # radii of the chunks' circle and between regions
REGION_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:{}"
_TABLE = "border-collapse:collapse;font-family:monospace;font-size:12px"
_CAPTION = "text-align:left;white-space:nowrap;padding-bottom:4px"


# -- pure views: HTML ---------------------------------------------------------------------


def esc(value: object) -> str:
    return html.escape("-" if value is None else str(value))


def short(name: str | None) -> str:
    return "-" if not name else name[:SHORT]


def table_html(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, cls: str, caption: str = ""
) -> str:
    """A table of already-escaped cells; numbers (cells that look numeric) align right."""
    head = "".join(f'<th style="{_CELL.format("left")}">{esc(h)}</th>' for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td style="{_CELL.format(_align(cell))}">{cell}</td>' for cell in row)
        + "</tr>"
        for row in rows
    )
    cap = f'<caption style="{_CAPTION}"><b>{esc(caption)}</b></caption>' if caption else ""
    return (
        f'<table class="{cls}" style="{_TABLE}">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _align(cell: str) -> str:
    return "right" if cell.replace(".", "", 1).replace("%", "").isdigit() else "left"


def coloured(text: str, colour: str | None) -> str:
    return f'<span style="color:{colour}">{esc(text)}</span>' if colour else esc(text)


def message_html(text: str, *, error: bool = False) -> str:
    colour = "#cf222e" if error else "#57606a"
    return f'<div style="color:{colour};font-family:monospace">{esc(text)}</div>'


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def status_html(rows: Sequence[NodeRow], *, caption: str = "") -> str:
    """One row per node: status, region, name, address, chunks, peers, RTT, coins."""
    cols = ("node", "status", "region", "name", "address", "chunks", "peers", "rtt ms", "coins")
    body = [
        [
            f"n{r.index:03d}",
            coloured(r.status, STATUS_COLOURS.get(r.status, "#57606a")),
            esc(r.region),
            esc(short(r.name)),
            esc(r.addr),
            esc(r.chunks),
            esc(r.peers),
            _num(r.rtt_ms),
            esc(r.coins),
        ]
        for r in rows
    ]
    return table_html(cols, body, cls="troon-status", caption=caption)


def regions_html(regions: Mapping[str, RegionRow]) -> str:
    body = [
        [esc(r.name), str(r.up), str(r.paused), str(r.total)]
        for r in sorted(regions.values(), key=lambda r: r.name)
    ]
    return table_html(("region", "up", "paused", "nodes"), body, cls="troon-regions")


def latency_html(spec: TestnetSpec, measured: RttReport | None = None) -> str:
    """The configured round-trip matrix in ms (and ``configured / measured`` when given)."""
    names = [r.name for r in spec.regions]
    rows = []
    for a in names:
        cells = [f"<b>{esc(a)}</b>"]
        for b in names:
            text = f"{spec.latency_between(a, b):g}"
            if measured is not None:
                try:
                    got = measured.pair(a, b).measured_ms
                except KeyError:
                    got = None
                text += f" / {_num(got)}"
            cells.append(esc(text))
        rows.append(cells)
    what = "round trip ms, configured / measured" if measured else "round trip ms, configured"
    return table_html(("", *names), rows, cls="troon-latency", caption=what)


def routing_html(a: RoutingAnalysis) -> str:
    """The table nearest first, each entry's state and whether it is an ideal peer."""
    colour = "#1a7f37" if a.health >= 0.9 else "#b35900" if a.health >= 0.5 else "#cf222e"
    head = (
        f"n{a.index:03d} routing: {a.size} entries, {len(a.stale)} stale, "
        f"{len(a.missing)} of its {a.want} nearest live peers missing; health "
    )
    body = [
        [
            esc(short(e.name)),
            "-" if e.index is None else f"n{e.index:03d}",
            str(e.bucket),
            str(e.distance_bits),
            coloured(e.state, None if e.state == "ok" else "#cf222e"),
            "yes" if e.ideal else "",
        ]
        for e in a.entries
    ]
    missing = "".join(
        f"<li>{esc(short(name))} {'' if i is None else f'(n{i:03d})'}</li>" for name, i in a.missing
    )
    cols = ("peer", "node", "bucket", "log2 dist", "state", "ideal")
    return (
        f"<div>{esc(head)}{coloured(f'{a.health:.2f}', colour)}</div>"
        + table_html(cols, body, cls="troon-routing")
        + (f"<div>missing nearest peers:<ul>{missing}</ul></div>" if missing else "")
    )


def trace_html(t: LookupTrace) -> str:
    """Every peer asked, hop by hop: who, how long, what it answered or why it failed."""
    found = {name for name, _ in t.closest}
    right = sum(1 for name, _ in t.ideal if name in found)
    head = (
        f"lookup {short(t.target)} from n{t.index:03d}: {t.rounds} rounds, {t.requests} requests,"
        f" {t.failures} failed, {t.ms:.0f} ms; found {right} of the {len(t.ideal)} true nearest"
    )
    body = [
        [
            "-" if h.hop is None else str(h.hop),
            esc(short(h.peer)),
            "-" if h.index is None else f"n{h.index:03d}",
            f"{h.ms:.1f}",
            str(h.distance_bits),
            coloured(h.error, "#cf222e") if h.error else f"{esc(h.returned)} contacts",
        ]
        for h in t.hops
    ]
    cols = ("hop", "peer", "node", "ms", "log2 dist", "answer")
    return f"<div>{esc(head)}</div>" + table_html(cols, body, cls="troon-trace")


def connections_html(rows: Sequence[ConnRow]) -> str:
    body = [
        [
            esc(short(c.peer)) if c.index is None else f"n{c.index:03d}",
            esc(c.region),
            esc(c.state),
            f"{c.srtt_ms:.1f}",
            _num(c.min_rtt_ms),
            f"{c.loss * 100:.1f}%",
            str(c.retransmits),
            str(c.cwnd),
            esc(c.impairment or ""),
        ]
        for c in rows
    ]
    cols = ("peer", "region", "state", "srtt ms", "min ms", "loss", "retx", "cwnd", "impairment")
    return table_html(cols, body, cls="troon-connections")


def detail_html(d: NodeDetail) -> str:
    parts = [
        ("node", f"n{d.index:03d} in {d.region}, {short(d.name)} at {d.addr}"),
        ("version / uptime / log level", f"{d.version} / {d.uptime_s:.0f} s / {d.log_level}"),
        ("replication", _pairs(d.replication)),
        ("storage", _pairs(d.storage)),
        ("farming", _pairs(d.farming)),
    ]
    body = [[esc(k), esc(v)] for k, v in parts]
    return table_html(("", ""), body, cls="troon-detail")


def _pairs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {short(v) if k.endswith('wallet') else v}" for k, v in values.items())


LEVEL_COLOURS = {"WARNING": "#b35900", "ERROR": "#cf222e", "CRITICAL": "#cf222e"}


def logs_html(lines: Sequence[LogLine]) -> str:
    """The newest lines, oldest first, warnings and errors coloured."""
    shown = lines[-LOG_LINES:]
    text = "\n".join(
        coloured(
            f"{line.seq:6d} {time.strftime('%H:%M:%S', time.localtime(line.at))} "
            f"{line.level:<7} {line.logger}: {line.message}",
            LEVEL_COLOURS.get(line.level),
        )
        for line in shown
    )
    return f'<pre class="troon-log" style="font-size:11px;max-height:300px">{text}</pre>'


def rich_html(renderable: RenderableType, *, width: int = HTML_WIDTH) -> str:
    """Any Rich renderable (the terminal views) as inline-styled HTML."""
    console = Console(
        record=True,
        width=width,
        file=io.StringIO(),
        force_terminal=True,
        force_jupyter=False,  # export it, do not display it in the cell
        color_system="truecolor",
    )
    console.print(renderable)
    return console.export_html(
        inline_styles=True, code_format='<pre style="font-size:12px;line-height:1.2">{code}</pre>'
    )


# -- pure views: data for charts ---------------------------------------------------------------


def copies_of(report: OracleReport, rf: int) -> dict[int, int]:
    """Chunks by live copy count, 0..rf (more than rf counts as rf)."""
    out = dict.fromkeys(range(rf + 1), 0)
    for v in report.verdicts:
        out[min(len(v.holders), rf)] += 1
    return out


@dataclass(frozen=True)
class RingPoint:
    """A node on the XOR ring: its angle is its name's position in the 2^256 space."""

    index: int
    region: str
    angle: float
    status: str


def ring_points(rows: Sequence[NodeRow]) -> list[RingPoint]:
    return [
        RingPoint(r.index, r.region, name_angle(r.name), r.status)
        for r in rows
        if r.name is not None
    ]


def name_angle(name_hex: str) -> float:
    """Radians: the name's first 52 bits (exact in a float) as a fraction of the circle."""
    return int(name_hex[:13], 16) / 16.0**13 * 2 * math.pi


@dataclass(frozen=True)
class FarmingSample:
    """One farming report at ``t`` seconds since the first."""

    t: float
    balances: dict[int, int]  # node -> coins in its reward wallet
    rate: float  # mean farming rate over the nodes
    earned: int  # coins earned by all farmers so far
    minted: int | None


def farming_sample(report: FarmingReport, t: float) -> FarmingSample:
    rates = [n.rate for n in report.nodes]
    return FarmingSample(
        t,
        {n.index: n.balance or 0 for n in report.nodes},
        sum(rates) / len(rates) if rates else 0.0,
        sum(n.coins_earned for n in report.nodes),
        report.minted,
    )


def shrink_spec(spec: TestnetSpec, per_region: int, *, name: str, backend: str) -> TestnetSpec:
    """``spec`` with ``per_region`` nodes in each region and its stages scaled to match (at
    least one node per staged region), renamed and on ``backend``: the four-region example at
    laptop size."""
    if per_region < 1:
        raise ValueError(f"per_region must be >= 1, got {per_region}")
    regions = tuple(RegionSpec(r.name, per_region) for r in spec.regions)
    full = {r.name: r.nodes for r in spec.regions}
    stages = tuple(
        StageSpec(
            s.name,
            tuple(
                (region, max(1, round(n * per_region / full[region])) if n else 0)
                for region, n in s.targets
            ),
        )
        for s in spec.stages
    )
    image = spec.image if backend != "local" else None
    resources = spec.resources if backend != "local" else None
    return replace(
        spec,
        name=name,
        backend=backend,
        regions=regions,
        stages=stages,
        image=image,
        resources=resources,
        hosts=(),
    )


# -- pure views: PNG charts ----------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure (its own Agg canvas: no pyplot, no global state)."""
    from matplotlib.figure import Figure  # type: ignore[import-not-found, unused-ignore]

    return Figure(figsize=(width, height))


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def copies_png(history: Sequence[Mapping[int, int]], rf: int, *, title: str = "") -> bytes:
    """Chunks by copy count after each churn step, stacked (rf copies at the bottom)."""
    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    steps = list(range(len(history)))
    counts = list(range(rf, -1, -1))
    series = [[h.get(c, 0) for h in history] for c in counts]
    colours = [COPY_COLOURS[-1] if c >= rf else COPY_COLOURS[min(c, 3)] for c in counts]
    if history:
        ax.stackplot(steps, series, labels=[f"{c} copies" for c in counts], colors=colours)
    ax.set_xlabel("churn step")
    ax.set_ylabel("chunks")
    ax.set_title(title or "copies per chunk while nodes churn")
    if history:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return _png(fig)


def ring_png(points: Sequence[RingPoint], *, chunks: Sequence[str] = (), title: str = "") -> bytes:
    """The XOR ring: nodes at their names' angles, one circle per region (in the order the
    regions first appear), the chunks on the innermost circle."""
    fig = _figure(5, 5)
    ax = fig.add_subplot(projection="polar")
    around = [2 * math.pi * k / 180 for k in range(181)]
    regions = list(dict.fromkeys(p.region for p in points))
    for k, region in enumerate(regions):
        mine = [p for p in points if p.region == region]
        radius = RING_INNER + RING_STEP * (k + 1)
        colour = REGION_COLOURS[k % len(REGION_COLOURS)]
        ax.plot(around, [radius] * len(around), color=colour, alpha=0.3, lw=1)
        up = [p for p in mine if p.status == "up"]
        other = [p for p in mine if p.status != "up"]
        ax.scatter([p.angle for p in up], [radius] * len(up), color=colour, s=30, label=region)
        ax.scatter(
            [p.angle for p in other],
            [radius] * len(other),
            facecolors="none",
            edgecolors=colour,
            s=30,
        )
        for p in mine:
            ax.annotate(str(p.index), (p.angle, radius + RING_STEP / 3), fontsize=6, ha="center")
    if chunks:
        ax.scatter(
            [name_angle(c) for c in chunks],
            [RING_INNER] * len(chunks),
            color="#57606a",
            s=12,
            marker="x",
            label="chunks",
        )
    ax.set_ylim(0, RING_INNER + RING_STEP * (len(regions) + 1))
    ax.set_yticks([])
    ax.set_xticks([])
    ax.grid(False)
    ax.set_title(title or "the XOR ring (hollow: down or paused)", fontsize=10)
    if points or chunks:
        ax.legend(loc="lower left", bbox_to_anchor=(-0.12, -0.12), fontsize=7)
    return _png(fig)


def farming_png(samples: Sequence[FarmingSample], *, title: str = "") -> bytes:
    """Left: each farmer's reward wallet over time.  Right: the mean farming rate and the
    coins farmers earned so far."""
    fig = _figure(9, 3.2)
    left, right = fig.subplots(1, 2)
    ts = [s.t for s in samples]
    nodes = sorted({i for s in samples for i in s.balances})
    for i in nodes:
        left.plot(ts, [s.balances.get(i, 0) for s in samples], marker=".", label=f"n{i:03d}")
    left.set_xlabel("seconds")
    left.set_ylabel("coins")
    left.set_title("farmers' balances", fontsize=10)
    if nodes:
        left.legend(fontsize=6, ncol=2)
    right.plot(ts, [s.rate for s in samples], color="#1f77b4", marker=".")
    right.set_xlabel("seconds")
    right.set_ylabel("mean farming rate", color="#1f77b4")
    twin = right.twinx()
    twin.plot(ts, [s.earned for s in samples], color="#1a7f37", marker=".")
    twin.set_ylabel("coins earned", color="#1a7f37")
    right.set_title(title or "farming rate and rewards", fontsize=10)
    fig.tight_layout()
    return _png(fig)


# -- panels (adapters) ---------------------------------------------------------------------------

Job = Callable[[], Coroutine[Any, Any, None]]  # makes the coroutine once its task runs
ENDLESS = {"follow"}  # slots whose task runs until it is cancelled


def why(exc: BaseException) -> str:
    """One line for the panel: our errors already say what to do next."""
    if isinstance(exc, TestnetError | ClientError | AdminCallError | ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class Panel:
    """A box of widgets that owns one task per slot (see the module docstring)."""

    def __init__(self, *children: Any) -> None:
        self.note = widgets.HTML()
        self.box = widgets.VBox([*children, self.note])
        self._tasks: dict[str, asyncio.Task[bool]] = {}

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)

    def say(self, text: str, *, error: bool = False) -> None:
        self.note.value = message_html(text, error=error)

    async def _guard(self, job: Job) -> bool:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the UI boundary: a red line, never a traceback
            self.say(why(exc), error=True)
            return False
        return True

    def start(self, slot: str, job: Job) -> asyncio.Task[bool]:
        """Run ``job`` in ``slot``, cancelling what ran there (a button's or dropdown's work)."""
        old = self._tasks.get(slot)
        if old is not None and not old.done():
            old.cancel()
        task = _loop().create_task(self._guard(job))
        self._tasks[slot] = task
        return task

    async def wait(self, slot: str) -> bool:
        """Wait for the work in ``slot``; False if it failed or a newer action replaced it."""
        task = self._tasks.get(slot)
        if task is None:
            return True
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                return False  # replaced by a newer action in the same slot
            raise

    async def run(self, slot: str, job: Job) -> bool:
        """:meth:`start` and :meth:`wait`."""
        self.start(slot, job)
        return await self.wait(slot)

    async def settled(self) -> bool:
        """Wait for the work a button or a dropdown started (not a followed log, which runs
        until it is switched off); True if all of it succeeded."""
        results = [await self.wait(slot) for slot in list(self._tasks) if slot not in ENDLESS]
        return all(results)

    def stop(self) -> None:
        """Cancel every task (a followed log too); the widgets stay on the page as a record."""
        for task in self._tasks.values():
            task.cancel()


def _loop() -> asyncio.AbstractEventLoop:
    """The kernel's loop: running in a cell; the current one in a widget callback."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.get_event_loop()


def _clock() -> str:
    return time.strftime("%H:%M:%S")


class StatusPanel(Panel):
    """The node table with a refresh button; ``snapshot`` is the last one shown."""

    def __init__(self, op: Operator) -> None:
        self.op = op
        self.table = widgets.HTML()
        self.button = widgets.Button(description="refresh", icon="refresh")
        self.button.on_click(lambda _: self.start("refresh", self._refresh))
        self.snapshot: Snapshot | None = None
        super().__init__(self.button, self.table)

    async def arefresh(self) -> bool:
        return await self.run("refresh", self._refresh)

    async def _refresh(self) -> None:
        snap = await self.op.asnapshot()
        self.snapshot = snap
        up = sum(r.up for r in snap.regions.values())
        integ = snap.integrity
        copies = "/".join(str(integ.copies.get(c, 0)) for c in range(integ.rf, -1, -1))
        caption = (
            f"{snap.testnet} ({snap.backend}): {up} of {len(snap.nodes)} nodes up; "
            f"{integ.chunks} chunks by copies {integ.rf}..0: {copies}; "
            f"{integ.retrievable} retrievable"
        )
        self.table.value = status_html(snap.nodes, caption=caption)
        self.say(f"refreshed at {_clock()} in {snap.seconds:.1f} s")


class ChurnLab(Panel):
    """Seeded churn with a live chart of copies per chunk (the oracle after every step)."""

    def __init__(
        self, op: Operator, *, kills: int = 1, seed: int = 1, steps: int = 5, interval: float = 2.0
    ) -> None:
        self.op = op
        most = max(1, op.net.spec.nodes - op.rf)
        self.kills = widgets.IntSlider(value=min(kills, most), min=1, max=most, description="kills")
        self.interval = widgets.FloatSlider(
            value=interval, min=0.5, max=30.0, step=0.5, description="every s"
        )
        self.seed = widgets.IntText(value=seed, description="seed")
        self.steps = widgets.IntSlider(value=steps, min=1, max=60, description="steps")
        self.rate = widgets.HTML()
        self.go = widgets.Button(description="run churn", button_style="warning")
        self.go.on_click(lambda _: self.start("churn", self._churn))
        self.chart = widgets.Image(format="png")
        self.events = widgets.HTML()
        self.history: list[dict[int, int]] = []
        self.lines: list[str] = []
        for w in (self.kills, self.interval):
            w.observe(lambda _: self._show_rate(), names="value")
        self._show_rate()
        super().__init__(
            widgets.HBox([self.kills, self.interval, self.rate]),
            widgets.HBox([self.seed, self.steps, self.go]),
            self.chart,
            self.events,
        )

    def _show_rate(self) -> None:
        per_min = self.kills.value * 60.0 / self.interval.value
        self.rate.value = message_html(f"churn rate ~{per_min:.0f} kills/min")

    async def arun(self) -> bool:
        return await self.run("churn", self._churn)

    async def _measure(self) -> None:
        report = await self.op.acheck(sample=0)
        self.history.append(copies_of(report, self.op.rf))
        self.chart.value = copies_png(self.history, self.op.rf)

    async def _churn(self) -> None:
        if not self.history:
            await self._measure()  # the baseline, before any churn
        steps, seed = int(self.steps.value), int(self.seed.value)
        for step in range(steps):
            result = await self.op.achurn(int(self.kills.value), seed=seed + step)
            self.lines.append(f"{_clock()} step {step + 1}/{steps}: {result.message}")
            self.events.value = f"<pre>{esc(chr(10).join(self.lines[-12:]))}</pre>"
            await asyncio.sleep(float(self.interval.value))
            await self._measure()
        last = self.history[-1]
        self.say(
            f"{steps} churn steps; now {last.get(self.op.rf, 0)} chunks at full copies, "
            f"{last.get(0, 0)} with none"
        )


LEVEL_NAMES = ("DEBUG", "INFO", "WARNING", "ERROR")


def _or_error(result: Any, view: Callable[[Any], str]) -> str:
    """The view of a result, or the error that came instead of it."""
    if isinstance(result, BaseException):
        return message_html(why(result), error=True)
    return view(result)


class NodeDebugger(Panel):
    """Pick a node: routing table vs ideal, lookup trace, live log, connections, detail."""

    def __init__(self, op: Operator) -> None:
        self.op = op
        spec = op.net.spec
        options = [(f"n{i:03d} ({spec.region_of(i)})", i) for i in range(spec.nodes)]
        self.picker = widgets.Dropdown(options=options, value=0, description="node")
        self.picker.observe(
            lambda ch: self.start("show", lambda: self._show(ch["new"])), names="value"
        )
        self.routing, self.connections, self.detail = (widgets.HTML() for _ in range(3))
        self.target = widgets.Text(placeholder="chunk or node name (64 hex)", description="name")
        self.trace_button = widgets.Button(description="trace lookup")
        self.trace_button.on_click(lambda _: self.start("trace", lambda: self._trace(None)))
        self.trace = widgets.HTML()
        self.level = widgets.Dropdown(options=LEVEL_NAMES, value="INFO", description="at least")
        self.grep = widgets.Text(placeholder="text", description="filter")
        self.follow = widgets.ToggleButton(description="follow", icon="play")
        self.node_level = widgets.Dropdown(options=LEVEL_NAMES, value="INFO", description="logs at")
        self.set_level = widgets.Button(description="set level")
        self.log = widgets.HTML()
        for w in (self.level, self.grep):
            w.observe(lambda _: self.start("log", self._log), names="value")
        self.follow.observe(lambda ch: self._follow(bool(ch["new"])), names="value")
        self.set_level.on_click(lambda _: self.start("level", self._set_level))
        self.tabs = widgets.Tab(
            children=[
                self.routing,
                widgets.VBox([widgets.HBox([self.target, self.trace_button]), self.trace]),
                widgets.VBox(
                    [
                        widgets.HBox([self.level, self.grep, self.follow]),
                        widgets.HBox([self.node_level, self.set_level]),
                        self.log,
                    ]
                ),
                self.connections,
                self.detail,
            ],
            titles=("routing", "lookup trace", "log", "connections", "detail"),
        )
        super().__init__(self.picker, self.tabs)

    @property
    def index(self) -> int:
        return int(self.picker.value)

    async def ashow(self, index: int) -> bool:
        """Load every view of node ``index`` (as picking it in the dropdown does)."""
        if index not in {value for _, value in self.picker.options}:
            self.say(
                f"no node {index!r} in testnet {self.op.name}; pick one from the list", error=True
            )
            return False
        if self.picker.value != index:
            self.picker.value = index  # the observer starts the "show" task
        else:
            self.start("show", lambda: self._show(index))
        return await self.wait("show")

    async def _show(self, index: int) -> None:
        op = self.op
        self.say(f"loading n{index:03d} ...")
        results = await asyncio.gather(
            op.arouting(index),
            op.aconnections(index),
            op.anode_detail(index),
            return_exceptions=True,
        )
        routing, conns, detail = results
        self.routing.value = _or_error(routing, routing_html)
        self.connections.value = _or_error(conns, connections_html)
        self.detail.value = _or_error(detail, detail_html)
        if isinstance(detail, NodeDetail) and detail.log_level in LEVEL_NAMES:
            self.node_level.value = detail.log_level
        try:
            await self._log()
        except Exception as exc:  # the other views still stand
            self.log.value = message_html(why(exc), error=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if len(failed) == len(results):
            raise failed[0]
        self.say(f"n{index:03d} at {_clock()}" + (f"; {why(failed[0])}" if failed else ""))

    async def atrace(self, name_hex: str | None = None) -> bool:
        """Trace a lookup of ``name_hex`` (default: the name box, else a stored chunk)."""
        return await self.run("trace", lambda: self._trace(name_hex))

    async def _trace(self, name_hex: str | None) -> None:
        name = (name_hex or self.target.value or "").strip()
        if not name:
            ledger = await asyncio.to_thread(self.op.net.state.ledger)
            if not ledger:
                raise ValueError("give a name to trace (no chunk is in the ledger yet)")
            name = ledger[0].name.hex()
        self.target.value = name
        self.trace.value = message_html(f"tracing {short(name)} from n{self.index:03d} ...")
        self.trace.value = trace_html(await self.op.atrace(self.index, name))

    async def arefresh_log(self) -> bool:
        return await self.run("log", self._log)

    async def _log(self) -> None:
        lines = await self.op.alogs(
            self.index, level=str(self.level.value), grep=self.grep.value or None, limit=LOG_LINES
        )
        self.log.value = logs_html(lines)

    def _follow(self, on: bool) -> None:
        if on:
            self.start("follow", self._follow_loop)
        elif (task := self._tasks.get("follow")) is not None:
            task.cancel()

    async def _follow_loop(self) -> None:
        while True:
            await self._log()
            await asyncio.sleep(FOLLOW_EVERY)

    async def aset_level(self, level: str) -> bool:
        self.node_level.value = level
        return await self.run("level", self._set_level)

    async def _set_level(self) -> None:
        now = await self.op.aset_log_level(self.index, str(self.node_level.value))
        self.say(f"n{self.index:03d} now logs at {now}")


class NetworkMap(Panel):
    """Regions, the latency matrix (configured, and measured on demand) and the XOR ring."""

    def __init__(self, op: Operator) -> None:
        self.op = op
        self.regions, self.latency = widgets.HTML(), widgets.HTML()
        self.ring = widgets.Image(format="png")
        self.button = widgets.Button(description="refresh")
        self.button.on_click(lambda _: self.start("map", lambda: self._refresh(measure=False)))
        self.measure = widgets.Button(description="measure RTT")
        self.measure.on_click(lambda _: self.start("map", lambda: self._refresh(measure=True)))
        self.rtt: RttReport | None = None
        super().__init__(
            widgets.HBox([self.button, self.measure]),
            widgets.HBox([widgets.VBox([self.regions, self.latency]), self.ring]),
        )

    async def arefresh(self, *, measure: bool = False) -> bool:
        return await self.run("map", lambda: self._refresh(measure=measure))

    async def _refresh(self, *, measure: bool) -> None:
        net = self.op.net
        snap = await self.op.asnapshot()
        self.regions.value = regions_html(snap.regions)
        if measure:
            self.say("measuring round trips between regions ...")
            live = await asyncio.to_thread(net.live)
            self.rtt = await rtt.measure(
                net.name, net.spec, live, net.state.token, samples=1, count=3
            )
        self.latency.value = latency_html(net.spec, self.rtt)
        chunks = [e.name.hex() for e in await asyncio.to_thread(net.state.ledger)]
        self.ring.value = ring_png(ring_points(snap.nodes), chunks=chunks)
        self.say(f"{len(snap.nodes)} nodes, {len(chunks)} chunks at {_clock()}")


def plan_html(spec: TestnetSpec) -> str:
    """The stages a rollout of ``spec`` walks: targets per region and nodes after each."""
    body = [
        [
            esc(s.name),
            esc(", ".join(f"{r} {n}" for r, n in s.targets)),
            f"+{len(s.new)}",
            str(s.total),
        ]
        for s in plan_rollout(spec)
    ]
    return table_html(
        ("stage", "targets", "new", "nodes"), body, cls="troon-plan", caption=f"rollout {spec.name}"
    )


class RolloutPanel(Panel):
    """A staged rollout (testnet/rollout.py) run on a worker thread, its log shown as it
    goes; ``op`` is the operator of the testnet it made, ``report`` its report."""

    def __init__(self, spec: TestnetSpec, *, gates: Gates | None = None) -> None:
        self.spec, self.gates = spec, gates
        self.plan = widgets.HTML(plan_html(spec))
        self.progress, self.result = widgets.HTML(), widgets.HTML()
        self.op: Operator | None = None
        self.report: RolloutReport | None = None
        super().__init__(self.plan, self.progress, self.result)

    async def arun(self) -> bool:
        return await self.run("rollout", self._rollout)

    async def _rollout(self) -> None:
        out = io.StringIO()
        console = Console(  # a plain text log, not Jupyter's own display (Rich's default there)
            file=out, width=100, force_terminal=False, force_jupyter=False, color_system=None
        )
        work = asyncio.ensure_future(
            asyncio.to_thread(rollout, self.spec, console=console, gates=self.gates)
        )
        while not work.done():
            await asyncio.wait([work], timeout=0.5)
            tail = "\n".join(out.getvalue().splitlines()[-12:])
            self.progress.value = f'<pre style="font-size:11px">{esc(tail)}</pre>'
        net, report = work.result()
        self.op, self.report = Operator(net), report
        self.result.value = rich_html(rollout_view(report))
        if not report.ok:
            raise OperatorError(f"rollout stopped: {report.failure}")
        self.say(f"rollout of {report.testnet}: every stage passed in {report.seconds:.1f} s")


class FarmingPanel(Panel):
    """Balances and farming rate over time: each :meth:`asample` adds one farming report."""

    def __init__(self, op: Operator) -> None:
        self.op = op
        self.chart = widgets.Image(format="png")
        self.table = widgets.HTML()
        self.button = widgets.Button(description="sample now")
        self.button.on_click(lambda _: self.start("sample", lambda: self._sample(5.0)))
        self.samples: list[FarmingSample] = []
        self.report: FarmingReport | None = None
        self._t0: float | None = None
        super().__init__(self.button, self.chart, self.table)

    async def asample(self, *, wait: float = 5.0) -> bool:
        """Ask every node for its farming figures (waiting up to ``wait`` s to settle)."""
        return await self.run("sample", lambda: self._sample(wait))

    async def _sample(self, wait: float) -> None:
        report = await self.op.afarming(wait=wait)
        now = time.monotonic()
        self._t0 = now if self._t0 is None else self._t0
        self.report = report
        self.samples.append(farming_sample(report, now - self._t0))
        self.chart.value = farming_png(self.samples)
        self.table.value = rich_html(farming_view(report))
        self.say(f"sample {len(self.samples)} at {_clock()}")
