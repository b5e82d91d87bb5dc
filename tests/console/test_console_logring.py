"""The node's in-memory log ring (node/logring.py) behind ``GET /logs``."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from node import logring


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("troon.test.logring")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    log.handlers.clear()
    log.propagate = True


def test_ring_keeps_the_newest_records_with_sequence_numbers(logger: logging.Logger) -> None:
    ring = logring.LogRing(capacity=3)
    logger.addHandler(ring)
    for n in range(5):
        logger.info("record %d", n)
    records, dropped = ring.select()
    assert [r["seq"] for r in records] == [3, 4, 5]
    assert [r["message"] for r in records] == ["record 2", "record 3", "record 4"]
    assert dropped == 2  # records 1 and 2 are gone
    assert ring.select(since=4) == ([records[-1]], 0)
    assert ring.select(since=5) == ([], 0)
    assert ring.last == 5
    assert records[0]["logger"] == "troon.test.logring" and records[0]["level"] == "INFO"


def test_level_grep_limit_and_tracebacks(logger: logging.Logger) -> None:
    ring = logring.LogRing()
    logger.addHandler(ring)
    logger.debug("chatter")
    logger.warning("disk nearly FULL")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("task failed")
    warn, _ = ring.select(level=logging.WARNING)
    assert [r["level"] for r in warn] == ["WARNING", "ERROR"]
    assert "ValueError: boom" in warn[1]["message"]
    assert [r["seq"] for r in ring.select(grep="full")[0]] == [2]
    assert [r["seq"] for r in ring.select(limit=1)[0]] == [3]
    assert ring.select(limit=0)[0] == []


def test_bad_format_arguments_never_reach_the_caller(logger: logging.Logger) -> None:
    ring = logring.LogRing()
    logger.addHandler(ring)
    logging.raiseExceptions, saved = False, logging.raiseExceptions
    try:
        logger.info("%d", "not a number")  # handleError, not an exception
    finally:
        logging.raiseExceptions = saved
    assert ring.select()[0] == []


def test_install_is_once_per_process_and_levels_are_validated() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    saved = root.level
    try:
        ring = logring.install()
        assert logring.install() is ring
        assert sum(isinstance(h, logring.LogRing) for h in root.handlers) == 1
        assert logring.set_level("debug") == "DEBUG"
        assert logring.current_level() == "DEBUG"
        with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
            logring.set_level("LOUD")
    finally:
        root.handlers[:] = before
        root.setLevel(saved)
