"""Atomic, durable file writes (a file adapter shared by every module that persists state).

``write_atomic`` writes to a temporary file in the same folder, fsyncs it, renames it
over the target and fsyncs the folder: after a crash a reader sees the old file or the
new one, never half of either.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a folder's entries (a new or renamed file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: Path, data: bytes, *, mode: int | None = None, temp_prefix: str = ".tmp-"
) -> None:
    """Replace ``path`` with ``data`` atomically; ``mode`` sets the permissions (e.g. 0o600)."""
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
