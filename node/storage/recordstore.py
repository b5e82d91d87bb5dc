"""Where a node keeps the signed records it is responsible for (file adapter).

One file per record, named by the hex of its address, written atomically; the
records are small (<= 64 KiB payload), so they are also held in memory.  Every write
goes through :func:`node.data.records.judge`, so a stored record only ever moves
forward in the (version, digest) order, and an unsigned or stale write changes nothing.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from node.atomicfile import write_atomic
from node.data.records import Record, RecordError, Verdict, judge

MAX_RECORDS = 100_000


class RecordStore:
    """Signed records by address, on disk."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._records: dict[bytes, Record] = {}
        for path in self._root.iterdir():
            with contextlib.suppress(ValueError, OSError, RecordError):
                record = Record.decode(path.read_bytes())
                if record.address.hex() == path.name:
                    self._records[record.address] = record

    def get(self, address: bytes) -> Record | None:
        with self._lock:
            return self._records.get(address)

    def put(self, record: Record) -> Verdict:
        """Apply the acceptance rule; persist when accepted.  Raises RecordError if refused."""
        with self._lock:
            verdict = judge(self._records.get(record.address), record)
            if verdict in (Verdict.CREATE, Verdict.UPDATE, Verdict.CONFLICT_WON):
                if verdict is Verdict.CREATE and len(self._records) >= MAX_RECORDS:
                    raise RecordError("this node holds its maximum number of records")
                self._write(record)
                self._records[record.address] = record
            return verdict

    def delete(self, address: bytes) -> None:
        with self._lock:
            if self._records.pop(address, None) is not None:
                with contextlib.suppress(FileNotFoundError):
                    (self._root / address.hex()).unlink()

    def addresses(self) -> list[bytes]:
        with self._lock:
            return list(self._records)

    def _write(self, record: Record) -> None:
        write_atomic(self._root / record.address.hex(), record.encode())
