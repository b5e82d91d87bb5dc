"""Chunks on the disk space a user donates: one file per chunk, crash-safe, verified on read.

Layout under ``root``::

    LOCK                       flock()ed while a store has ``root`` open; holds the owner's pid
    chunks/<hex[:2]>/<hex>     one chunk; the file's bytes are exactly the chunk's content
    chunks/<hex[:2]>/.tmp-*    a write in progress (one left by a crash is deleted on open)
    quarantine/<hex>           the latest copy of chunk <hex> found corrupt, kept for inspection

Invariants, on top of those of :class:`~node.storage.chunkstore.ChunkStore`:

- A chunk file only ever appears whole: it is written to a temp file in its own
  directory, fsynced, renamed over the final name with ``os.replace`` (atomic on POSIX)
  and the directory is fsynced.  A crash leaves either no file or the whole chunk, plus
  at worst a temp file that the next open deletes.
- The in-memory index (name -> size) mirrors the chunk files.  Opening rescans it from
  ``stat`` sizes (cheap); contents are checked on every read, not at open.
- Only regular files named by 64 lowercase hex digits inside the matching two-digit
  directory are chunks.  Anything else is left alone and not counted as used space.
- Capacity counts chunk content bytes (not filesystem blocks) and is enforced on ``put``.
  A root reopened with a smaller capacity may start over it: it serves reads and deletes
  but refuses puts until enough is deleted.
- One open store per root: ``fcntl.flock`` on ``LOCK`` (per open file, so it also refuses a
  second open inside the same process).  One ``threading.Lock`` guards all state.
- I/O failures other than a full disk (``StoreFull``) or an unreadable sector
  (``ChunkCorrupt``) propagate as ``OSError``; the index is only updated after the disk
  operation succeeded, so a failed call leaves the store as it was.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import IO

from node.atomicfile import fsync_dir, write_atomic
from node.storage.chunkstore import (
    MAX_CHUNK_SIZE,
    ChunkCorrupt,
    ChunkNotFound,
    StoreBase,
    StoreClosed,
    StoreError,
    StoreFull,
    StoreLocked,
    check_capacity,
    check_name,
    chunk_name,
    full_error,
    make_stats,
)

LOCK_FILE = "LOCK"
CHUNKS_DIR = "chunks"
QUARANTINE_DIR = "quarantine"
TEMP_PREFIX = ".tmp-"
"""Prefix of in-progress writes; files with it inside ``chunks/`` are deleted on open."""

_CHUNK_FILE = re.compile(r"[0-9a-f]{64}")
_PREFIX_DIR = re.compile(r"[0-9a-f]{2}")
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskChunkStore(StoreBase):
    """A :class:`~node.storage.chunkstore.ChunkStore` in a directory the node owns."""

    def __init__(self, root: Path, capacity: int) -> None:
        self._capacity = check_capacity(capacity)
        self._root = Path(root)
        self._chunks_dir = self._root / CHUNKS_DIR
        self._quarantine_dir = self._root / QUARANTINE_DIR
        self._lock = threading.Lock()
        self._sizes: dict[bytes, int] = {}
        self._used = 0
        self._corrupt = 0
        self._rejected = 0
        self._strays = 0
        self._ignored = 0
        self._closed = False
        _make_dirs(self._root, self._chunks_dir, self._quarantine_dir)
        self._lock_file = _acquire_lock(self._root)
        try:
            self._scan()
        except BaseException:
            self._lock_file.close()
            raise

    def __repr__(self) -> str:
        return f"DiskChunkStore(root={str(self._root)!r}, capacity={self._capacity})"

    @property
    def root(self) -> Path:
        """The directory this store owns."""
        return self._root

    def _held(self) -> Mapping[bytes, object]:
        return self._sizes

    # -- opening --------------------------------------------------------------------------

    def _scan(self) -> None:
        with os.scandir(self._chunks_dir) as subdirs:
            for sub in subdirs:
                if sub.is_dir(follow_symlinks=False) and _PREFIX_DIR.fullmatch(sub.name):
                    self._scan_dir(sub.name, Path(sub.path))
                else:
                    self._ignored += 1

    def _scan_dir(self, prefix: str, directory: Path) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                if not entry.is_file(follow_symlinks=False):
                    self._ignored += 1
                elif entry.name.startswith(TEMP_PREFIX):
                    with suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    self._strays += 1
                elif _CHUNK_FILE.fullmatch(entry.name) and entry.name.startswith(prefix):
                    self._index_file(bytes.fromhex(entry.name), entry.stat().st_size)
                else:
                    self._ignored += 1

    def _index_file(self, name: bytes, size: int) -> None:
        if size > MAX_CHUNK_SIZE:  # no valid chunk is this big: damaged or planted
            self._quarantine(name)
            self._corrupt += 1
            return
        self._sizes[name] = size
        self._used += size

    # -- the ChunkStore API ---------------------------------------------------------------

    def _put_locked(self, name: bytes, data: bytes) -> bool:
        self._check_open()
        if name in self._sizes:
            return False
        if self._used + len(data) > self._capacity:
            raise full_error(len(data), self._used, self._capacity)
        self._write(name, data)
        self._sizes[name] = len(data)
        self._used += len(data)
        return True

    def _write(self, name: bytes, data: bytes) -> None:
        path = self._path(name)
        try:
            if not path.parent.is_dir():
                path.parent.mkdir()
                fsync_dir(self._chunks_dir)
            write_atomic(path, data, temp_prefix=TEMP_PREFIX)
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            raise StoreFull(
                f"the disk under {self._root} is full although "
                f"{max(0, self._capacity - self._used)} donated bytes are free; "
                "lower the capacity to what the disk can hold"
            ) from exc

    def get(self, name: bytes) -> bytes:
        """The chunk's content, re-hashed; a bad copy is quarantined and ChunkCorrupt raised."""
        check_name(name)
        with self._lock:
            self._check_open()
            if name not in self._sizes:
                raise ChunkNotFound(f"chunk {name.hex()} is not held here")
            data = self._read(name)
            if data is None or chunk_name(data) != name:
                self._drop_corrupt(name)
                what = "is missing or unreadable" if data is None else "no longer matches its name"
                raise ChunkCorrupt(
                    f"chunk {name.hex()} {what} on disk; the copy was quarantined, "
                    "fetch it again from another holder"
                )
            return data

    def _read(self, name: bytes) -> bytes | None:
        try:
            with open(self._path(name), "rb") as f:
                return f.read(MAX_CHUNK_SIZE + 1)  # a longer file cannot match its name
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.EIO:  # an unreadable sector is bit rot too
                return None
            raise

    def _drop_corrupt(self, name: bytes) -> None:
        self._quarantine(name)
        self._used -= self._sizes.pop(name)
        self._corrupt += 1

    def _quarantine(self, name: bytes) -> None:
        source = self._path(name)
        try:
            os.replace(source, self._quarantine_dir / name.hex())
        except FileNotFoundError:
            pass
        except OSError:
            with suppress(FileNotFoundError):
                source.unlink()

    def has(self, name: bytes) -> bool:
        """Whether the chunk is held (no content check; ``get`` does that)."""
        check_name(name)
        with self._lock:
            self._check_open()
            return name in self._sizes

    def delete(self, name: bytes) -> bool:
        """Remove the chunk's file; True if it was held."""
        check_name(name)
        with self._lock:
            self._check_open()
            if name not in self._sizes:
                return False
            with suppress(FileNotFoundError):
                self._path(name).unlink()
            self._used -= self._sizes.pop(name)
            return True

    def stats(self) -> dict[str, int]:
        """The common counters plus ``stray_temps_cleaned`` and ``ignored_files`` (at open)."""
        with self._lock:
            stats = make_stats(
                chunks=len(self._sizes),
                used=self._used,
                capacity=self._capacity,
                corrupt=self._corrupt,
                rejected=self._rejected,
            )
            stats["stray_temps_cleaned"] = self._strays
            stats["ignored_files"] = self._ignored
            return stats

    def close(self) -> None:
        """Release the directory lock; idempotent.  Counters stay readable."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._lock_file.close()

    # -- helpers --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"the chunk store at {self._root} is closed; open a new one")

    def _path(self, name: bytes) -> Path:
        hex_name = name.hex()
        return self._chunks_dir / hex_name[:2] / hex_name


def _make_dirs(root: Path, *subdirs: Path) -> None:
    """Create the store's directories, or explain why ``root`` cannot hold a store."""
    try:
        for directory in (root, *subdirs):
            directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise StoreError(
            f"cannot use {root} as a chunk store: {exc.filename} exists and is not a "
            "directory; pass a directory path"
        ) from exc


def _acquire_lock(root: Path) -> IO[bytes]:
    """Open and flock ``root/LOCK`` (non-blocking), recording our pid; StoreLocked if held."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    lock_file = os.fdopen(fd, "r+b")
    try:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = lock_file.read(32).decode("ascii", "replace").strip() or "unknown"
        lock_file.close()
        raise StoreLocked(
            f"the chunk store at {root} is already open (pid {owner}); close that store "
            "or give this one another directory"
        ) from None
    lock_file.truncate(0)
    lock_file.write(f"{os.getpid()}\n".encode())
    lock_file.flush()
    return lock_file
