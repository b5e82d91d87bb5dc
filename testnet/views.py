"""Pure views: report or snapshot in, Rich renderable out (house style 11).

Nothing here reads files, asks nodes or prints; tests render these to strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from testnet.churn import ChurnOutcome
from testnet.converge import ConvergenceReport
from testnet.local import Report
from testnet.oracle import OracleReport

if TYPE_CHECKING:
    from testnet.api import NodeStatus, PutReport

MAX_ROWS = 20  # problem rows shown before "... and N more"
PREFIX = 12  # hex characters of a name shown


def short(name: bytes | None, chars: int = PREFIX) -> str:
    return "-" if name is None else name.hex()[:chars]


def _ok(flag: bool) -> Text:
    return Text("ok", style="green") if flag else Text("FAILED", style="bold red")


def report_view(report: Report) -> RenderableType:
    """Per-node results of up / down: every row for small testnets, else the failures."""
    failed = len(report.failed)
    title = (
        f"{report.action} {report.name}: {len(report.results) - failed} of "
        f"{len(report.results)} nodes ok in {report.seconds:.1f} s"
    )
    table = Table(title=title, title_justify="left")
    for col in ("node", "result", "seconds", "detail"):
        table.add_column(col, justify="right" if col in ("node", "seconds") else "left")
    shown = report.results if len(report.results) <= MAX_ROWS else report.failed[:MAX_ROWS]
    for r in shown:
        table.add_row(f"n{r.index:03d}", _ok(r.ok), f"{r.seconds:.2f}", r.detail)
    parts: list[RenderableType] = [table if shown else Text(title)]
    if len(shown) < len(report.results):
        more = len(report.results) - len(shown)
        parts.append(Text(f"... {more} more nodes ok" if shown else f"all {more} nodes ok"))
    timing = _timing(report)
    if timing:
        parts.append(Text(timing))
    parts += [Text(note, style="yellow") for note in report.notes]
    return Group(*parts)


def _timing(report: Report) -> str:
    ok = sorted((r.seconds, r.index) for r in report.results if r.ok and r.seconds > 0)
    if not ok:
        return ""
    median = ok[len(ok) // 2][0]
    slowest, index = ok[-1]
    return f"per node: median {median:.2f} s, slowest {slowest:.2f} s (n{index:03d})"


def status_view(name: str, nodes: Sequence[NodeStatus]) -> RenderableType:
    """One row per node: index, name prefix, addr, pid, alive, routing size, chunks."""
    alive = sum(1 for n in nodes if n.alive)
    table = Table(
        title=f"testnet {name}: {alive} of {len(nodes)} nodes alive", title_justify="left"
    )
    regions = len({n.region for n in nodes}) > 1
    columns = ["node", *(["region"] if regions else []), "name", "addr", "pid", "alive"]
    for col in (*columns, "routing", "chunks"):
        numeric = col in ("pid", "routing", "chunks")
        table.add_column(col, justify="right" if numeric else "left", no_wrap=True)
    table.add_column("note")
    for n in nodes:
        addr = "-" if n.addr is None else f"{n.addr[0]}:{n.addr[1]}"
        table.add_row(
            f"n{n.index:03d}",
            *([n.region] if regions else []),
            short(n.name, 8),
            addr,
            "-" if n.pid is None else str(n.pid),
            Text("yes", style="green") if n.alive else Text("no", style="red"),
            "-" if n.routing is None else str(n.routing),
            "-" if n.chunks is None else str(n.chunks),
            n.error or "",
        )
    return table


def put_view(report: PutReport) -> RenderableType:
    rate = report.bytes / report.seconds / 1e6 if report.seconds > 0 else 0.0
    lines = [
        f"stored {report.stored} of {report.asked} chunks ({report.bytes} bytes) through "
        f"{report.gateway} in {report.seconds:.1f} s ({rate:.2f} MB/s); recorded in the ledger"
    ]
    lines += [f"  failed: {reason}" for reason in report.failures[:MAX_ROWS]]
    style = "green" if not report.failures else "yellow"
    return Text("\n".join(lines), style=style)


def oracle_view(report: OracleReport) -> RenderableType:
    """Summary counts, problem chunks, sample fetches and unreachable nodes."""
    counts = report.counts
    summary = Table(
        title=f"integrity of {report.testnet}: {len(report.verdicts)} chunks over "
        f"{report.live} live nodes ({report.seconds:.1f} s)",
        title_justify="left",
    )
    for status in ("ok", "misplaced", "under", "lost"):
        summary.add_column(status, justify="right")
    summary.add_column("surplus copies", justify="right")
    summary.add_column("fetched", justify="right")
    fetched_ok = len(report.fetches) - len(report.failed_fetches)
    summary.add_row(
        Text(str(counts["ok"]), style="green"),
        Text(str(counts["misplaced"]), style="yellow" if counts["misplaced"] else ""),
        Text(str(counts["under"]), style="yellow" if counts["under"] else ""),
        Text(str(counts["lost"]), style="bold red" if counts["lost"] else ""),
        str(report.surplus),
        f"{fetched_ok}/{len(report.fetches)}",
    )
    parts: list[RenderableType] = [summary]
    problems = [v for v in report.verdicts if v.status != "ok"]
    if problems:
        table = Table(title="chunks needing attention", title_justify="left")
        for col in ("chunk", "status", "holders", "missing ideal holders"):
            table.add_column(col)
        for v in problems[:MAX_ROWS]:
            missing = " ".join(short(n) for n in v.missing) or "-"
            table.add_row(short(v.name), v.status, str(len(v.holders)), missing)
        parts.append(_with_more(table, len(problems) - MAX_ROWS))
    for f in report.failed_fetches[:MAX_ROWS]:
        parts.append(Text(f"fetch {short(f.name)} FAILED: {f.detail}", style="red"))
    for index, reason in report.unreachable:
        parts.append(Text(f"n{index:03d} did not answer /chunks: {reason}", style="yellow"))
    parts.append(_verdict_line(report))
    return Group(*parts)


def _verdict_line(report: OracleReport) -> Text:
    if report.data_lost:
        return Text("DATA LOST: acknowledged chunks are gone or unreadable", style="bold red")
    if report.clean:
        return Text("clean: every chunk is on its ideal holders and reads back", style="green")
    note = "" if report.complete else " (incomplete: some nodes did not answer)"
    return Text(f"no data lost; replication still settling{note}", style="yellow")


def convergence_view(report: ConvergenceReport) -> RenderableType:
    ok = len(report.nodes) - len(report.lagging)
    head = (
        f"routing: {ok} of {len(report.nodes)} nodes know their {report.want} nearest peers"
        f" ({report.seconds:.1f} s)"
    )
    lines = [Text(head, style="green" if report.converged else "yellow")]
    for n in report.lagging[:MAX_ROWS]:
        why = n.error or f"missing {len(n.missing)}: {' '.join(short(m) for m in n.missing)}"
        lines.append(Text(f"  n{n.index:03d} ({n.table_size} contacts) {why}"))
    return Group(*lines)


def churn_view(outcomes: Sequence[ChurnOutcome]) -> RenderableType:
    failed = sum(1 for o in outcomes if not o.ok)
    table = Table(title=f"churn: {len(outcomes)} actions, {failed} failed", title_justify="left")
    for col in ("at s", "action", "node", "result", "late s", "detail"):
        table.add_column(col, justify="right" if col in ("at s", "late s", "node") else "left")
    for o in outcomes:
        table.add_row(
            f"{o.action.at:.1f}",
            o.action.action,
            f"n{o.action.index:03d}",
            _ok(o.ok),
            f"{o.late_s:.1f}",
            o.detail,
        )
    return table


def _with_more(table: Table, more: int) -> RenderableType:
    if more <= 0:
        return table
    return Group(table, Text(f"... and {more} more"))
