"""The state folder: layout, permissions, name clashes, the ledger, node.json parsing."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from testnet.errors import StateError
from testnet.spec import spec_from_dict
from testnet.state import (
    LedgerEntry,
    State,
    home_testnets,
    list_testnets,
    node_info_from_dict,
    troon_home,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_lays_out_a_private_folder(tmp_path: Path) -> None:
    spec = spec_from_dict(
        {"name": "t1", "regions": [{"name": "a", "nodes": 2}, {"name": "b", "nodes": 1}]}
    )
    state = State.create(spec, home=tmp_path)
    assert state.root == tmp_path / "testnets" / "t1"
    assert _mode(state.root) == 0o700
    for name in ("testnet.json", "admin_token"):
        assert _mode(state.root / name) == 0o600
    assert [_mode(state.node_dir(i)) for i in range(3)] == [0o700] * 3
    assert state.node_dir(2) == state.root / "nodes" / "n002"
    assert len(state.token) >= 32
    assert state.spec == spec
    manifest = json.loads((state.root / "testnet.json").read_text())
    assert [n["region"] for n in manifest["nodes"]] == ["a", "a", "b"]
    assert state.token not in (state.root / "testnet.json").read_text()


def test_tokens_differ_between_testnets(tmp_path: Path) -> None:
    a = State.create(spec_from_dict({"name": "a", "nodes": 1}), home=tmp_path)
    b = State.create(spec_from_dict({"name": "b", "nodes": 1}), home=tmp_path)
    assert a.token != b.token
    assert list_testnets(tmp_path) == ["a", "b"]


def test_a_taken_name_is_refused_with_what_to_do(tmp_path: Path) -> None:
    spec = spec_from_dict({"name": "dup", "nodes": 1})
    State.create(spec, home=tmp_path)
    with pytest.raises(StateError, match=r"`troon testnet down dup` first"):
        State.create(spec, home=tmp_path)


def test_a_foreign_folder_with_the_name_is_never_touched(tmp_path: Path) -> None:
    squatter = tmp_path / "testnets" / "mine"
    squatter.mkdir(parents=True)
    (squatter / "notes.txt").write_text("keep")
    with pytest.raises(StateError, match="already has a state folder"):
        State.create(spec_from_dict({"name": "mine", "nodes": 1}), home=tmp_path)
    assert (squatter / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in (tmp_path / "testnets").iterdir()) == ["mine"]  # no drafts


def test_open_missing_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(StateError, match=r"no testnet named ghost .*`troon testnet up`"):
        State.open("ghost", home=tmp_path)


def test_remove_deletes_everything_but_only_testnet_folders(tmp_path: Path) -> None:
    state = State.create(spec_from_dict({"name": "gone", "nodes": 2}), home=tmp_path)
    state.record([LedgerEntry(bytes(32), 1, 0.0)])
    state.remove()
    assert not state.root.exists()
    stranger = tmp_path / "testnets" / "stranger"
    stranger.mkdir()
    (stranger / "precious").write_text("keep me")
    with pytest.raises(StateError, match="refusing"):
        State(stranger).remove()
    assert (stranger / "precious").exists()


def test_home_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROON_HOME", str(tmp_path / "h"))
    assert troon_home() == tmp_path / "h"
    assert home_testnets() == tmp_path / "h" / "testnets"
    monkeypatch.delenv("TROON_HOME")
    assert troon_home() == Path.home() / ".troon"


def test_damaged_manifest_is_a_state_error(tmp_path: Path) -> None:
    state = State.create(spec_from_dict({"name": "dmg", "nodes": 1}), home=tmp_path)
    (state.root / "testnet.json").write_text("{not json")
    with pytest.raises(StateError, match="unreadable"):
        _ = state.spec
    (state.root / "testnet.json").write_text(json.dumps({"version": 1, "spec": {"nodes": -1}}))
    with pytest.raises(StateError, match="damaged spec"):
        _ = state.spec


def _entries(n: int) -> list[LedgerEntry]:
    return [LedgerEntry(bytes([i]) * 32, 100 + i, 1000.0 + i) for i in range(n)]


def test_ledger_appends_and_reads_back_in_order(tmp_path: Path) -> None:
    state = State.create(spec_from_dict({"name": "l", "nodes": 1}), home=tmp_path)
    assert state.ledger() == []
    state.record(_entries(2))
    state.record(_entries(3)[2:])
    state.record(_entries(1))  # a duplicate: first record wins
    assert state.ledger() == _entries(3)
    assert _mode(state.root / "ledger.jsonl") == 0o600


def test_a_torn_last_ledger_line_is_ignored(tmp_path: Path) -> None:
    state = State.create(spec_from_dict({"name": "l", "nodes": 1}), home=tmp_path)
    state.record(_entries(2))
    with (state.root / "ledger.jsonl").open("a") as f:
        f.write('{"name": "ab')  # a crash mid-append
    assert state.ledger() == _entries(2)


def test_a_damaged_middle_line_is_reported_by_number(tmp_path: Path) -> None:
    state = State.create(spec_from_dict({"name": "l", "nodes": 1}), home=tmp_path)
    state.record(_entries(1))
    with (state.root / "ledger.jsonl").open("a") as f:
        f.write('{"name": "zz", "size": 1, "at": 0}\n')
    state.record(_entries(3)[2:])
    with pytest.raises(StateError, match="line 2 is damaged"):
        state.ledger()


def test_pid_file_round_trip(tmp_path: Path) -> None:
    state = State.create(spec_from_dict({"name": "p", "nodes": 1}), home=tmp_path)
    assert state.read_pid(0) is None
    state.write_pid(0, 4242)
    assert state.read_pid(0) == 4242
    state.pid_path(0).write_text('{"pid": "x"}')
    assert state.read_pid(0) is None


GOOD_INFO = {
    "name": "ab" * 32,
    "public_key": "cd" * 32,
    "addr": ["127.0.0.1", 4000],
    "admin": ["127.0.0.1", 4001],
    "pid": 77,
    "region": "eu",
    "testnet": "t",
    "version": "0.1.0",
}


def test_node_info_parses_and_makes_a_contact() -> None:
    info = node_info_from_dict(GOOD_INFO)
    assert info.name == bytes.fromhex("ab" * 32)
    assert info.admin == ("127.0.0.1", 4001)
    assert info.contact == "127.0.0.1:4000/" + "cd" * 32


@pytest.mark.parametrize(
    ("key", "value"),
    [("name", "ab"), ("public_key", 5), ("addr", ["h"]), ("admin", ["h", "1"]), ("pid", 0)],
)
def test_node_info_rejects_bad_fields(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        node_info_from_dict({**GOOD_INFO, key: value})


def test_read_node_info_is_none_while_absent_or_half_written(tmp_path: Path) -> None:
    state = State.create(spec_from_dict({"name": "i", "nodes": 1}), home=tmp_path)
    assert state.read_node_info(0) is None
    state.info_path(0).write_text(json.dumps(GOOD_INFO)[:40])
    assert state.read_node_info(0) is None
    state.info_path(0).write_text(json.dumps(GOOD_INFO))
    info = state.read_node_info(0)
    assert info is not None and info.pid == 77
