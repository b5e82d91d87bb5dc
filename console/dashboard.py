"""``troon console [TESTNET]``: the live operator dashboard (an adapter).

A :class:`Dashboard` holds what the screen shows (the last snapshot, events, the running
action, a half-typed prompt, the node being debugged) and turns keys into operator calls
(console/operator.py); console/views.py draws it.  The terminal loop puts stdin in cbreak
mode and reads keys through the event loop (``add_reader``), so typing never blocks the
refresh and a refresh never blocks typing; one action runs at a time, in the background.

Keys: ``k``/``r``/``p``/``u`` + node index(es) + Enter kill / restart / pause / resume;
``c`` + count churns; ``h`` heals every logged fault; ``i`` runs the integrity check;
``d`` + index opens the debug screen of a node (routing vs ideal, connections, live log;
``l`` there cycles its log level, ``b`` goes back); ``q`` quits.  ``--once`` prints one
frame and exits, for scripts.

Invariants: no key, action or node failure ends the dashboard or prints a traceback; every
failure becomes a red line on the screen, and a refresh that fails keeps the last snapshot
on screen with the reason; the terminal is restored on every way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from console.debug import ConnRow, LogLine, RoutingAnalysis, Snapshot, snapshot_events
from console.faults import FaultResult, OperatorError
from console.operator import Operator
from console.views import clock, dashboard_view, debug_screen, fault_line
from testnet.errors import TestnetError
from testnet.oracle import OracleReport
from testnet.soak import LiveSoak
from testnet.spec import DEFAULT_NAME

REFRESH = 2.0  # seconds between snapshots
SNAPSHOT_TIMEOUT = 20.0
MAX_INPUT = 40  # characters of a prompt
LOG_ROWS = 12
LEVELS = ("INFO", "DEBUG", "WARNING")  # what ``l`` cycles through
PROMPTS = {
    "k": ("kill", "kill node(s): "),
    "r": ("restart", "restart node(s): "),
    "p": ("pause", "pause node(s): "),
    "u": ("resume", "resume node(s): "),
    "c": ("churn", "churn how many nodes [1]: "),
    "d": ("debug", "debug node: "),
}
ENTER, ESC, BACKSPACE = ("\r", "\n"), "\x1b", ("\x7f", "\b")
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z~]|O[A-Za-z])")


def split_keys(data: str) -> list[str]:
    """Single keys from what the terminal sent (arrow and function keys are dropped)."""
    return list(_ESCAPES.sub("", data))


def parse_indices(text: str) -> list[int]:
    """``"3"``, ``"3 5"`` or ``"3,5"`` -> node indices; ValueError says what to type."""
    parts = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    if not parts:
        raise ValueError("type a node index, e.g. 3 (or 3,5), then Enter")
    if any(not p.isdecimal() for p in parts):
        bad = next(p for p in parts if not p.isdecimal())
        raise ValueError(f"{bad!r} is not a node index; type numbers like 3 or 3,5")
    return [int(p) for p in parts]


@dataclass
class Prompt:
    action: str
    label: str
    text: str = ""


class Dashboard:
    """The console's state and its key bindings (drawn by console/views.py)."""

    def __init__(self, op: Operator, *, interval: float = REFRESH) -> None:
        self.op = op
        self.interval = interval
        self.snap: Snapshot | None = None
        self.problem: str | None = None  # why the last refresh failed
        self.events: deque[Text] = deque(maxlen=200)
        self.status: str | None = "connected; keys below"
        self.ok = True
        self.busy: str | None = None
        self.prompt: Prompt | None = None
        self.check: OracleReport | None = None
        self.soak: LiveSoak | None = None  # the newest soak run's checker view
        self.debug: int | None = None
        self.routing: RoutingAnalysis | str | None = None
        self.connections: list[ConnRow] | str | None = None
        self.logs: list[LogLine] | str | None = None
        self.done = asyncio.Event()
        self.redraw: Callable[[], None] = lambda: None
        self._wake = asyncio.Event()
        self._action: asyncio.Task[None] | None = None
        self._last_fault = -1

    # -- drawing --------------------------------------------------------------------------------

    def render(self, *, max_rows: int = 40) -> RenderableType:
        prompt = None if self.prompt is None else self.prompt.label + self.prompt.text
        common: dict[str, Any] = {
            "name": self.op.name,
            "status": self.status,
            "ok": self.ok,
            "busy": self.busy,
            "prompt": prompt,
            "problem": self.problem,
        }
        if self.debug is not None:
            return debug_screen(
                self.debug,
                snap=self.snap,
                routing=self.routing,
                connections=self.connections,
                logs=self.logs,
                log_rows=LOG_ROWS,
                **common,
            )
        return dashboard_view(
            self.snap,
            events=list(self.events),
            check=self.check,
            soak=self.soak,
            max_rows=max_rows,
            **common,
        )

    def _say(self, text: str, *, ok: bool = True) -> None:
        self.status, self.ok = text, ok

    def _event(self, text: str, style: str = "") -> None:
        self.events.append(Text(f"{clock(time.time())} {text}", style=style))

    # -- refreshing -----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Take a snapshot (and the debug views); a failure keeps the last one on screen."""
        try:
            async with asyncio.timeout(SNAPSHOT_TIMEOUT):
                snap = await self.op.asnapshot()
        except TimeoutError:
            self.problem = f"the nodes did not answer within {SNAPSHOT_TIMEOUT:g} s; last snapshot"
        except TestnetError as exc:
            self.problem = f"{exc}"
        except Exception as exc:  # the dashboard keeps running whatever a refresh meets
            self.problem = f"cannot read the testnet: {type(exc).__name__}: {exc}"
        else:
            self._absorb(snap)
        try:
            self.soak = await asyncio.to_thread(self.op.soak)
        except TestnetError as exc:
            self.problem = f"soak checker: {exc}"
        if self.debug is not None:
            await self._refresh_debug(self.debug)

    def _absorb(self, snap: Snapshot) -> None:
        if self._last_fault < 0:
            self._last_fault = snap.events[-1].id - 4 if snap.events else 0
        for fault in snap.events:
            if fault.id > self._last_fault:
                self.events.append(fault_line(fault))
        self._last_fault = max([self._last_fault, *(f.id for f in snap.events)])
        for text in snapshot_events(self.snap, snap):
            style = "green" if text.startswith("repaired") or text.endswith("-> up") else "yellow"
            self._event(text, style)
        self.snap, self.problem = snap, None

    async def _refresh_debug(self, index: int) -> None:
        answers = await asyncio.gather(
            self.op.arouting(index),
            self.op.aconnections(index),
            self.op.alogs(index, limit=50),
            return_exceptions=True,
        )
        if self.debug != index:
            return  # the operator left this screen meanwhile
        got: list[Any] = [_explain(a) if isinstance(a, BaseException) else a for a in answers]
        self.routing, self.connections, self.logs = got

    async def refresher(self) -> None:
        while not self.done.is_set():
            await self.refresh()
            self.redraw()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()

    # -- keys -----------------------------------------------------------------------------------

    def on_key(self, key: str) -> None:
        """Handle one key press (dispatch table: PROMPTS, then the single-key actions)."""
        if self.prompt is not None:
            self._prompt_key(key)
        elif key == "q":
            self.done.set()
        elif self.debug is not None and key in ("b", ESC):
            self.debug = None
            self.routing = self.connections = self.logs = None
            self._say("back to the overview")
        elif self.debug is not None and key == "l":
            self._start("changing the log level", self._cycle_level(self.debug))
        elif key in PROMPTS:
            self.prompt = Prompt(*PROMPTS[key])
        elif key == "h":
            self._start("healing every logged fault", self._heal())
        elif key == "i":
            self._start("running the integrity check", self._check())
        elif key.strip():
            self._say(f"no action on key {key!r}; the keys are listed at the bottom", ok=False)

    def _prompt_key(self, key: str) -> None:
        assert self.prompt is not None
        if key in ENTER:
            prompt, self.prompt = self.prompt, None
            self._submit(prompt.action, prompt.text)
        elif key == ESC:
            self.prompt = None
            self._say("cancelled")
        elif key in BACKSPACE:
            self.prompt.text = self.prompt.text[:-1]
        elif key.isprintable() and len(self.prompt.text) < MAX_INPUT:
            self.prompt.text += key

    def _submit(self, action: str, text: str) -> None:
        try:
            if action == "churn":
                count = int(text.strip() or "1") if (text.strip() or "1").isdecimal() else 0
                if count < 1:
                    raise ValueError(f"{text!r} is not a count; type a number like 2")
                self._start(f"churning {count} nodes", self._fault(self.op.achurn(count)))
                return
            indices = parse_indices(text)
        except ValueError as exc:
            self._say(str(exc), ok=False)
            return
        if action == "debug":
            self._open_debug(indices)
            return
        call: Callable[..., Awaitable[FaultResult]] = getattr(self.op, f"a{action}")
        nodes = ", ".join(f"n{i:03d}" for i in indices)
        self._start(f"{action} {nodes}", self._fault(call(*indices)))

    def _open_debug(self, indices: list[int]) -> None:
        known = [n.index for n in self.snap.nodes] if self.snap else []
        if len(indices) != 1:
            self._say("debug one node at a time: type one index", ok=False)
        elif known and indices[0] not in known:
            self._say(f"no node {indices[0]} (nodes {min(known)}..{max(known)})", ok=False)
        else:
            self.debug = indices[0]
            self.routing = self.connections = self.logs = None
            self._say(f"debugging n{indices[0]:03d}; b goes back")
            self._wake.set()

    # -- actions --------------------------------------------------------------------------------

    def _start(self, label: str, work: Awaitable[tuple[str, bool]]) -> None:
        if self._action is not None and not self._action.done():
            if asyncio.iscoroutine(work):
                work.close()
            self._say(f"busy: {self.busy}; wait for it to finish", ok=False)
            return
        self.busy = label
        self._action = asyncio.get_running_loop().create_task(self._guarded(work))

    async def _guarded(self, work: Awaitable[tuple[str, bool]]) -> None:
        try:
            text, ok = await work
        except Exception as exc:  # an action never takes the dashboard down
            text, ok = _explain(exc), False
        self.busy = None
        self._say(text, ok=ok)
        if not ok:
            self._event(text, "red")
        self._wake.set()
        self.redraw()

    async def _fault(self, call: Awaitable[FaultResult]) -> tuple[str, bool]:
        result = await call
        return result.message, result.ok

    async def _heal(self) -> tuple[str, bool]:
        report = await self.op.aheal_all()
        for note in report.notes:
            self._event(note, "yellow")
        return report.message, report.ok

    async def _check(self) -> tuple[str, bool]:
        report = await self.op.acheck(sample=8)
        self.check = report
        counts = ", ".join(f"{k} {v}" for k, v in report.counts.items() if v) or "no chunks"
        verdict = "clean" if report.clean else "NOT clean"
        text = f"integrity check {verdict}: {counts}"
        self._event(text, "green" if report.clean else "red")
        return text, report.clean

    async def _cycle_level(self, index: int) -> tuple[str, bool]:
        detail = await self.op.anode_detail(index)
        now = detail.log_level if detail.log_level in LEVELS else LEVELS[-1]
        wanted = LEVELS[(LEVELS.index(now) + 1) % len(LEVELS)]
        got = await self.op.aset_log_level(index, wanted)
        return f"n{index:03d} logs at {got} now", True


def _explain(exc: BaseException) -> str:
    if isinstance(exc, TestnetError):
        return str(exc)
    return f"error: {type(exc).__name__}: {exc}"


# -- the terminal ---------------------------------------------------------------------------------


async def run_live(dash: Dashboard, console: Console) -> None:
    """Draw ``dash`` full-screen and feed it keys until ``q`` (stdin must be a tty)."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()
    try:
        tty.setcbreak(fd)
        with Live(dash.render(), console=console, screen=True, auto_refresh=False) as live:

            def redraw() -> None:
                live.update(dash.render(max_rows=max(5, console.height - 20)), refresh=True)

            def on_input() -> None:
                data = os.read(fd, 64).decode(errors="ignore")
                if not data:
                    dash.done.set()  # stdin closed
                for key in split_keys(data):
                    dash.on_key(key)
                redraw()

            dash.redraw = redraw
            loop.add_reader(fd, on_input)
            refresher = loop.create_task(dash.refresher())
            try:
                await dash.done.wait()
            finally:
                loop.remove_reader(fd)
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def print_once(op: Operator, console: Console) -> int:
    """One snapshot, drawn once: 0 if the nodes could be read, else 2."""
    dash = Dashboard(op)
    await dash.refresh()
    dash.status = None
    console.print(dash.render(max_rows=1_000_000))
    return 0 if dash.snap is not None else 2


# -- the command ----------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``troon console`` to the top-level parser."""
    from testnet.cli import command_guard

    cmd = sub.add_parser(
        "console", help="live dashboard of a testnet: status, integrity, faults, debugging"
    )
    cmd.add_argument("name", nargs="?", default=DEFAULT_NAME, help="testnet name")
    cmd.add_argument("--once", action="store_true", help="print one frame and exit")
    cmd.add_argument(
        "--interval", type=float, default=REFRESH, help="seconds between refreshes (default 2)"
    )
    cmd.set_defaults(func=command_guard()(cmd_console))


def cmd_console(args: argparse.Namespace) -> int:
    if not 0.2 <= args.interval <= 3600:
        raise OperatorError(f"--interval must be 0.2..3600 seconds, got {args.interval:g}")
    op = Operator.attach(args.name)
    console = Console()
    if args.once:
        return asyncio.run(print_once(op, console))
    if not sys.stdin.isatty():
        raise OperatorError(
            "the live console reads keys from a terminal and stdin is not one; "
            "use --once to print one frame"
        )
    asyncio.run(run_live(Dashboard(op, interval=args.interval), console))
    return 0
