"""File adapters: streaming encryption of a file and atomic decryption to a path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import Store, pseudo_random

from node.selfenc import SelfEncryptionError, decrypt_file, encrypt, encrypt_file


def test_file_round_trip(tmp_path: Path, store: Store) -> None:
    data = pseudo_random(200_000)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    data_map = encrypt_file(source, store.put)
    assert data_map == encrypt(data)[0]
    decrypt_file(data_map, store.get, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.bin", "out.bin"]


def test_failed_decryption_leaves_nothing_behind(tmp_path: Path, store: Store) -> None:
    data = pseudo_random(50_000)
    (tmp_path / "in.bin").write_bytes(data)
    data_map = encrypt_file(str(tmp_path / "in.bin"), store.put)
    del store[data_map.chunk_identifiers[2].dst_hash]
    target = tmp_path / "out.bin"
    with pytest.raises(SelfEncryptionError, match="chunk 2"):
        decrypt_file(data_map, store.get, target)
    assert not target.exists()
    target.write_bytes(b"previous contents")
    with pytest.raises(SelfEncryptionError):
        decrypt_file(data_map, store.get, target)
    assert target.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.bin", "out.bin"]


def test_tiny_file_is_rejected(tmp_path: Path, store: Store) -> None:
    (tmp_path / "tiny").write_bytes(b"ab")
    with pytest.raises(SelfEncryptionError, match="at least 3"):
        encrypt_file(tmp_path / "tiny", store.put)
    assert store.puts == []


def test_missing_file_is_an_os_error(tmp_path: Path, store: Store) -> None:
    with pytest.raises(FileNotFoundError):
        encrypt_file(tmp_path / "absent", store.put)


def test_multi_chunk_file_matches_in_memory_encryption(tmp_path: Path, store: Store) -> None:
    data = pseudo_random(13_000_000, "file/13MB")
    (tmp_path / "in.bin").write_bytes(data)
    data_map = encrypt_file(tmp_path / "in.bin", store.put, workers=2)
    assert data_map.is_child
    assert data_map == encrypt(data)[0]
    decrypt_file(data_map, store.get, tmp_path / "out.bin", workers=2)
    assert (tmp_path / "out.bin").read_bytes() == data


def test_a_file_that_grows_is_rejected(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in.bin").write_bytes(pseudo_random(1000))
    real_fstat = os.fstat

    def stale_fstat(fd: int) -> os.stat_result:  # the size seen before more bytes arrived
        fields = list(real_fstat(fd))
        fields[6] = 900  # st_size
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", stale_fstat)
    with pytest.raises(SelfEncryptionError, match="grew while it was being encrypted"):
        encrypt_file(tmp_path / "in.bin", store.put)
