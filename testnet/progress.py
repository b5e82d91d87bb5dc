"""A Rich progress bar for long multi-node commands, or nothing (library use, tests)."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ProgressCb = Callable[[int, str], None]  # (node or item index, outcome) after each settles


def no_progress(index: int, outcome: str) -> None:
    """A progress callback that shows nothing."""


class progress_bar:
    """Context manager: a Rich progress bar on ``console`` (or nothing) and its callback."""

    def __init__(
        self, console: Console | None, total: int, label: str, *, item: str = "n{:03d}"
    ) -> None:
        self._item = item
        self._bar: Progress | None = None
        if console is not None:
            columns = (
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[last]}"),
                TimeElapsedColumn(),
            )
            self._bar = Progress(*columns, console=console)
            self._task = self._bar.add_task(label, total=total, last="")

    def __enter__(self) -> ProgressCb:
        if self._bar is None:
            return no_progress
        self._bar.start()
        bar, task, item = self._bar, self._task, self._item

        def advance(index: int, outcome: str) -> None:
            bar.update(task, advance=1, last=f"{item.format(index)} {outcome}")

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
