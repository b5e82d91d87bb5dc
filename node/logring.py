"""The node's recent log records, kept in memory for the admin API (``GET /logs``).

:class:`LogRing` is a :class:`logging.Handler` that keeps the last ``capacity`` records as
plain dicts (``seq``, ``at``, ``level``, ``logger``, ``message``), numbered by a sequence
that starts at 1 and never repeats within a process, so a reader polls with "everything
after ``seq``" and learns how many records it missed when the ring has moved past it.

Invariants: memory is bounded (``capacity`` records of at most :data:`MAX_MESSAGE`
characters each); :func:`install` adds at most one ring to the root logger per process and
returns it (several in-process nodes share it); a record that cannot be formatted goes to
``Handler.handleError``, never up into the code that logged it.  The ring sees what passes
the loggers' levels, so :func:`set_level` changes what it (and the node's log file) gets.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

DEFAULT_CAPACITY = 2000
MAX_MESSAGE = 4000  # characters kept of one record (a traceback is cut, not dropped)
MAX_SELECT = 5000  # records one select() may return
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

_TRACEBACKS = logging.Formatter()


def level_number(name: str) -> int:
    """The number of level ``name`` (case-insensitive); ValueError names the known ones."""
    number = LEVELS.get(name.upper()) if isinstance(name, str) else None
    if number is None:
        raise ValueError(f"unknown log level {name!r}; use one of {', '.join(LEVELS)}")
    return number


class LogRing(logging.Handler):
    """The last ``capacity`` log records as dicts, each with a sequence number."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("a log ring needs room for at least one record")
        super().__init__(logging.NOTSET)
        self._records: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._seq = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[0] is not None:
                message += "\n" + _TRACEBACKS.formatException(record.exc_info)
        except Exception:
            self.handleError(record)
            return
        self._seq += 1
        self._records.append(
            {
                "seq": self._seq,
                "at": round(record.created, 3),
                "level": record.levelname,
                "logger": record.name,
                "message": message[:MAX_MESSAGE],
            }
        )

    @property
    def last(self) -> int:
        """Sequence number of the newest record (0 before the first)."""
        return self._seq

    def select(
        self, *, since: int = 0, level: int = 0, grep: str | None = None, limit: int = 500
    ) -> tuple[list[dict[str, Any]], int]:
        """Records with ``seq > since``, at least ``level``, containing ``grep`` (in the
        message or logger name, case-insensitive), oldest first, the newest ``limit`` of them;
        and how many records after ``since`` the ring no longer holds."""
        self.acquire()
        try:
            held = list(self._records)
        finally:
            self.release()
        first = held[0]["seq"] if held else self._seq + 1
        dropped = max(0, first - since - 1)
        needle = grep.lower() if grep else None
        out = [
            r
            for r in held
            if r["seq"] > since
            and LEVELS.get(r["level"], 0) >= level
            and (needle is None or needle in r["message"].lower() or needle in r["logger"].lower())
        ]
        limit = max(0, min(limit, MAX_SELECT))
        return (out[-limit:] if limit else []), dropped


def install(capacity: int = DEFAULT_CAPACITY) -> LogRing:
    """The process's ring on the root logger, added on first use."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, LogRing):
            return handler
    ring = LogRing(capacity)
    root.addHandler(ring)
    return ring


def current_level(logger: str = "") -> str:
    """The effective level name of ``logger`` (the root logger by default)."""
    return logging.getLevelName(logging.getLogger(logger).getEffectiveLevel())


def set_level(level: str, logger: str = "") -> str:
    """Set ``logger``'s level (the root's by default); returns the canonical level name."""
    number = level_number(level)
    logging.getLogger(logger).setLevel(number)
    return logging.getLevelName(number)
