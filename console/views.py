"""Pure views of the operator console: snapshot or report in, Rich renderable out.

Nothing here asks a node, reads a file or prints (house style 11): the dashboard
(console/dashboard.py) and the notebooks hand these functions what the operator API
(console/operator.py) returned, and tests render them to strings with
``Console(record=True, width=...)``.  An error is passed in as a string and shown in red
where the view would have been, so one silent node never blanks the screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from console.debug import (
    DOWN,
    PAUSED,
    STARTING,
    UNREACHABLE,
    UP,
    ChunkLocation,
    ConnRow,
    Integrity,
    LogLine,
    LookupTrace,
    NodeDetail,
    RoutingAnalysis,
    Snapshot,
)
from console.faults import PROCESS_KINDS, Fault, FaultResult, HealReport
from testnet.oracle import OracleReport

if TYPE_CHECKING:
    from testnet.soak import LiveSoak

PREFIX = 12  # hex characters of a name shown
STATUS_STYLE = {
    UP: "green",
    PAUSED: "yellow",
    DOWN: "bold red",
    STARTING: "cyan",
    UNREACHABLE: "magenta",
}
KEYS = (
    ("k", "kill"),
    ("r", "restart"),
    ("p", "pause"),
    ("u", "resume"),
    ("c", "churn"),
    ("h", "heal all"),
    ("i", "integrity check"),
    ("d", "debug a node"),
    ("q", "quit"),
)
DEBUG_KEYS = (("b", "back"), ("l", "log level"), ("q", "quit"))
MAX_NODE_ROWS = 40  # node rows shown before the healthy ones are summarised


def clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S") if at else "--:--:--"


def _num(value: int | float | None, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def _node(index: int | None) -> str:
    return "?" if index is None else f"n{index:03d}"


def _short(name: str | None) -> str:
    return "-" if not name else name[:PREFIX]


def error_view(text: str) -> Text:
    return Text(text, style="bold red")


# -- the dashboard ------------------------------------------------------------------------------


def header_view(snap: Snapshot | None, *, name: str, problem: str | None = None) -> Panel:
    """Testnet, nodes up per region, churn rate, faults in force, snapshot age."""
    if snap is None:
        body = Text(problem or "asking the nodes ...", style="bold red" if problem else "")
        return Panel(body, title=f"troon console: {name}", title_align="left")
    regions = "  ".join(
        f"{r.name} {r.up}/{r.total}" + (f" ({r.paused} paused)" if r.paused else "")
        for r in snap.regions.values()
    )
    down, paused, rules = snap.in_force
    line = Text()
    line.append(
        f"{snap.up}/{snap.total} up", style="bold green" if snap.up == snap.total else "bold yellow"
    )
    line.append(f"   regions: {regions}")
    line.append(f"   churn {snap.churn_per_min:.1f}/min")
    forced = [f"{down} killed" if down else "", f"{paused} paused" if paused else ""]
    forced.append(f"{rules} link rules" if rules else "")
    text = ", ".join(f for f in forced if f)
    line.append(f"   faults in force: {text or 'none'}", style="yellow" if text else "")
    parts: list[RenderableType] = [line]
    age = Text(
        f"snapshot at {clock(snap.at)} in {snap.seconds:.2f} s ({snap.backend})", style="dim"
    )
    parts.append(age)
    if problem:
        parts.append(error_view(problem))
    return Panel(Group(*parts), title=f"troon console: {snap.testnet}", title_align="left")


def nodes_view(snap: Snapshot, *, max_rows: int = MAX_NODE_ROWS) -> RenderableType:
    """One row per node: status, region, name, chunks, peers, RTT, coins; in a big testnet
    the nodes that are not up come first and the rest are summarised."""
    table = Table(title="nodes", title_justify="left", expand=False, pad_edge=False)
    for col in ("node", "status", "region", "name", "chunks", "peers", "rtt ms", "coins", "note"):
        numeric = col in ("chunks", "peers", "rtt ms", "coins")
        table.add_column(col, justify="right" if numeric else "left", no_wrap=col != "note")
    rows = list(snap.nodes)
    if len(rows) > max_rows:
        rows.sort(key=lambda n: (n.status == UP, n.index))
        rows = sorted(rows[:max_rows], key=lambda n: n.index)
    for n in rows:
        table.add_row(
            _node(n.index),
            Text(n.status, style=STATUS_STYLE.get(n.status, "")),
            n.region,
            _short(n.name),
            _num(n.chunks),
            _num(n.peers),
            _num(n.rtt_ms, "{:.1f}"),
            _num(n.coins),
            n.error or "",
        )
    if len(rows) < len(snap.nodes):
        hidden = len(snap.nodes) - len(rows)
        return Group(table, Text(f"... and {hidden} more nodes up", style="dim"))
    return table


def integrity_view(integrity: Integrity, check: OracleReport | None = None) -> Panel:
    """Ledger chunks by live copy count, how many are retrievable, the last full check."""
    table = Table.grid(padding=(0, 1))
    table.add_column(justify="right")
    table.add_column()
    table.add_column(justify="right")
    top = max(integrity.copies.values(), default=0) or 1
    for copies, count in sorted(integrity.copies.items(), reverse=True):
        label = f"{copies}+" if copies == integrity.rf else str(copies)
        style = "green" if copies >= integrity.rf else "yellow" if copies else "bold red"
        bar = "#" * round(20 * count / top) if count else ""
        table.add_row(f"{label} copies", Text(bar, style=style), str(count))
    lines: list[RenderableType] = [table]
    retrievable = f"retrievable: {integrity.retrievable} of {integrity.chunks} chunks"
    ok = integrity.retrievable == integrity.chunks
    lines.append(Text(retrievable, style="green" if ok else "bold red"))
    if not integrity.complete:
        lines.append(Text("some running nodes did not answer: counts are lower bounds", "yellow"))
    if check is not None:
        counts = ", ".join(f"{k} {v}" for k, v in check.counts.items() if v)
        fetched = sum(1 for f in check.fetches if f.ok)
        verdict = "clean" if check.clean else "DATA LOST" if check.data_lost else "not clean"
        style = "green" if check.clean else "bold red" if check.data_lost else "yellow"
        lines.append(
            Text(
                f"check {verdict}: {counts or 'no chunks'}; {fetched}/{len(check.fetches)} "
                f"reads verified ({check.seconds:.1f} s)",
                style=style,
            )
        )
    return Panel(Group(*lines), title="integrity", title_align="left")


def soak_view(soak: LiveSoak) -> Panel:
    """The checker's verdicts on the newest soak run, while it runs and after."""
    v = soak.view
    state = "running" if soak.running else "finished"
    lines: list[RenderableType] = [Text(f"{state}, {v.seconds:.0f} s: {soak.folder.name}")]
    unreadable = len(v.unreadable_now)
    lines.append(
        Text(
            f"files: {v.acked} of {v.attempted_puts} puts acknowledged, {unreadable} unreadable"
            f" now, {v.failed_reads} failed reads so far",
            style="yellow" if unreadable else "",
        )
    )
    if v.lost is not None:
        lines.append(
            Text(
                f"final reads: {v.lost} acknowledged files lost", "bold red" if v.lost else "green"
            )
        )
    lines.append(
        Text(
            f"records backwards: {len(v.record_violations)}; transfers {v.transfers_ok} ok, "
            f"{v.transfers_failed} refused; double spends: {len(v.double_spends)}",
            style="bold red" if v.record_violations or v.double_spends else "",
        )
    )
    for problem in [*v.record_violations, *v.double_spends][:3]:
        lines.append(Text(f"  {problem}", style="red"))
    verdict = "VIOLATIONS" if v.violations else "nothing lost or broken so far"
    lines.append(Text(verdict, style="bold red" if v.violations else "green"))
    return Panel(Group(*lines), title="soak checker", title_align="left")


def fault_line(fault: Fault) -> Text:
    """One fault log entry as an event line."""
    style = "" if fault.ok else "red"
    via = f" [{fault.via}]" if fault.via else ""
    nodes = " ".join(f"n{i:03d}" for i in fault.targets[:4]) if fault.kind in PROCESS_KINDS else ""
    what = f"{fault.kind}{via} {nodes}".strip()
    return Text(f"{clock(fault.at)} #{fault.id} {what}: {fault.message}", style=style)


def events_view(events: Sequence[Text | str], *, rows: int = 12) -> Panel:
    """The newest ``rows`` events (faults, churn, repairs, results), oldest first."""
    shown = [e if isinstance(e, Text) else Text(e) for e in list(events)[-rows:]]
    body: RenderableType = Group(*shown) if shown else Text("no events yet", style="dim")
    return Panel(body, title="events", title_align="left")


def keys_view(keys: Sequence[tuple[str, str]] = KEYS, prompt: str | None = None) -> Text:
    if prompt is not None:
        return Text(f"{prompt}_   (Enter to do it, Esc to cancel)", style="bold cyan")
    line = Text()
    for key, what in keys:
        line.append(f" {key} ", style="reverse")
        line.append(f" {what}  ")
    return line


def status_view(status: str | None, *, ok: bool = True, busy: str | None = None) -> Text:
    """The last action's result (green, or red when it failed), or what is running."""
    if busy:
        return Text(f"... {busy}", style="cyan")
    return Text(status or "", style="bold green" if ok else "bold red")


def dashboard_view(
    snap: Snapshot | None,
    *,
    name: str,
    events: Sequence[Text | str] = (),
    check: OracleReport | None = None,
    status: str | None = None,
    ok: bool = True,
    busy: str | None = None,
    prompt: str | None = None,
    problem: str | None = None,
    max_rows: int = MAX_NODE_ROWS,
    soak: LiveSoak | None = None,
) -> RenderableType:
    """The main screen: header, node table beside integrity (and the soak checker, when a
    soak ran on this testnet) and events, status, keys."""
    parts: list[RenderableType] = [header_view(snap, name=name, problem=problem)]
    if snap is not None:
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=3)
        grid.add_column(ratio=2)
        panels = [integrity_view(snap.integrity, check)]
        if soak is not None:
            panels.append(soak_view(soak))
        side = Group(*panels, events_view(events))
        grid.add_row(nodes_view(snap, max_rows=max_rows), side)
        parts.append(grid)
    parts += [status_view(status, ok=ok, busy=busy), keys_view(prompt=prompt)]
    return Group(*parts)


def debug_screen(
    index: int,
    *,
    name: str,
    snap: Snapshot | None,
    routing: RoutingAnalysis | str | None,
    connections: Sequence[ConnRow] | str | None,
    logs: Sequence[LogLine] | str | None,
    status: str | None = None,
    ok: bool = True,
    busy: str | None = None,
    prompt: str | None = None,
    problem: str | None = None,
    log_rows: int = 12,
) -> RenderableType:
    """The debug screen of node ``index``: routing vs ideal, connections, live log."""

    def part(value: object, render: object, what: str) -> RenderableType:
        if value is None:
            return Text(f"asking n{index:03d} for its {what} ...", style="dim")
        if isinstance(value, str):
            return error_view(f"{what}: {value}")
        return render  # type: ignore[return-value]

    parts: list[RenderableType] = [header_view(snap, name=name, problem=problem)]
    parts.append(Text(f"debugging n{index:03d}", style="bold"))
    parts.append(
        part(
            routing,
            routing_view(routing) if isinstance(routing, RoutingAnalysis) else None,
            "routing table",
        )
    )
    conns = connections_view(connections) if isinstance(connections, list) else None
    parts.append(part(connections, conns, "connections"))
    lines = logs_view(logs[-log_rows:]) if isinstance(logs, list) else None
    parts.append(part(logs, lines, "log"))
    parts += [status_view(status, ok=ok, busy=busy), keys_view(DEBUG_KEYS, prompt=prompt)]
    return Group(*parts)


# -- reports (also used by notebooks) -----------------------------------------------------------


def fault_view(result: FaultResult) -> Text:
    return Text(result.message, style="green" if result.ok else "bold red")


def heal_view(report: HealReport) -> RenderableType:
    table = Table()
    for col in ("fault", "kind", "target", "result", "detail"):
        table.add_column(col)
    for item in report.items:
        ok = Text("gone", style="green") if item.ok else Text("STILL THERE", style="bold red")
        table.add_row(str(item.fault), item.kind, item.target, ok, item.detail)
    notes = [Text(n, style="yellow") for n in report.notes]
    head = Text(report.message, style="green" if report.ok else "bold red")
    return Group(head, table, *notes) if report.items else Group(head, *notes)


def routing_view(analysis: RoutingAnalysis) -> RenderableType:
    """The table by XOR distance, each entry judged; then what is missing."""
    style = "green" if analysis.health >= 0.99 else "yellow" if analysis.health >= 0.5 else "red"
    title = (
        f"routing of n{analysis.index:03d}: {analysis.size} entries, health "
        f"{analysis.health:.2f}, {len(analysis.missing)} of its {analysis.want} nearest "
        f"live peers missing, {len(analysis.stale)} stale"
    )
    table = Table()
    for col in ("peer", "name", "bucket", "log2 dist", "state", "ideal", "address"):
        table.add_column(col, justify="right" if col in ("bucket", "log2 dist") else "left")
    for e in analysis.entries:
        state_style = {"ok": "green", "paused": "yellow"}.get(e.state, "bold red")
        table.add_row(
            _node(e.index),
            _short(e.name),
            str(e.bucket),
            str(e.distance_bits),
            Text(e.state, style=state_style),
            "*" if e.ideal else "",
            e.address,
        )
    parts: list[RenderableType] = [Text(title, style=style), table]
    if analysis.missing:
        missing = ", ".join(f"{_node(i)} {_short(n)}" for n, i in analysis.missing)
        parts.append(Text(f"missing nearest peers: {missing}", style="bold red"))
    return Group(*parts)


def trace_view(trace: LookupTrace) -> RenderableType:
    """Hop by hop: who was asked, what they answered, how long it took."""
    found = "found the close group" if trace.found_group else "did NOT find the close group"
    title = (
        f"lookup from n{trace.index:03d} for {_short(trace.target)}: {trace.rounds} rounds, "
        f"{trace.requests} requests, {trace.failures} failed, {trace.ms:.0f} ms; {found}"
    )
    table = Table()
    for col in ("hop", "peer", "name", "log2 dist", "ms", "answer"):
        table.add_column(col, justify="right" if col in ("hop", "log2 dist", "ms") else "left")
    for h in trace.hops:
        answer = Text(h.error, style="bold red") if h.error else Text(f"{h.returned} contacts")
        table.add_row(
            _num(h.hop),
            _node(h.index),
            _short(h.peer),
            str(h.distance_bits),
            f"{h.ms:.1f}",
            answer,
        )
    got = ", ".join(_node(i) for _, i in trace.closest[: len(trace.ideal)])
    ideal = ", ".join(_node(i) for _, i in trace.ideal)
    style = "green" if trace.found_group else "bold red"
    found_line = Text(f"found: {got or '-'}   ideal: {ideal or '-'}", style=style)
    return Group(Text(title), table, found_line)


def location_view(loc: ChunkLocation) -> RenderableType:
    style = {"ok": "green", "misplaced": "yellow"}.get(loc.status, "bold red")
    ledger = "in the ledger" if loc.in_ledger else "not in this testnet's ledger"
    title = Text(
        f"chunk {_short(loc.name)}: {loc.status}, {len(loc.holders)} copies "
        f"(ideal {loc.rf}); {ledger}",
        style=style,
    )
    table = Table()
    for col in ("node", "name", "region", "ideal", "copy"):
        table.add_column(col)
    for c in loc.copies:
        copy_style = {"ok": "green", "surplus": "cyan", "missing": "bold red"}.get(
            c.state, "yellow"
        )
        table.add_row(
            _node(c.index),
            _short(c.name),
            c.region,
            "*" if c.ideal else "",
            Text(c.state, copy_style),
        )
    return Group(title, table)


def connections_view(rows: Sequence[ConnRow]) -> RenderableType:
    table = Table(title=f"connections ({len(rows)})", title_justify="left")
    cols = ("peer", "state", "srtt ms", "min ms", "loss", "retx", "cwnd", "in flight", "impairment")
    for col in cols:
        numeric = col not in ("peer", "state", "impairment")
        table.add_column(col, justify="right" if numeric else "left")
    for r in rows:
        table.add_row(
            f"{_node(r.index)} {r.region or ''}".strip(),
            r.state,
            f"{r.srtt_ms:.1f}",
            _num(r.min_rtt_ms, "{:.1f}"),
            f"{r.loss * 100:.1f}%",
            str(r.retransmits),
            str(r.cwnd),
            str(r.bytes_in_flight),
            Text(r.impairment or "", style="yellow"),
        )
    return table


def detail_view(d: NodeDetail) -> RenderableType:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rep, store = d.replication, d.storage
    table.add_row("node", f"n{d.index:03d} {d.region} {_short(d.name)} at {d.addr}")
    table.add_row("runs", f"version {d.version}, up {d.uptime_s:.0f} s, log level {d.log_level}")
    table.add_row("routing", f"{d.peers} contacts")
    table.add_row(
        "replication",
        f"pending {rep.get('pending', 0)}, dirty {rep.get('dirty', 0)}, queries in flight "
        f"{rep.get('queries_in_flight', 0)}, pushes in flight {rep.get('pushes_in_flight', 0)}, "
        f"pushed {rep.get('pushes_ok', 0)} ok / {rep.get('pushes_failed', 0)} failed",
    )
    used, cap = store.get("used", 0), store.get("capacity", 0) or 1
    table.add_row(
        "storage", f"{store.get('chunks', 0)} chunks, {used:,} of {cap:,} bytes ({used / cap:.2%})"
    )
    f = d.farming
    table.add_row(
        "farming",
        f"rate {float(f.get('rate', 0.0)):.6f}, attempts {f.get('attempts', 0)}, wins "
        f"{f.get('wins', 0)}, coins earned {f.get('coins_earned', 0)}",
    )
    return Panel(table, title=f"n{d.index:03d}", title_align="left")


def logs_view(lines: Sequence[LogLine]) -> RenderableType:
    if not lines:
        return Text("no log records (at this level)", style="dim")
    styles = {"DEBUG": "dim", "WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold red"}
    out = []
    for line in lines:
        text = Text(f"{line.seq:>6} {clock(line.at)} ", style="dim")
        text.append(f"{line.level:<7} ", style=styles.get(line.level, ""))
        text.append(f"{line.logger}: {line.message}")
        out.append(text)
    return Group(*out)
