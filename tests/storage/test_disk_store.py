"""DiskChunkStore: the shared conformance suite plus restart, corruption, crash and lock tests."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conformance import ChunkStoreConformance, chunk

from node.storage.chunkstore import (
    MAX_CHUNK_SIZE,
    ChunkCorrupt,
    ChunkNotFound,
    ChunkStore,
    StoreError,
    StoreFull,
    StoreLocked,
    chunk_name,
)
from node.storage.diskstore import TEMP_PREFIX, DiskChunkStore

REPO = Path(__file__).resolve().parents[2]


class TestDiskStoreConformance(ChunkStoreConformance):
    persistent = True

    def open_store(self, root: Path, capacity: int) -> ChunkStore:
        return DiskChunkStore(root, capacity)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "vault"


@pytest.fixture
def store(root: Path) -> Iterator[DiskChunkStore]:
    with DiskChunkStore(root, 10_000) as s:
        yield s


def chunk_path(root: Path, name: bytes) -> Path:
    return root / "chunks" / name.hex()[:2] / name.hex()


def test_layout_is_content_addressed(store: DiskChunkStore, root: Path) -> None:
    name, data = chunk(b"on disk")
    store.put(name, data)
    assert chunk_path(root, name).read_bytes() == data
    assert (root / "LOCK").read_text().strip() == str(os.getpid())
    assert store.root == root
    assert "DiskChunkStore(root=" in repr(store)


def test_restart_keeps_data(root: Path) -> None:
    chunks = dict(chunk(bytes([i]) * (10 * i)) for i in range(10))
    with DiskChunkStore(root, 10_000) as first:
        for name, data in chunks.items():
            first.put(name, data)
        first.delete(chunk_name(b""))
        del chunks[chunk_name(b"")]
    with DiskChunkStore(root, 10_000) as second:
        assert sorted(second.names()) == sorted(chunks)
        assert second.used_bytes() == sum(map(len, chunks.values()))
        assert all(second.get(name) == data for name, data in chunks.items())


def _flip(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-1] + b"?")


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:5])


def _grow(p: Path) -> None:
    p.write_bytes(p.read_bytes() + b"!")


DAMAGE: dict[str, tuple[Callable[[Path], None], bool]] = {
    # how the file is damaged -> (do it, whether a copy ends up in quarantine/)
    "flipped": (_flip, True),
    "truncated": (_truncate, True),
    "grown": (_grow, True),
    "missing": (Path.unlink, False),
}


@pytest.mark.parametrize("how", DAMAGE)
def test_corrupt_file_detected_and_quarantined(store: DiskChunkStore, root: Path, how: str) -> None:
    damage, quarantined = DAMAGE[how]
    name, data = chunk(b"precious bytes")
    other_name, other = chunk(b"bystander")
    store.put(name, data)
    store.put(other_name, other)
    path = chunk_path(root, name)
    damage(path)
    with pytest.raises(ChunkCorrupt, match="quarantined"):
        store.get(name)
    assert not path.exists()
    assert (root / "quarantine" / name.hex()).exists() is quarantined
    assert not store.has(name)
    assert store.used_bytes() == len(other)
    assert store.stats()["corrupt_detected"] == 1
    with pytest.raises(ChunkNotFound):
        store.get(name)
    assert store.get(other_name) == other
    assert store.put(name, data) is True  # a good copy from a peer repairs it
    assert store.get(name) == data


def test_quarantine_keeps_bad_copy(store: DiskChunkStore, root: Path) -> None:
    name, data = chunk(b"rotting")
    store.put(name, data)
    chunk_path(root, name).write_bytes(b"rotten!")
    with pytest.raises(ChunkCorrupt):
        store.get(name)
    assert (root / "quarantine" / name.hex()).read_bytes() == b"rotten!"


def test_oversized_file_quarantined_at_open(root: Path) -> None:
    name = chunk_name(b"planted")
    with DiskChunkStore(root, 10_000):
        pass
    path = chunk_path(root, name)
    path.parent.mkdir()
    path.write_bytes(bytes(MAX_CHUNK_SIZE + 1))
    with DiskChunkStore(root, 10_000) as s:
        assert not s.has(name)
        assert s.used_bytes() == 0
        assert s.stats()["corrupt_detected"] == 1
    assert not path.exists()
    assert (root / "quarantine" / name.hex()).exists()


def test_stray_temp_files_cleaned(root: Path) -> None:
    name, data = chunk(b"survivor")
    with DiskChunkStore(root, 10_000) as s:
        s.put(name, data)
    strays = [chunk_path(root, name).parent / f"{TEMP_PREFIX}crash{i}" for i in range(3)]
    for stray in strays:
        stray.write_bytes(b"half a chu")
    with DiskChunkStore(root, 10_000) as s:
        assert not any(p.exists() for p in strays)
        assert s.stats()["stray_temps_cleaned"] == 3
        assert s.used_bytes() == len(data)
        assert s.get(name) == data


def test_non_chunk_files_ignored(root: Path) -> None:
    name, data = chunk(b"real")
    hex_name = name.hex()
    with DiskChunkStore(root, 10_000) as s:
        s.put(name, data)
    chunks = root / "chunks"
    other_prefix = "00" if hex_name[:2] != "00" else "01"
    (chunks / other_prefix).mkdir()
    planted = [
        chunks / "README",
        chunks / "zz" / hex_name,  # not a hex prefix directory
        chunks / hex_name[:2] / "notes.txt",
        chunks / hex_name[:2] / hex_name.upper(),
        chunks / hex_name[:2] / (hex_name[:-1]),  # 63 digits
        chunks / other_prefix / hex_name,  # in the wrong directory
    ]
    for p in planted:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"not a chunk")
    (chunks / hex_name[:2] / chunk_name(b"dir").hex()[:2]).mkdir(exist_ok=True)
    os.symlink(chunk_path(root, name), chunks / hex_name[:2] / chunk_name(b"link").hex())
    with DiskChunkStore(root, 10_000) as s:
        assert list(s.names()) == [name]
        assert s.used_bytes() == len(data)
        assert s.stats()["ignored_files"] == len(planted) + 1 + 1
        assert s.get(name) == data
    assert all(p.exists() for p in planted)  # left alone


def test_lock_refuses_second_opener_in_process(root: Path) -> None:
    with DiskChunkStore(root, 100), pytest.raises(StoreLocked, match=f"pid {os.getpid()}"):
        DiskChunkStore(root, 100)
    with DiskChunkStore(root, 100):  # released on close
        pass


def test_lock_refuses_second_process(root: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from node.storage.chunkstore import StoreLocked\n"
        "from node.storage.diskstore import DiskChunkStore\n"
        "try:\n"
        "    DiskChunkStore(Path(sys.argv[1]), 100)\n"
        "except StoreLocked as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with DiskChunkStore(root, 100):
        locked = subprocess.run(
            [sys.executable, "-c", script, str(root)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    assert locked.returncode == 3, locked.stderr
    assert f"pid {os.getpid()}" in locked.stdout
    free = subprocess.run(
        [sys.executable, "-c", script, str(root)], env=env, capture_output=True, check=False
    )
    assert free.returncode == 0, free.stderr


def test_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        DiskChunkStore(tmp_path / "file", 100)
    with pytest.raises(StoreError, match="not a directory"):
        DiskChunkStore(tmp_path / "file" / "below", 100)


def test_smaller_capacity_on_reopen(root: Path) -> None:
    name, data = chunk(b"x" * 80)
    with DiskChunkStore(root, 100) as s:
        s.put(name, data)
    with DiskChunkStore(root, 50) as s:
        assert s.free_bytes() == 0
        assert s.get(name) == data
        with pytest.raises(StoreFull, match="only 0 of 50"):
            s.put(*chunk(b"y"))
        assert s.delete(name)
        assert s.put(*chunk(b"y"))


def test_failed_write_changes_nothing(
    store: DiskChunkStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, data = chunk(b"interrupted")

    def crash(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        store.put(name, data)
    monkeypatch.undo()
    assert not store.has(name)
    assert store.used_bytes() == 0
    assert [p for p in (root / "chunks").rglob("*") if p.is_file()] == []
    assert store.put(name, data) is True


def test_disk_full_is_store_full(
    store: DiskChunkStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(StoreFull, match="lower the capacity"):
        store.put(*chunk(b"does not fit on the disk"))
    monkeypatch.undo()
    assert store.used_bytes() == 0
    assert store.stats()["rejected_puts"] == 1
    assert [p for p in (root / "chunks").rglob("*") if p.is_file()] == []
