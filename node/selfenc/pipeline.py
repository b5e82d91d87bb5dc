"""Bounded, ordered parallel map over chunks (DESIGN.md section 4: measured, not assumed).

BLAKE3, Brotli, the AEAD and the NumPy XOR release the GIL on large buffers, so a pool over chunks
gives real parallelism. :func:`ordered_map` keeps at most ``depth`` tasks submitted but not
yet consumed, so a stream holds only a few chunks in memory, and yields results in input
order. With one worker, tasks run inline on the calling thread (no pool at all).

Invariants: the calling thread alone pulls inputs and consumes results; an exception in a
task surfaces from the iterator at that task's position; leaving :class:`Workers` cancels
every task not yet started.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

from .errors import SelfEncryptionError

__all__ = ["DEFAULT_MAX_WORKERS", "Workers", "ordered_map"]

T = TypeVar("T")
R = TypeVar("R")

# Each worker holds about three chunk-sized buffers (~12 MB); four bound a stream's memory.
DEFAULT_MAX_WORKERS = 2


class Workers:
    """A thread pool of ``count`` threads, or inline execution when ``count`` is 1."""

    def __init__(self, count: int | None) -> None:
        if count is None:
            count = min(os.cpu_count() or 1, DEFAULT_MAX_WORKERS)
        if not isinstance(count, int) or count < 1:
            raise SelfEncryptionError(f"workers must be a positive integer, got {count!r}")
        self.count = count
        self.depth = count
        self._pool = ThreadPoolExecutor(count, "selfenc") if count > 1 else None

    def submit(self, fn: Callable[[T], R], arg: T) -> Future[R]:
        if self._pool is not None:
            return self._pool.submit(fn, arg)
        future: Future[R] = Future()
        try:
            future.set_result(fn(arg))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def ordered_map(workers: Workers, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``map(fn, items)`` on ``workers``, in order, with at most ``workers.depth`` pending."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(workers.submit(fn, item))
        if len(pending) >= workers.depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
